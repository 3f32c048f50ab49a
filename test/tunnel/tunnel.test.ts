import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tunnel, type TunnelTokenSource } from '../../src/tunnel/tunnel.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';
import { LoginRequiredError } from '../../src/oauth/errors.js';

const run = promisify(execFile);
let stack: ProxyStack;
let aliceToken: string;

function fixedTokens(token: string): TunnelTokenSource {
  return { getAccessToken: async () => ({ accessToken: token, expiresAt: (decodeJwt(token).exp ?? 0) * 1000, claims: decodeJwt(token) as Record<string, unknown> }) };
}

async function startTunnel(tokens: TunnelTokenSource, extra: Partial<ConstructorParameters<typeof Tunnel>[0]> = {}): Promise<Tunnel> {
  const tunnel = new Tunnel({ databases: ['mydb'], proxy: { host: 'localhost', port: stack.port, ca: stack.idp.ca.cert }, tokens, port: 0, ...extra });
  await tunnel.start();
  return tunnel;
}

function psql(port: number, sql: string, env: Record<string, string> = {}) {
  // No password anywhere: the tunnel injects the token.
  return run('psql', ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(port), '-d', 'mydb', '-c', sql], {
    env: { PATH: process.env.PATH!, PGSSLMODE: 'prefer', PGCONNECT_TIMEOUT: '10', ...env },
  });
}

beforeAll(async () => {
  stack = await startProxyStack();
  aliceToken = (await loginAs(stack.idp.provider, 'alice')).accessToken;
});
afterAll(async () => {
  await stack?.stop();
});

