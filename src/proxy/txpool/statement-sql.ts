/**
 * What a statement's text means for prepared statements in transaction pooling: DEALLOCATE ALL and DISCARD ALL
 * (tracked: they clear the client's statements), `DEALLOCATE [PREPARE] name` (tracked when it is a Query of its
 * own, as Rails sends it), SQL-level PREPARE / EXECUTE (refused), anything else. Uses the statement audit's lexer,
 * so quotes, dollar quotes and comments never hide or fake a keyword.
 */
import { lex, splitStatements } from '../statement-audit/sql-lexer.js';
import { SqlState } from '../../protocol/sqlstate.js';

export type StatementKind =
  | { readonly kind: 'other' }
  /** DEALLOCATE [PREPARE] ALL, DISCARD ALL: every prepared statement of the session goes. */
  | { readonly kind: 'deallocate_all'; readonly tag: 'DEALLOCATE ALL' | 'DISCARD ALL' }
  /** DEALLOCATE [PREPARE] name. */
  | { readonly kind: 'deallocate'; readonly name: string }
  /** SQL-level PREPARE or EXECUTE: names a statement the backend may not hold. */
  | { readonly kind: 'sql_prepare'; readonly keyword: 'PREPARE' | 'EXECUTE' };

const OTHER: StatementKind = { kind: 'other' };

/** The significant words of one statement: identifiers lower-cased, quoted identifiers unquoted (`"` marks them). */
function words(sql: string, limit: number): { text: string; quoted: boolean }[] {
  const out: { text: string; quoted: boolean }[] = [];
  for (const t of lex(sql)) {
    if (t.type === 'space' || t.type === 'comment' || t.type === 'semicolon') continue;
    const raw = sql.slice(t.start, t.end);
    if (t.type === 'quoted_identifier') out.push({ text: raw.slice(1, -1).replace(/""/g, '"'), quoted: true });
    else out.push({ text: t.type === 'identifier' ? raw.toLowerCase() : raw, quoted: false });
    if (out.length >= limit) break;
  }
  return out;
}

/** One statement's kind (text without its trailing semicolon). */
export function statementKind(sql: string): StatementKind {
  const w = words(sql, 5);
  const first = w[0];
  if (!first || first.quoted) return OTHER;
  if (first.text === 'discard') return w[1]?.text === 'all' && !w[1].quoted && w.length === 2 ? { kind: 'deallocate_all', tag: 'DISCARD ALL' } : OTHER;
  if (first.text === 'prepare') return { kind: 'sql_prepare', keyword: 'PREPARE' };
  if (first.text === 'execute') return { kind: 'sql_prepare', keyword: 'EXECUTE' };
  if (first.text !== 'deallocate') return OTHER;
  let i = 1;
  if (w[i]?.text === 'prepare' && !w[i]!.quoted && w.length > 2) i++;
  const name = w[i];
  if (!name || w.length !== i + 1) return { kind: 'sql_prepare', keyword: 'EXECUTE' }; // malformed: PostgreSQL will refuse it
  if (name.text === 'all' && !name.quoted) return { kind: 'deallocate_all', tag: 'DEALLOCATE ALL' };
  return { kind: 'deallocate', name: name.text };
}

/** The kinds of every statement of a simple-protocol Query; [] when none can matter (the common case, cheaply). */
export function queryKinds(sql: string): StatementKind[] {
  if (!/prepare|execute|deallocate|discard/i.test(sql)) return [];
  const kinds = splitStatements(sql).map(statementKind);
  return kinds.some((k) => k.kind !== 'other') ? kinds : [];
}

/** A Query that is one `DEALLOCATE [PREPARE] name` (not ALL): the router tracks it (PHP PDO, Rails). */
export function isTrackedDeallocate(sql: string): boolean {
  if (!/deallocate/i.test(sql)) return false;
  const kinds = queryKinds(sql);
  return kinds.length === 1 && kinds[0]!.kind === 'deallocate';
}

function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/**
 * A statement that fails on the backend itself with 0A000 when executed: a refusal that keeps PostgreSQL's own
 * semantics (the error aborts the implicit transaction, the rest of a pipeline is skipped until Sync) exactly.
 */
export function refusalStatement(keyword: string): string {
  const message = `${keyword} of a named statement in SQL is not supported with transaction pooling (pool.mode: transaction): the statement would live on a shared backend connection`;
  const hint = 'Use your driver\'s protocol-level prepared statements (Parse/Bind), which gprxy keeps per client across backends, or a database with pool.mode: session.';
  return `DO $gprxy$BEGIN RAISE EXCEPTION USING ERRCODE = ${literal(SqlState.FEATURE_NOT_SUPPORTED)}, MESSAGE = ${literal(message)}, HINT = ${literal(hint)}; END$gprxy$`;
}

/** SQL text naming `name` as an identifier. */
export function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
