/**
 * `gprxy db users` as a library (issue 12): the per-user roles the proxy provisioned (members of
 * gprxy_users) with their last login (gprxy.user_login, which only the provisioning connection writes),
 * and `--prune --idle 90d`: roles unused for that long are locked (NOLOGIN; the next login through the
 * proxy unlocks them) or, with --drop, dropped after REASSIGN OWNED BY the role TO the given role and
 * DROP OWNED BY it (its remaining privileges) in every database of the cluster that accepts connections.
 * Each role is pruned under the provisioner's advisory lock with its last login read again inside it, so a
 * login at that moment wins; a second run finds nothing more to do (idempotent).
 * Roles are cluster-wide: per_user databases on the same server are one cluster, listed once; the last
 * login is the latest over them. A role without any login record counts as idle.
 */
import type { DatabaseConfig, ProxyConfig } from '../config/proxy-config.js';
import { adminConnectionString, type AdminConnection } from './db-init.js';
import { DbInitError } from './errors.js';
import { USER_LOGIN_TABLE, USERS_ROLE } from './per-user.js';
import { ident } from './quote.js';

export interface UserRole {
  readonly role: string;
  readonly canLogin: boolean;
  readonly lastLogin: Date | undefined;
  readonly email: string | undefined;
  readonly subject: string | undefined;
  readonly groups: readonly string[];
  /** The cluster (host:port) the role lives in. */
  readonly server: string;
}

export interface PruneResult {
  readonly role: string;
  readonly server: string;
  readonly action: 'locked' | 'dropped' | 'skipped';
  readonly why?: string;
}

export interface DbUsersOptions {
  readonly adminUrl: string;
  /** A key of databases; default: every per_user database. */
  readonly database?: string;
  readonly connect?: (database: DatabaseConfig, dbname?: string) => Promise<AdminConnection>;
  readonly now?: () => number;
}

export interface PruneOptions extends DbUsersOptions {
  readonly idleMs: number;
  /** Drop instead of lock; objects the role owns go to this role first. */
  readonly dropReassignTo?: string;
}

const LOCK_SQL = `SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('gprxy user role'), pg_catalog.hashtext($1))`;

async function defaultConnect(adminUrl: string, database: DatabaseConfig, dbname?: string): Promise<AdminConnection> {
  const { default: pg } = await import('pg');
  const url = new URL(adminConnectionString(adminUrl, database));
  if (dbname !== undefined) url.pathname = `/${encodeURIComponent(dbname)}`;
  const client = new pg.Client({ connectionString: url.toString(), application_name: 'gprxy db users' });
  client.on('error', () => {});
  await client.connect();
  return client as unknown as AdminConnection;
}

/** The per_user databases, one per cluster (host:port): roles are the cluster's, logins per database. */
function perUserDatabases(config: ProxyConfig, name?: string): Map<string, DatabaseConfig[]> {
  const selected = name !== undefined ? [config.databases[name]] : Object.values(config.databases);
  if (name !== undefined && !selected[0]) throw new DbInitError('unknown_database', `--database ${name}: not a key of databases in the config (${Object.keys(config.databases).join(', ')})`);
  const dbs = selected.filter((d): d is DatabaseConfig => d?.identity === 'per_user');
  if (dbs.length === 0) throw new DbInitError('no_oauth_database', 'no database with identity: per_user in the config (or in --database): there are no per-user roles to list');
  const byServer = new Map<string, DatabaseConfig[]>();
  for (const d of dbs) byServer.set(`${d.host}:${d.port}`, [...(byServer.get(`${d.host}:${d.port}`) ?? []), d]);
  return byServer;
}

const LIST_SQL = `
SELECT r.rolname::pg_catalog.text AS role, r.rolcanlogin AS can_login,
       ARRAY(SELECT g.rolname::pg_catalog.text FROM pg_catalog.pg_auth_members AS m2 JOIN pg_catalog.pg_roles AS g ON g.oid = m2.roleid
              WHERE m2.member = r.oid AND g.rolname <> '${USERS_ROLE}' ORDER BY 1) AS groups
  FROM pg_catalog.pg_roles AS r
 WHERE EXISTS (SELECT FROM pg_catalog.pg_auth_members AS m JOIN pg_catalog.pg_roles AS u ON u.oid = m.roleid
                WHERE m.member = r.oid AND u.rolname = '${USERS_ROLE}')
 ORDER BY 1`;

const LOGINS_SQL = `SELECT role, last_login, email, subject FROM ${USER_LOGIN_TABLE}`;

