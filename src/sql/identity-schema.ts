/**
 * Schema `gprxy`: what makes the proxy's signed identity context (DESIGN.md 2.4) usable, and unforgeable,
 * in row-level security policies.
 *
 * The context is base64url(payload) "." base64url(HMAC-SHA256(secret, <the base64url payload text>)),
 * set by the proxy as `gprxy.context` on each backend it hands out (src/proxy/identity-context.ts). The
 * payload is JSON: {sub, iss, email, roles, tenant, account, exp, iat, pid, bst, epoch}; pid and bst (backend start,
 * microseconds since the epoch, as text) bind it to one backend.
 *
 * Trust model: the service accounts (and whoever holds their sessions) may SET anything, create functions
 * wherever they can, change search_path and SET ROLE. So:
 * - the secret lives in a table owned by a NOLOGIN role (gprxy_owner) that no one else can read;
 * - `gprxy.claims()` is SECURITY DEFINER (runs as that owner) with a pinned search_path
 *   (pg_catalog, pg_temp) and schema-qualifies every call, so no function, operator or type an attacker
 *   creates elsewhere is ever picked; the helpers are SECURITY DEFINER too, which also stops the planner
 *   from inlining them into a query parsed under the attacker's search_path;
 * - pgcrypto's hmac is reached through `gprxy.hmac_sha256`, created with pgcrypto's actual schema
 *   qualified (looked up from pg_extension at install time, since CREATE EXTENSION IF NOT EXISTS keeps an
 *   existing installation wherever it is);
 * - claims() returns NULL (fail closed, zero rows under a policy) unless the HMAC matches the current or
 *   the previous secret, the payload's pid is this backend's, its bst is this backend's start time, its
 *   epoch is the one recorded for this backend's current checkout and exp is in the future. A context
 *   copied from another backend, edited, forged, expired, reset, or saved in an earlier session on the
 *   same pooled backend is NULL.
 * - pid and bst do not change between checkouts of a pooled backend, so the proxy also starts every
 *   checkout with `gprxy.begin_session(epoch)` (a value that only grows, in the same statement that sets
 *   the context). It records (pid, bst, epoch) in gprxy.backend_epoch, which only the owner can touch, and
 *   refuses an epoch not above the recorded one: a client cannot move it back to an old context's epoch,
 *   and one that pushes it forward only gets that backend closed by the proxy at the next checkout. The
 *   table is UNLOGGED: rows mean nothing after a crash (every backend is gone), and a checkout's commit
 *   then has no WAL flush to wait for.
 * - On a hot standby nothing can be recorded: begin_session does nothing and claims() skips the epoch
 *   check, so there a context is bound to the backend only (replayable in a later session on the same
 *   standby backend, as before epochs existed). After a promotion, open sessions fail closed until their
 *   backend's next checkout records an epoch.
 * - the owner is a member of pg_read_all_stats: a SECURITY DEFINER function sees pg_stat_activity as its
 *   owner, and without it this backend's backend_start reads as NULL whenever the caller is not the owner.
 *
 * Cost: each call verifies once (one or two HMACs, a lookup of two rows, one pg_stat_get_activity(pid),
 * one primary-key lookup in gprxy.backend_epoch).
 * Policies write `(select gprxy.user_id())`: an initPlan, evaluated once per query, not per row.
 * The functions are PARALLEL RESTRICTED, not SAFE: pg_backend_pid() in a parallel worker is the worker's.
 */
import { ensureMembership, ensureNologinRole, GROUP_ROLES } from './roles.js';
import { doBlock, TAG } from './quote.js';

export const GPRXY_SCHEMA = 'gprxy';
export const OWNER_ROLE = 'gprxy_owner';
export const SECRET_TABLE = 'gprxy.context_secret';
export const EPOCH_TABLE = 'gprxy.backend_epoch';
export const BEGIN_SESSION = 'gprxy.begin_session(bigint)';
/**
 * The SQLSTATE begin_session raises when the epoch does not move forward, and only then: this backend's
 * epoch is unusable (something other than the proxy, e.g. a user of the account calling begin_session
 * with a huge value, moved it), and a fresh backend is the remedy (class XG is not PostgreSQL's: the proxy
 * tells this refusal from any other setup error by it; src/proxy/identity-context.ts has the same).
 * What a fresh backend would not fix has PostgreSQL's codes: 22004 for a NULL epoch (a caller's bug),
 * BEGIN_SESSION_UNVERIFIABLE_SQLSTATE when gprxy cannot read the backend's start time (re-run db init).
 */
