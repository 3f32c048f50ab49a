/**
 * Tokens for applications: `gprxy token --json` (access token and expiry), and `gprxy`'s `gprxyPassword()`
 * as node-postgres's function password, through the real proxy: every new pooled connection asks for the
 * token, a refresh happens only when it runs low.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_AUDIENCE } from '../../src/demo/oidc-provider.js';
import { gprxyPassword } from '../../src/index.js';
import { runCli } from '../support/cli.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { waitUntil } from '../support/wait.js';

let stack: ProxyStack;
let home: string;
let env: Record<string, string>;

beforeAll(async () => {
  stack = await startProxyStack();
  home = await mkdtemp(path.join(os.tmpdir(), 'gprxy-token-json-'));
  await writeFile(path.join(home, 'ca.pem'), stack.idp.provider.caCert);
  env = {
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    GPRXY_ISSUER: stack.idp.provider.issuer,
    GPRXY_AUDIENCE: DEV_AUDIENCE,
    GPRXY_CA: path.join(home, 'ca.pem'),
    GPRXY_CLIENT_ID: stack.idp.provider.ciClient.clientId,
    GPRXY_CLIENT_SECRET: stack.idp.provider.ciClient.clientSecret,
  };
});
afterAll(async () => {
  await stack?.stop();
  await rm(home, { recursive: true, force: true });
});

describe('tokens for applications', () => {
  it('gprxy token --json prints the access token with its expiry', async () => {
    const before = Date.now();
    const r = await runCli(['token', '--json'], { env });
    const after = Date.now();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const body = JSON.parse(r.stdout) as { access_token: string; token_type: string; expires_at: string; expires_in: number };
    expect(body.token_type).toBe('Bearer');
    const exp = decodeJwt(body.access_token).exp!;
    expect(Date.parse(body.expires_at)).toBe(exp * 1000);
    expect(body.expires_in).toBeGreaterThan(0);
    // Whole seconds left when the CLI ran, somewhere between `before` and `after` (however slow the run).
    expect(body.expires_in).toBeLessThanOrEqual(exp - before / 1000);
    expect(body.expires_in).toBeGreaterThanOrEqual(Math.floor(exp - after / 1000));
  });

  it('gprxy token --json with a GPRXY_TOKEN that is not a JWT: expiry unknown (null)', async () => {
    const r = await runCli(['token', '--json'], { env: { HOME: home, GPRXY_TOKEN: 'opaque-token-value' } });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ access_token: 'opaque-token-value', token_type: 'Bearer', expires_at: null, expires_in: null });
  });

  it('gprxyPassword() is a node-postgres password function: a pg.Pool logs in through the proxy with fresh tokens', async () => {
    const password = gprxyPassword({
      env: { HOME: home, XDG_CONFIG_HOME: path.join(home, '.config') },
      issuer: env.GPRXY_ISSUER,
      audience: DEV_AUDIENCE,
      ca: env.GPRXY_CA,
      clientCredentials: { clientId: env.GPRXY_CLIENT_ID!, clientSecret: env.GPRXY_CLIENT_SECRET! },
    });
    const before = stack.idp.provider.counters().tokenRequests.client_credentials ?? 0;
    const pool = new pg.Pool({ host: '127.0.0.1', port: stack.port, database: 'mydb', user: 'ci-bot', ssl: stack.ssl, password, max: 3 });
    try {
      const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
      for (const c of clients) expect((await c.query('select current_user as u')).rows[0].u).toBe('app_reader');
      for (const c of clients) c.release();
    } finally {
      await pool.end();
    }
    // Let the proxy see the three sessions end before the suite stops it.
    await waitUntil(() => stack.logs.events('session_end').filter((l) => l.user === 'ci-bot').length >= 3);
    // Three connections, one token request: the token is cached until it runs low.
    expect((stack.idp.provider.counters().tokenRequests.client_credentials ?? 0) - before).toBe(1);
    expect(stack.logs.events('auth_success').filter((l) => l.user === 'ci-bot').length).toBeGreaterThanOrEqual(3);
  });
});
