// Internal: bounded readers for the parsers. A string must end inside the given range; a
// missing NUL is a ProtocolError, never a read past the message (unlike an unbounded cstring reader).
import { isUtf8 } from 'node:buffer';
import { ProtocolError } from './errors.js';

/** Index of the NUL that ends the string starting at `start`, searching only [start, end). */
export function cstringEnd(buf: Buffer, start: number, end: number, what: string): number {
  const nul = start < end ? buf.indexOf(0, start) : -1;
  if (nul === -1 || nul >= end) throw new ProtocolError(`${what} is missing its NUL terminator`);
  return nul;
}

/** Strict UTF-8: invalid sequences are refused rather than turned into U+FFFD look-alikes. */
export function decodeUtf8(buf: Buffer, start: number, end: number, what: string): string {
  const bytes = buf.subarray(start, end);
  if (!isUtf8(bytes)) throw new ProtocolError(`${what} is not valid UTF-8`);
  return bytes.toString('utf8');
}