export const EPOCH_REFUSED_SQLSTATE = 'XG001';
/** object_not_in_prerequisite_state: gprxy_owner cannot see backend start times (pg_read_all_stats missing). */
export const BEGIN_SESSION_UNVERIFIABLE_SQLSTATE = '55000';
export const CONTEXT_SETTING = 'gprxy.context';

/**
 * This backend's start time as the proxy reads it (src/proxy/identity-context.ts BACKEND_START_SQL): the
 * same expression on the same server gives the same text on every version (extract returns double
 * precision before PostgreSQL 14, numeric after; both sides use it).
 */
export const BACKEND_START_EXPR = '(extract(epoch FROM a.backend_start) * 1000000)::bigint::text';

const PINNED = 'SET search_path = pg_catalog, pg_temp';

/** The public helpers: name, signature, return type, SQL body over `gprxy.claims()`. */
const HELPERS: readonly { name: string; args: string; returns: string; strict?: boolean; body: string }[] = [
  { name: 'user_id', args: '', returns: 'text', body: `SELECT gprxy.claims() ->> 'sub'` },
  { name: 'tenant_id', args: '', returns: 'text', body: `SELECT gprxy.claims() ->> 'tenant'` },
  // The issuer of the token the session was opened with (user_id and tenant_id are already namespaced by it).
  { name: 'issuer', args: '', returns: 'text', body: `SELECT gprxy.claims() ->> 'iss'` },
  { name: 'email', args: '', returns: 'text', body: `SELECT gprxy.claims() ->> 'email'` },
  {
    name: 'roles',
    args: '',
    returns: 'text[]',
    body: `SELECT CASE WHEN pg_catalog.jsonb_typeof(c -> 'roles') = 'array'
              THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(c -> 'roles'))
              ELSE '{}'::text[] END
    FROM (SELECT gprxy.claims() AS c) AS verified
   WHERE c IS NOT NULL`,
  },
  {
    name: 'has_role',
    args: 'role text',
    returns: 'boolean',
    strict: true,
    // NULL, not false, without a valid context: `NOT gprxy.has_role(...)` must fail closed too.
    body: `SELECT pg_catalog.jsonb_typeof(c -> 'roles') = 'array' AND (c -> 'roles') ? role
    FROM (SELECT gprxy.claims() AS c) AS verified
   WHERE c IS NOT NULL`,
  },
];

export const PUBLIC_FUNCTIONS: readonly string[] = ['gprxy.claims()', ...HELPERS.map((h) => `gprxy.${h.name}(${h.args.replace(/^\w+ /, '')})`)];

