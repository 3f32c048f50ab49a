/**
 * Provisioning of per-user roles at login (identity: per_user, issue 12), over the admin connection
 * (provisioning.admin_url), never over a service account. One transaction per login:
 *
 * 1. `pg_advisory_xact_lock('gprxy user role', role)`: two logins of the same new user on this proxy, or on
 *    two replicas, provision one after the other (and `db users --prune` takes the same lock). The lock is
 *    per database, roles are per cluster: a CREATE ROLE that loses a race anyway (duplicate_object /
 *    unique_violation) is rolled back to a savepoint and the role re-read.
 * 2. Create the role if missing: LOGIN, no other attribute, its SCRAM verifier (never a password), member
 *    of the marker group `gprxy_users`. A role of that name that is not a member of the marker was not made
 *    by the proxy (an operator's role, a superuser): the login is refused, nothing is changed.
 * 3. Repair what the user may have done to his own role (a `user_role_tampered` audit event names it): a
 *    password of his own (the verifier is compared when the admin may read pg_authid; otherwise a refused
 *    backend login resets it, repairPassword), role settings (`ALTER ROLE … SET`), roles he made members of
 *    himself (PostgreSQL 13-15 let a role grant itself; the provisioning role's own ADMIN membership, which
 *    PostgreSQL 16+ gives a CREATEROLE role in the roles it creates, stays), and attributes.
 * 4. Memberships: exactly the NOLOGIN groups the token's roles map to now (grants added and revoked; a group
 *    that can log in, or is missing, refuses the login instead: never grant a service account), and nothing
 *    else but the marker. Checked again after the change.
 * 5. gprxy.user_login: last login, written by this connection only (users have no privilege on it).
 */
import pg from 'pg';
import type { Logger } from 'pino';
import type { DatabaseConfig, ProvisioningConfig } from '../../config/proxy-config.js';
import { adminConnectionString } from '../../sql/db-init.js';
import { USER_LOGIN_TABLE, USERS_ROLE } from '../../sql/per-user.js';
import { ident, literal } from '../../sql/quote.js';
import { GprxyError } from '../../shared/errors.js';
import type { Identity } from '../../token/identity.js';
import { RoleCredentials } from './credentials.js';
import type { GroupMapping } from '../../sql/user-groups.js';

export type ProvisioningErrorCode = 'user_role_refused' | 'provisioning_failed';

