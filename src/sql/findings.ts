/**
 * What db init reports about a database after preparing it (issue 11 items 1, 3, 16): things it does not
 * change by default but that let one user of a shared account act on the others, or skip row-level security.
 * - schemas a service account can create objects in (a planted function or operator runs as whoever calls it
 *   unqualified; admin-level accounts have CREATE on the managed schemas by design, for migrations);
 * - tables with row-level security enabled but not forced, owned by an account or by a role whose
 *   privileges an account has: the owner skips its own policies (--force-rls forces them);
 * - an account that is superuser or has BYPASSRLS, or can SET ROLE to such a role;
 * - an account that owns the database (ALTER DATABASE SET reaches every backend there);
 * - other databases an account may connect to: peer isolation (pg_proc ACLs) is per database.
 * Plus the pg_hba.conf lines for certificate authentication of the accounts (item 3).
 */
import type { DatabaseConfig } from '../config/proxy-config.js';
import { doBlock, literal } from './quote.js';

interface Queryable {
  query(sql: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
}

/** Relations with RLS enabled, not forced, whose owner's privileges one of `accounts` has. */
function unforcedRlsTables(accountsArray: string): string {
  return `SELECT c.oid, n.nspname, c.relname, c.relowner, c.relowner::pg_catalog.regrole::pg_catalog.text AS owner
      FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity AND NOT c.relforcerowsecurity
       AND EXISTS (SELECT FROM pg_catalog.pg_roles AS a WHERE a.rolname = ANY (${accountsArray})
                    AND pg_catalog.pg_has_role(a.oid, c.relowner, 'USAGE'))`;
}

/** --force-rls: FORCE ROW LEVEL SECURITY on those tables (decided where it runs, so printed SQL is right too). */
export function forceRlsStatement(accounts: readonly string[]): string {
  const array = `ARRAY[${accounts.map(literal).join(', ')}]::pg_catalog.name[]`;
  return doBlock(
    [
      `  FOR t IN ${unforcedRlsTables(array)} ORDER BY 2, 3 LOOP`,
      `    CONTINUE WHEN NOT pg_catalog.pg_has_role(CURRENT_USER, t.relowner, 'USAGE'); -- not ours to alter: stays reported`,
      `    EXECUTE pg_catalog.format('ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', t.nspname, t.relname);`,
      `  END LOOP;`,
    ].join('\n'),
    '  t record;',
  );
}

export async function inspectFindings(
  client: Queryable,
  input: { accounts: readonly string[]; adminAccounts: readonly string[]; managedSchemas: readonly string[]; databases: readonly string[] },
): Promise<string[]> {
  const findings: string[] = [];
  const accounts = [...input.accounts];
  const creatable = await client.query(
    `SELECT n.nspname, pg_catalog.array_agg(a.rolname::pg_catalog.text ORDER BY a.rolname) AS accounts
       FROM pg_catalog.pg_namespace AS n, pg_catalog.pg_roles AS a
      WHERE a.rolname = ANY ($1) AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
        AND pg_catalog.has_schema_privilege(a.oid, n.oid, 'CREATE')
      GROUP BY 1 ORDER BY 1`,
    [accounts],
  );
  for (const row of creatable.rows) {
    const schema = String(row.nspname);
    const who = row.accounts as string[];
    const byDesign = input.managedSchemas.includes(schema) && who.every((a) => input.adminAccounts.includes(a));
    findings.push(
      `schema ${schema}: ${who.join(', ')} can create objects in it` +
        (byDesign
          ? ' (admin level, by design for migrations): any user of the account can plant a function or operator that other statements calling it unqualified resolve to'
          : ': any user of the account can plant a function or operator that other users\' unqualified calls resolve to; REVOKE CREATE ON SCHEMA ... unless intended'),
    );
  }
  const rls = await client.query(`${unforcedRlsTables('$1::pg_catalog.name[]')} ORDER BY 2, 3`, [accounts]);
  for (const row of rls.rows) {
    findings.push(
      `table ${String(row.nspname)}.${String(row.relname)}: row-level security is enabled but not forced and its owner ${String(row.owner)} is (or is reachable by) a service account, which skips the policies: run db init --force-rls or ALTER TABLE ... FORCE ROW LEVEL SECURITY`,
    );
  }
  const privileged = await client.query(
    `SELECT a.rolname, r.rolname AS via, r.rolsuper, r.rolbypassrls
       FROM pg_catalog.pg_roles AS a, pg_catalog.pg_roles AS r
      WHERE a.rolname = ANY ($1) AND (r.rolsuper OR r.rolbypassrls) AND pg_catalog.pg_has_role(a.oid, r.oid, 'MEMBER')
      ORDER BY 1, 2`,
    [accounts],
  );
  for (const row of privileged.rows) {
    const what = row.rolsuper === true ? 'superuser' : 'BYPASSRLS';
    findings.push(
      row.via === row.rolname
        ? `account ${String(row.rolname)} is ${what}: row-level security does not apply to it`
        : `account ${String(row.rolname)} can SET ROLE to ${String(row.via)} (${what}): row-level security does not apply after that; REVOKE ${String(row.via)} FROM ${String(row.rolname)}`,
    );
  }
  const owner = await client.query(
    `SELECT r.rolname FROM pg_catalog.pg_database AS d JOIN pg_catalog.pg_roles AS r ON r.oid = d.datdba
      WHERE d.datname = pg_catalog.current_database() AND r.rolname = ANY ($1)`,
    [accounts],
  );
  for (const row of owner.rows) {
    findings.push(`account ${String(row.rolname)} owns this database: any user of it can ALTER DATABASE ... SET for every backend here; make another role the owner`);
  }
  const elsewhere = await client.query(
    `SELECT d.datname, pg_catalog.array_agg(a.rolname::pg_catalog.text ORDER BY a.rolname) AS accounts
       FROM pg_catalog.pg_database AS d, pg_catalog.pg_roles AS a
      WHERE a.rolname = ANY ($1) AND d.datallowconn AND NOT d.datname = ANY ($2)
        AND pg_catalog.has_database_privilege(a.oid, d.oid, 'CONNECT')
      GROUP BY 1 ORDER BY 1`,
    [accounts, [...input.databases]],
  );
  for (const row of elsewhere.rows) {
    findings.push(
      `database ${String(row.datname)}: ${(row.accounts as string[]).join(', ')} may connect to it, where db init's peer isolation does not apply (pg_proc is per database): REVOKE CONNECT ON DATABASE ${String(row.datname)} FROM PUBLIC unless needed`,
    );
  }
  return findings;
}

/** pg_hba.conf lines for certificate authentication of the accounts (the recommended setup; README). */
export function hbaLines(database: DatabaseConfig, accounts: readonly string[]): string[] {
  const quote = (s: string) => (/^[a-z_][a-z0-9_]*$/.test(s) ? s : `"${s}"`);
  const users = accounts.map(quote).join(',');
  return [
    `# pg_hba.conf for database ${database.dbname}: the service accounts log in with TLS client certificates only`,
    `# (certificate CN = account name; accounts.<name>.sslcert / sslkey in the proxy config). Put them above any`,
    `# broader line, and replace PROXY_ADDRESS/32 with the proxies' addresses. A user who changes the account's`,
    `# password (ALTER ROLE CURRENT_USER PASSWORD) then locks nobody out, and that password opens nothing.`,
    `hostssl ${quote(database.dbname)} ${users} PROXY_ADDRESS/32 cert`,
    `local all ${users} reject`,
    `hostssl all ${users} 0.0.0.0/0 reject`,
    `hostssl all ${users} ::/0 reject`,
    `hostnossl all ${users} 0.0.0.0/0 reject`,
    `hostnossl all ${users} ::/0 reject`,
  ];
}
