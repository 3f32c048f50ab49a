/**
 * The real PostgreSQL every integration test runs against: embedded PostgreSQL 18 by default, or the
 * binaries in GPRXY_TEST_PG_BIN (CI sets it to Debian's PostgreSQL 15). Each suite starts its own cluster
 * in beforeAll and stops it in afterAll: nothing outlives the suite.
 */
import { startCluster, type Cluster, type ClusterOptions } from '../../src/demo/postgres-cluster.js';

export type { Cluster };

export const SERVICE_ACCOUNTS = {
  app_admin: 'admin-secret-0123456789',
  app_writer: 'writer-secret-0123456789',
  app_reader: 'reader-secret-0123456789',
} as const;

export function startTestPostgres(options: Omit<ClusterOptions, 'binDir'> = {}): Promise<Cluster> {
  const binDir = process.env.GPRXY_TEST_PG_BIN || undefined;
  return startCluster({ ...options, ...(binDir ? { binDir } : {}) });
}

/**
 * A database with the three service accounts of the examples and a `notes` table: the writer may write,
 * the reader may only read (the grants of the seed's Option 2, in miniature).
 */
export async function createAppDatabase(cluster: Cluster, dbname = 'mydb'): Promise<void> {
  await cluster.createDatabase(dbname);
  for (const [name, password] of Object.entries(SERVICE_ACCOUNTS)) {
    const exists = await cluster.query('select 1 from pg_roles where rolname = $1', [name]);
    if (exists.rowCount === 0) await cluster.createRole(name, password);
  }
  await cluster.query(
    `create table notes (id serial primary key, body text not null, author text default current_setting('app.user_id', true));
     grant all on all tables in schema public to app_admin;
     grant all on all sequences in schema public to app_admin;
     grant select, insert, update, delete on notes to app_writer;
     grant usage, select on all sequences in schema public to app_writer;
     grant select on notes to app_reader;`,
    [],
    dbname,
  );
}
