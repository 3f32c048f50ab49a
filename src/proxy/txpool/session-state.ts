/**
 * Transaction pooling: what a client's SQL would leave on a shared backend after its transaction, found
 * with the statement audit's lexer (only for transaction-mode databases; session mode's relay stays
 * header-only). Per item (README "Transaction pooling", the feature table):
 * - session-level `SET` / `RESET` / `set_config(…, false)`: allowed, and kept per client: the names are
 *   collected here, the proxy reads their values back when the transaction ends and sets them again at
 *   the start of the client's next transaction, on whichever backend it lands;
 * - `SET ROLE` / `SET SESSION AUTHORIZATION` (session level), `LISTEN`, temporary tables/functions (except
 *   `ON COMMIT DROP`), session advisory locks, `DECLARE … WITH HOLD`, SQL `PREPARE`/`EXECUTE`/`DEALLOCATE
 *   name`: refused with 0A000 naming transaction pooling and the alternative.
 * The lexer cannot see into functions or DO blocks: the release reset (tx-reset.ts) resets or checks every
 * item anyway, and closes a backend it finds dirty. This only decides what the client is told.
 */
import { lex, type Token } from '../statement-audit/sql-lexer.js';

export interface Refused {
  /** What was refused, e.g. "LISTEN". */
  readonly what: string;
  /** What to do instead. */
  readonly instead: string;
}

export interface SqlCheck {
  readonly refused?: Refused;
  /** Settings the SQL may change at session level (lower case), to read back when the transaction ends. */
  readonly settings: readonly string[];
  /** RESET ALL or DISCARD ALL: the client's kept settings are dropped. */
  readonly resetAll: boolean;
}

const NONE: SqlCheck = Object.freeze({ settings: Object.freeze([]) as readonly string[], resetAll: false });

const SESSION_LOCKS = new Set(['pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_try_advisory_lock', 'pg_try_advisory_lock_shared']);
/** Settings a client may not keep: who it is, the proxy's own, transaction-level ones. */
const NOT_KEPT = new Set(['role', 'session_authorization', 'transaction_isolation', 'transaction_read_only', 'transaction_deferrable']);

interface Word {
  /** Upper case for keywords and unquoted identifiers; the exact text of a quoted identifier. */
  readonly text: string;
  readonly type: Token['type'];
  readonly raw: string;
}

function words(sql: string, tokens: readonly Token[]): Word[][] {
  const statements: Word[][] = [[]];
  for (const t of tokens) {
    if (t.type === 'space' || t.type === 'comment') continue;
    if (t.type === 'semicolon') {
      statements.push([]);
      continue;
    }
    const raw = sql.slice(t.start, t.end);
    const text = t.type === 'identifier' ? raw.toUpperCase() : t.type === 'quoted_identifier' ? raw.slice(1, -1).replace(/""/g, '"') : raw;
    statements[statements.length - 1]!.push({ text, type: t.type, raw });
  }
  return statements.filter((s) => s.length > 0);
}

/** A setting name at words[i]: `name` or `prefix.name` (lower case unless quoted). */
function settingName(w: readonly Word[], i: number): string | undefined {
  const part = (x: Word | undefined) =>
    x && (x.type === 'identifier' || x.type === 'quoted_identifier') ? (x.type === 'identifier' ? x.text.toLowerCase() : x.text) : undefined;
  const first = part(w[i]);
  if (first === undefined) return undefined;
  if (w[i + 1]?.text === '.') {
    const second = part(w[i + 2]);
    return second === undefined ? undefined : `${first}.${second}`;
  }
  return first;
}

/** The string literal's value ('…' only; E'', $$ and U& strings are not names anyone writes). */
function literal(x: Word | undefined): string | undefined {
  if (!x || x.type !== 'string' || !x.raw.startsWith("'")) return undefined;
  return x.raw.slice(1, -1).replace(/''/g, "'");
}

const refuse = (what: string, instead: string): SqlCheck => ({ refused: { what, instead }, settings: [], resetAll: false });

