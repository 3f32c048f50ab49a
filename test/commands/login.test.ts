/**
 * `gprxy configure | login | token | status | logout` as a person uses them: the real CLI against the dev
 * OIDC provider over HTTPS, with tokens in a real Secret Service (gnome-keyring on a private dbus session).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as client from 'openid-client';
import { createRemoteJWKSet, customFetch, decodeJwt, jwtVerify, type FetchImplementation } from 'jose';
import { DEV_AUDIENCE, DEV_CLI_CLIENT_ID, startDevProvider, type DevProvider } from '../../src/demo/oidc-provider.js';
import { fetchWithCa } from '../../src/net/ca-fetch.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { startKeyringSession, type KeyringSession } from '../support/keyring.js';
import { runCli, startCli, type CliResult } from '../support/cli.js';

let stack: TestProvider;
let provider: DevProvider;
let keyring: KeyringSession;
let caDir: string;
let caFile: string;

const gprxy = (args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> =>
  runCli(args, { env: { ...keyring.env, ...env } });

interface Stored {
  refreshToken?: string;
  accessToken?: string;
  accessTokenExpiresAt?: number;
  issuer: string;
}

async function stored(profile: string): Promise<Stored | null> {
  const text = await keyring.readSecret('gprxy', profile);
  return text ? (JSON.parse(text) as Stored) : null;
}

/** Runs `gprxy login` (device flow) and approves the printed code as `username` would in a browser. */
async function deviceLogin(username: string, args: string[] = [], env: Record<string, string | undefined> = {}, approve: { deny?: boolean } = {}): Promise<CliResult> {
  const cli = startCli(['login', ...args], { env: { ...keyring.env, ...env } });
  const [, code] = await cli.waitFor(/check that it shows the code: (\S+)/);
  await provider.approveDevice(code as string, username, approve);
  return cli.result;
}

async function verify(token: string) {
  const jwks = createRemoteJWKSet(new URL('jwks', provider.issuer), { [customFetch]: fetchWithCa(provider.caCert) as FetchImplementation });
  return jwtVerify(token, jwks, { issuer: provider.issuer, audience: DEV_AUDIENCE });
}

async function cliConfig(): Promise<client.Configuration> {
  return client.discovery(new URL(provider.issuer), DEV_CLI_CLIENT_ID, undefined, client.None(), {
    [client.customFetch]: fetchWithCa(provider.caCert) as client.CustomFetch,
  });
}

beforeAll(async () => {
  stack = await startTestProvider({ deviceIntervalSeconds: 0.2 });
  provider = stack.provider;
  keyring = await startKeyringSession();
  caDir = await mkdtemp(path.join(os.tmpdir(), 'gprxy-ca-'));
  caFile = path.join(caDir, 'ca.pem');
  await writeFile(caFile, provider.caCert);
});

afterAll(async () => {
  await keyring?.close();
  await stack?.close();
  if (caDir) await rm(caDir, { recursive: true, force: true });
});

