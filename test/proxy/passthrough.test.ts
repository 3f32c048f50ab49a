/**
 * Pass-through mode: PostgreSQL itself authenticates (here users with their own SCRAM passwords, the
 * seed's "current architecture"; PostgreSQL 18 OAUTHBEARER would need a validator module on the server).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { waitUntil } from '../support/wait.js';

let stack: ProxyStack;

beforeAll(async () => {
  stack = await startProxyStack();
  await stack.cluster.createRole('sathwick_p', 'own-password-0123');
  await stack.cluster.query('grant select on notes to sathwick_p', [], 'mydb');
  await stack.startProxy({
    databases: {
      mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb' },
      legacy: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', mode: 'passthrough' },
    },
  });
});
afterAll(async () => {
  await stack?.stop();
});

describe('passthrough databases', () => {
  it("relays PostgreSQL's own SCRAM login and the session untouched", async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'sathwick_p', password: 'own-password-0123', database: 'legacy', ssl: stack.ssl });
    await c.connect();
    expect((await c.query('select current_user, current_database()')).rows[0]).toEqual({ current_user: 'sathwick_p', current_database: 'mydb' });
    await c.end();
    const end = await stack.logs.waitFor((l) => l.event === 'session_end' && l.mode === 'passthrough');
    expect(end).toMatchObject({ user: 'sathwick_p', database: 'legacy', reason: 'client_terminate' });
  });

  it("relays PostgreSQL's refusal of a wrong password (28P01) and logs it", async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'sathwick_p', password: 'wrong', database: 'legacy', ssl: stack.ssl });
    await expect(c.connect()).rejects.toMatchObject({ code: '28P01' });
    const failure = await stack.logs.waitFor((l) => l.event === 'auth_failure' && l.mode === 'passthrough');
    expect(failure.reason).toBe('refused_by_database');
  });

  it("routes psql's Ctrl+C to the right server", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gprxy-pt-'));
    writeFileSync(join(dir, 'root.crt'), stack.idp.ca.cert);
    const psql = spawn('psql', ['-X', '-h', 'localhost', '-p', String(stack.port), '-U', 'sathwick_p', '-d', 'legacy', '-c', 'select pg_sleep(30)'], {
      env: { PATH: process.env.PATH!, PGPASSWORD: 'own-password-0123', PGSSLMODE: 'verify-full', PGSSLROOTCERT: join(dir, 'root.crt') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    psql.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      await waitUntil(async () => (await stack.cluster.query("select count(*)::int as n from pg_stat_activity where usename = 'sathwick_p' and state = 'active'", [], 'mydb')).rows[0]?.n === 1);
      psql.kill('SIGINT');
      await once(psql, 'close'); // not 'exit': stderr may not all be read by then
      expect(stderr).toContain('canceling statement due to user request');
    } finally {
      psql.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
