import { describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import * as client from '../../src/protocol/client-messages.js';
import { MessageEncodingError } from '../../src/protocol/errors.js';
import { FrameReader } from '../../src/protocol/frame-reader.js';
import { expectProtocolError } from './support.js';

/** The body of a tagged message we wrote, as FrameReader hands it to a parser. */
function bodyOf(message: Buffer): Buffer {
  const reader = new FrameReader();
  reader.push(message);
  const m = reader.nextMessage();
  if (!m) throw new Error('incomplete message');
  return m.body;
}

describe('frontend writers match node-postgres byte for byte', () => {
  it('startupMessage', () => {
    expect(client.startupMessage({ user: 'alice', database: 'mydb', client_encoding: 'UTF8' })).toEqual(
      serialize.startup({ user: 'alice', database: 'mydb' }),
    );
  });

  it('startupMessage with a minor version', () => {
    const buf = client.startupMessage({ user: 'u' }, 2);
    expect(buf.readUInt32BE(4)).toBe((3 << 16) | 2);
    expect(buf.readUInt32BE(0)).toBe(buf.length);
  });

  it('passwordMessage, SASL messages, query, sslRequest, terminate, cancelRequest', () => {
    expect(client.passwordMessage('secret ü')).toEqual(serialize.password('secret ü'));
    expect(client.saslInitialResponse('SCRAM-SHA-256', Buffer.from('n,,n=*,r=abc'))).toEqual(
      serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', 'n,,n=*,r=abc'),
    );
    expect(client.saslResponse(Buffer.from('c=biws,r=abc,p=xyz'))).toEqual(serialize.sendSCRAMClientFinalMessage('c=biws,r=abc,p=xyz'));
    expect(client.query('select 1')).toEqual(serialize.query('select 1'));
    expect(client.sslRequest()).toEqual(serialize.requestSsl());
    expect(client.terminate()).toEqual(serialize.end());
    expect(client.cancelRequest(4242, Buffer.from([0x0a, 0x0b, 0x0c, 0x0d]))).toEqual(serialize.cancel(4242, 0x0a0b0c0d));
  });

  it('refuses values the protocol cannot carry', () => {
    const cases: Array<() => unknown> = [
      () => client.passwordMessage('a\0b'),
      () => client.query('select 1\0'),
      () => client.startupMessage({ 'us\0er': 'x' }),
      () => client.startupMessage({ user: 'x\0' }),
      () => client.startupMessage({ '': 'x' }),
      () => client.startupMessage({ user: 'x' }, 65536),
      () => client.saslInitialResponse('', Buffer.alloc(0)),
      () => client.saslInitialResponse('A\0', Buffer.alloc(0)),
      () => client.cancelRequest(-5, Buffer.alloc(4)),
      () => client.cancelRequest(1, Buffer.alloc(2)),
    ];
    for (const fn of cases) {
      expect(fn).toThrow(MessageEncodingError);
    }
  });
});

describe('parsePasswordMessage', () => {
  it('reads the password', () => {
    expect(client.parsePasswordMessage(bodyOf(client.passwordMessage('eyJ.a.b')))).toBe('eyJ.a.b');
    expect(client.parsePasswordMessage(bodyOf(serialize.password('pässword')))).toBe('pässword');
    expect(client.parsePasswordMessage(Buffer.from([0]))).toBe('');
  });

  const cases: Array<[string, Buffer, RegExp]> = [
    ['an empty body', Buffer.alloc(0), /missing its NUL terminator/],
    ['no NUL', Buffer.from('token'), /password message is missing its NUL terminator/],
    ['extra bytes after the NUL', Buffer.from('token\0xyz'), /3 unexpected bytes after its terminator/],
    ['two strings', Buffer.from('a\0b\0'), /2 unexpected bytes/],
    ['invalid UTF-8', Buffer.from([0xc3, 0x28, 0]), /password is not valid UTF-8/],
  ];
  for (const [name, body, message] of cases) {
    it(`rejects ${name}`, { timeout: 1000 }, () => {
      expectProtocolError(() => client.parsePasswordMessage(body), message);
    });
  }
});

describe('parseSaslInitialResponse', () => {
  it('reads mechanism and data', () => {
    const body = bodyOf(client.saslInitialResponse('OAUTHBEARER', Buffer.from('n,,\x01auth=Bearer x\x01\x01')));
    expect(client.parseSaslInitialResponse(body)).toEqual({ mechanism: 'OAUTHBEARER', data: Buffer.from('n,,\x01auth=Bearer x\x01\x01') });
    const empty = bodyOf(client.saslInitialResponse('SCRAM-SHA-256', Buffer.alloc(0)));
    expect(client.parseSaslInitialResponse(empty)).toEqual({ mechanism: 'SCRAM-SHA-256', data: Buffer.alloc(0) });
  });

  it('reads length -1 as no initial response', () => {
    expect(client.parseSaslInitialResponse(Buffer.from('SCRAM-SHA-256\0\xff\xff\xff\xff', 'latin1'))).toEqual({
      mechanism: 'SCRAM-SHA-256',
      data: null,
    });
  });

  const cases: Array<[string, Buffer, RegExp]> = [
    ['an empty body', Buffer.alloc(0), /SASL mechanism name is missing its NUL terminator/],
    ['no NUL after the mechanism', Buffer.from('SCRAM-SHA-256'), /missing its NUL terminator/],
    ['an empty mechanism', Buffer.from('\0\0\0\0\0'), /mechanism name is empty/],
    ['a missing length', Buffer.from('M\0\0\0'), /missing its data length/],
    ['a length longer than the data', Buffer.from('M\0\0\0\0\x05abc', 'latin1'), /declares 5 data bytes but carries 3/],
    ['a length shorter than the data', Buffer.from('M\0\0\0\0\x01abc', 'latin1'), /declares 1 data bytes but carries 3/],
    ['a negative length other than -1', Buffer.from('M\0\xff\xff\xff\xfe', 'latin1'), /declares -2 data bytes/],
    ['bytes after length -1', Buffer.from('M\0\xff\xff\xff\xffx', 'latin1'), /1 bytes after a data length of -1/],
  ];
  for (const [name, body, message] of cases) {
    it(`rejects ${name}`, { timeout: 1000 }, () => {
      expectProtocolError(() => client.parseSaslInitialResponse(body), message);
    });
  }
});
