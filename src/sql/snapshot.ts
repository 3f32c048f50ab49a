/**
 * A fingerprint of everything `db init` manages, read from the catalogs: roles and their attributes (and
 * password verifiers, when the admin may read pg_authid), their role settings, memberships, schema/table/routine owners and
 * ACLs, the ACLs of the peer functions (src/sql/peer-isolation.ts) and of schema public, forced RLS, routine definitions, default privileges, extensions, the database ACL and (hashed) the stored
 * secrets. `db init` compares it before and after applying to report "nothing changed"; the tests use it
 * to prove a re-run is a no-op.
 */
import type { Queryable } from './db-init.js';
import { PEER_FUNCTION_GROUPS } from './peer-isolation.js';

export type CatalogSnapshot = Readonly<Record<string, readonly string[]>>;

export async function catalogSnapshot(client: Queryable, input: { roles: readonly string[]; schemas: readonly string[] }): Promise<CatalogSnapshot> {
  const roles = [...input.roles];
  const schemas = [...new Set([...input.schemas, 'gprxy'])];
  const rows = async (sql: string, params: unknown[] = []): Promise<string[]> => {
    const r = await client.query(sql, params);
    return r.rows.map((row) => JSON.stringify(Object.values(row)));
  };
  const canReadAuthid = (await client.query(`SELECT pg_catalog.has_table_privilege('pg_catalog.pg_authid', 'SELECT') AS ok`)).rows[0]?.ok === true;
  const hasSecretTable = (await client.query(`SELECT pg_catalog.to_regclass('gprxy.context_secret') IS NOT NULL AS ok`)).rows[0]?.ok === true;
  const canReadSecret = hasSecretTable && (await client.query(`SELECT pg_catalog.has_table_privilege('gprxy.context_secret', 'SELECT') AS ok`)).rows[0]?.ok === true;

  return {
    roles: await rows(
      `SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil::text,
              ${canReadAuthid ? `(SELECT pg_catalog.md5(coalesce(a.rolpassword, '')) FROM pg_catalog.pg_authid a WHERE a.oid = r.oid)` : 'NULL'}
         FROM pg_catalog.pg_roles r WHERE rolname = ANY($1) ORDER BY 1`,
      [roles],
    ),
    memberships: await rows(
      `SELECT g.rolname, u.rolname, m.admin_option
         FROM pg_catalog.pg_auth_members m
         JOIN pg_catalog.pg_roles g ON g.oid = m.roleid JOIN pg_catalog.pg_roles u ON u.oid = m.member
        WHERE g.rolname = ANY($1) OR u.rolname = ANY($1) ORDER BY 1, 2, 3`,
      [roles],
    ),
    schemas: await rows(`SELECT nspname, nspowner::regrole::text, nspacl::text FROM pg_catalog.pg_namespace WHERE nspname = ANY($1) ORDER BY 1`, [schemas]),
    relations: await rows(
      `SELECT c.oid::regclass::text, c.relkind::text, c.relowner::regrole::text, c.relacl::text, c.relrowsecurity, c.relforcerowsecurity,
              (SELECT pg_catalog.md5(pg_catalog.string_agg(a.attname || ':' || a.atttypid::regtype::text, ',' ORDER BY a.attnum))
                 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') ORDER BY 1`,
      [schemas],
    ),
    routines: await rows(
      `SELECT p.oid::regprocedure::text, p.proowner::regrole::text, p.proacl::text, pg_catalog.md5(pg_catalog.pg_get_functiondef(p.oid))
         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY($1) AND p.prokind IN ('f', 'p') ORDER BY 1`,
      [schemas],
    ),
    defaultAcls: await rows(
      `SELECT d.defaclrole::regrole::text, coalesce(d.defaclnamespace::regnamespace::text, ''), d.defaclobjtype::text, d.defaclacl::text
         FROM pg_catalog.pg_default_acl d ORDER BY 1, 2, 3`,
    ),
    extensions: await rows(`SELECT extname, extnamespace::regnamespace::text, extversion FROM pg_catalog.pg_extension ORDER BY 1`),
    roleSettings: await rows(
      `SELECT d.setrole::regrole::text, d.setdatabase, d.setconfig::text FROM pg_catalog.pg_db_role_setting d
        WHERE d.setrole IN (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ANY($1)) ORDER BY 1, 2`,
      [roles],
    ),
    peerFunctions: await rows(
      `SELECT p.oid::regprocedure::text, p.proacl::text FROM pg_catalog.pg_proc p
        WHERE p.proname = ANY($1) OR p.proname = 'pg_stat_statements' ORDER BY 1`,
      [PEER_FUNCTION_GROUPS.flatMap((g) => g.names)],
    ),
    eventTriggers: await rows(`SELECT evtname, evtevent, evtfoid::regprocedure::text, evtenabled::text FROM pg_catalog.pg_event_trigger WHERE evtname LIKE 'gprxy%' ORDER BY 1`),
    publicSchema: await rows(`SELECT nspacl::text FROM pg_catalog.pg_namespace WHERE nspname = 'public'`),
    forcedRls: await rows(
      `SELECT c.oid::regclass::text FROM pg_catalog.pg_class c WHERE c.relrowsecurity AND c.relforcerowsecurity ORDER BY 1`,
    ),
    database: await rows(`SELECT datname, datacl::text FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()`),
    secret: canReadSecret
      ? await rows(`SELECT slot, pg_catalog.md5(secret), set_at::text FROM gprxy.context_secret ORDER BY slot`)
      : [hasSecretTable ? 'unreadable' : 'absent'],
  };
}

/** The sections that differ between two snapshots. */
export function changedSections(before: CatalogSnapshot, after: CatalogSnapshot): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...keys].filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k])).sort();
}
