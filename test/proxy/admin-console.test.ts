/**
 * The admin console (issue 21) through the real proxy: a virtual database `gprxy` on the listener that
 * answers SHOW / KILL / PAUSE / RESUME with real result sets, read by node-postgres (simple and extended
 * protocol) and psql; only for a verified token with an admin role (42501 without it, 28000/28P01 for a
 * failed login) from admin.networks (28000 otherwise, before any token is read); every command audited.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildProxyConfig, ConfigError } from '../../src/config/proxy-config.js';
import { DEV_USERS } from '../../src/demo/oidc-provider.js';
import { createAppDatabase } from '../support/postgres.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs, type TokenSet } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';

const run = promisify(execFile);
const OPS = { username: 'olivia', password: 'olivia-pw', sub: 'auth0|olivia0005', email: 'olivia@example.com', name: 'Olivia Ops', roles: ['pg_ops'] };
const ADMIN = { database: 'gprxy', roles: ['pg_ops'] };

let stack: ProxyStack;
let caDir: string;
const tokens: Record<string, TokenSet> = {};

function databases() {
  return {
    mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool: { size: 5 } },
    otherdb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'otherdb', pool: { size: 5 } },
  };
}

beforeAll(async () => {
  stack = await startProxyStack({ provider: { users: [...DEV_USERS, OPS] } });
  await createAppDatabase(stack.cluster, 'otherdb');
  await stack.startProxy({ admin: ADMIN, databases: databases() });
  for (const u of ['alice', 'bob', 'olivia']) tokens[u] = await loginAs(stack.idp.provider, u);
  caDir = mkdtempSync(join(tmpdir(), 'gprxy-admin-'));
  writeFileSync(join(caDir, 'root.crt'), stack.idp.ca.cert);
});
afterAll(async () => {
  await stack?.stop();
  if (caDir) rmSync(caDir, { recursive: true, force: true });
});

function client(username: string, database: string): pg.Client {
  const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: `${username}@example.com`, password: tokens[username]!.accessToken, database, ssl: stack.ssl });
  // A killed session's client emits 'error' with the FATAL; keep it for the assertions.
  c.on('error', () => undefined);
  return c;
}

async function connect(username: string, database: string): Promise<pg.Client> {
  const c = client(username, database);
  await c.connect();
  return c;
}

async function admin(): Promise<pg.Client> {
  return connect('olivia', 'gprxy');
}

async function refusal(username: string, database: string, password?: string): Promise<{ code?: string; message: string }> {
  const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: `${username}@example.com`, password: password ?? tokens[username]!.accessToken, database, ssl: stack.ssl });
  c.on('error', () => undefined);
  const e = (await c.connect().then(
    () => c.end().then(() => undefined),
    (err: unknown) => err,
  )) as { code?: string; message: string } | undefined;
  if (!e) throw new Error(`${username} was let into ${database}`);
  return e;
}

/** node-postgres's extended protocol for a parameterless query (its `queryMode`, missing from @types/pg). */
function extended(c: pg.Client, text: string): Promise<pg.QueryResult> {
  return c.query({ text, queryMode: 'extended' } as pg.QueryConfig);
}

function psql(args: string[], username = 'olivia'): Promise<{ stdout: string; stderr: string }> {
  return run('psql', ['-X', '-A', '-F', '|', '-h', 'localhost', '-p', String(stack.port), '-U', `${username}@example.com`, '-d', 'gprxy', ...args], {
    env: { PATH: process.env.PATH!, PGPASSWORD: tokens[username]!.accessToken, PGSSLMODE: 'verify-full', PGSSLROOTCERT: join(caDir, 'root.crt'), PGAPPNAME: 'psql-ops' },
  });
}

