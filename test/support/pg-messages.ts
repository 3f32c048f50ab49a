/**
 * Frontend messages written by hand (extended protocol with text parameters) and a compact trace of what a
 * server answers, for tests that speak raw protocol: prepared statements across backends (txprep-*).
 */
import { FrameReader } from '../../src/protocol/frame-reader.js';
import { parseDataRow, parseErrorFields } from '../../src/protocol/backend-messages.js';
import { closeMessage, commandTag, describeMessage, parseMessage } from '../../src/protocol/extended-messages.js';
import { query } from '../../src/protocol/client-messages.js';

export function msg(type: string, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}
export const cstr = (s: string): Buffer => Buffer.from(s + '\0');
export const i16 = (n: number): Buffer => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
export function i32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}
/** Parse with parameter type OIDs. */
export const P = (name: string, sql: string, types: number[] = []): Buffer => parseMessage(name, sql, Buffer.concat([i16(types.length), ...types.map(i32)]));
/** Bind with text parameters, text results. */
export function B(stmt: string, params: string[] = [], portal = ''): Buffer {
  const values = params.flatMap((p) => [i32(Buffer.byteLength(p)), Buffer.from(p)]);
  return msg('B', Buffer.concat([cstr(portal), cstr(stmt), i16(0), i16(params.length), ...values, i16(0)]));
}
export const E = (portal = ''): Buffer => msg('E', Buffer.concat([cstr(portal), i32(0)]));
export const S = (): Buffer => msg('S', Buffer.alloc(0));
export const H = (): Buffer => msg('H', Buffer.alloc(0));
export const D = (name: string): Buffer => describeMessage('S', name);
export const C = (name: string): Buffer => closeMessage('S', name);
export const Q = (sql: string): Buffer => query(sql);

/** What a client sees, one string per message: types, SQLSTATEs, command tags, row values (notices and ParameterStatus left out). */
export function trace(bytes: Buffer): string[] {
  const r = new FrameReader({ maxMessageLength: 1 << 30 });
  r.push(bytes);
  const out: string[] = [];
  let m;
  while ((m = r.nextMessage())) {
    const t = String.fromCharCode(m.type);
    if (t === 'E') out.push(`E:${parseErrorFields(m.body).code}`);
    else if (t === 'C') out.push(`C:${commandTag(m.body)}`);
    else if (t === 'D') out.push(`D:${parseDataRow(m.body).join(',')}`);
    else if (t === 'Z') out.push(`Z:${String.fromCharCode(m.body[0]!)}`);
    else if (t === 'N' || t === 'S') continue;
    else out.push(t);
  }
  return out;
}

export function countReady(bytes: Buffer): number {
  let n = 0;
  for (const m of trace(bytes)) if (m.startsWith('Z:')) n++;
  return n;
}
