/** Readers for the backend messages the proxy interprets while it sets a session up (DataRow here). */
import { describe, expect, it } from 'vitest';
import { parseDataRow } from '../../src/protocol/backend-messages.js';
import { BackendCode, FrontendCode } from '../../src/protocol/codes.js';
import { ProtocolError } from '../../src/protocol/errors.js';

function dataRow(columns: (string | null)[]): Buffer {
  const parts: Buffer[] = [Buffer.from([columns.length >> 8, columns.length & 0xff])];
  for (const c of columns) {
    const len = Buffer.alloc(4);
    if (c === null) len.writeInt32BE(-1);
    else len.writeInt32BE(Buffer.byteLength(c));
    parts.push(len);
    if (c !== null) parts.push(Buffer.from(c));
  }
  return Buffer.concat(parts);
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    return (e as ProtocolError).code;
  }
  return undefined;
}

describe('parseDataRow', () => {
  it('reads text columns and NULLs', () => {
    expect(parseDataRow(dataRow(['1', null, 'héllo', '']))).toEqual(['1', null, 'héllo', '']);
    expect(parseDataRow(dataRow([]))).toEqual([]);
  });

  it('refuses a row whose lengths run past the message, at every truncation', () => {
    const row = dataRow(['abc', null, 'defg']);
    for (let cut = 0; cut < row.length; cut++) {
      expect(codeOf(() => parseDataRow(row.subarray(0, cut)))).toBe('protocol_violation');
    }
  });
});

describe('codes', () => {
  it('are the protocol letters', () => {
    expect(String.fromCharCode(BackendCode.DATA_ROW)).toBe('D');
    expect(String.fromCharCode(BackendCode.ERROR_RESPONSE)).toBe('E');
    expect(String.fromCharCode(FrontendCode.PASSWORD)).toBe('p');
    expect(String.fromCharCode(FrontendCode.TERMINATE)).toBe('X');
  });
});
