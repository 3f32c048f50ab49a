/**
 * What a backend of a transaction-pooling database goes through when a client's transaction ends, before
 * the next client gets it. Never DISCARD ALL: it would drop the backend's prepared statements, which
 * transaction pooling keeps per backend (src/proxy/txpool/prepared-statements.ts, by the txprep work).
 * One simple Query; every name qualified and a safe search_path first (backend-sql.ts). When a client waits
 * for the pool, the reset is not run at release: the waiting client's relay writes it (`pipelined()`) ahead of
 * its identity setup and first messages, in one write, so a backend costs one round trip per transaction:
 * - `SET SESSION AUTHORIZATION DEFAULT` and `RESET ALL`: settings, role, the identity context
 *   (`gprxy.context` and the plain context.settings go back to empty), whatever the client SET;
 * - `CLOSE ALL` (WITH HOLD cursors), `UNLISTEN *`, `pg_advisory_unlock_all()` (session advisory locks),
 *   `DISCARD SEQUENCES` (currval/lastval), a new random seed (setseed);
 * - and checks what cannot be reset without DISCARD ALL: temporary tables or functions, and prepared
 *   statements made with SQL PREPARE. The proxy refuses those in transaction mode (session-state.ts); if one
 *   got through anyway (hidden in a function, a DO block), the backend is dirty and is closed, not reused
 *   (pipelined: it ends itself before the next client's messages run, and that client's session ends).
 *   And that the backend still holds exactly the protocol-level statements the proxy believes it holds (a
 *   DEALLOCATE hidden in a DO block would make every other client's Bind of them fail with 26000 on that
 *   backend, for as long as it lives): a difference makes it dirty too.
 *   Both through `gprxy.prepared_statements_state()` where db init installed it: db init revokes
 *   pg_prepared_statements from PUBLIC, since on a shared backend it shows every client's statement text.
 */
import { randomInt } from 'node:crypto';
import { query } from '../../protocol/client-messages.js';
import { SET_SAFE_SEARCH_PATH } from '../backend-sql.js';
import { PREPARED_STATEMENTS_STATE_EXPR } from '../../sql/identity-schema.js';
import type { Backend } from '../backend.js';
import { backendStatementsDigest, EMPTY_DIGEST } from './prepared-statements.js';
import type { ReleaseResetPlan } from '../pool.js';

/** backend.attributes key (set by the pool's prepare step): the database has gprxy.prepared_statements_state(). */
export const SQL_PREPARED_CHECK = 'sqlPreparedCheck';

const TEMP_CHECK =
  `pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.<>) 0::pg_catalog.oid AND (` +
  `EXISTS (SELECT FROM pg_catalog.pg_class AS c WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()) OR ` +
  `EXISTS (SELECT FROM pg_catalog.pg_proc AS p WHERE p.pronamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()))`;
/** `sql`, or the md5 of the protocol-level statement names (src/sql/identity-schema.ts computes the same). */
const PREPARED_CHECK_VIEW = PREPARED_STATEMENTS_STATE_EXPR;
const PREPARED_CHECK_GPRXY = `gprxy.prepared_statements_state()`;

/** Marks the error a dirty backend raises in the pipelined reset (tx-session.ts logs it as backend_dirty). */
export const DIRTY_MARKER = 'gprxy: backend left with temporary objects or SQL prepared statements, pid ';

/**
 * The pipelined reset's check. Nobody reads the reset's answer before the next client's messages run, so
 * the reset runs with exit_on_error on (a user setting: no privilege needed; RESET ALL turns it off, hence
 * set twice): any error in it, and this deliberate one when the backend is dirty (a cast that fails; not a
 * constant, so it is only evaluated when the condition holds), becomes FATAL, and the backend ends before it
 * reads the next client's messages. That client's session ends with it (the same as a backend crash).
 * `digest`: what the proxy believes the backend's protocol-level statements are (`sql` never matches it).
 */
function endIfDirty(gprxyCheck: boolean, digest: string): string {
  const prepared = gprxyCheck ? PREPARED_CHECK_GPRXY : PREPARED_CHECK_VIEW;
  return `CASE WHEN (${TEMP_CHECK}) OR ${prepared} IS DISTINCT FROM '${digest}' THEN pg_catalog.concat('${DIRTY_MARKER}', pg_catalog.pg_backend_pid())::pg_catalog.int4 END`;
}

function randomSeed(): string {
  // 2^48 distinct seeds; setseed takes [-1, 1].
  return (randomInt(0, 2 ** 48 - 1) / 2 ** 47 - 1).toFixed(15);
}

/** `gprxyCheck`: the database has gprxy.prepared_statements_state() (pg_prepared_statements may be revoked there). */
export function transactionResetSql(seed: string, gprxyCheck = false): string {
  return (
    `SET SESSION AUTHORIZATION DEFAULT; RESET ALL; ${SET_SAFE_SEARCH_PATH}; CLOSE ALL; UNLISTEN *; ` +
    `SELECT pg_catalog.pg_advisory_unlock_all(), pg_catalog.setseed('${seed}'::pg_catalog.float8), ${TEMP_CHECK}, ` +
    `${gprxyCheck ? PREPARED_CHECK_GPRXY : PREPARED_CHECK_VIEW}; ` +
    `DISCARD SEQUENCES; RESET search_path`
  );
}

/** The reset sent ahead of the next client's messages: every error in it ends the backend (see endIfDirty). */
export function pipelinedResetSql(seed: string, gprxyCheck = false, digest = EMPTY_DIGEST): string {
  return (
    `SET exit_on_error = on; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; SET exit_on_error = on; ${SET_SAFE_SEARCH_PATH}; CLOSE ALL; UNLISTEN *; ` +
    `SELECT pg_catalog.pg_advisory_unlock_all(), pg_catalog.setseed('${seed}'::pg_catalog.float8), ${endIfDirty(gprxyCheck, digest)}; ` +
    `DISCARD SEQUENCES; RESET exit_on_error; RESET search_path`
  );
}

export const TRANSACTION_RESET: ReleaseResetPlan = {
  bytes(backend: Backend) {
    return query(transactionResetSql(randomSeed(), backend.attributes.get(SQL_PREPARED_CHECK) === true));
  },
  pipelined(backend: Backend) {
    // The digest is hex: nothing to quote.
    return query(pipelinedResetSql(randomSeed(), backend.attributes.get(SQL_PREPARED_CHECK) === true, backendStatementsDigest(backend)));
  },
  readyCount: 1,
  dirty(rows, backend) {
    const row = rows[0];
    if (!row) return 'no answer from the reset checks';
    if (row[2] === 't') return 'temporary tables or functions';
    if (row[3] === 'sql') return 'SQL-level prepared statements';
    if (row[3] !== backendStatementsDigest(backend)) return 'prepared statements changed outside the proxy (e.g. a DEALLOCATE in a function)';
    return undefined;
  },
};