describe('gprxy connect tunnel', () => {
  it('lets plain psql connect with no password: mapped account and user identity', async () => {
    const tunnel = await startTunnel(fixedTokens(aliceToken));
    try {
      const { stdout } = await psql(tunnel.listeners[0]!.port, "select current_user || ' ' || current_setting('app.user_id')");
      expect(stdout.trim()).toBe('app_writer auth0|alice0001');
    } finally {
      await tunnel.close();
    }
  });

  it('listens on loopback only', async () => {
    const tunnel = await startTunnel(fixedTokens(aliceToken));
    try {
      expect(tunnel.listeners[0]!.host).toBe('127.0.0.1');
      const { stdout } = await run('ss', ['-ltnH']).catch(() => ({ stdout: '' }));
      const port = tunnel.listeners[0]!.port;
      for (const line of stdout.split('\n').filter((l) => l.includes(`:${port} `))) expect(line).toContain(`127.0.0.1:${port}`);
    } finally {
      await tunnel.close();
    }
  });

  it('refuses with a "run gprxy login" FATAL that psql prints when no token can be had', async () => {
    const loginRequired = new LoginRequiredError('refresh token expired or revoked');
    let told = 0;
    const tunnel = await startTunnel({ getAccessToken: () => Promise.reject(loginRequired) }, { events: { onTokenError: (_e, l) => void (l && told++) } });
    try {
      const err = await psql(tunnel.listeners[0]!.port, 'select 1').then(
        () => undefined,
        (e: { stderr: string }) => e,
      );
      expect(err?.stderr).toContain('run gprxy login');
      expect(told).toBe(1);
    } finally {
      await tunnel.close();
    }
  });

  it('the refusal names the profile to log in to, as the token source says it', async () => {
    const loginRequired = new LoginRequiredError('not logged in (profile work): run gprxy login --profile work');
    const tunnel = await startTunnel({ getAccessToken: () => Promise.reject(loginRequired) });
    try {
      const err = await psql(tunnel.listeners[0]!.port, 'select 1').then(
        () => undefined,
        (e: { stderr: string }) => e,
      );
      expect(err?.stderr).toContain('gprxy: not logged in (profile work): run gprxy login --profile work');
    } finally {
      await tunnel.close();
    }
  });

  it('a client that insists on TLS locally is told which sslmode to use, for the SSLRequest and the direct handshake', async () => {
    const errors: { code: string | undefined; message: string }[] = [];
    const tunnel = await startTunnel(fixedTokens(aliceToken), { events: { onConnectionError: (e) => errors.push({ code: (e as { code?: string }).code, message: e.message }) } });
    try {
      const port = tunnel.listeners[0]!.port;
      await expect(psql(port, 'select 1', { PGSSLMODE: 'require' })).rejects.toMatchObject({ stderr: expect.stringContaining('does not support SSL') });
      await waitUntil(() => errors.length === 1);
      expect(errors[0]).toMatchObject({ code: 'local_tls_unsupported', message: expect.stringContaining('sslmode=prefer or disable') });

      // sslnegotiation=direct: a TLS ClientHello with no SSLRequest first.
      const { connect } = await import('node:tls');
      const direct = connect({ host: '127.0.0.1', port, ALPNProtocols: ['postgresql'], rejectUnauthorized: false });
      await new Promise<void>((resolve) => {
        direct.on('error', () => undefined);
        direct.on('close', () => resolve());
      });
      await waitUntil(() => errors.length === 2);
      expect(errors[1]).toMatchObject({ code: 'local_tls_unsupported', message: expect.stringContaining('sslnegotiation=direct') });

      // sslmode=prefer still works on the same listener.
      expect((await psql(port, 'select 1')).stdout.trim()).toBe('1');
      expect(errors).toHaveLength(2);
    } finally {
      await tunnel.close();
    }
  });

  it("forwards psql's Ctrl+C across both hops", async () => {
    const tunnel = await startTunnel(fixedTokens(aliceToken));
    try {
      const child = spawn('psql', ['-X', '-h', '127.0.0.1', '-p', String(tunnel.listeners[0]!.port), '-d', 'mydb', '-c', 'select pg_sleep(30)'], {
        env: { PATH: process.env.PATH!, PGSSLMODE: 'prefer' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      await waitUntil(async () => (await stack.cluster.query("select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'", [], 'mydb')).rows[0]?.n === 1);
      const started = Date.now();
      child.kill('SIGINT');
      await once(child, 'close'); // not 'exit': stderr may not all be read by then
      expect(stderr).toContain('canceling statement due to user request');
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await tunnel.close();
    }
  });

  it('serves a Unix socket in a 0700 directory', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'gprxy-sock-')), 'sock');
    const tunnel = await startTunnel(fixedTokens(aliceToken), { unixSocketDir: dir, port: 6543 });
    try {
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(tunnel.listeners[0]!.socketPath).toBe(join(dir, '.s.PGSQL.6543'));
      const { stdout } = await run('psql', ['-X', '-A', '-t', '-h', dir, '-p', '6543', '-d', 'mydb', '-c', 'select current_user'], { env: { PATH: process.env.PATH! } });
      expect(stdout.trim()).toBe('app_writer');
    } finally {
      await tunnel.close();
      rmSync(dirname(dir), { recursive: true, force: true });
    }
  });

  it('serves several databases on consecutive ports and many concurrent sessions', async () => {
    // Session pooling: 20 concurrent sessions need 20 backends behind the proxy, and one identity holds
    // them all (above the default limits.max_sessions_per_identity).
    await stack.startProxy({
      databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool: { size: 20 } } },
      limits: { login_timeout: '5s', pool_wait_timeout: '5s', max_sessions_per_identity: 20 },
    });
    const tunnel = await startTunnel(fixedTokens(aliceToken), { databases: ['mydb', 'mydb'], port: 0 });
    try {
      expect(tunnel.listeners).toHaveLength(2);
      const clients = Array.from({ length: 20 }, (_, i) => new pg.Client({ host: '127.0.0.1', port: tunnel.listeners[i % 2]!.port, database: 'mydb', user: 'alice@example.com' }));
      await Promise.all(clients.map((c) => c.connect()));
      const users = await Promise.all(clients.map(async (c) => (await c.query('select current_user, pg_sleep(0.05)')).rows[0].current_user));
      expect(new Set(users)).toEqual(new Set(['app_writer']));
      await Promise.all(clients.map((c) => c.end()));
    } finally {
      await tunnel.close();
    }
  });

  it('says clearly when the port is taken', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as { port: number }).port;
    try {
      const tunnel = new Tunnel({ databases: ['mydb'], proxy: { host: 'localhost', port: stack.port, ca: stack.idp.ca.cert }, tokens: fixedTokens(aliceToken), port });
      await expect(tunnel.start()).rejects.toMatchObject({ code: 'port_in_use' });
      const next = new Tunnel({ databases: ['mydb', 'mydb'], proxy: { host: 'localhost', port: stack.port, ca: stack.idp.ca.cert }, tokens: fixedTokens(aliceToken), port, findFreePort: true });
      const listeners = await next.start();
      // The next free ports above the taken one (another process may hold one of them too).
      const [first, second] = listeners.map((l) => l.port);
      expect(first).toBeGreaterThan(port);
      expect(second).toBeGreaterThan(first!);
      expect(second! - port).toBeLessThan(10);
      await next.close();
    } finally {
      blocker.close();
    }
  });

  it('fails TLS verification against the wrong CA with a clear message', async () => {
    const { createCertificateAuthority } = await import('../../src/demo/certificates.js');
    const otherCa = await createCertificateAuthority('someone else');
    const errors: Error[] = [];
    const tunnel = new Tunnel({
      databases: ['mydb'],
      proxy: { host: 'localhost', port: stack.port, ca: otherCa.cert },
      tokens: fixedTokens(aliceToken),
      port: 0,
      events: { onConnectionError: (e) => errors.push(e) },
    });
    await tunnel.start();
    try {
      const err = await psql(tunnel.listeners[0]!.port, 'select 1').then(
        () => undefined,
        (e: { stderr: string }) => e,
      );
      expect(err?.stderr).toMatch(/TLS verification of the gprxy proxy .* failed/);
      expect(errors[0]).toMatchObject({ code: 'proxy_tls_failed' });
    } finally {
      await tunnel.close();
    }
  });
});
