/**
 * Quoting for the SQL that `db init` generates. Names come from the operator's config (account names,
 * database names), so everything that is not a fixed name of ours is quoted, never interpolated raw.
 */
import { DbInitError } from './errors.js';

/** A double-quoted identifier, quotes doubled (always quoted: no keyword surprises). */
export function ident(name: string): string {
  if (name.length === 0 || name.includes('\0')) throw new DbInitError('invalid_identifier', `"${name}" is not a valid PostgreSQL name`);
  if (Buffer.byteLength(name) > 63) throw new DbInitError('invalid_identifier', `"${name}" is longer than PostgreSQL's 63-byte name limit`);
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string literal that means the same whatever standard_conforming_strings says. */
export function literal(value: string): string {
  if (value.includes('\0')) throw new DbInitError('invalid_identifier', 'a SQL literal cannot contain a NUL character');
  const body = value.replace(/'/g, "''");
  return value.includes('\\') ? `E'${body.replace(/\\/g, '\\\\')}'` : `'${body}'`;
}

/** The dollar-quote tag of every body we generate; a value that contains it is refused. */
export const TAG = '$gprxy$';

/** A DO block; refuses text that could end the dollar quote early. */
export function doBlock(body: string, declare = ''): string {
  if (body.includes(TAG) || declare.includes(TAG)) throw new DbInitError('invalid_identifier', `generated SQL must not contain ${TAG}`);
  return `DO ${TAG}\n${declare ? `DECLARE\n${declare}\n` : ''}BEGIN\n${body}\nEND\n${TAG};`;
}
