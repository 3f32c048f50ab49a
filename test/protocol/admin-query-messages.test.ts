/**
 * What the admin console reads and writes beyond the pooler's extended messages: Bind in full, and result
 * sets. node-postgres's serialized Bind parses back here, what we write parses with node-postgres's own
 * parser, and hostile lengths and counts are protocol errors, never reads past a message.
 */
import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import { FrameReader } from '../../src/protocol/frame-reader.js';
import { parseBindMessage } from '../../src/protocol/bind-message.js';
import { closeComplete, parseComplete } from '../../src/protocol/extended-messages.js';
import * as server from '../../src/protocol/server-messages.js';
import { expectProtocolError, parseBackend } from './support.js';

function bodyOf(message: Buffer): Buffer {
  const reader = new FrameReader();
  reader.push(message);
  return reader.nextMessage()!.body;
}

describe('Bind from node-postgres parses in full', () => {
  it('portal, statement, parameter count, result formats', () => {
    expect(parseBindMessage(bodyOf(serialize.bind({ portal: 'p', statement: 's1', values: ['a', null] })))).toEqual({ portal: 'p', statement: 's1', parameterCount: 2, resultFormats: [0] });
    expect(parseBindMessage(bodyOf(serialize.bind({})))).toEqual({ portal: '', statement: '', parameterCount: 0, resultFormats: [0] });
  });

  it('refuses missing terminators, short bodies, absurd counts and trailing bytes', () => {
    expectProtocolError(() => parseBindMessage(Buffer.from('0000' + '7fff', 'hex')), /declares 32767 parameter format codes/);
    expectProtocolError(() => parseBindMessage(Buffer.from('00', 'hex')), /NUL/);
    // portal "", statement "", 0 format codes, 1 value of length -2
    expectProtocolError(() => parseBindMessage(Buffer.from('0000' + '0000' + '0001' + 'fffffffe' + '0000', 'hex')), /parameter length of -2/);
    // 1 value claiming 4096 bytes that are not there
    expectProtocolError(() => parseBindMessage(Buffer.from('0000' + '0000' + '0001' + '00001000', 'hex')), /too short/);
    expectProtocolError(() => parseBindMessage(Buffer.from('0000' + '0000' + '0000' + '0000' + '00', 'hex')), /unexpected bytes/);
  });
});

describe('result messages parse with node-postgres', () => {
  it('RowDescription, DataRow (NULL, UTF-8, NUL-free text), CommandComplete, and the extended answers', () => {
    const messages = parseBackend(
      Buffer.concat([
        server.rowDescription([
          { name: 'id', typeOid: 20, typeSize: 8 },
          { name: 'user', typeOid: 25, typeSize: -1 },
        ]),
        server.dataRow(['1', '<img src=x onerror=alert(1)> ünï']),
        server.dataRow([null, '']),
        server.commandComplete('SHOW'),
        server.emptyQueryResponse(),
        parseComplete(),
        server.bindComplete(),
        closeComplete(),
        server.noData(),
        server.parameterDescription([]),
      ]),
    ) as unknown as Record<string, unknown>[];
    expect(messages.map((m) => m.name)).toEqual(['rowDescription', 'dataRow', 'dataRow', 'commandComplete', 'emptyQuery', 'parseComplete', 'bindComplete', 'closeComplete', 'noData', 'parameterDescription']);
    expect((messages[0]!.fields as { name: string; dataTypeID: number; format: string }[]).map((f) => [f.name, f.dataTypeID, f.format])).toEqual([
      ['id', 20, 'text'],
      ['user', 25, 'text'],
    ]);
    expect(messages[1]!.fields).toEqual(['1', '<img src=x onerror=alert(1)> ünï']);
    expect(messages[2]!.fields).toEqual([null, '']);
    expect(messages[3]!.text).toBe('SHOW');
  });
});
