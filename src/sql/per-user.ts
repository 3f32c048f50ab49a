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
 * - An event trigger, `gprxy_no_group_objects`: a per-user role may use a group's privileges, never leave an
 *   object owned by a role it is a member of (`SET ROLE gprxy_admin; CREATE FUNCTION … SECURITY DEFINER`, or
 *   `ALTER … OWNER TO gprxy_admin`). Such an object would keep the group's power after the IdP takes the
 *   role claim away and the next login revokes the membership (EXECUTE on functions is PUBLIC's by default,
 *   a view reads with its owner's rights): 42501. Only a superuser may create event triggers.
 * - When the provisioning connection is not a superuser: ADMIN OPTION on the groups and the marker (what
 *   PostgreSQL 16+ requires for a CREATEROLE role to grant them; SET/INHERIT off on 16+, so it gets no
 *   privilege of theirs), and the right to write gprxy.user_login.
 */
import { GROUP_ROLES, ensureNologinRole } from './roles.js';
import { BEGIN_SESSION, OWNER_ROLE } from './identity-schema.js';
import { PEER_FUNCTION_GROUPS } from './peer-isolation.js';
import { doBlock, ident, literal, TAG } from './quote.js';

export const USERS_ROLE = 'gprxy_users';
export const NO_GROUP_OBJECTS_TRIGGER = 'gprxy_no_group_objects';

/**
 * Refuses DDL by a per-user role (a direct member of gprxy_users) that leaves an object owned by another role
 * it is a member of: its groups. Ownership is read from pg_shdepend, which records it for every kind of
 * object, created or given away with ALTER … OWNER TO. Runs as the user (event trigger functions do), over
 * catalogs everyone may read; every name qualified, search_path pinned.
 */
const NO_GROUP_OBJECTS_FUNCTION = `CREATE OR REPLACE FUNCTION gprxy.no_group_objects()
 RETURNS event_trigger
 LANGUAGE plpgsql
 SET search_path = pg_catalog, pg_temp
AS ${TAG}
DECLARE
  owner_name text;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_auth_members AS m
                  WHERE m.member OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) SESSION_USER)
                    AND m.roleid OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) '${USERS_ROLE}')) THEN
    RETURN;
  END IF;
  SELECT o.rolname::pg_catalog.text INTO owner_name
    FROM pg_catalog.pg_event_trigger_ddl_commands() AS c
    JOIN pg_catalog.pg_shdepend AS d
      ON d.classid OPERATOR(pg_catalog.=) c.classid AND d.objid OPERATOR(pg_catalog.=) c.objid AND d.deptype OPERATOR(pg_catalog.=) 'o'
     AND d.dbid OPERATOR(pg_catalog.=) (SELECT db.oid FROM pg_catalog.pg_database AS db WHERE db.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
    JOIN pg_catalog.pg_roles AS o ON o.oid OPERATOR(pg_catalog.=) d.refobjid
   WHERE o.rolname OPERATOR(pg_catalog.<>) SESSION_USER AND pg_catalog.pg_has_role(SESSION_USER, o.oid, 'MEMBER')
   LIMIT 1;
  IF owner_name IS NOT NULL THEN
    RAISE EXCEPTION 'role % may not leave objects owned by its group %', SESSION_USER, owner_name
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'per-user roles use their groups'' privileges but own what they create themselves (the group would keep it after the IdP takes the role away): create it without SET ROLE, or ask an operator';
  END IF;
END
${TAG};`;
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
    NO_GROUP_OBJECTS_FUNCTION,
    `ALTER FUNCTION gprxy.no_group_objects() OWNER TO ${OWNER_ROLE};`,
    `REVOKE ALL ON FUNCTION gprxy.no_group_objects() FROM PUBLIC;`,
    doBlock(
      [
        `  IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER) THEN`,
        `    RETURN; -- only a superuser may create event triggers (db init says so)`,
        `  END IF;`,
        `  IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname = '${NO_GROUP_OBJECTS_TRIGGER}') THEN`,
        `    CREATE EVENT TRIGGER ${NO_GROUP_OBJECTS_TRIGGER} ON ddl_command_end EXECUTE FUNCTION gprxy.no_group_objects();`,
        `  ELSIF (SELECT evtenabled FROM pg_catalog.pg_event_trigger WHERE evtname = '${NO_GROUP_OBJECTS_TRIGGER}') <> 'O' THEN`,
        `    ALTER EVENT TRIGGER ${NO_GROUP_OBJECTS_TRIGGER} ENABLE;`,
        `  END IF;`,
      ].join('\n'),
    ),
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
