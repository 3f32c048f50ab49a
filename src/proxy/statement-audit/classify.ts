/**
 * Which statements `audit.statements: ddl | write` keep, decided by the command tag PostgreSQL returned in
 * CommandComplete (so no SQL parsing): a tag names what ran, whatever the client called it. A statement
 * that failed has no tag; its leading keyword stands in (the same words, since tags are keywords).
 *
 * What tags miss (README, "Statement audit"): `WITH d AS (DELETE …) SELECT …`, `SELECT f()` calling a
 * writing function and `EXPLAIN ANALYZE DELETE …` are all tagged SELECT or EXPLAIN; `SELECT … INTO t` is
 * tagged SELECT. `CREATE TABLE … AS` is tagged SELECT too, which the leading keyword catches.
 */
import type { AuditStatements } from '../../config/proxy-config.js';

export type StatementClass = 'ddl' | 'write' | 'read' | 'other';

export function firstWord(tag: string): string {
  const space = tag.indexOf(' ');
  return space < 0 ? tag : tag.slice(0, space);
}

/**
 * The class of one executed (or failed) statement. `word` is the first word of its command tag, or of its
 * text when it failed. (A switch: this runs for every statement of an audited session.)
 */
export function classify(word: string, copy: 'in' | 'out' | 'both' | undefined): StatementClass {
  switch (word) {
    case 'CREATE':
    case 'ALTER':
    case 'DROP':
    case 'GRANT':
    case 'REVOKE':
    case 'COMMENT':
    case 'SECURITY':
    case 'IMPORT':
    case 'REASSIGN':
      return 'ddl';
    case 'INSERT':
    case 'UPDATE':
    case 'DELETE':
    case 'MERGE':
    case 'TRUNCATE':
    case 'CALL':
    case 'DO':
    case 'REFRESH':
      return 'write';
    case 'COPY':
      // A write only FROM a client (CopyInResponse); a failed COPY whose direction is unknown counts as one.
      return copy === 'out' ? 'read' : 'write';
    case 'SELECT':
    case 'FETCH':
    case 'MOVE':
    case 'SHOW':
    case 'EXPLAIN':
    case 'VALUES':
    case 'TABLE':
      return 'read';
    default:
      return 'other';
  }
}

/** Does `statements` keep a statement of this class? `write` includes DDL: both change the database. */
export function keeps(mode: AuditStatements, cls: StatementClass): boolean {
  switch (mode) {
    case 'all':
      return true;
    case 'write':
      return cls === 'ddl' || cls === 'write';
    case 'ddl':
      return cls === 'ddl';
    case 'none':
      return false;
  }
}

/** The row count at the end of a command tag ("INSERT 0 5" → 5, "SELECT 3" → 3), if it has one. */
export function rowsOf(tag: string): number | undefined {
  const space = tag.lastIndexOf(' ');
  if (space < 0) return undefined;
  const tail = tag.slice(space + 1);
  return /^\d+$/.test(tail) ? Number(tail) : undefined;
}
