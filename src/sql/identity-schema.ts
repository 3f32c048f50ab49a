/**
 * Schema `gprxy`: what makes the proxy's signed identity context (DESIGN.md 2.4) usable, and unforgeable,
 * in row-level security policies.
 *
 * The context is base64url(payload) "." base64url(HMAC-SHA256(secret, <the base64url payload text>)),
 * set by the proxy as `gprxy.context` on each backend it hands out (src/proxy/identity-context.ts). The
 * payload is JSON: {sub, email, roles, tenant, account, exp, iat, pid, bst}; pid and bst (backend start,
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
 *   the previous secret, the payload's pid is this backend's, its bst is this backend's start time and exp
 *   is in the future. A context copied from another backend, edited, forged, expired or reset is NULL.
 * - the owner is a member of pg_read_all_stats: a SECURITY DEFINER function sees pg_stat_activity as its
 *   owner, and without it this backend's backend_start reads as NULL whenever the caller is not the owner.
 *
 * Cost: each call verifies once (one or two HMACs, a lookup of two rows, one pg_stat_get_activity(pid)).
 * Policies write `(select gprxy.user_id())`: an initPlan, evaluated once per query, not per row.
 * The functions are PARALLEL RESTRICTED, not SAFE: pg_backend_pid() in a parallel worker is the worker's.
 */
import { ensureMembership, ensureNologinRole } from './roles.js';
import { doBlock, TAG } from './quote.js';

export const GPRXY_SCHEMA = 'gprxy';
export const OWNER_ROLE = 'gprxy_owner';
export const SECRET_TABLE = 'gprxy.context_secret';
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
  SELECT ${BACKEND_START_EXPR} INTO started
    FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) AS a;
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
  const functions = ['gprxy.hmac_sha256(bytea, bytea)', ...PUBLIC_FUNCTIONS];
  return [
    `CREATE EXTENSION IF NOT EXISTS pgcrypto;`,
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
    HMAC_WRAPPER,
    CLAIMS_FUNCTION,
    ...HELPERS.map(helperFunction),
    ...functions.map((f) => `ALTER FUNCTION ${f} OWNER TO ${OWNER_ROLE};`),
    `REVOKE ALL ON FUNCTION gprxy.hmac_sha256(bytea, bytea) FROM PUBLIC;`,
    ...PUBLIC_FUNCTIONS.map((f) => `GRANT EXECUTE ON FUNCTION ${f} TO PUBLIC;`),
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