export class ProvisioningError extends GprxyError<ProvisioningErrorCode> {
  constructor(
    readonly code: ProvisioningErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The advisory lock key pair of a role (provisioning and pruning take it). */
export const ROLE_LOCK_SQL = `SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('gprxy user role'), pg_catalog.hashtext($1))`;

const INSPECT_SQL = `
SELECT r.rolcanlogin AS login, r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls OR NOT r.rolinherit
         OR r.rolconnlimit OPERATOR(pg_catalog.<>) -1 OR (r.rolvaliduntil IS NOT NULL AND r.rolvaliduntil OPERATOR(pg_catalog.<>) 'infinity') AS attributes,
       ARRAY(SELECT DISTINCT g.rolname::pg_catalog.text FROM pg_catalog.pg_auth_members AS m JOIN pg_catalog.pg_roles AS g ON g.oid OPERATOR(pg_catalog.=) m.roleid
              WHERE m.member OPERATOR(pg_catalog.=) r.oid) AS member_of,
       ARRAY(SELECT DISTINCT u.rolname::pg_catalog.text FROM pg_catalog.pg_auth_members AS m JOIN pg_catalog.pg_roles AS u ON u.oid OPERATOR(pg_catalog.=) m.member
              WHERE m.roleid OPERATOR(pg_catalog.=) r.oid AND u.rolname OPERATOR(pg_catalog.<>) CURRENT_USER) AS members,
       ARRAY(SELECT DISTINCT pg_catalog.concat(d.datname, '/', pg_catalog.split_part(c.cfg, '=', 1))
               FROM pg_catalog.pg_db_role_setting AS s LEFT JOIN pg_catalog.pg_database AS d ON d.oid OPERATOR(pg_catalog.=) s.setdatabase,
                    pg_catalog.unnest(s.setconfig) AS c(cfg)
              WHERE s.setrole OPERATOR(pg_catalog.=) r.oid) AS settings,
       pg_catalog.has_table_privilege('pg_catalog.pg_authid', 'SELECT') AS reads_authid
  FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) $1`;

interface RoleState {
  readonly login: boolean;
  readonly attributes: boolean;
  readonly member_of: string[];
  readonly members: string[];
  readonly settings: string[];
  readonly reads_authid: boolean;
  /** The stored verifier, read only when the admin may read pg_authid (a plan naming it needs the privilege). */
  verifier?: string | null;
}

export interface ProvisionedRole {
  readonly role: string;
  readonly password: string;
  /** The role was created by this login. */
  readonly created: boolean;
}

export interface ProvisionerOptions {
  readonly config: ProvisioningConfig;
  readonly groups: GroupMapping;
  readonly logger: Logger;
  /** Connections to the admin URL per database (a seam for tests); node-postgres pools by default. */
  readonly connect?: (database: DatabaseConfig) => pg.Pool;
  /** Admin connections per database (default 4). */
  readonly poolSize?: number;
}

function pgCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export class Provisioner {
  readonly credentials: RoleCredentials;
  private readonly pools = new Map<string, pg.Pool>();

  constructor(private readonly options: ProvisionerOptions) {
    this.credentials = new RoleCredentials(options.config.secret);
  }

  private pool(database: DatabaseConfig): pg.Pool {
    let pool = this.pools.get(database.name);
    if (!pool) {
      pool =
        this.options.connect?.(database) ??
        new pg.Pool({
          connectionString: adminConnectionString(this.options.config.adminUrl, database),
          application_name: 'gprxy provisioning',
          max: this.options.poolSize ?? 4,
          idleTimeoutMillis: 60_000,
        });
      pool.on('error', (e) => this.options.logger.warn({ event: 'provisioning_connection_error', database: database.name, reason: e.message }, 'provisioning connection lost'));
      this.pools.set(database.name, pool);
    }
    return pool;
  }

  /** Runs `work` in one transaction holding the role's advisory lock. */
  private async transaction<T>(database: DatabaseConfig, role: string, work: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool(database).connect();
    } catch (e) {
      throw new ProvisioningError('provisioning_failed', `cannot open the provisioning connection for database ${database.name}: ${(e as Error).message}`, { cause: e });
    }
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL search_path = pg_catalog, pg_temp');
      await client.query(ROLE_LOCK_SQL, [role]);
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {});
      if (e instanceof ProvisioningError) throw e;
      throw new ProvisioningError('provisioning_failed', `provisioning role ${role} on database ${database.name} failed: ${pgCode(e) ?? ''} ${(e as Error).message}`.trim(), { cause: e });
    } finally {
      client.release();
    }
  }

  /** Makes sure `role` exists, is intact and in exactly the groups of `identity`'s roles; records the login. */
  async ensure(database: DatabaseConfig, role: string, identity: Identity): Promise<ProvisionedRole> {
    const wanted = this.options.groups.groupsFor(identity.roles);
    const { verifier, password } = this.credentials.for(role);
    const log = this.options.logger;
    return this.transaction(database, role, async (c) => {
      await this.checkGroups(c, wanted);
      let state = await inspect(c, role);
      let created = false;
      if (!state) {
        await c.query('SAVEPOINT gprxy_create_role');
        try {
          await c.query(`CREATE ROLE ${ident(role)} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD ${literal(verifier)}`);
          await c.query(`GRANT ${ident(USERS_ROLE)} TO ${ident(role)}`);
          await c.query('RELEASE SAVEPOINT gprxy_create_role');
          created = true;
        } catch (e) {
          // Another replica (or another database's provisioning) created it first: use theirs.
          if (pgCode(e) !== '42710' && pgCode(e) !== '23505') throw e;
          await c.query('ROLLBACK TO SAVEPOINT gprxy_create_role');
        }
        state = await inspect(c, role);
        if (!state) throw new ProvisioningError('provisioning_failed', `role ${role} could not be created`);
      }
      if (!state.member_of.includes(USERS_ROLE)) {
        throw new ProvisioningError(
          'user_role_refused',
          `a PostgreSQL role named ${role} already exists and was not created by gprxy (it is not a member of ${USERS_ROLE}); an operator must rename or drop it, or grant ${USERS_ROLE} to it to hand it over`,
        );
      }
      const tampered: string[] = [];
      if (!state.login && !created) {
        await c.query(`ALTER ROLE ${ident(role)} LOGIN`);
        log.info({ event: 'user_role_unlocked', role, database: database.name }, `role ${role} was locked (db users --prune) and logs in again`);
      }
      if (state.attributes) {
        await c.query(`ALTER ROLE ${ident(role)} INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT -1 VALID UNTIL 'infinity'`);
        tampered.push('attributes');
      }
      if (state.reads_authid && state.verifier !== verifier && !created) {
        await c.query(`ALTER ROLE ${ident(role)} PASSWORD ${literal(verifier)}`);
        tampered.push('password');
      }
      if (state.settings.length > 0) {
        const databases = new Set(state.settings.map((s) => s.slice(0, s.lastIndexOf('/'))));
        for (const db of databases) await c.query(`ALTER ROLE ${ident(role)}${db ? ` IN DATABASE ${ident(db)}` : ''} RESET ALL`);
        tampered.push(...state.settings.map((s) => `setting ${s.startsWith('/') ? s.slice(1) : s}`));
      }
      for (const member of state.members) {
        await c.query(`REVOKE ${ident(role)} FROM ${ident(member)}`);
        tampered.push(`member ${member}`);
      }
      const current = state.member_of.filter((g) => g !== USERS_ROLE);
      const granted = wanted.filter((g) => !current.includes(g));
      const revoked = current.filter((g) => !wanted.includes(g));
      for (const g of revoked) await c.query(`REVOKE ${ident(g)} FROM ${ident(role)}`);
      for (const g of granted) await c.query(`GRANT ${ident(g)} TO ${ident(role)}`);
      if (granted.length || revoked.length) {
        const after = (await inspect(c, role))!;
        const left = after.member_of.filter((g) => g !== USERS_ROLE && !wanted.includes(g));
        if (left.length) {
          throw new ProvisioningError('provisioning_failed', `role ${role} is still a member of ${left.join(', ')} after REVOKE (granted by another role?): refused until an operator revokes it`);
        }
      }
      await c.query(
        `INSERT INTO ${USER_LOGIN_TABLE} AS l (role, issuer, subject, email, groups, first_login, last_login) VALUES ($1, $2, $3, $4, $5, pg_catalog.now(), pg_catalog.now())
         ON CONFLICT (role) DO UPDATE SET issuer = EXCLUDED.issuer, subject = EXCLUDED.subject, email = EXCLUDED.email, groups = EXCLUDED.groups, last_login = EXCLUDED.last_login`,
        [role, identity.issuer ?? '', identity.subject, identity.email ?? null, wanted],
      ).catch((e: unknown) => {
        if (pgCode(e) === '42P01' || pgCode(e) === '3F000') {
          throw new ProvisioningError('provisioning_failed', `database ${database.name} has no ${USER_LOGIN_TABLE}: run gprxy db init for it (per-user roles need it)`, { cause: e });
        }
        throw e;
      });
      if (created) log.info({ event: 'user_role_created', role, database: database.name, user: identity.user, groups: wanted }, `created role ${role}`);
      if (granted.length || revoked.length) {
        log.info({ event: 'user_role_groups_changed', role, database: database.name, granted, revoked }, `groups of ${role}: granted ${granted.join(', ') || 'none'}, revoked ${revoked.join(', ') || 'none'}`);
      }
      if (tampered.length) {
        log.warn({ event: 'user_role_tampered', role, database: database.name, repaired: tampered }, `role ${role} was changed outside the proxy (${tampered.join(', ')}): repaired`);
      }
      return { role, password, created };
    });
  }

  /**
   * The database refused the role's derived password (the user changed it, the secret was rotated, or the
   * admin cannot read pg_authid to compare): set the verifier again.
   */
  async repairPassword(database: DatabaseConfig, role: string): Promise<void> {
    const { verifier } = this.credentials.for(role);
    await this.transaction(database, role, async (c) => {
      const managed = await c.query(
        `SELECT 1 FROM pg_catalog.pg_auth_members AS m WHERE m.member OPERATOR(pg_catalog.=) pg_catalog.to_regrole(pg_catalog.quote_ident($1))
            AND m.roleid OPERATOR(pg_catalog.=) pg_catalog.to_regrole(pg_catalog.quote_ident($2))`,
        [role, USERS_ROLE],
      );
      if (managed.rowCount === 0) throw new ProvisioningError('user_role_refused', `role ${role} is not managed by gprxy`);
      await c.query(`ALTER ROLE ${ident(role)} PASSWORD ${literal(verifier)}`);
    });
    this.options.logger.warn({ event: 'user_role_tampered', role, database: database.name, repaired: ['password'] }, `role ${role} refused its derived password: verifier set again`);
  }

  /** Each wanted group must exist and be a plain NOLOGIN group (never a login role: never grant an account). */
  private async checkGroups(c: pg.PoolClient, wanted: readonly string[]): Promise<void> {
    if (wanted.length === 0) return;
    const rows = (
      await c.query(
        `SELECT rolname::pg_catalog.text AS name, rolcanlogin OR rolsuper OR rolbypassrls OR rolcreaterole OR rolreplication AS unsafe FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])`,
        [wanted],
      )
    ).rows as { name: string; unsafe: boolean }[];
    for (const g of wanted) {
      const row = rows.find((r) => r.name === g);
      if (!row) throw new ProvisioningError('provisioning_failed', `group ${g} does not exist: run gprxy db init (or create the NOLOGIN group named in provisioning.groups)`);
      if (row.unsafe) throw new ProvisioningError('provisioning_failed', `group ${g} can log in or has special attributes: per-user roles are only granted NOLOGIN groups without them`);
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.end().catch(() => {})));
    this.pools.clear();
  }
}

async function inspect(c: pg.PoolClient, role: string): Promise<RoleState | undefined> {
  const state = (await c.query(INSPECT_SQL, [role])).rows[0] as RoleState | undefined;
  if (state?.reads_authid) {
    state.verifier = (await c.query(`SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname OPERATOR(pg_catalog.=) $1`, [role])).rows[0]?.rolpassword as string | null;
  }
  return state;
}