describe('gprxy configure', () => {
  it('writes profiles, and refuses a non-https issuer with the fix', async () => {
    for (const profile of ['default', 'short', 'pkce']) {
      const r = await gprxy(['configure', '--profile', profile, '--issuer', provider.issuer, '--client-id', DEV_CLI_CLIENT_ID, '--audience', DEV_AUDIENCE, '--proxy', '127.0.0.1:6432', '--ca', caFile]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Profile "${profile}" written to ${path.join(keyring.env.XDG_CONFIG_HOME!, 'gprxy', 'config.json')}`);
    }
    const bad = await gprxy(['configure', '--profile', 'bad', '--issuer', 'http://example.com/', '--client-id', 'x']);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toMatch(/^gprxy: invalid issuer: must be an https:\/\/ URL$/);
  });
});

describe('gprxy login (device flow) and gprxy token', () => {
  let firstRefreshToken: string;

  it('logs in through the device flow, says who you are, and keeps the refresh token only in the keychain', async () => {
    const r = await deviceLogin('alice', ['--no-browser']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/https:\/\/localhost:\d+\/device\?user_code=/); // the complete URL, plainly
    expect(r.stdout).toContain('as alice@example.com (auth0|alice0001)');
    expect(r.stdout).toContain('Roles: pg_writer');
    expect(r.stdout).toContain('OS keychain');

    const record = await stored('default');
    expect(record?.issuer).toBe(provider.issuer);
    expect(record?.refreshToken).toBeTruthy();
    firstRefreshToken = record!.refreshToken!;
    const files = await keyring.files();
    expect(files.length).toBeGreaterThan(0); // the profile, gnome-keyring's encrypted keyring
    for (const f of files) expect(f.content.includes(firstRefreshToken), `${f.path} holds the refresh token`).toBe(false);
    // The output never shows a token.
    expect(r.stdout + r.stderr).not.toContain(firstRefreshToken);
    expect(r.stdout + r.stderr).not.toContain(record!.accessToken!);
  });

  it('prints only a JWT that verifies with the expected claims, without refreshing a fresh one', async () => {
    const before = provider.counters().tokenRequests.refresh_token ?? 0;
    const r = await gprxy(['token']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const { payload } = await verify(r.stdout.trim());
    expect(payload).toMatchObject({ sub: 'auth0|alice0001', 'https://gprxy.io/roles': ['pg_writer'], 'https://gprxy.io/email': 'alice@example.com', 'https://gprxy.io/org_id': 'tenant-a' });
    expect(r.stdout.trim()).toBe((await stored('default'))?.accessToken);
    expect(provider.counters().tokenRequests.refresh_token ?? 0).toBe(before);
  });

  it('status --json parses and holds identity, roles, expiry and storage', async () => {
    const r = await gprxy(['status', '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({
      profile: 'default',
      issuer: provider.issuer,
      audience: DEV_AUDIENCE,
      proxy: '127.0.0.1:6432',
      mode: 'login',
      storage: 'keychain',
      loggedIn: true,
      identity: { sub: 'auth0|alice0001', email: 'alice@example.com' },
      roles: ['pg_writer'],
      refreshToken: true,
    });
    expect(Date.parse(report.accessToken.expiresAt)).toBeGreaterThan(Date.now());
    expect(report.accessToken.expired).toBe(false);
    const human = await gprxy(['status']);
    expect(human.stdout).toMatch(/identity\s+alice@example.com \(auth0\|alice0001\)/);
  });

  it('after the access token expires, refreshes without a prompt and stores the rotated refresh token', async () => {
    provider.setAccessTokenTtl(2);
    try {
      expect((await deviceLogin('alice', ['--profile', 'short'])).code).toBe(0);
      const first = (await stored('short'))!;
      // The refreshed token gets a normal lifetime: a 2 s one could expire (whole seconds) before the checks below.
      provider.setAccessTokenTtl(300);
      // Let the stored access token run out.
      await expect.poll(() => Date.now() > first.accessTokenExpiresAt!, { timeout: 5000, interval: 100 }).toBe(true);
      const refreshesBefore = provider.counters().tokenRequests.refresh_token ?? 0;

      const r = await gprxy(['token', '--profile', 'short']);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe('');
      const token = r.stdout.trim();
      expect(token).not.toBe(first.accessToken);
      expect(decodeJwt(token).exp! * 1000).toBeGreaterThan(Date.now());
      await verify(token);
      expect(provider.counters().tokenRequests.refresh_token).toBe(refreshesBefore + 1);

      const second = (await stored('short'))!;
      expect(second.accessToken).toBe(token);
      expect(second.refreshToken).toBeTruthy();
      expect(second.refreshToken).not.toBe(first.refreshToken);
      // The provider rotated it: the old refresh token is dead.
      await expect(client.refreshTokenGrant(await cliConfig(), first.refreshToken!)).rejects.toMatchObject({ error: 'invalid_grant' });
    } finally {
      provider.setAccessTokenTtl(300);
    }
  });

  it('logs in with authorization code + PKCE through the loopback redirect', async () => {
    const cli = startCli(['login', '--browser', '--profile', 'pkce'], { env: keyring.env });
    const [url] = await cli.waitFor(/https:\/\/localhost:\d+\/auth\?\S+/);
    const authUrl = new URL(url);
    expect(authUrl.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authUrl.searchParams.get('state')).toBeTruthy();
    expect(authUrl.searchParams.get('redirect_uri')).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    expect(authUrl.searchParams.get('audience')).toBe(DEV_AUDIENCE);
    const back = await provider.authorizeInBrowser(url, 'bob');
    expect(back).toContain('code=');
    const r = await cli.result;
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('as bob@example.com (auth0|bob00002)');
    expect(r.stdout).toContain('Roles: pg_reader');
    expect((await stored('pkce'))?.refreshToken).toBeTruthy();
  });

  it('logout revokes the refresh token at the provider and deletes it; then token says run gprxy login', async () => {
    const before = (await stored('default'))!;
    const r = await gprxy(['logout']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('refresh token revoked at the provider');
    expect(await stored('default')).toBeNull();
    await expect(client.refreshTokenGrant(await cliConfig(), before.refreshToken!)).rejects.toMatchObject({ error: 'invalid_grant' });

    const token = await gprxy(['token']);
    expect(token.code).toBe(4); // login required
    expect(token.stdout).toBe('');
    expect(token.stderr).toBe('gprxy: not logged in: run gprxy login\n');
  });
});

describe('gprxy login errors: one line, the next step, exit 1 (4 when only a login helps)', () => {
  it('a revoked refresh token makes gprxy token exit 4 with "run gprxy login"', async () => {
    const record = (await stored('pkce'))!;
    await client.tokenRevocation(await cliConfig(), record.refreshToken!);
    // Force a refresh: the stored access token is fresh, so make it look old to the CLI's clock.
    await keyring.run(process.execPath, ['--input-type=module', '-e', `
      import { AsyncEntry } from '@napi-rs/keyring';
      const e = new AsyncEntry('gprxy', 'pkce');
      const r = JSON.parse(await e.getPassword());
      r.accessTokenExpiresAt = Date.now() - 1000;
      await e.setPassword(JSON.stringify(r));`]);
    const r = await gprxy(['token', '--profile', 'pkce']);
    expect(r.code).toBe(4); // login required
    expect(r.stderr).toMatch(/^gprxy: the stored login \(profile pkce\) has expired or was revoked: run gprxy login --profile pkce\n$/);
  });

  it('denied consent', async () => {
    const r = await deviceLogin('alice', ['--profile', 'short'], {}, { deny: true });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/^gprxy: the sign-in was denied at the provider: run gprxy login again/);
  });

  it('unknown client id', async () => {
    const r = await gprxy(['login'], { GPRXY_CLIENT_ID: 'no-such-client' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^gprxy: the provider refused client "no-such-client" \(invalid_client.*\): check it with gprxy configure --client-id\n$/);
  });

  it('provider unreachable; the stack trace only with --debug', async () => {
    const env = { GPRXY_ISSUER: 'https://localhost:1/' };
    const r = await gprxy(['login'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^gprxy: cannot reach the OIDC provider at https:\/\/localhost:1\/ \(ECONNREFUSED\): check your network/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    const debug = await gprxy(['login', '--debug'], env);
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/\n\s+at /);
  });

  it('an untrusted provider certificate names --ca', async () => {
    const r = await gprxy(['login', '--profile', 'unconfigured'], { GPRXY_ISSUER: provider.issuer, GPRXY_CLIENT_ID: DEV_CLI_CLIENT_ID });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^gprxy: the TLS certificate of .* is not trusted \(\w+\): pass the issuing CA with gprxy configure --ca FILE or GPRXY_CA\n$/);
  });

  it('Ctrl+C while waiting ends the login with exit 130', async () => {
    const cli = startCli(['login', '--profile', 'short'], { env: keyring.env });
    await cli.waitFor(/check that it shows the code: (\S+)/);
    cli.child.kill('SIGINT');
    const r = await cli.result;
    expect(r.code).toBe(130);
    expect(r.stderr.trim().split('\n').at(-1)).toBe('gprxy: login cancelled');
  });

  it('an expired device code', async () => {
    const short = await startDevProvider({ ca: stack.ca, deviceCodeTtlSeconds: 1, deviceIntervalSeconds: 0.2 });
    try {
      const r = await gprxy(['login', '--profile', 'short'], { GPRXY_ISSUER: short.issuer });
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n').at(-1)).toMatch(/^gprxy: the device code expired .*: run gprxy login again/);
    } finally {
      await short.close();
    }
  });
});