export async function listUserRoles(config: ProxyConfig, options: DbUsersOptions): Promise<UserRole[]> {
  const connect = options.connect ?? ((db: DatabaseConfig, dbname?: string) => defaultConnect(options.adminUrl, db, dbname));
  const out: UserRole[] = [];
  for (const [server, dbs] of perUserDatabases(config, options.database)) {
    const logins = new Map<string, { last: Date; email?: string; subject?: string }>();
    let roles: { role: string; can_login: boolean; groups: string[] }[] = [];
    for (const [i, db] of dbs.entries()) {
      const c = await connect(db);
      try {
        if (i === 0) roles = (await c.query(LIST_SQL)).rows as typeof roles;
        const rows = await c.query(LOGINS_SQL).catch((e: unknown) => {
          if ((e as { code?: string }).code === '42P01' || (e as { code?: string }).code === '3F000') return { rows: [] };
          throw e;
        });
        for (const r of rows.rows) {
          const last = r.last_login as Date;
          const seen = logins.get(String(r.role));
          if (!seen || seen.last < last) logins.set(String(r.role), { last, ...(r.email ? { email: String(r.email) } : {}), subject: String(r.subject) });
        }
      } finally {
        await c.end().catch(() => {});
      }
    }
    for (const r of roles) {
      const login = logins.get(r.role);
      out.push({ role: r.role, canLogin: r.can_login, lastLogin: login?.last, email: login?.email, subject: login?.subject, groups: r.groups, server });
    }
  }
  return out;
}

/** Locks or drops the roles idle for longer than options.idleMs. */
export async function pruneUserRoles(config: ProxyConfig, options: PruneOptions): Promise<PruneResult[]> {
  const connect = options.connect ?? ((db: DatabaseConfig, dbname?: string) => defaultConnect(options.adminUrl, db, dbname));
  const now = options.now ?? Date.now;
  const cutoff = new Date(now() - options.idleMs);
  const roles = await listUserRoles(config, { ...options, connect });
  const results: PruneResult[] = [];
  const servers = perUserDatabases(config, options.database);
  for (const role of roles) {
    if (role.lastLogin && role.lastLogin >= cutoff) continue;
    if (!options.dropReassignTo && !role.canLogin) continue; // already locked: nothing to do
    const [first, ...others] = servers.get(role.server)!;
    const c = await connect(first!);
    try {
      await c.query('BEGIN');
      await c.query('SET LOCAL search_path = pg_catalog, pg_temp');
      await c.query(LOCK_SQL, [role.role]);
      // A login may have happened since the list was read: read the login records again, inside the lock.
      const again = await c.query(`SELECT last_login FROM ${USER_LOGIN_TABLE} WHERE role = $1`, [role.role]);
      const last = again.rows[0]?.last_login as Date | undefined;
      if (last && last >= cutoff) {
        await c.query('ROLLBACK');
        results.push({ role: role.role, server: role.server, action: 'skipped', why: 'logged in while pruning' });
        continue;
      }
      if (!options.dropReassignTo) {
        await c.query(`ALTER ROLE ${ident(role.role)} NOLOGIN`);
        await c.query('COMMIT');
        results.push({ role: role.role, server: role.server, action: 'locked' });
        continue;
      }
      // Every database of the cluster: objects and privileges of the role may be anywhere.
      // The other databases first, each on its own connection (autocommit): once this transaction has
      // touched the role's objects it holds locks that their REASSIGN OWNED would wait for.
      const databases = (await c.query(`SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1`)).rows
        .map((r) => String(r.datname))
        .sort((a, b) => Number(a === first!.dbname) - Number(b === first!.dbname));
      for (const dbname of databases) {
        const other = dbname === first!.dbname ? c : await connect(first!, dbname);
        try {
          await other.query(`REASSIGN OWNED BY ${ident(role.role)} TO ${ident(options.dropReassignTo)}`);
          await other.query(`DROP OWNED BY ${ident(role.role)}`);
        } finally {
          if (other !== c) await other.end().catch(() => {});
        }
      }
      for (const db of [first!, ...others]) {
        const target = db === first ? c : await connect(db);
        try {
          await target.query(`DELETE FROM ${USER_LOGIN_TABLE} WHERE role = $1`, [role.role]);
        } finally {
          if (target !== c) await target.end().catch(() => {});
        }
      }
      await c.query(`DROP ROLE IF EXISTS ${ident(role.role)}`);
      await c.query('COMMIT');
      results.push({ role: role.role, server: role.server, action: 'dropped' });
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      await c.end().catch(() => {});
    }
  }
  return results;
}

/** The list as text for the terminal. */
export function renderUserRoles(roles: readonly UserRole[]): string {
  if (roles.length === 0) return 'no per-user roles yet (they are created at each user\'s first login)';
  const rows = roles.map((r) => [r.role, r.canLogin ? 'yes' : 'locked', r.lastLogin ? r.lastLogin.toISOString() : 'never', r.groups.join(',') || '-', r.server]);
  const head = ['ROLE', 'LOGIN', 'LAST LOGIN', 'GROUPS', 'SERVER'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}
