/**
 * What `db init` prepares for a database with `identity: per_user` (issue 12):
 * - `gprxy_users`, a NOLOGIN marker group without privileges: every role the proxy provisions is a member,
 *   and only members are ever touched by the proxy or by `db users --prune` (a role of the same name made
 *   by anyone else is refused, never adopted). pg_hba.conf names it (`+gprxy_users`) to admit per-user
 *   roles only from the proxies' addresses.
 * - `gprxy.user_login`: last login per role, written by the provisioning connection only (no privilege for
 *   PUBLIC, so a user cannot make his role look recently used), read by `gprxy db users`.
 * - Per-user roles are separate PostgreSQL roles, so PostgreSQL's own rules isolate them: db init gives the
 *   activity and signal functions it takes from PUBLIC (src/sql/peer-isolation.ts) back to `gprxy_users`,
 *   so each user sees her own query text and may cancel her own backends, and nobody else's.
 * - When the provisioning connection is not a superuser: ADMIN OPTION on the groups and the marker (what
 *   PostgreSQL 16+ requires for a CREATEROLE role to grant them; SET/INHERIT off on 16+, so it gets no
 *   privilege of theirs), and the right to write gprxy.user_login.
 */
import { GROUP_ROLES, ensureNologinRole } from './roles.js';
import { BEGIN_SESSION, OWNER_ROLE } from './identity-schema.js';
import { PEER_FUNCTION_GROUPS } from './peer-isolation.js';
import { doBlock, ident, literal } from './quote.js';

export const USERS_ROLE = 'gprxy_users';
export const USER_LOGIN_TABLE = 'gprxy.user_login';

/** The statements for one per_user database; `provisioner` is the admin URL's user when not a superuser. */
export function perUserStatements(groups: readonly string[], provisioner: string | undefined, serverVersion: number): string[] {
  const out = [
    ensureNologinRole(USERS_ROLE),
    `CREATE TABLE IF NOT EXISTS ${USER_LOGIN_TABLE} (
  role text PRIMARY KEY,
  issuer text NOT NULL,
  subject text NOT NULL,
  email text,
  groups text[] NOT NULL DEFAULT '{}',
  first_login timestamptz NOT NULL DEFAULT now(),
  last_login timestamptz NOT NULL DEFAULT now()
);`,
    `ALTER TABLE ${USER_LOGIN_TABLE} OWNER TO ${OWNER_ROLE};`,
    `REVOKE ALL ON TABLE ${USER_LOGIN_TABLE} FROM PUBLIC;`,
    // Every per-user role binds its context to the checkout, whichever groups (db init's or others) it has.
    `GRANT EXECUTE ON FUNCTION ${BEGIN_SESSION} TO ${USERS_ROLE};`,
    // The activity and signal functions back for per-user roles only (PostgreSQL's same-role rules apply).
    ...PEER_FUNCTION_GROUPS.filter((g) => g.key !== 'large_objects').map((group) =>
      doBlock(
        [
          `  IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER) THEN`,
          `    RETURN;`,
          `  END IF;`,
          `  FOR f IN SELECT n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) AS args`,
          `             FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace`,
          `            WHERE n.nspname = 'pg_catalog' AND p.proname = ANY (ARRAY[${group.names.map(literal).join(', ')}]::pg_catalog.name[]) ORDER BY 1, 2, 3 LOOP`,
          `    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.%I(%s) TO ${USERS_ROLE}', f.nspname, f.proname, f.args);`,
          `  END LOOP;`,
        ].join('\n'),
        '  f record;',
      ),
    ),
  ];
  if (provisioner !== undefined) {
    const admin = serverVersion >= 160000 ? 'WITH ADMIN OPTION, INHERIT FALSE, SET FALSE' : 'WITH ADMIN OPTION';
    for (const group of [...new Set([USERS_ROLE, ...groups])]) {
      out.push(
        doBlock(
          [
            `  IF NOT EXISTS (SELECT FROM pg_catalog.pg_auth_members m WHERE m.roleid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ${literal(group)}) AND m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ${literal(provisioner)}) AND m.admin_option) THEN`,
            `    GRANT ${ident(group)} TO ${ident(provisioner)} ${admin};`,
            `  END IF;`,
          ].join('\n'),
        ),
      );
    }
    out.push(`GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE ${USER_LOGIN_TABLE} TO ${ident(provisioner)};`);
  }
  return out;
}

/** The default groups per-user roles are granted (db init's), for the notes. */
export const DEFAULT_GROUPS: readonly string[] = Object.values(GROUP_ROLES);

/** pg_hba.conf lines: per-user roles only from the proxies, before any broader line. */
export function perUserHbaLines(dbname: string, sslmode: string): string[] {
  // The proxy's own connection must match the allow line: hostssl only when it connects with TLS.
  const allow = sslmode === 'disable' ? 'host' : 'hostssl';
  return [
    `# pg_hba.conf for per-user roles (members of ${USERS_ROLE}): only the proxies may log them in, with the`,
    `# password only the proxies can derive. Put these lines above any broader line and replace PROXY_ADDRESS/32`,
    `# with the proxies' addresses: a user who changes his own role's password still has no way in around the proxy.`,
    `${allow} ${/^[a-z_][a-z0-9_]*$/.test(dbname) ? dbname : `"${dbname.replace(/"/g, '""')}"`} +${USERS_ROLE} PROXY_ADDRESS/32 scram-sha-256`,
    `local all +${USERS_ROLE} reject`,
    `host all +${USERS_ROLE} 0.0.0.0/0 reject`,
    `host all +${USERS_ROLE} ::/0 reject`,
  ];
}

/** What the operator must know about the provisioning connection, by server version. */
export function provisionerNotes(provisioner: string | undefined, superuser: boolean, serverVersion: number): string[] {
  if (provisioner === undefined || superuser) {
    return ['per-user roles: the provisioning connection (provisioning.admin_url) is a superuser; a role with CREATEROLE and ADMIN OPTION on the groups is enough (README "Per-user roles")'];
  }
  if (serverVersion < 160000) {
    return [
      `per-user roles: ${provisioner} provisions with CREATEROLE. On PostgreSQL ${Math.floor(serverVersion / 10000)} (before 16) CREATEROLE is close to superuser: it may grant itself any non-superuser role (pg_read_server_files, pg_execute_server_program, every group) and change any non-superuser role's password. Keep provisioning.admin_url as secret as a superuser's password, or upgrade to 16+`,
    ];
  }
  return [`per-user roles: ${provisioner} provisions with CREATEROLE and ADMIN OPTION on ${USERS_ROLE} and the groups (PostgreSQL 16+: it can manage only the roles it created)`];
}