const CLAIMS_FUNCTION = `CREATE OR REPLACE FUNCTION gprxy.claims()
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER PARALLEL RESTRICTED
 ${PINNED}
AS ${TAG}
DECLARE
  context text := pg_catalog.current_setting('${CONTEXT_SETTING}', true);
  body text;
  verified boolean;
  payload jsonb;
  started text;
  recorded bigint;
BEGIN
  -- Shape first: only something that could be ours reaches the HMAC.
  IF context IS NULL OR pg_catalog.length(context) > 16384
     OR context !~ '^[A-Za-z0-9_-]+[.][A-Za-z0-9_-]{43}$' THEN
    RETURN NULL;
  END IF;
  body := pg_catalog.split_part(context, '.', 1);
  -- The MAC is over the base64url text of the payload, keyed with the current or the previous secret.
  SELECT true INTO verified
    FROM gprxy.context_secret AS s
   WHERE pg_catalog.translate(pg_catalog.rtrim(pg_catalog.encode(
           gprxy.hmac_sha256(pg_catalog.convert_to(body, 'UTF8'), s.secret), 'base64'), '='), '+/', '-_')
         = pg_catalog.split_part(context, '.', 2)
   LIMIT 1;
  IF verified IS NULL THEN
    RETURN NULL;
  END IF;
  payload := pg_catalog.convert_from(pg_catalog.decode(
               pg_catalog.rpad(pg_catalog.translate(body, '-_', '+/'), ((pg_catalog.length(body) + 3) / 4) * 4, '='),
               'base64'), 'UTF8')::jsonb;
  IF pg_catalog.jsonb_typeof(payload) IS DISTINCT FROM 'object'
     OR payload ->> 'pid' IS DISTINCT FROM pg_catalog.pg_backend_pid()::text THEN
    RETURN NULL;
  END IF;
  IF pg_catalog.pg_is_in_recovery() THEN
    -- A standby records no checkouts (see begin_session): bound to the backend only.
    SELECT ${BACKEND_START_EXPR} INTO started
      FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) AS a;
  ELSE
    -- One query: this backend's start time and the epoch of its current checkout (an older session's
    -- context on this same backend carries an older one; none recorded: NULL).
    SELECT ${BACKEND_START_EXPR},
           (SELECT b.epoch FROM ${EPOCH_TABLE} AS b
             WHERE b.pid = pg_catalog.pg_backend_pid() AND b.bst = ${BACKEND_START_EXPR})
      INTO started, recorded
      FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) AS a;
    -- A transaction-pooling context (txn: true) is set per transaction and reset at release; it records
    -- nothing (no write per transaction), so it is bound to the backend only (README "Transaction pooling").
    IF (payload -> 'txn') IS DISTINCT FROM 'true'::jsonb
       AND (recorded IS NULL OR payload ->> 'epoch' IS DISTINCT FROM recorded::text) THEN
      RETURN NULL;
    END IF;
  END IF;
  IF started IS NULL OR payload ->> 'bst' IS DISTINCT FROM started THEN
    RETURN NULL;
  END IF;
  IF pg_catalog.jsonb_typeof(payload -> 'exp') IS DISTINCT FROM 'number'
     OR (payload ->> 'exp')::numeric <= extract(epoch FROM pg_catalog.statement_timestamp()) THEN
    RETURN NULL;
  END IF;
  RETURN payload;
END
${TAG};`;

/**
 * Starts a checkout: records this backend's (pid, start time, epoch). A row with another start time is a
 * previous backend's with the same pid and is replaced; one with this start time must hold a smaller epoch.
 */
const BEGIN_SESSION_FUNCTION = `CREATE OR REPLACE FUNCTION gprxy.begin_session(epoch bigint)
 RETURNS void
 LANGUAGE plpgsql
 VOLATILE SECURITY DEFINER PARALLEL UNSAFE
 ${PINNED}
AS ${TAG}
DECLARE
  started text;
BEGIN
  IF pg_catalog.pg_is_in_recovery() THEN
    RETURN; -- read-only: nothing can be recorded, and claims() does not ask for it
  END IF;
  IF epoch IS NULL THEN
    RAISE EXCEPTION 'gprxy.begin_session: epoch must not be NULL' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  SELECT ${BACKEND_START_EXPR} INTO started
    FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) AS a;
  IF started IS NULL THEN
    RAISE EXCEPTION 'gprxy.begin_session: cannot read this backend''s start time'
      USING ERRCODE = '${BEGIN_SESSION_UNVERIFIABLE_SQLSTATE}', HINT = 'gprxy_owner must be a member of pg_read_all_stats: re-run gprxy db init';
  END IF;
  INSERT INTO ${EPOCH_TABLE} AS b (pid, bst, epoch) VALUES (pg_catalog.pg_backend_pid(), started, epoch)
  ON CONFLICT (pid) DO UPDATE SET bst = excluded.bst, epoch = excluded.epoch
   WHERE b.bst IS DISTINCT FROM excluded.bst OR b.epoch < excluded.epoch;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'gprxy.begin_session: epoch % is not after this backend''s current one', epoch
      USING ERRCODE = '${EPOCH_REFUSED_SQLSTATE}', HINT = 'something other than the proxy moved it forward; the proxy replaces this connection';
  END IF;
END
${TAG};`;

