import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPostgres, type Cluster } from '../support/postgres.js';

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startTestPostgres();
});
afterAll(async () => {
  await cluster?.stop();
});

describe('test PostgreSQL cluster', () => {
  it('runs the expected server version with SCRAM-SHA-256 in pg_hba', async () => {
    const expected = process.env.GPRXY_TEST_PG_BIN ? 15 : 18;
    expect(cluster.majorVersion).toBe(expected);
    const v = await cluster.query<{ server_version_num: string }>('show server_version_num');
    expect(Math.floor(Number(v.rows[0]!.server_version_num) / 10000)).toBe(expected);
    const hba = await cluster.query<{ auth_method: string }>("select distinct auth_method from pg_hba_file_rules where type = 'host'");
    expect(hba.rows.map((r) => r.auth_method)).toEqual(['scram-sha-256']);
  });

  it('accepts a SCRAM login and refuses a wrong password with 28P01', async () => {
    await cluster.createRole('smoke', 'right-password');
    const ok = new pg.Client({ host: cluster.host, port: cluster.port, user: 'smoke', password: 'right-password', database: 'postgres' });
    await ok.connect();
    expect((await ok.query('select current_user')).rows[0].current_user).toBe('smoke');
    await ok.end();
    const bad = new pg.Client({ host: cluster.host, port: cluster.port, user: 'smoke', password: 'wrong-password', database: 'postgres' });
    await expect(bad.connect()).rejects.toMatchObject({ code: '28P01' });
  });

  it('removes its data directory and process on stop', async () => {
    const other = await startTestPostgres();
    const { port } = other;
    await other.stop();
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: 'x', database: 'postgres', connectionTimeoutMillis: 2000 });
    await expect(c.connect()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
