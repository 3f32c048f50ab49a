/**
 * CREATE on schema `public` for PUBLIC (issue 11 item 1). PostgreSQL 13 and 14 (and databases upgraded
 * from them) let every role create objects in `public`, which is on every account's search_path: a user of
 * a shared account plants `public.set_config(text, text, boolean)`, an operator or a look-alike of any
 * function another user's statement calls unqualified, and it runs as that other user. db init takes CREATE
 * away from PUBLIC there, as PostgreSQL 15 does for new databases, and gives it to the database owner (on
 * 15+ the owner of `public` is pg_database_owner anyway), unless --keep-public-create.
 */
import { doBlock } from './quote.js';

/** The WHERE clause: PUBLIC holds CREATE on schema public. */
const PUBLIC_CAN_CREATE = `EXISTS (SELECT FROM pg_catalog.pg_namespace AS n, pg_catalog.aclexplode(n.nspacl) AS a
             WHERE n.nspname = 'public' AND a.grantee = 0 AND a.privilege_type = 'CREATE')`;

/** The admin owns schema public (or is a member of its owner, pg_database_owner on 15+), or is a superuser. */
const MAY_CHANGE = `(SELECT pg_catalog.pg_has_role(CURRENT_USER, n.nspowner, 'USAGE') FROM pg_catalog.pg_namespace AS n WHERE n.nspname = 'public')`;

export function revokePublicCreateStatement(): string {
  return doBlock(
    [
      `  IF ${PUBLIC_CAN_CREATE} AND ${MAY_CHANGE} THEN`,
      `    REVOKE CREATE ON SCHEMA public FROM PUBLIC;`,
      `    EXECUTE pg_catalog.format('GRANT CREATE ON SCHEMA public TO %I',`,
      `      (SELECT r.rolname FROM pg_catalog.pg_database AS d JOIN pg_catalog.pg_roles AS r ON r.oid = d.datdba WHERE d.datname = pg_catalog.current_database()));`,
      `  END IF;`,
    ].join('\n'),
  );
}

/** Whether PUBLIC may create in public here, and who owns the database (for db init's note). */
export async function inspectPublicCreate(
  client: { query(sql: string): Promise<{ rows: Record<string, unknown>[] }> },
): Promise<{ publicCreate: boolean; mayChangePublic: boolean; databaseOwner: string }> {
  const row = (
    await client.query(
      `SELECT ${PUBLIC_CAN_CREATE} AS public_create, ${MAY_CHANGE} AS may_change,
              (SELECT r.rolname FROM pg_catalog.pg_database AS d JOIN pg_catalog.pg_roles AS r ON r.oid = d.datdba WHERE d.datname = pg_catalog.current_database()) AS owner`,
    )
  ).rows[0]!;
  return { publicCreate: row.public_create === true, mayChangePublic: row.may_change === true, databaseOwner: String(row.owner) };
}
