/**
 * Peer isolation: what one user of a shared service account can do to another user of it through the
 * built-in functions PostgreSQL allows among backends of the same role (issue 11 item 4):
 * - read their current statement, literals included (pg_stat_activity.query, pg_stat_get_backend_activity,
 *   pg_stat_statements' texts of utility statements);
 * - with transaction pooling, read the statements they prepared on a shared backend (pg_prepared_statements);
 * - cancel or terminate their backend (pg_cancel_backend, pg_terminate_backend);
 * - read and overwrite the large objects they created (owned by the shared role: lo_get, loread, ...).
 * A privilege granted to PUBLIC cannot be taken from one role alone, so db init revokes EXECUTE on these
 * functions from PUBLIC and grants it back to the roles meant to have it: pg_read_all_stats (monitoring,
 * pg_monitor) and gprxy_owner (gprxy.claims() and begin_session read this backend's start time) for the
 * activity functions, pg_signal_backend for the signals, nobody for large objects (superusers keep all).
 * pg_proc is per database: this applies to the database db init prepares, not to the others of the cluster.
 * Only a superuser may change these ACLs: run by another admin, db init skips this and says so.
 *
 * What remains, by design: the pid, start time, state and timing of the account's backends
 * (pg_stat_get_backend_pid/start/..., which the proxy uses to read its own backend's start time); a
 * CancelRequest needs the backend's secret key, which only the proxy holds.
 */
import { OWNER_ROLE } from './identity-schema.js';
import { doBlock, ident, literal } from './quote.js';

export interface PeerFunctionGroup {
  readonly key: 'activity' | 'prepared_statements' | 'signals' | 'large_objects';
  /** Function names in pg_catalog (every overload of each). */
  readonly names: readonly string[];
  /** Roles that get EXECUTE back. */
  readonly grantTo: readonly string[];
  readonly why: string;
  readonly breaks: string;
}

export const PEER_FUNCTION_GROUPS: readonly PeerFunctionGroup[] = Object.freeze([
  {
    key: 'activity',
    names: ['pg_stat_get_activity', 'pg_stat_get_backend_activity'],
    grantTo: ['pg_read_all_stats', OWNER_ROLE],
    why: 'users of one account read each other\'s current SQL text, literals included, in pg_stat_activity',
    breaks:
      'pg_stat_activity (and pg_stat_ssl, pg_stat_gssapi, pg_stat_replication) for roles of this database that are neither superusers nor members of pg_read_all_stats or pg_monitor: give monitoring roles pg_monitor',
  },
  {
    // Transaction pooling keeps protocol-level prepared statements on shared backends, under proxy names but
    // with their text (literals included): the next client of that backend read them in pg_prepared_statements.
    // The release reset's check for SQL-level PREPARE goes through gprxy.prepared_statements_state() instead.
    key: 'prepared_statements',
    names: ['pg_prepared_statement'],
    grantTo: ['pg_read_all_stats', OWNER_ROLE],
    why: 'with pool.mode: transaction, clients of one account read the text of the statements other clients prepared on a shared backend (pg_prepared_statements)',
    breaks: 'the view pg_prepared_statements for roles of this database that are neither superusers nor members of pg_read_all_stats or pg_monitor',
  },
  {
    key: 'signals',
    names: ['pg_cancel_backend', 'pg_terminate_backend'],
    grantTo: ['pg_signal_backend'],
    why: 'users of one account cancel or terminate each other\'s backends',
    breaks: 'pg_cancel_backend / pg_terminate_backend for roles that are neither superusers nor members of pg_signal_backend (a client\'s own cancel key, e.g. Ctrl+C in psql, still works)',
  },
  {
    key: 'large_objects',
    names: [
      'lo_open', 'lo_close', 'loread', 'lowrite', 'lo_lseek', 'lo_lseek64', 'lo_tell', 'lo_tell64', 'lo_truncate', 'lo_truncate64',
      'lo_creat', 'lo_create', 'lo_unlink', 'lo_import', 'lo_export', 'lo_from_bytea', 'lo_get', 'lo_put',
    ],
    grantTo: [],
    why: 'a large object belongs to the account, so every user of it reads and overwrites the ones another user created',
    breaks: 'large objects for every role but superusers in this database (applications storing files as large objects: use bytea, or opt out)',
  },
].map((g) => Object.freeze(g)) as PeerFunctionGroup[]);

/** pg_stat_statements keeps the text of utility statements with their literals: its function too, when installed. */
const STATEMENTS_EXTENSION_FUNCTION = 'pg_stat_statements';

/** Every function of a group, found in the catalog of the database it runs in (overloads differ by version). */
function functionsOf(group: PeerFunctionGroup): string {
  const inCatalog = `p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND p.proname = ANY (ARRAY[${group.names.map(literal).join(', ')}]::pg_catalog.name[])`;
  if (group.key !== 'activity') return inCatalog;
  return `(${inCatalog}) OR (p.proname = ${literal(STATEMENTS_EXTENSION_FUNCTION)} AND p.pronamespace = (SELECT e.extnamespace FROM pg_catalog.pg_extension AS e WHERE e.extname = 'pg_stat_statements'))`;
}

/** One DO block: revoke from PUBLIC, grant back; changes nothing when already so. */
export function peerIsolationStatements(): string[] {
  return PEER_FUNCTION_GROUPS.map((group) => {
    const grants = group.grantTo.map(
      (role) => `    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.%I(%s) TO %s', f.nspname, f.proname, f.args, ${literal(ident(role))});`,
    );
    return doBlock(
      [
        `  IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER) THEN`,
        `    RETURN; -- only a superuser may change pg_catalog's ACLs (db init says so)`,
        `  END IF;`,
        `  FOR f IN SELECT n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) AS args`,
        `             FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace`,
        `            WHERE ${functionsOf(group)} ORDER BY 1, 2, 3 LOOP`,
        `    EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %I.%I(%s) FROM PUBLIC', f.nspname, f.proname, f.args);`,
        ...grants,
        `  END LOOP;`,
      ].join('\n'),
      '  f record;',
    );
  });
}

/** Functions of each group PUBLIC may still execute here: what db init will change (for its report). */
export async function publicPeerFunctions(client: { query(sql: string): Promise<{ rows: Record<string, unknown>[] }> }): Promise<Map<PeerFunctionGroup['key'], string[]>> {
  const out = new Map<PeerFunctionGroup['key'], string[]>();
  for (const group of PEER_FUNCTION_GROUPS) {
    const rows = (
      await client.query(
        `SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text AS f
           FROM pg_catalog.pg_proc AS p
          WHERE (${functionsOf(group)})
            AND (p.proacl IS NULL OR EXISTS (SELECT FROM pg_catalog.aclexplode(p.proacl) AS a WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))
          ORDER BY 1`,
      )
    ).rows.map((r) => String(r.f));
    if (rows.length > 0) out.set(group.key, rows);
  }
  return out;
}