describe('admin config', () => {
  const doc = { tls: { allow_plaintext_loopback: true }, providers: [{ issuer: 'https://a.example/', audience: 'x' }], role_mapping: [{ role: 'r', account: 'a' }], accounts: { a: { password: 'p' } }, databases: { d: {} } };

  it('refuses a databases key equal to the admin database, and networks that are not networks', () => {
    expect(() => buildProxyConfig({ ...doc, databases: { gprxy: {} }, admin: { roles: ['ops'] } }, {}, '/')).toThrow(/admin.database: "gprxy" is also a key of databases/);
    expect(() => buildProxyConfig({ ...doc, admin: { roles: ['ops'], networks: ['10.0.0.0/33'] } }, {}, '/')).toThrow(ConfigError);
    expect(() => buildProxyConfig({ ...doc, admin: { roles: ['ops'], networks: ['example.com'] } }, {}, '/')).toThrow(/admin.networks\[0\]: "example.com" is not a network/);
    expect(() => buildProxyConfig({ ...doc, admin: { roles: [] } }, {}, '/')).toThrow(/admin.roles/);
    const config = buildProxyConfig({ ...doc, admin: { roles: ['ops'] } }, {}, '/');
    expect(config.admin).toMatchObject({ database: 'gprxy', roles: ['ops'], statusPage: false });
    expect(config.admin!.networks.map((n) => `${n.address}/${n.prefix}`)).toEqual(['127.0.0.1/32', '::1/128']);
  });
});

