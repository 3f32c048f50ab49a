/**
 * The start-up check of every database × account (src/proxy/backend-check.ts) against real PostgreSQL: a wrong
 * service-account password, a missing database, PostgreSQL down and a TLS mismatch each get their own outcome,
 * and `gprxy serve --check --connect` prints them and exits 1; `gprxy serve` logs them as warnings at start
 * and keeps serving.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProxyConfig } from '../../src/config/proxy-config.js';
import { freePort } from '../../src/demo/postgres-cluster.js';
import { checkBackends } from '../../src/proxy/backend-check.js';
import { runCli, startCli } from '../support/cli.js';
import { createAppDatabase, SERVICE_ACCOUNTS, startTestPostgres, type Cluster } from '../support/postgres.js';

let cluster: Cluster;
let downPort: number;
let dir: string;
beforeAll(async () => {
  cluster = await startTestPostgres();
  await createAppDatabase(cluster);
  downPort = await freePort(); // nothing listens there: PostgreSQL "down"
  dir = mkdtempSync(join(tmpdir(), 'gprxy-backend-check-'));
});
afterAll(async () => {
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function document(): Record<string, unknown> {
  return {
    listen: '127.0.0.1:0',
    tls: { allow_plaintext_loopback: true },
    providers: [{ issuer: 'https://issuer.example.com/', audience: 'https://gprxy.io' }],
    role_mapping: [
      { role: 'pg_writer', account: 'app_writer' },
      { role: 'pg_reader', account: 'app_reader' },
    ],
    accounts: { app_writer: { password: SERVICE_ACCOUNTS.app_writer }, app_reader: { password: 'not-the-password' } },
    databases: {
      mydb: { host: cluster.host, port: cluster.port },
      gone: { host: cluster.host, port: cluster.port, dbname: 'no_such_db' },
      down: { host: '127.0.0.1', port: downPort },
      tls: { host: cluster.host, port: cluster.port, dbname: 'mydb', sslmode: 'require' },
    },
  };
}

describe('checkBackends', () => {
  it('tells a wrong password, a missing database, PostgreSQL down and a TLS mismatch apart', async () => {
    const checks = await checkBackends(buildProxyConfig(document(), {}, dir));
    const by = (db: string, account: string) => checks.find((c) => c.database === db && c.account === account);
    expect(by('mydb', 'app_writer')).toMatchObject({ outcome: 'ok' });
    expect(by('mydb', 'app_reader')).toMatchObject({ outcome: 'auth_failed', sqlstate: '28P01' });
    expect(by('mydb', 'app_reader')!.message).toContain('gprxy db init');
    expect(by('gone', 'app_writer')).toMatchObject({ outcome: 'database_missing', sqlstate: '3D000' });
    expect(by('down', 'app_writer')).toMatchObject({ outcome: 'unreachable' });
    expect(by('down', 'app_writer')!.message).toMatch(/ECONNREFUSED.*is PostgreSQL running there/);
    expect(by('tls', 'app_writer')).toMatchObject({ outcome: 'tls_failed' });
    expect(checks).toHaveLength(8);
  });
});

describe('gprxy serve', () => {
  it('--check --connect prints one line per database and account and exits 1 when any fails', async () => {
    const file = join(dir, 'gprxy.json');
    writeFileSync(file, JSON.stringify(document()));
    const r = await runCli(['serve', '--config', file, '--check', '--connect']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/✓ mydb as app_writer \(127\.0\.0\.1:\d+\/mydb\): ok/);
    expect(r.stdout).toMatch(/✗ mydb as app_reader .*auth failed: password authentication failed for user "app_reader"/);
    expect(r.stdout).toMatch(/✗ down as app_writer .*unreachable: /);
    expect(r.stderr).toContain('7 of 8 database connection check(s) failed');
  });

  it('checks at start-up: failures are warnings in the log, and the proxy serves on', async () => {
    const file = join(dir, 'gprxy-start.json');
    writeFileSync(file, JSON.stringify(document()));
    const serve = startCli(['serve', '--config', file]);
    try {
      await serve.waitFor(/"event":"backend_check".*"database":"down".*"outcome":"unreachable"/, 'stdout');
      await serve.waitFor(/"event":"backend_check".*"database":"mydb".*"account":"app_reader".*"outcome":"auth_failed"/, 'stdout');
      expect(serve.stdout()).toMatch(/"level":"warn"[^\n]*"event":"backend_check"/);
      expect(serve.child.exitCode).toBeNull();
    } finally {
      serve.child.kill('SIGTERM');
      await serve.result;
    }
  });
});

describe('gprxy serve on a busy port', () => {
  it('says so in one line with the next step, no stack or JSON', async () => {
    const { createServer } = await import('node:net');
    const holder = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => holder.once('listening', r));
    const port = (holder.address() as { port: number }).port;
    try {
      const file = join(dir, 'busy.json');
      writeFileSync(file, JSON.stringify({ ...document(), listen: `127.0.0.1:${port}`, databases: { mydb: { host: cluster.host, port: cluster.port } } }));
      const r = await runCli(['serve', '--config', file]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toEqual([`gprxy: 127.0.0.1:${port} is already in use (another gprxy serve?): stop what listens there, or set another port in the config's listen`]);
    } finally {
      holder.close();
    }
  });
});
