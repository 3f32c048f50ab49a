/**
 * The whole chain as an engineer uses it: `gprxy login` (device flow, keychain) → `gprxy connect mydb` →
 * plain psql on 127.0.0.1 → `gprxy serve` → PostgreSQL, with 5-second access tokens from the real provider.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_AUDIENCE, DEV_CLI_CLIENT_ID } from '../../src/demo/oidc-provider.js';
import { fetchWithCa } from '../../src/net/ca-fetch.js';
import { startCli, runCli, type CliProcess } from '../support/cli.js';
import { startKeyringSession, type KeyringSession } from '../support/keyring.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';

const run = promisify(execFile);
let stack: ProxyStack;
let home: KeyringSession;
let env: Record<string, string>;
let tunnel: CliProcess;
let port: number;

function psql(sql: string, p = port) {
  return run('psql', ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(p), '-d', 'mydb', '-c', sql], { env: { PATH: process.env.PATH!, PGCONNECT_TIMEOUT: '10' } });
}

beforeAll(async () => {
  stack = await startProxyStack();
  stack.idp.provider.setAccessTokenTtl(5);
  home = await startKeyringSession();
  const ca = join(home.home, 'ca.pem');
  writeFileSync(ca, stack.idp.ca.cert);
  env = { ...home.env, GPRXY_CA: ca };
  const configured = await runCli(
    ['configure', '--issuer', stack.idp.provider.issuer, '--client-id', DEV_CLI_CLIENT_ID, '--audience', DEV_AUDIENCE, '--proxy', `localhost:${stack.port}`],
    { env },
  );
  expect(configured.code, configured.stderr).toBe(0);
  const login = startCli(['login', '--device', '--no-browser'], { env });
  const [, code] = await login.waitFor(/check that it shows the code: (\S+)/);
  await stack.idp.provider.approveDevice(code!, 'alice');
  expect((await login.result).code).toBe(0);

  tunnel = startCli(['connect', 'mydb', '--port', '0'], { env });
  port = Number((await tunnel.waitFor(/listening on 127\.0\.0\.1:(\d+)[^]*Press Ctrl\+C/, 'stdout'))[1]);
});

afterAll(async () => {
  tunnel?.child.kill('SIGINT');
  await tunnel?.result;
  await home?.close();
  await stack?.stop();
});

describe('gprxy connect, end to end', () => {
  it('prints the psql command, and psql needs no password: mapped account and user', async () => {
    expect(tunnel.stdout()).toContain(`psql "host=127.0.0.1 port=${port} dbname=mydb user=alice@example.com"`);
    const { stdout } = await psql("select current_user || '|' || current_setting('app.user_id')");
    expect(stdout.trim()).toBe('app_writer|auth0|alice0001');
  });

  it('listens on loopback only', async () => {
    const { stdout } = await run('ss', ['-ltnpH']);
    const mine = stdout.split('\n').filter((l) => l.includes(`pid=${tunnel.child.pid},`));
    expect(mine.length).toBeGreaterThan(0);
    for (const line of mine) expect(line).toMatch(/\s127\.0\.0\.1:\d+\s/);
  });

  it('with 5-second tokens, new connections for 30 s never fail, and refreshes stay a handful', { timeout: 60_000 }, async () => {
    const refreshesBefore = stack.idp.provider.counters().tokenRequests.refresh_token ?? 0;
    const until = Date.now() + 30_000;
    let connections = 0;
    while (Date.now() < until) {
      const { stdout } = await psql('select current_user');
      expect(stdout.trim()).toBe('app_writer');
      connections++;
    }
    const refreshes = (stack.idp.provider.counters().tokenRequests.refresh_token ?? 0) - refreshesBefore;
    expect(connections).toBeGreaterThan(50);
    // One refresh per 2.5 to 4 s of a 5 s token, not one per connection.
    expect(refreshes).toBeGreaterThanOrEqual(5);
    expect(refreshes).toBeLessThanOrEqual(16);
  });

  it('exec mode runs the command against the tunnel and exits with its code', async () => {
    const ok = await runCli(['connect', 'mydb', '--', 'psql', '-X', '-A', '-t', '-c', 'select current_user'], { env });
    expect(ok.code).toBe(0);
    expect(ok.stdout.trim()).toBe('app_writer');
    const failing = await runCli(['connect', 'mydb', '--', 'sh', '-c', 'test "$PGUSER" = alice@example.com && test "$PGDATABASE" = mydb && exit 7'], { env });
    expect(failing.code).toBe(7);
  });

  it('after the refresh token is revoked, the next psql connection says to run gprxy login', { timeout: 30_000 }, async () => {
    const stored = JSON.parse((await home.readSecret('gprxy', 'default'))!) as { refreshToken: string };
    const config = await oidc.discovery(new URL(stack.idp.provider.issuer), DEV_CLI_CLIENT_ID, undefined, oidc.None(), {
      [oidc.customFetch]: fetchWithCa(stack.idp.ca.cert) as never,
    });
    await oidc.tokenRevocation(config, stored.refreshToken, { token_type_hint: 'refresh_token' });
    let message = '';
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const r = await psql('select 1').then(
        () => '',
        (e: { stderr: string }) => e.stderr,
      );
      if (r) {
        message = r;
        break;
      }
    }
    expect(message).toContain('run gprxy login');
    expect(tunnel.stderr().match(/run gprxy login/g)?.length).toBe(1);
  });
});