function checkStatement(w: readonly Word[], settings: string[]): SqlCheck | 'reset_all' | undefined {
  const first = w[0]!.text;
  const second = w[1]?.text;
  // Function calls anywhere in a statement (SELECT, CALL arguments, CTEs).
  for (let i = 0; i < w.length; i++) {
    const name = w[i]!.type === 'identifier' ? w[i]!.text.toLowerCase() : w[i]!.type === 'quoted_identifier' ? w[i]!.text : '';
    if (!name) continue;
    if (SESSION_LOCKS.has(name) && w[i + 1]?.text === '(') {
      return refuse('session-level advisory locks', 'take pg_advisory_xact_lock() or pg_try_advisory_xact_lock() inside the transaction (released at its end)');
    }
    if (name === 'set_config' && w[i + 1]?.text === '(') {
      const setting = literal(w[i + 2]);
      if (setting !== undefined) settings.push(setting.toLowerCase());
    }
  }
  switch (first) {
    case 'SET': {
      if (second === 'LOCAL' || second === 'TRANSACTION' || second === 'CONSTRAINTS') return undefined;
      let i = 1;
      if (second === 'SESSION') {
        if (w[2]?.text === 'CHARACTERISTICS') {
          settings.push('default_transaction_isolation', 'default_transaction_read_only', 'default_transaction_deferrable');
          return undefined;
        }
        i = 2;
      }
      const name = w[i]?.text;
      if (name === 'ROLE' || (name === 'AUTHORIZATION' && i === 2 && w[3]?.text !== 'DEFAULT') || settingName(w, i) === 'role' || settingName(w, i) === 'session_authorization') {
        return refuse(`session-level SET ${name === 'AUTHORIZATION' ? 'SESSION AUTHORIZATION' : 'ROLE'}`, 'use SET LOCAL ROLE inside a transaction (it ends with the transaction)');
      }
      if (name === 'TIME' && w[i + 1]?.text === 'ZONE') settings.push('timezone');
      else if (name === 'NAMES') settings.push('client_encoding');
      else if (name === 'XML' && w[i + 1]?.text === 'OPTION') settings.push('xmloption');
      else {
        const setting = settingName(w, i);
        if (setting !== undefined) settings.push(setting);
      }
      return undefined;
    }
    case 'RESET': {
      if (second === 'ALL') return 'reset_all';
      if (second === 'ROLE' || second === 'SESSION') return undefined;
      const setting = settingName(w, 1);
      if (setting !== undefined) settings.push(setting);
      return undefined;
    }
    case 'DISCARD':
      return second === 'ALL' ? 'reset_all' : undefined;
    case 'LISTEN':
      return refuse('LISTEN', 'listen on a database with pool.mode: session (notifications need a connection of their own)');
    case 'DECLARE':
      for (let i = 1; i + 1 < w.length; i++) {
        if (w[i]!.text === 'WITH' && w[i + 1]!.text === 'HOLD') return refuse('cursors WITH HOLD', 'declare the cursor WITHOUT HOLD and read it inside the transaction');
      }
      return undefined;
    case 'PREPARE':
    case 'EXECUTE':
      return refuse(`SQL ${first}`, 'use protocol-level statements (your driver\'s parameters) instead of PREPARE/EXECUTE');
    case 'DEALLOCATE': {
      const target = second === 'PREPARE' ? w[2]?.text : second;
      return target === 'ALL' ? undefined : refuse('SQL DEALLOCATE of a named statement', 'use protocol-level statements (your driver\'s parameters); DEALLOCATE ALL is allowed');
    }
    case 'CREATE':
    case 'SELECT':
    case 'WITH':
      return temporary(w);
    default:
      return undefined;
  }
}

/** CREATE TEMP … (unless ON COMMIT DROP), anything created in pg_temp, SELECT … INTO TEMP. */
function temporary(w: readonly Word[]): SqlCheck | undefined {
  let temp = false;
  for (let i = 0; i < w.length; i++) {
    const t = w[i]!;
    const upper = t.type === 'quoted_identifier' ? t.text.toUpperCase() : t.text;
    if (upper === 'PG_TEMP' && w[0]!.text === 'CREATE') temp = true;
    if ((upper === 'TEMP' || upper === 'TEMPORARY') && t.type === 'identifier') {
      const before = w[i - 1]?.text;
      if (before === 'CREATE' || before === 'GLOBAL' || before === 'LOCAL' || before === 'INTO' || before === 'REPLACE') temp = true;
    }
  }
  if (!temp) return undefined;
  for (let i = 0; i + 2 < w.length; i++) {
    if (w[i]!.text === 'ON' && w[i + 1]!.text === 'COMMIT' && w[i + 2]!.text === 'DROP') return undefined;
  }
  return refuse('temporary tables and functions', 'create it with ON COMMIT DROP inside a transaction, or use a database with pool.mode: session');
}

/** Checks one Query's or Parse's SQL text. */
export function checkSql(sql: string): SqlCheck {
  // Fast path: nothing that could matter in the text at all.
  if (!/set|listen|temp|advisory|declare|prepare|execute|deallocate|discard|reset/i.test(sql)) return NONE;
  const settings: string[] = [];
  let resetAll = false;
  for (const statement of words(sql, lex(sql))) {
    const result = checkStatement(statement, settings);
    if (result === 'reset_all') resetAll = true;
    else if (result?.refused) return result;
  }
  const kept = settings.filter((s) => !NOT_KEPT.has(s) && !s.startsWith('gprxy.') && /^[a-z_][a-z0-9_$]*(\.[a-z_][a-z0-9_$]*)?$/i.test(s));
  return kept.length || resetAll ? { settings: kept, resetAll } : NONE;
}
