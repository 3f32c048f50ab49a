import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs, type TokenSet } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';
import { loginRefusal } from '../support/proxy-clients.js';

let stack: ProxyStack;
const tokens: Record<string, TokenSet> = {};

function client(user: string, password: string, extra: Partial<pg.ClientConfig> = {}): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: stack.port, user, password, database: 'mydb', ssl: stack.ssl, ...extra });
}

async function connectAs(username: string, extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const c = client(`${username}@example.com`, tokens[username]!.accessToken, extra);
  await c.connect();
  return c;
}

async function refusal(user: string, password: string, extra: Partial<pg.ClientConfig> = {}): Promise<{ code: string; message: string }> {
  const err = await loginRefusal(client(user, password, extra));
  return { code: err.code!, message: err.message };
}

beforeAll(async () => {
  stack = await startProxyStack();
  for (const u of ['alice', 'bob', 'sathwick']) tokens[u] = await loginAs(stack.idp.provider, u);
});

afterAll(async () => {
  await stack?.stop();
});

describe('gprxy serve: tokens to service accounts', () => {
  it('maps alice (pg_writer) to app_writer: INSERT works, settings and application_name carry her identity', async () => {
    const c = await connectAs('alice', { application_name: 'psql' });
    try {
      const who = await c.query(
        "select current_user, current_setting('app.user_id') as uid, current_setting('app.tenant_id') as tenant, current_setting('app.email') as email, application_name from pg_stat_activity where pid = pg_backend_pid()",
      );
      expect(who.rows[0]).toEqual({ current_user: 'app_writer', uid: 'auth0|alice0001', tenant: 'tenant-a', email: 'alice@example.com', application_name: 'alice@example.com via psql' });
      const inserted = await c.query("insert into notes (body) values ('from alice') returning author");
      expect(inserted.rows[0].author).toBe('auth0|alice0001');
    } finally {
      await c.end();
    }
    const success = await stack.logs.waitFor((l) => l.event === 'auth_success' && l.user === 'alice@example.com');
    expect(success).toMatchObject({ account: 'app_writer', database: 'mydb', roles: ['pg_writer'] });
    expect(typeof success.duration_ms).toBe('number');
  });

  it('maps bob (pg_reader) to app_reader: SELECT works, INSERT fails with 42501', async () => {
    const c = await connectAs('bob');
    try {
      expect((await c.query('select current_user')).rows[0].current_user).toBe('app_reader');
      await expect(c.query("insert into notes (body) values ('from bob')")).rejects.toMatchObject({ code: '42501' });
    } finally {
      await c.end();
    }
  });

  it('maps sathwick (pg_admin) to app_admin', async () => {
    const c = await connectAs('sathwick');
    try {
      expect((await c.query('select current_user')).rows[0].current_user).toBe('app_admin');
    } finally {
      await c.end();
    }
  });

  it('refuses a token presented for another user with 28000 and says which user to use', async () => {
    const r = await refusal('bob@example.com', tokens.alice!.accessToken);
    expect(r.code).toBe('28000');
    expect(r.message).toContain('alice@example.com');
    const failure = await stack.logs.waitFor((l) => l.event === 'auth_failure' && l.reason === 'token_user_mismatch');
    expect(failure.user).toBe('bob@example.com');
  });

  it('refuses a password that is not a token with 28P01', async () => {
    expect((await refusal('alice@example.com', 'hunter2')).code).toBe('28P01');
  });

  it('refuses an unknown database with 3D000 naming the served ones', async () => {
    const r = await refusal('alice@example.com', tokens.alice!.accessToken, { database: 'nope' });
    expect(r.code).toBe('3D000');
    expect(r.message).toContain('mydb');
  });

  it('refuses plaintext from a client when TLS is configured, with a next step', async () => {
    const r = await refusal('alice@example.com', tokens.alice!.accessToken, { ssl: false });
    expect(r.code).toBe('28000');
    expect(r.message).toMatch(/sslmode=require/);
  });

  it('resets the backend between clients: SET, temp table, prepared statement and advisory lock are gone', async () => {
    const first = await connectAs('alice');
    const pidOf = async (c: pg.Client) => (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
    const firstPid = await pidOf(first);
    await first.query("set search_path = 'nowhere'");
    await first.query('create temp table scratch (x int)');
    await first.query('prepare leaked as select 1');
    await first.query('select pg_advisory_lock(42)');
    // This session's end, not an earlier test's: the backend is back in the pool once it is logged.
    const earlier = new Set(stack.logs.lines);
    await first.end();
    await stack.logs.waitFor((l) => !earlier.has(l) && l.event === 'session_end' && l.backend_reused === true);

    // Same pool (app_writer): the next client gets the same backend, wiped.
    const second = await connectAs('alice');
    try {
      expect(await pidOf(second)).toBe(firstPid);
      expect((await second.query('show search_path')).rows[0].search_path).toBe('"$user", public');
      expect((await second.query("select count(*)::int as n from pg_class where relname = 'scratch' and relpersistence = 't'")).rows[0].n).toBe(0);
      expect((await second.query('select count(*)::int as n from pg_prepared_statements')).rows[0].n).toBe(0);
      expect((await second.query('select count(*)::int as n from pg_locks where locktype = $1 and pid = pg_backend_pid()', ['advisory'])).rows[0].n).toBe(0);
    } finally {
      await second.end();
    }
  });

  it("cancels a running query with psql's Ctrl+C (SIGINT) through the proxy", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gprxy-psql-'));
    writeFileSync(join(dir, 'root.crt'), stack.idp.ca.cert);
    const psql = spawn('psql', ['-X', '-h', 'localhost', '-p', String(stack.port), '-U', 'alice@example.com', '-d', 'mydb', '-c', 'select pg_sleep(30)'], {
      env: { ...process.env, PGPASSWORD: tokens.alice!.accessToken, PGSSLMODE: 'verify-full', PGSSLROOTCERT: join(dir, 'root.crt') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    psql.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      const started = Date.now();
      await stack.logs.waitFor((l) => l.event === 'auth_success' && typeof l.duration_ms === 'number' && (l.time as string) >= new Date(started - 1000).toISOString());
      // Wait until the backend is actually running the sleep, then press Ctrl+C.
      await waitUntil(async () => (await stack.cluster.query("select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'", [], 'mydb')).rows[0]?.n === 1);
      psql.kill('SIGINT');
      const [code] = (await once(psql, 'close')) as [number]; // not 'exit': stderr may not all be read by then
      expect(code).not.toBe(0);
      expect(stderr).toContain('canceling statement due to user request');
      expect(Date.now() - started).toBeLessThan(15_000);
      await stack.logs.waitFor((l) => l.event === 'cancel_request' && l.matched === true);
    } finally {
      psql.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('startup parameters', () => {
  it("applies the client's own settings (statement_timeout from node-postgres) on the pooled backend", async () => {
    const c = client('alice@example.com', tokens.alice!.accessToken, { statement_timeout: 1234 });
    await c.connect();
    try {
      expect((await c.query('show statement_timeout')).rows[0].statement_timeout).toBe('1234ms');
    } finally {
      await c.end();
    }
  });
});
