/**
 * Issue 13 through the real CLI: `gprxy login` (device flow, gnome-keyring, or --insecure-storage),
 * `gprxy connect`, psql, `gprxy serve` (ProxyServer) and PostgreSQL, with 6-second access tokens from
 * oidc-provider with refresh-token rotation and reuse detection. A tunnel and exec-mode runs share one
 * login without logging the person out; the tunnel never swaps user or database; exec mode's one-time
 * password keeps other local processes out; logout reaches a running tunnel within seconds; one storage
 * warning per process; exit codes.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_AUDIENCE, DEV_CLI_CLIENT_ID } from '../../src/demo/oidc-provider.js';
import { runCli, startCli, type CliProcess } from '../support/cli.js';
import { startKeyringSession, type KeyringSession } from '../support/keyring.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';

const run = promisify(execFile);
let stack: ProxyStack;
let home: KeyringSession;
let env: Record<string, string>;

const reuse = () => stack.idp.provider.counters().refreshTokenReuse;
const refreshes = () => stack.idp.provider.counters().tokenRequests.refresh_token ?? 0;

function psql(port: number, sql: string, conninfo = 'dbname=mydb', extraEnv: Record<string, string> = {}) {
  return run('psql', ['-X', '-A', '-t', '-w', '-c', sql, `host=127.0.0.1 port=${port} ${conninfo}`], { env: { PATH: process.env.PATH!, PGCONNECT_TIMEOUT: '10', ...extraEnv } });
}
const psqlError = (port: number, conninfo: string, extraEnv: Record<string, string> = {}) =>
  psql(port, 'select 1', conninfo, extraEnv).then(
    () => '',
    (e: { stderr: string }) => e.stderr,
  );

/** The SQLSTATE a node-postgres connection through the tunnel is refused with. */
async function refusedWith(port: number, config: pg.ClientConfig): Promise<string | undefined> {
  const client = new pg.Client({ host: '127.0.0.1', port, ...config });
  try {
    await client.connect();
    await client.end();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

async function login(user: string, extra: string[] = []): Promise<void> {
  const cli = startCli(['login', '--device', '--no-browser', ...extra], { env });
  const [, code] = await cli.waitFor(/check that it shows the code: (\S+)/);
  await stack.idp.provider.approveDevice(code!, user);
  const r = await cli.result;
  expect(r.code, r.stderr).toBe(0);
}

async function startTunnel(args: string[] = [], extraEnv: Record<string, string> = {}): Promise<{ tunnel: CliProcess; port: number }> {
  const tunnel = startCli(['connect', 'mydb', '--port', '0', ...args], { env: { ...env, ...extraEnv } });
  const port = Number((await tunnel.waitFor(/listening on 127\.0\.0\.1:(\d+)[^]*Press Ctrl\+C/, 'stdout'))[1]);
  return { tunnel, port };
}

async function stop(tunnel: CliProcess, signal: NodeJS.Signals = 'SIGINT'): Promise<number | null> {
  tunnel.child.kill(signal);
  return (await tunnel.result).code;
}

beforeAll(async () => {
  stack = await startProxyStack();
  stack.idp.provider.setAccessTokenTtl(6);
  home = await startKeyringSession();
  const ca = join(home.home, 'ca.pem');
  writeFileSync(ca, stack.idp.ca.cert);
  env = { ...home.env, GPRXY_CA: ca };
  const configured = await runCli(['configure', '--issuer', stack.idp.provider.issuer, '--client-id', DEV_CLI_CLIENT_ID, '--audience', DEV_AUDIENCE, '--proxy', `localhost:${stack.port}`], { env });
  expect(configured.code, configured.stderr).toBe(0);
  await login('alice');
});

afterAll(async () => {
  await home?.close();
  await stack?.stop();
});

describe('the tunnel never swaps user or database', () => {
  it('another user is refused (28000), another database is refused (3D000); the own ones and libpq defaults are served', async () => {
    const { tunnel, port } = await startTunnel();
    try {
      expect((await psql(port, 'select current_user', 'dbname=mydb user=alice@example.com')).stdout.trim()).toBe('app_writer');
      expect((await psql(port, 'select current_user', 'dbname=mydb')).stdout.trim()).toBe('app_writer'); // libpq's default user
      const asBob = await psqlError(port, 'dbname=postgres user=bob@example.com');
      expect(asBob).toContain('gprxy: this tunnel is logged in as alice@example.com and cannot connect as bob@example.com');
      expect(await refusedWith(port, { user: 'bob@example.com', database: 'mydb' })).toBe('28000');
      const otherDb = await psqlError(port, 'dbname=postgres user=alice@example.com');
      expect(otherDb).toContain('gprxy: this tunnel serves "mydb", not "postgres": use dbname=mydb, or run gprxy connect postgres');
      expect(await refusedWith(port, { user: 'alice@example.com', database: 'postgres' })).toBe('3D000');
    } finally {
      await stop(tunnel);
    }
  });
});

describe('exec mode and --local-password keep other local processes out', () => {
  it('the command gets a one-time PGPASSWORD; a connection without it is refused (28P01)', async () => {
    const script = 'psql -X -A -t -c "select current_user"; env -u PGPASSWORD psql -w -X -c "select 1" 2>&1; echo "without=$?"; PGPASSWORD=guess psql -w -X -c "select 1" 2>&1; echo "guess=$?"';
    const r = await runCli(['connect', 'mydb', '--', 'sh', '-c', script], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^app_writer\n/);
    expect(r.stdout).toMatch(/no password supplied\nwithout=2/);
    expect(r.stdout).toMatch(/password authentication failed[^\n]*\nguess=2/);
  });

  it('--local-password prints a password that psql must give', async () => {
    const { tunnel, port } = await startTunnel(['--local-password']);
    try {
      const [, password] = await tunnel.waitFor(/Local password \(one-time, for this tunnel only\): (\S+)/, 'stdout');
      expect(await refusedWith(port, { user: 'alice@example.com', database: 'mydb' })).toBe('28P01');
      expect(await refusedWith(port, { user: 'alice@example.com', database: 'mydb', password: 'wrong' })).toBe('28P01');
      expect((await psql(port, 'select current_user', 'dbname=mydb', { PGPASSWORD: password! })).stdout.trim()).toBe('app_writer');
    } finally {
      await stop(tunnel);
    }
  });
});

describe('one login shared by a tunnel and exec-mode runs', () => {
  it('30 s of psql through a tunnel and exec-mode runs side by side: zero failures, zero refresh-token reuse', { timeout: 90_000 }, async () => {
    const { tunnel, port } = await startTunnel();
    const reuseBefore = reuse();
    const failures: string[] = [];
    let tunnelConnections = 0;
    let execRuns = 0;
    const until = Date.now() + 30_000;
    try {
      await Promise.all([
        (async () => {
          while (Date.now() < until) {
            await psql(port, 'select current_user').then(
              (r) => (r.stdout.trim() === 'app_writer' ? tunnelConnections++ : failures.push(`tunnel: ${r.stdout}`)),
              (e: { stderr: string }) => failures.push(`tunnel: ${e.stderr}`),
            );
          }
        })(),
        (async () => {
          while (Date.now() < until) {
            const r = await runCli(['connect', 'mydb', '--', 'psql', '-X', '-A', '-t', '-c', 'select current_user'], { env });
            if (r.code === 0 && r.stdout.trim() === 'app_writer') execRuns++;
            else failures.push(`exec (${r.code}): ${r.stderr}`);
          }
        })(),
      ]);
    } finally {
      await stop(tunnel);
    }
    expect(failures).toEqual([]);
    expect(reuse() - reuseBefore).toBe(0);
    expect(tunnelConnections).toBeGreaterThan(20);
    expect(execRuns).toBeGreaterThan(3);
  });
});

describe('logout reaches a running tunnel', () => {
  it('new connections are refused with "run gprxy login" within 10 s, logout says so; a new login is served again', { timeout: 60_000 }, async () => {
    const { tunnel, port } = await startTunnel();
    try {
      expect((await psql(port, 'select current_user')).stdout.trim()).toBe('app_writer');
      const started = Date.now();
      const out = await runCli(['logout'], { env });
      expect(out.code, out.stderr).toBe(0);
      expect(out.stdout).toMatch(new RegExp(`Tunnel pid ${tunnel.child.pid} \\(mydb@127\\.0\\.0\\.1:${port}\\) now refuses new connections`));
      const refused = await psqlError(port, 'dbname=mydb');
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(refused).toContain('run gprxy login');
      await tunnel.waitFor(/logged out \(gprxy logout\): new connections are refused until gprxy login/);
      // bob logs in: the running tunnel serves bob now (pg_reader → app_reader), and says so.
      await login('bob');
      await tunnel.waitFor(/logged in as bob@example\.com now \(was alice@example\.com\)/);
      expect((await psql(port, 'select current_user', 'dbname=mydb')).stdout.trim()).toBe('app_reader');
    } finally {
      expect(await stop(tunnel, 'SIGTERM')).toBe(143);
    }
  });
});

describe('--insecure-storage with a running tunnel', () => {
  it('the unencrypted-storage warning once per process, and two store reads per refresh, not a loop', { timeout: 60_000 }, async () => {
    await login('alice', ['--insecure-storage']);
    const { tunnel, port } = await startTunnel([], { GPRXY_DEBUG: '1' });
    const before = refreshes();
    const until = Date.now() + 15_000;
    while (Date.now() < until) expect((await psql(port, 'select current_user')).stdout.trim()).toBe('app_writer');
    const code = await stop(tunnel);
    expect(code).toBe(130);
    const stderr = tunnel.stderr();
    expect(stderr.match(/stored unencrypted/g)).toHaveLength(1);
    const reads = stderr.match(/debug: reading the tokens of profile "default"/g)?.length ?? 0;
    const refreshed = refreshes() - before;
    expect(refreshed).toBeGreaterThanOrEqual(3); // a 6 s token is renewed every 3 s
    expect(reads).toBeLessThanOrEqual(2 * refreshed + 3);
  });
});
