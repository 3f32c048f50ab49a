/**
 * Bind read in full, for a server that executes statements itself (the admin console): how many parameter
 * values it carries and which result formats it asks for. extended-messages.ts reads only Bind's head
 * (names), which is all a pooler that forwards it needs. Bounded like every reader here: counts are checked
 * against the bytes the message carries, lengths against what is left.
 */
import { cstringEnd, decodeUtf8 } from './decode.js';
import { ProtocolError } from './errors.js';

export interface BindMessage {
  readonly portal: string;
  readonly statement: string;
  /** How many parameter values the client bound. */
  readonly parameterCount: number;
  /** Result column format codes (0 text, 1 binary); empty means all text. */
  readonly resultFormats: readonly number[];
}

export function parseBindMessage(body: Buffer): BindMessage {
  let off = 0;
  const need = (n: number, field: string) => {
    if (body.length - off < n) throw new ProtocolError(`Bind message is too short for its ${field}`);
  };
  const cstring = (field: string) => {
    const end = cstringEnd(body, off, body.length, `Bind ${field}`);
    const value = decodeUtf8(body, off, end, `Bind ${field}`);
    off = end + 1;
    return value;
  };
  const int16 = (field: string) => {
    need(2, field);
    const v = body.readInt16BE(off);
    off += 2;
    return v;
  };
  /** A count never larger than the bytes left could hold (each item at least `min` bytes). */
  const count = (field: string, min: number) => {
    const n = int16(field);
    if (n < 0 || n * min > body.length - off) throw new ProtocolError(`Bind message declares ${n} ${field}, more than it carries`);
    return n;
  };
  const portal = cstring('portal name');
  const statement = cstring('statement name');
  // Not `off += count(...)`: that reads `off` before count() moves it.
  const formats = count('parameter format codes', 2);
  off += formats * 2;
  const parameterCount = count('parameter values', 4);
  for (let i = 0; i < parameterCount; i++) {
    need(4, 'parameter length');
    const length = body.readInt32BE(off);
    off += 4;
    if (length < -1) throw new ProtocolError(`Bind message has a parameter length of ${length}`);
    if (length > 0) {
      need(length, 'parameter value');
      off += length;
    }
  }
  const resultFormats: number[] = [];
  const results = count('result format codes', 2);
  for (let i = 0; i < results; i++) resultFormats.push(int16('result format code'));
  if (off !== body.length) throw new ProtocolError(`Bind message has ${body.length - off} unexpected bytes at its end`);
  return { portal, statement, parameterCount, resultFormats };
}
