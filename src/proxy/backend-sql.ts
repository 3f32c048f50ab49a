/**
 * Every statement the proxy itself runs on a pooled backend, in one place. They run inside the service
 * account's environment, which any user of the account can shape (DESIGN.md 2.4: `ALTER ROLE CURRENT_USER
 * SET search_path = public, pg_catalog` plus a `public.set_config` of their own, or a `public.text` type, or an
 * operator). So none of them trusts it:
 * - each message starts with `SET search_path = pg_catalog, pg_temp` (pg_temp last: never searched for
 *   functions or operators), and PostgreSQL parses a statement only after the previous one in the same
 *   message ran, so nothing after it can resolve to an object outside pg_catalog;
 * - and every function, type and operator is written qualified anyway (`pg_catalog.`, `gprxy.`,
 *   `OPERATOR(pg_catalog.=)`), so a statement stays safe even if someone reorders or splits them.
 * Casts between built-in types come from pg_cast, which only a type's owner can extend: no shadowing there.
 */
import { randomInt } from 'node:crypto';
import { query } from '../protocol/client-messages.js';
import { BACKEND_PREPARE_SQL } from './identity-context.js';

export const SAFE_SEARCH_PATH = 'pg_catalog, pg_temp';
export const SET_SAFE_SEARCH_PATH = `SET search_path = ${SAFE_SEARCH_PATH}`;

/** The prepare step (identity-context.ts BACKEND_PREPARE_SQL) as one message, after a safe search_path. */
export const BACKEND_PREPARE = query(`${SET_SAFE_SEARCH_PATH}; ${BACKEND_PREPARE_SQL}`);

/**
 * What a released backend goes through before the next user gets it, and why each part is there.
 *
 * `DISCARD ALL` (it must run alone: it refuses to run inside a transaction block, and a multi-statement
 * message is one) covers: open cursors (CLOSE ALL), SET ROLE / SET SESSION AUTHORIZATION (SET SESSION
 * AUTHORIZATION DEFAULT, RESET ALL), every setting including custom `app.*` / `gprxy.*` placeholders set
 * with SET or set_config (RESET ALL; the placeholder's name stays defined, with an empty value), prepared
 * statements (DEALLOCATE ALL), LISTEN (UNLISTEN *), session advisory locks (pg_advisory_unlock_all),
 * cached plans (DISCARD PLANS), temporary tables and functions in pg_temp (DISCARD TEMP), currval/lastval
 * (DISCARD SEQUENCES).
 *
 * What DISCARD ALL misses, and what the second message does about it:
 * - the random seed: `setseed()` survives, so the next user's `random()` / `random_normal()` would be a
 *   sequence the previous user knows. We reseed from the proxy's CSPRNG.
 * Not per-backend state, so not ours to reset (README, "What stays observable"): prepared transactions
 * (they outlive the session; off unless max_prepared_transactions > 0), objects the user created (tables,
 * large objects), `gprxy.backend_epoch` (a user who moves it forward only gets the backend replaced at the
 * next checkout), globals of trusted procedural languages (plperl's %_SHARED, pltcl), libraries loaded with
 * LOAD from $libdir/plugins, the backend's pid, start time and statistics counters.
 */
export function releaseReset(): Buffer {
  // 2^48 distinct seeds; setseed takes [-1, 1].
  const seed = (randomInt(0, 2 ** 48 - 1) / 2 ** 47 - 1).toFixed(15);
  return Buffer.concat([query('DISCARD ALL'), query(`${SET_SAFE_SEARCH_PATH}; SELECT pg_catalog.setseed('${seed}'::pg_catalog.float8); RESET search_path`)]);
}
/** releaseReset() sends two messages: two ReadyForQuery end it. */
export const RELEASE_RESET_READY_COUNT = 2;