/**
 * Its presence tells the proxy that claims() accepts transaction-pooling contexts (txn: true, no recorded
 * epoch): a database initialised before transaction pooling existed must re-run `gprxy db init` first.
 */
export const TRANSACTION_CONTEXTS = 'gprxy.transaction_contexts()';
const TRANSACTION_CONTEXTS_FUNCTION = `CREATE OR REPLACE FUNCTION gprxy.transaction_contexts()
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
 ${PINNED}
AS ${TAG}
  SELECT true
${TAG};`;

/**
 * What the transaction-pooling release reset checks about this backend's prepared statements
 * (src/proxy/txpool/tx-reset.ts): `sql` when one was made with SQL PREPARE (the backend is closed), else the
 * md5 of the sorted names of the protocol-level ones, which the proxy compares with the statements it believes
 * the backend holds (a DEALLOCATE hidden in a DO block would otherwise make every other client's Bind of them
 * fail). Through this function because db init revokes pg_prepared_statement() from PUBLIC
 * (src/sql/peer-isolation.ts: the view shows other clients' statement text on a shared backend); it answers
 * about the caller's own backend only, and no text.
 */
export const PREPARED_STATEMENTS_STATE = 'gprxy.prepared_statements_state()';
export const PREPARED_STATEMENTS_STATE_EXPR =
  `(SELECT CASE WHEN pg_catalog.bool_or(s.from_sql) THEN 'sql' ELSE pg_catalog.md5(COALESCE(pg_catalog.string_agg(s.name, ',' ORDER BY s.name COLLATE pg_catalog."C"), '')) END ` +
  `FROM pg_catalog.pg_prepared_statements AS s)`;
const PREPARED_STATEMENTS_STATE_FUNCTION = `CREATE OR REPLACE FUNCTION gprxy.prepared_statements_state()
 RETURNS text
 LANGUAGE sql
 VOLATILE SECURITY DEFINER PARALLEL RESTRICTED
 ${PINNED}
AS ${TAG}
  SELECT ${PREPARED_STATEMENTS_STATE_EXPR}
${TAG};`;

/** pgcrypto's hmac, called by its real schema (found at install time) so nothing can shadow it. */
const HMAC_WRAPPER = doBlock(
  `  SELECT n.nspname INTO ext_schema
    FROM pg_catalog.pg_extension AS e JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
   WHERE e.extname = 'pgcrypto';
  EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO ${OWNER_ROLE}', ext_schema);
  EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.hmac(bytea, bytea, text) TO ${OWNER_ROLE}', ext_schema);
  EXECUTE pg_catalog.format(
    $f$CREATE OR REPLACE FUNCTION gprxy.hmac_sha256(data bytea, key bytea)
 RETURNS bytea
 LANGUAGE sql
 IMMUTABLE STRICT PARALLEL SAFE
 ${PINNED}
AS %L$f$,
    pg_catalog.format('SELECT %I.hmac(data, key, %L::pg_catalog.text)', ext_schema, 'sha256'));`,
  '  ext_schema name;',
);

function helperFunction(h: (typeof HELPERS)[number]): string {
  return `CREATE OR REPLACE FUNCTION gprxy.${h.name}(${h.args})
 RETURNS ${h.returns}
 LANGUAGE sql
 STABLE${h.strict ? ' STRICT' : ''} SECURITY DEFINER PARALLEL RESTRICTED
 ${PINNED}
AS ${TAG}
  ${h.body}
${TAG};`;
}

