/**
 * Roles and grants (the seed's Option 2, corrected): NOLOGIN group roles carry the privileges and the
 * service accounts of the config are LOGIN members of one group each. Group names have no pg_ prefix
 * (PostgreSQL reserves it). Every statement is safe to repeat: roles and memberships are created or
 * changed only when missing or different (DO blocks check the catalog first), GRANTs of what is already
 * granted change nothing.
 *
 * admin:  ALL on tables, sequences, routines; CREATE on the schema (migrations); ALL on the database.
 * writer: SELECT, INSERT, UPDATE, DELETE; USAGE, SELECT on sequences; EXECUTE; CONNECT, TEMPORARY.
 * reader: SELECT; EXECUTE; CONNECT, TEMPORARY.
 * Default privileges cover tables created later by the admin running db init and by admin-level accounts
 * (migrations run through the proxy as an admin create objects owned by that account).
 * No service account is a superuser or has BYPASSRLS: row-level security must apply to all of them.
 */
import type { AccessLevel } from './levels.js';
import { doBlock, ident, literal } from './quote.js';

export const GROUP_ROLES: Readonly<Record<AccessLevel, string>> = Object.freeze({
  admin: 'gprxy_admin',
  writer: 'gprxy_writer',
  reader: 'gprxy_reader',
});

const TABLE_PRIVILEGES: Record<AccessLevel, string> = {
  admin: 'ALL',
  writer: 'SELECT, INSERT, UPDATE, DELETE',
  reader: 'SELECT',
};
const SEQUENCE_PRIVILEGES: Record<AccessLevel, string | undefined> = {
  admin: 'ALL',
  writer: 'USAGE, SELECT',
  reader: undefined,
};

const roleExists = (name: string) => `EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${literal(name)})`;

/** A NOLOGIN role (a group, or the owner of schema gprxy), made NOLOGIN and unprivileged if it exists otherwise. */
export function ensureNologinRole(name: string): string {
  return doBlock(
    [
      `  IF NOT ${roleExists(name)} THEN`,
      `    CREATE ROLE ${ident(name)} NOLOGIN;`,
      `  ELSIF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${literal(name)} AND (rolcanlogin OR rolsuper OR rolbypassrls)) THEN`,
      `    ALTER ROLE ${ident(name)} NOLOGIN NOSUPERUSER NOBYPASSRLS;`,
      `  END IF;`,
    ].join('\n'),
  );
}

/** A service account: LOGIN, INHERIT (it uses its group's privileges), never superuser or BYPASSRLS. */
export function ensureLoginRole(name: string): string {
  return doBlock(
    [
      `  IF NOT ${roleExists(name)} THEN`,
      `    CREATE ROLE ${ident(name)} LOGIN INHERIT;`,
      `  ELSIF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${literal(name)} AND (NOT rolcanlogin OR NOT rolinherit OR rolsuper OR rolbypassrls)) THEN`,
      `    ALTER ROLE ${ident(name)} LOGIN INHERIT NOSUPERUSER NOBYPASSRLS;`,
      `  END IF;`,
    ].join('\n'),
  );
}

export function setPassword(name: string, verifier: string): string {
  return `ALTER ROLE ${ident(name)} PASSWORD ${literal(verifier)};`;
}

/**
 * No password for an account that logs in with a certificate, so no one can log in with one the proxy
 * once had. Only where the admin can see that one is set (pg_authid): changes nothing otherwise.
 */
export function clearPassword(name: string): string {
  return doBlock(
    [
      `  IF pg_catalog.has_table_privilege('pg_catalog.pg_authid', 'SELECT') THEN`,
      `    IF EXISTS (SELECT FROM pg_catalog.pg_authid WHERE rolname = ${literal(name)} AND rolpassword IS NOT NULL) THEN`,
      `      ALTER ROLE ${ident(name)} PASSWORD NULL;`,
      `    END IF;`,
      `  END IF;`,
    ].join('\n'),
  );
}

const isMember = (group: string, member: string) =>
  `EXISTS (SELECT FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid JOIN pg_catalog.pg_roles u ON u.oid = m.member WHERE g.rolname = ${literal(group)} AND u.rolname = ${literal(member)})`;

/** The account is a member of its level's group and of no other gprxy group (a level change moves it). */
export function groupMembership(account: string, level: AccessLevel): string {
  const lines: string[] = [];
  for (const [other, group] of Object.entries(GROUP_ROLES) as [AccessLevel, string][]) {
    if (other === level) {
      lines.push(`  IF NOT ${isMember(group, account)} THEN`, `    GRANT ${ident(group)} TO ${ident(account)};`, `  END IF;`);
    } else {
      lines.push(`  IF ${isMember(group, account)} THEN`, `    REVOKE ${ident(group)} FROM ${ident(account)};`, `  END IF;`);
    }
  }
  return doBlock(lines.join('\n'));
}

/** Membership in a predefined role (e.g. pg_read_all_stats for the owner of schema gprxy). */
export function ensureMembership(group: string, member: string): string {
  return doBlock([`  IF NOT ${isMember(group, member)} THEN`, `    GRANT ${ident(group)} TO ${ident(member)};`, `  END IF;`].join('\n'));
}

export function databaseGrants(dbname: string): string[] {
  const db = ident(dbname);
  return [
    `GRANT ALL ON DATABASE ${db} TO ${GROUP_ROLES.admin};`,
    `GRANT CONNECT, TEMPORARY ON DATABASE ${db} TO ${GROUP_ROLES.writer}, ${GROUP_ROLES.reader};`,
  ];
}

/**
 * Grants on what a schema holds now, and default privileges for what it will hold. `creators` are the roles
 * whose future objects get the default privileges besides the admin running db init (admin-level accounts).
 */
export function schemaGrants(schema: string, creators: readonly string[]): string[] {
  const s = ident(schema);
  const all = Object.values(GROUP_ROLES).join(', ');
  const out = [
    `GRANT USAGE ON SCHEMA ${s} TO ${all};`,
    `GRANT CREATE ON SCHEMA ${s} TO ${GROUP_ROLES.admin};`,
  ];
  for (const level of ['admin', 'writer', 'reader'] as const) {
    out.push(`GRANT ${TABLE_PRIVILEGES[level]} ON ALL TABLES IN SCHEMA ${s} TO ${GROUP_ROLES[level]};`);
    const seq = SEQUENCE_PRIVILEGES[level];
    if (seq) out.push(`GRANT ${seq} ON ALL SEQUENCES IN SCHEMA ${s} TO ${GROUP_ROLES[level]};`);
  }
  out.push(`GRANT EXECUTE ON ALL ROUTINES IN SCHEMA ${s} TO ${all};`);
  for (const creator of [undefined, ...creators]) {
    const prefix = `ALTER DEFAULT PRIVILEGES${creator ? ` FOR ROLE ${ident(creator)}` : ''} IN SCHEMA ${s}`;
    for (const level of ['admin', 'writer', 'reader'] as const) {
      out.push(`${prefix} GRANT ${TABLE_PRIVILEGES[level]} ON TABLES TO ${GROUP_ROLES[level]};`);
      const seq = SEQUENCE_PRIVILEGES[level];
      if (seq) out.push(`${prefix} GRANT ${seq} ON SEQUENCES TO ${GROUP_ROLES[level]};`);
    }
    out.push(`${prefix} GRANT EXECUTE ON FUNCTIONS TO ${all};`);
  }
  return out;
}
