/**
 * Frontend writers for one unnamed extended-protocol statement with text parameters: Parse, Bind,
 * Execute, Sync. The proxy uses them to set session settings with bind parameters, so values (such as
 * the signed identity context) never appear in query text, pg_stat_activity or statement logs.
 */
import { MessageEncodingError } from './errors.js';

function message(type: string, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstring(value: string): Buffer {
  if (value.includes('\0')) throw new MessageEncodingError('a bind parameter or statement contains a NUL byte');
  return Buffer.from(value + '\0', 'utf8');
}

function int16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeInt16BE(n, 0);
  return b;
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
}

/** Parse + Bind + Execute + Sync for `sql` with `$1..$n` bound to `params` (text format; null is SQL NULL). */
export function extendedQuery(sql: string, params: readonly (string | null)[]): Buffer {
  return extendedQueries([{ sql, params }]);
}

/**
 * Parse + Bind + Execute for each statement, then one Sync: the server runs them in order in one implicit
 * transaction (an error skips the rest and rolls all back), and parses each one only after the previous
 * one ran, so a `SET search_path` in the first governs how the next ones resolve names.
 */
export function extendedQueries(statements: readonly { readonly sql: string; readonly params: readonly (string | null)[] }[]): Buffer {
  const parts: Buffer[] = [];
  for (const { sql, params } of statements) {
    parts.push(message('P', Buffer.concat([cstring(''), cstring(sql), int16(0)])));
    const values = params.flatMap((p) => {
      if (p === null) return [int32(-1)];
      const bytes = Buffer.from(p, 'utf8');
      return [int32(bytes.length), bytes];
    });
    parts.push(message('B', Buffer.concat([cstring(''), cstring(''), int16(0), int16(params.length), ...values, int16(0)])));
    parts.push(message('E', Buffer.concat([cstring(''), int32(0)])));
  }
  parts.push(message('S', Buffer.alloc(0)));
  return Buffer.concat(parts);
}
