/**
 * Option 1, PostgreSQL 18 native OAuth, end to end: embedded PostgreSQL 18 with `oauth` in pg_hba and our
 * validator module (validator/gprxy_oauth_validator.c, built with gcc here), which asks gprxy's verification
 * endpoint (validator.socket) — the proxy's own verifier. `gprxy connect`'s tunnel answers the server's
 * OAUTHBEARER exchange with a cached, renewed token, so psql 15 (no OAuth support at all) logs in with no
 * prompt; `gprxy serve` in passthrough mode relays that exchange and routes cancels. Always PostgreSQL 18
 * (native OAuth needs it), whatever GPRXY_TEST_PG_BIN says.
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { decodeJwt, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProxyConfig } from '../../src/config/proxy-config.js';
import { startCluster, type Cluster } from '../../src/demo/postgres-cluster.js';
import { buildValidatorModule, validatorBuildUnavailable, type BuiltValidator } from '../../src/demo/validator-module.js';
import { createLogger } from '../../src/proxy/logger.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { TokenKeeper } from '../../src/tunnel/token-keeper.js';
import { Tunnel, type TunnelTokenSource } from '../../src/tunnel/tunnel.js';
import { buildLibpq18Client, libpq18SkipReason, type Libpq18Client } from '../support/libpq18.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { LogCapture } from '../support/proxy-stack.js';
import * as oidc from 'openid-client';
import { DEV_AUDIENCE, DEV_CLI_CLIENT_ID } from '../../src/demo/oidc-provider.js';
import { fetchWithCa } from '../../src/net/ca-fetch.js';
import { loginAs } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';

const run = promisify(execFile);
const skip = validatorBuildUnavailable() ?? libpq18SkipReason();
if (skip) console.warn(`skipping the PostgreSQL 18 native OAuth tests: ${skip}`);

const TOKEN_SECONDS = 6;

describe.skipIf(!!skip)('PostgreSQL 18 native OAuth with the gprxy validator', () => {
  let idp: TestProvider;
  let module: BuiltValidator;
  let cluster: Cluster;
  let proxy: ProxyServer;
  let logs: LogCapture;
  let libpq: Libpq18Client;
  let caDir: string;
  const tunnels: Tunnel[] = [];

  const fixed = (token: string): TunnelTokenSource => ({
    getAccessToken: async () => ({ accessToken: token, expiresAt: (decodeJwt(token).exp ?? 0) * 1000, claims: decodeJwt(token) as Record<string, unknown> }),
  });

  async function tunnelTo(port: number, tokens: TunnelTokenSource): Promise<number> {
    const tunnel = new Tunnel({ databases: ['native'], proxy: { host: 'localhost', port, ca: idp.ca.cert }, tokens, port: 0 });
    await tunnel.start();
    tunnels.push(tunnel);
    return tunnel.listeners[0]!.port;
  }

  function psql(port: number, sql: string) {
    // Debian's psql 15: it knows nothing of OAuth; the tunnel does it all.
    return run('psql', ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(port), '-d', 'native', '-c', sql], {
      env: { PATH: process.env.PATH!, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' },
    });
  }

  beforeAll(async () => {
    idp = await startTestProvider({ accessTokenTtlSeconds: TOKEN_SECONDS });
    module = buildValidatorModule();
    const socket = join(module.dir, 'validator.sock');
    const [pgLeaf, proxyLeaf] = await Promise.all([idp.ca.issue(['localhost', '127.0.0.1']), idp.ca.issue(['localhost', '127.0.0.1'])]);
    cluster = await startCluster({
      tls: pgLeaf,
      settings: { oauth_validator_libraries: module.library, 'gprxy.validator_socket': socket },
      hba: [`hostssl all +oauth_users 127.0.0.1/32 oauth issuer="${idp.provider.issuer}" scope="openid"`],
    });
    expect(cluster.majorVersion).toBe(18);
    await cluster.query('create role oauth_users nologin; create role "alice@example.com" login in role oauth_users; create role "bob@example.com" login in role oauth_users');
    await cluster.createDatabase('native');
    caDir = mkdtempSync(join(tmpdir(), 'gprxy-native-ca-'));
    writeFileSync(join(caDir, 'ca.pem'), idp.ca.cert);
    const files: Record<string, string> = { cert: proxyLeaf.cert, key: proxyLeaf.key, ca: idp.provider.caCert, dbca: idp.ca.cert };
    const config = buildProxyConfig(
      {
        listen: '127.0.0.1:0',
        tls: { cert: 'cert', key: 'key' },
        providers: [{ issuer: idp.provider.issuer, audience: 'https://gprxy.io', ca: 'ca' }],
        databases: { native: { host: '127.0.0.1', port: cluster.port, dbname: 'native', mode: 'passthrough', sslmode: 'verify-full', ca: 'dbca' } },
        validator: { socket, socket_mode: '0666' },
        log: { level: 'debug' },
      },
      {},
      '/inline',
      (p) => files[p.split('/').pop()!]!,
    );
    logs = new LogCapture();
    proxy = new ProxyServer(config, { logger: createLogger({ level: 'debug', destination: logs }) });
    await proxy.start();
    libpq = await buildLibpq18Client();
  });

  afterAll(async () => {
    for (const t of tunnels) await t.close();
    await proxy?.close();
    await cluster?.stop();
    await idp?.close();
    module?.dispose();
    libpq?.dispose();
    if (caDir) rmSync(caDir, { recursive: true, force: true });
  });

  it('the module loads in PostgreSQL 18 and validates: the libpq 18 client logs in as its own role, identity oauth:<user>', async () => {
    const token = (await loginAs(idp.provider, 'alice')).accessToken;
    const conninfo = `host=localhost port=${cluster.port} dbname=native user=alice@example.com sslmode=verify-full sslrootcert=${join(caDir, 'ca.pem')} oauth_issuer=${idp.provider.issuer} oauth_client_id=gprxy-cli`;
    const r = await libpq.run(conninfo, "select current_user || ' ' || system_user", token);
    expect(r.error).toBeUndefined();
    expect(r.value).toBe('alice@example.com oauth:alice@example.com');
    // PostgreSQL's own discovery answer names the same issuer the proxy advertises.
    expect(r.hooks[0]!.discoveryUrl).toBe(`${idp.provider.issuer}/.well-known/openid-configuration`);
    await logs.waitFor((l) => l.event === 'validator_check' && l.result === 'authorized' && l.user === 'alice@example.com');
  });

  it("refuses another user's token for alice's role (28000): the same username rule as the proxy", async () => {
    const bob = (await loginAs(idp.provider, 'bob')).accessToken;
    const conninfo = `host=localhost port=${cluster.port} dbname=native user=alice@example.com sslmode=verify-full sslrootcert=${join(caDir, 'ca.pem')} oauth_issuer=${idp.provider.issuer} oauth_client_id=gprxy-cli`;
    const r = await libpq.run(conninfo, 'select 1', bob);
    expect(r.sqlstate).toBe('28000');
    await logs.waitFor((l) => l.event === 'validator_check' && l.reason === 'token_user_mismatch');
  });

  it('gprxy connect + psql 15 straight to PostgreSQL 18: no prompt, 30 s of 6-second tokens', async () => {
    // One device login, then the refresh grant for every renewal, as gprxy connect does (cheap under load).
    const oidcConfig = await oidc.discovery(new URL(idp.provider.issuer), DEV_CLI_CLIENT_ID, undefined, oidc.None(), {
      execute: [],
      [oidc.customFetch]: fetchWithCa(idp.provider.caCert) as never,
    });
    let refreshToken = (await loginAs(idp.provider, 'alice')).refreshToken!;
    const keeper = new TokenKeeper({
      source: {
        getAccessToken: async () => {
          const t = await oidc.refreshTokenGrant(oidcConfig, refreshToken, { resource: DEV_AUDIENCE });
          refreshToken = t.refresh_token ?? refreshToken;
          return fixed(t.access_token).getAccessToken();
        },
      },
    });
    try {
      const port = await tunnelTo(cluster.port, keeper);
      const started = Date.now();
      const tokensSeen = new Set<string>();
      let logins = 0;
      while (Date.now() - started < 30_000) {
        const { stdout } = await psql(port, 'select current_user, system_user').catch((e: { stderr?: string; message: string }) => {
          throw new Error(`login ${logins + 1} at ${Date.now() - started} ms failed: ${e.stderr ?? e.message}`);
        });
        expect(stdout.trim()).toBe('alice@example.com|oauth:alice@example.com');
        logins++;
        tokensSeen.add((await keeper.getAccessToken()).accessToken);
        await new Promise((r) => setTimeout(r, 1_000));
      }
      expect(logins).toBeGreaterThanOrEqual(5);
      // Each token lives 6 s: half a minute of logins went through at least four of them.
      expect(tokensSeen.size).toBeGreaterThanOrEqual(4);
    } finally {
      keeper.close();
    }
  }, 60_000);

  it('a forged token (right claims, wrong key) is refused by the server', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const now = Math.floor(Date.now() / 1000);
    const forged = await new SignJWT({ email: 'alice@example.com', 'https://gprxy.io/email': 'alice@example.com', sub: 'auth0|alice0001' })
      .setProtectedHeader({ alg: 'RS256', kid: 'forged' })
      .setIssuer(idp.provider.issuer)
      .setAudience('https://gprxy.io')
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(privateKey);
    const port = await tunnelTo(cluster.port, fixed(forged));
    const err = await psql(port, 'select 1').then(
      () => undefined,
      (e: { stderr: string }) => e,
    );
    expect(err?.stderr).toMatch(/OAuth bearer authentication failed/);
    const line = await logs.waitFor((l) => l.event === 'validator_check' && l.result === 'refused' && typeof l.reason === 'string' && /token_(unknown_kid|signature)/.test(l.reason as string));
    expect(line.user).toBe('alice@example.com');
  });

  it('gprxy serve in passthrough mode relays the OAUTHBEARER exchange and routes psql’s Ctrl+C', async () => {
    const port = await tunnelTo(proxy.address.port, fixed((await loginAs(idp.provider, 'alice')).accessToken));
    const { stdout } = await psql(port, 'select current_user');
    expect(stdout.trim()).toBe('alice@example.com');
    await logs.waitFor((l) => l.event === 'session_end' && l.mode === 'passthrough' && l.user === 'alice@example.com');

    const child = spawn('psql', ['-X', '-h', '127.0.0.1', '-p', String(port), '-d', 'native', '-c', 'select pg_sleep(30)'], {
      env: { PATH: process.env.PATH!, PGSSLMODE: 'disable' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      await waitUntil(async () => (await cluster.query("select count(*)::int as n from pg_stat_activity where usename = 'alice@example.com' and state = 'active'", [], 'native')).rows[0]?.n === 1);
      child.kill('SIGINT');
      await once(child, 'close'); // not 'exit': stderr may not all be read by then
      expect(stderr).toContain('canceling statement due to user request');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('through passthrough too, a forged token is refused by the server and its FATAL reaches psql', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const now = Math.floor(Date.now() / 1000);
    const forged = await new SignJWT({ email: 'bob@example.com', sub: 'auth0|bob0002' })
      .setProtectedHeader({ alg: 'RS256', kid: 'forged-2' })
      .setIssuer(idp.provider.issuer)
      .setAudience('https://gprxy.io')
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(privateKey);
    const port = await tunnelTo(proxy.address.port, fixed(forged));
    const err = await psql(port, 'select 1').then(
      () => undefined,
      (e: { stderr: string }) => e,
    );
    expect(err?.stderr).toMatch(/FATAL: +OAuth bearer authentication failed for user "bob@example.com"/);
    await logs.waitFor((l) => l.event === 'auth_failure' && l.mode === 'passthrough' && l.user === 'bob@example.com');
  });

  it('a server that falls back to a password method gets a clear error from the tunnel', async () => {
    await cluster.query('revoke oauth_users from "bob@example.com"');
    try {
      const port = await tunnelTo(cluster.port, fixed((await loginAs(idp.provider, 'bob')).accessToken));
      const err = await psql(port, 'select 1').then(
        () => undefined,
        (e: { stderr: string }) => e,
      );
      // Not in +oauth_users: pg_hba falls through to scram-sha-256, which a token cannot answer.
      expect(err?.stderr).toMatch(/SCRAM-SHA-256; gprxy connect answers with an access token only/);
    } finally {
      await cluster.query('grant oauth_users to "bob@example.com"');
    }
  });
});