/** Everything of schema gprxy except the secret's value (see secretStatements). */
export function identitySchemaStatements(): string[] {
  const functions = ['gprxy.hmac_sha256(bytea, bytea)', BEGIN_SESSION, TRANSACTION_CONTEXTS, PREPARED_STATEMENTS_STATE, ...PUBLIC_FUNCTIONS];
  return [
    // Named: db init runs with search_path = pg_catalog, pg_temp (an existing installation stays where it is).
    `CREATE EXTENSION IF NOT EXISTS pgcrypto SCHEMA public;`,
    ensureNologinRole(OWNER_ROLE),
    ensureMembership('pg_read_all_stats', OWNER_ROLE),
    `CREATE SCHEMA IF NOT EXISTS ${GPRXY_SCHEMA} AUTHORIZATION ${OWNER_ROLE};`,
    `ALTER SCHEMA ${GPRXY_SCHEMA} OWNER TO ${OWNER_ROLE};`,
    `REVOKE ALL ON SCHEMA ${GPRXY_SCHEMA} FROM PUBLIC;`,
    `GRANT USAGE ON SCHEMA ${GPRXY_SCHEMA} TO PUBLIC;`,
    `CREATE TABLE IF NOT EXISTS ${SECRET_TABLE} (
  slot text PRIMARY KEY CHECK (slot IN ('current', 'previous')),
  secret bytea NOT NULL CHECK (octet_length(secret) >= 32),
  set_at timestamptz NOT NULL DEFAULT now()
);`,
    `ALTER TABLE ${SECRET_TABLE} OWNER TO ${OWNER_ROLE};`,
    `REVOKE ALL ON TABLE ${SECRET_TABLE} FROM PUBLIC;`,
    `CREATE UNLOGGED TABLE IF NOT EXISTS ${EPOCH_TABLE} (
  pid integer PRIMARY KEY,
  bst text NOT NULL,
  epoch bigint NOT NULL
);`,
    `ALTER TABLE ${EPOCH_TABLE} OWNER TO ${OWNER_ROLE};`,
    `REVOKE ALL ON TABLE ${EPOCH_TABLE} FROM PUBLIC;`,
    HMAC_WRAPPER,
    CLAIMS_FUNCTION,
    BEGIN_SESSION_FUNCTION,
    TRANSACTION_CONTEXTS_FUNCTION,
    // Its first form (a boolean, SQL PREPARE only), replaced by prepared_statements_state().
    `DROP FUNCTION IF EXISTS gprxy.sql_prepared_statements();`,
    PREPARED_STATEMENTS_STATE_FUNCTION,
    ...HELPERS.map(helperFunction),
    ...functions.map((f) => `ALTER FUNCTION ${f} OWNER TO ${OWNER_ROLE};`),
    `REVOKE ALL ON FUNCTION gprxy.hmac_sha256(bytea, bytea) FROM PUBLIC;`,
    `REVOKE ALL ON FUNCTION ${BEGIN_SESSION} FROM PUBLIC;`,
    // The proxy logs in as the service accounts; their groups are the only callers it needs.
    `GRANT EXECUTE ON FUNCTION ${BEGIN_SESSION} TO ${Object.values(GROUP_ROLES).join(', ')};`,
    ...PUBLIC_FUNCTIONS.map((f) => `GRANT EXECUTE ON FUNCTION ${f} TO PUBLIC;`),
    `GRANT EXECUTE ON FUNCTION ${PREPARED_STATEMENTS_STATE} TO PUBLIC;`,
  ];
}

/**
 * The secret's value, sent as bind parameter $1 (never in query text). Correct whatever is stored, so
 * printed SQL is re-runnable too:
 * - nothing stored: the config secret becomes current;
 * - rotate: if current differs, it becomes previous (replacing an older previous) and the config secret
 *   becomes current; proxies signing with either verify until the next plain run;
 * - plain run with current = config secret: previous (if any) is dropped, ending a rotation.
 * A plain run whose config secret differs from current is refused before planning (secret_mismatch).
 */
export function secretStatements(rotate: boolean): string[] {
  const value = `pg_catalog.convert_to($1, 'UTF8')`;
  const insert = `INSERT INTO ${SECRET_TABLE} (slot, secret) VALUES ('current', ${value}) ON CONFLICT (slot) DO NOTHING;`;
  if (!rotate) {
    return [
      insert,
      `DELETE FROM ${SECRET_TABLE} WHERE slot = 'previous' AND EXISTS (SELECT FROM ${SECRET_TABLE} WHERE slot = 'current' AND secret = ${value});`,
    ];
  }
  return [
    `DELETE FROM ${SECRET_TABLE} WHERE slot = 'previous' AND EXISTS (SELECT FROM ${SECRET_TABLE} WHERE slot = 'current' AND secret <> ${value});`,
    `UPDATE ${SECRET_TABLE} SET slot = 'previous', set_at = now() WHERE slot = 'current' AND secret <> ${value};`,
    insert,
  ];
}