describe('admin console', () => {
  // A client's end() resolves when its socket closes, before the proxy has released the backend and dropped the
  // session: the counts these tests read (SHOW POOLS total/idle, sessions per database) must not see the last test's.
  beforeEach(() => waitUntil(() => stack.proxy.activeSessions === 0));

  it('SHOW SESSIONS lists who is connected, to what, doing what (node-postgres, simple and extended protocol)', async () => {
    const alice = await connect('alice', 'mydb');
    const ops = await admin();
    try {
      await alice.query("select 'x' as warm");
      for (const queryMode of [undefined, 'extended'] as const) {
        const { rows, fields } = queryMode ? await extended(ops, 'SHOW SESSIONS') : await ops.query('SHOW SESSIONS');
        expect(fields.map((f) => f.name)).toEqual(['id', 'user', 'user_id', 'issuer', 'account', 'database', 'mode', 'client_addr', 'application_name', 'since', 'state', 'wait', 'wait_since', 'bytes_in', 'bytes_out']);
        const mine = rows.find((r) => r.user === 'alice@example.com');
        expect(mine).toMatchObject({ user_id: 'auth0|alice0001', issuer: stack.idp.provider.issuer, account: 'app_writer', database: 'mydb', mode: 'oauth', state: 'idle', wait: 'client' });
        expect(mine.since).toBeInstanceOf(Date);
        expect(Number(mine.bytes_in)).toBeGreaterThan(0);
        expect(Number(mine.bytes_out)).toBeGreaterThan(0);
        expect(mine.client_addr).toMatch(/^127\.0\.0\.1:\d+$/);
        expect(rows.find((r) => r.user === 'olivia@example.com')).toMatchObject({ database: 'gprxy', mode: 'admin', account: null });
      }
      // A running statement shows as active, waiting on the database.
      const sleeping = alice.query('select pg_sleep(60) /* admin-console */').catch((e: { code?: string }) => e);
      await waitUntil(async () => (await ops.query('SHOW SESSIONS')).rows.some((r) => r.user === 'alice@example.com' && r.state === 'active' && r.wait === 'database'));
      // The proxy counts the statement as running once it forwarded it; PostgreSQL may list it a moment later
      // (a loaded machine): cancel until a backend was found, else the test would wait out the 60 s sleep.
      await waitUntil(async () => (await stack.cluster.query("select pg_cancel_backend(pid) as ok from pg_stat_activity where query like 'select pg_sleep(60) /* admin-console */%'")).rows.some((r) => r.ok === true));
      expect(await sleeping).toMatchObject({ code: '57014' });
      const version = await extended(ops, 'SHOW VERSION');
      expect(version.rows[0].version).toMatch(/^gprxy \d+\.\d+\.\d+/);
    } finally {
      await alice.end();
      await ops.end();
    }
  });

  it('answers psql: SHOW POOLS, DATABASES, PROVIDERS, LIMITS, STATS, HELP as result sets; errors keep the connection', async () => {
    const alice = await connect('alice', 'mydb');
    try {
      const { stdout } = await psql(['-c', 'SHOW POOLS', '-c', 'SHOW DATABASES', '-c', 'SHOW PROVIDERS', '-c', 'SHOW LIMITS', '-c', 'show stats;', '-c', 'SHOW HELP']);
      const lines = stdout.split('\n');
      expect(lines).toContain('database|account|pool_mode|size|total|active|idle|waiting|draining|paused');
      expect(lines).toContain('mydb|app_writer|session|5|1|1|0|0|0|f');
      expect(lines).toContain('name|host|port|dbname|mode|client_auth|pool_mode|pool_size|paused|sessions');
      expect(lines.some((l) => l.startsWith(`mydb|${stack.cluster.host}|${stack.cluster.port}|mydb|oauth|password|session|5|f|1`))).toBe(true);
      const provider = lines.find((l) => l.startsWith(stack.idp.provider.issuer))!.split('|');
      expect(provider[3]).toBe('1'); // keys
      expect(provider[5]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+00$/); // last fetch
      expect(provider[6]).toMatch(/^\d{4}-/); // next refresh
      expect(provider[8]).toBe('0'); // failures
      expect(lines).toContain('max_sessions_per_identity|10|1');
      expect(lines.some((l) => /^mydb\|\d+\|\d+\|1\|\d+\|\d+$/.test(l))).toBe(true);
      expect(lines).toContain("KILL USER '<user>'|end every session of a user (login name or user id), e.g. after an offboarding");

      const bad = await psql(['-v', 'ON_ERROR_STOP=0', '-c', 'SHOW NONSENSE', '-c', 'SHOW VERSION']);
      expect(bad.stderr).toContain("invalid command 'SHOW NONSENSE', use SHOW HELP;");
      expect(bad.stdout).toMatch(/gprxy \d/);
    } finally {
      await alice.end();
    }
    const ops = await admin();
    try {
      await expect(ops.query('SHOW NONSENSE')).rejects.toMatchObject({ code: '42601' });
      await expect(extended(ops, 'FROB')).rejects.toMatchObject({ code: '42601' });
      expect((await ops.query('SHOW VERSION')).rows).toHaveLength(1);
    } finally {
      await ops.end();
    }
  });

  it('refuses a valid user without an admin role with 42501, a bad token with 28P01, and audits both', async () => {
    const noRole = await refusal('alice', 'gprxy');
    expect(noRole.code).toBe('42501');
    expect(noRole.message).toContain('pg_ops');
    const line = await stack.logs.waitFor((l) => l.event === 'auth_failure' && l.reason === 'admin_role_missing');
    expect(line).toMatchObject({ sqlstate: '42501', user: 'alice@example.com', database: 'gprxy' });
    expect((await refusal('olivia', 'gprxy', 'not-a-token')).code).toBe('28P01');
    // Olivia's token is not valid for another user name: a failed login, 28000.
    const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'alice@example.com', password: tokens.olivia!.accessToken, database: 'gprxy', ssl: stack.ssl });
    await expect(c.connect()).rejects.toMatchObject({ code: '28000' });
  });

  it('refuses a client outside admin.networks with 28000 before asking for a token', async () => {
    await stack.startProxy({ admin: { ...ADMIN, networks: ['10.0.0.0/8', 'fd00::/8'] }, databases: databases() });
    try {
      const e = await refusal('olivia', 'gprxy');
      expect(e.code).toBe('28000');
      expect(e.message).toContain('admin.networks');
      const line = await stack.logs.waitFor((l) => l.event === 'connection_refused' && l.reason === 'admin_network_refused');
      expect(line.sqlstate).toBe('28000');
      // Nothing was verified: the refusal came before the password request.
      expect(stack.proxy.verifier.stats().verifications + stack.proxy.verifier.stats().cacheHits).toBe(0);
      // The other databases are unaffected.
      const alice = await connect('alice', 'mydb');
      await alice.end();
    } finally {
      await stack.startProxy({ admin: ADMIN, databases: databases() });
    }
  });

  it('KILL USER ends exactly that user’s sessions across pools with 57P01, and is audited with the admin’s identity', async () => {
    const alice = [await connect('alice', 'mydb'), await connect('alice', 'mydb'), await connect('alice', 'otherdb')];
    const bob = await connect('bob', 'mydb');
    const ops = await admin();
    const ended = alice.map((c) => new Promise<{ code?: string }>((resolve) => c.once('error', (e: { code?: string }) => resolve(e))));
    try {
      const ids = (await ops.query('SHOW SESSIONS')).rows.filter((r) => r.user === 'alice@example.com').map((r) => Number(r.id));
      expect(ids).toHaveLength(3);
      const notices: string[] = [];
      ops.on('notice', (n) => notices.push(n.message ?? ''));
      const result = await ops.query("KILL USER 'alice@example.com'");
      expect(result.command).toBe('KILL');
      for (const e of await Promise.all(ended)) expect(e.code).toBe('57P01');
      expect(notices[0]).toContain('ended 3 sessions of user alice@example.com');
      expect((await bob.query('select current_user as u')).rows[0].u).toBe('app_reader');
      await waitUntil(async () => !(await ops.query('SHOW SESSIONS')).rows.some((r) => r.user === 'alice@example.com'));
      const audit = await stack.logs.waitFor((l) => l.event === 'admin_action' && l.command === 'KILL USER');
      expect(audit).toMatchObject({ outcome: 'ok', admin: 'olivia@example.com', admin_sub: 'auth0|olivia0005', target_user: 'alice@example.com' });
      expect([...(audit.sessions as number[])].sort()).toEqual([...ids].sort());
      const ends = stack.logs.lines.filter((l) => l.event === 'session_end' && l.reason === 'killed_by_admin');
      expect(ends.map((l) => l.session).sort()).toEqual([...ids].sort());
      // By user id as well, and nobody left: not an error (an offboarding script may run twice).
      await expect(ops.query("KILL USER 'auth0|alice0001'")).resolves.toMatchObject({ command: 'KILL' });
    } finally {
      await Promise.all([...alice, bob, ops].map((c) => c.end().catch(() => undefined)));
    }
  });

  it('KILL SESSION ends one session; an unknown id is 42704', async () => {
    const bob = await connect('bob', 'mydb');
    const ops = await admin();
    try {
      const id = (await ops.query('SHOW SESSIONS')).rows.find((r) => r.user === 'bob@example.com')!.id;
      const gone = new Promise<{ code?: string }>((resolve) => bob.once('error', (e: { code?: string }) => resolve(e)));
      await ops.query(`KILL SESSION ${id}`);
      expect((await gone).code).toBe('57P01');
      await expect(ops.query('KILL SESSION 987654')).rejects.toMatchObject({ code: '42704' });
      await expect(ops.query('KILL SESSION bob')).rejects.toMatchObject({ code: '42601' });
    } finally {
      await bob.end().catch(() => undefined);
      await ops.end();
    }
  });

  it('PAUSE holds new logins of a database until RESUME; sessions already in go on', async () => {
    const ops = await admin();
    const bob = await connect('bob', 'mydb');
    try {
      await ops.query('PAUSE mydb');
      await expect(ops.query('PAUSE mydb')).rejects.toMatchObject({ code: '55000' });
      await expect(ops.query('PAUSE nosuchdb')).rejects.toMatchObject({ code: '3D000' });
      expect((await ops.query('SHOW DATABASES')).rows.find((r) => r.name === 'mydb')!.paused).toBe(true);
      // bob's session holds its backend and goes on.
      expect((await bob.query('select 1 as one')).rows[0].one).toBe(1);
      let connected = false;
      const alice = client('alice', 'mydb');
      const login = alice.connect().then(() => (connected = true));
      await waitUntil(async () => (await ops.query('SHOW SESSIONS')).rows.some((r) => r.user === 'alice@example.com' && r.state === 'waiting' && r.wait === 'paused'));
      // otherdb is not paused.
      const other = await connect('alice', 'otherdb');
      await other.end();
      expect(connected).toBe(false);
      await ops.query('RESUME mydb');
      await login;
      expect((await alice.query('select 1 as one')).rows[0].one).toBe(1);
      await alice.end();
      await expect(ops.query('RESUME mydb')).rejects.toMatchObject({ code: '55000' });
      const audit = stack.logs.lines.filter((l) => l.event === 'admin_action' && (l.command === 'PAUSE' || l.command === 'RESUME'));
      expect(audit.map((l) => [l.command, l.outcome, l.admin])).toEqual([
        ['PAUSE', 'ok', 'olivia@example.com'],
        ['PAUSE', 'error', 'olivia@example.com'],
        ['PAUSE', 'error', 'olivia@example.com'],
        ['RESUME', 'ok', 'olivia@example.com'],
        ['RESUME', 'error', 'olivia@example.com'],
      ]);
    } finally {
      await bob.end();
      await ops.end();
    }
  });
});
