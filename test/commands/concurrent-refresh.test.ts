/**
 * Several gprxy processes sharing one login against a provider with refresh-token rotation and reuse
 * detection (the dev provider is oidc-provider: a reused refresh token revokes the whole grant, as with
 * Auth0). Real CLI processes, a real Secret Service (gnome-keyring) or --insecure-storage, 6-second
 * access tokens. Issue 13 items 1 and 3 (logout overlapping a refresh), 2 (warning once, store reads).
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_AUDIENCE, DEV_CLI_CLIENT_ID, type DevProvider } from '../../src/demo/oidc-provider.js';
import { refreshAt } from '../../src/shared/refresh-policy.js';
import { fetchWithCa } from '../../src/net/ca-fetch.js';
import { runCli, startCli, type CliResult } from '../support/cli.js';
import { startKeyringSession, type KeyringSession } from '../support/keyring.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { loginAs } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';

let stack: TestProvider;
let provider: DevProvider;
let keyring: KeyringSession;
let env: Record<string, string>;

interface Stored {
  refreshToken?: string;
  accessTokenIssuedAt?: number;
  accessTokenExpiresAt?: number;
}

const refreshes = () => provider.counters().tokenRequests.refresh_token ?? 0;
const reuse = () => provider.counters().refreshTokenReuse;

async function login(extra: string[] = [], user = 'alice'): Promise<void> {
  const cli = startCli(['login', '--device', '--no-browser', ...extra], { env });
  const [, code] = await cli.waitFor(/check that it shows the code: (\S+)/);
  await provider.approveDevice(code!, user);
  const r = await cli.result;
  expect(r.code, r.stderr).toBe(0);
}

/** Resolves when the stored access token is due for a refresh by the CLI's one policy. */
async function untilRefreshDue(read: () => Promise<Stored | null>): Promise<void> {
  const s = (await read())!;
  const due = refreshAt({ issuedAt: s.accessTokenIssuedAt, expiresAt: s.accessTokenExpiresAt }) + 50 - Date.now();
  if (due > 0) await new Promise((r) => setTimeout(r, due));
}

const fromKeychain = async (): Promise<Stored | null> => {
  const text = await keyring.readSecret('gprxy', 'default');
  return text ? (JSON.parse(text) as Stored) : null;
};
const tokenFile = () => path.join(keyring.env.XDG_CONFIG_HOME!, 'gprxy', 'tokens', 'default.json');
const fromFile = async (): Promise<Stored | null> => (existsSync(tokenFile()) ? (JSON.parse(await readFile(tokenFile(), 'utf8')) as Stored) : null);

beforeAll(async () => {
  stack = await startTestProvider({ deviceIntervalSeconds: 0.2, accessTokenTtlSeconds: 6 });
  provider = stack.provider;
  keyring = await startKeyringSession();
  const ca = path.join(keyring.home, 'ca.pem');
  await writeFile(ca, provider.caCert);
  env = { ...keyring.env, GPRXY_CA: ca, GPRXY_ISSUER: provider.issuer, GPRXY_CLIENT_ID: DEV_CLI_CLIENT_ID, GPRXY_AUDIENCE: DEV_AUDIENCE };
});

afterAll(async () => {
  await keyring?.close();
  await stack?.close();
});

describe('the provider detects refresh-token reuse', () => {
  it('a reused refresh token is refused and revokes the grant (counted as reuse)', async () => {
    const tokens = await loginAs(provider, 'alice');
    const config = await oidc.discovery(new URL(provider.issuer), DEV_CLI_CLIENT_ID, undefined, oidc.None(), { [oidc.customFetch]: fetchWithCa(provider.caCert) as never });
    const before = reuse();
    const next = await oidc.refreshTokenGrant(config, tokens.refreshToken!);
    expect(next.refresh_token).not.toBe(tokens.refreshToken);
    await expect(oidc.refreshTokenGrant(config, tokens.refreshToken!)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect(reuse()).toBe(before + 1);
    // The whole grant is gone: the rotated token is refused too.
    await expect(oidc.refreshTokenGrant(config, next.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
  });
});

describe('concurrent gprxy processes never log the person out', () => {
  it('4 rounds of 5 concurrent gprxy token runs (keychain, 6-second tokens): all succeed, no reuse, one refresh per round', { timeout: 120_000 }, async () => {
    await login();
    const reuseBefore = reuse();
    const refreshesBefore = refreshes();
    const results: CliResult[] = [];
    for (let round = 0; round < 4; round++) {
      await untilRefreshDue(fromKeychain);
      results.push(...(await Promise.all(Array.from({ length: 5 }, () => runCli(['token'], { env })))));
    }
    const failed = results.filter((r) => r.code !== 0);
    expect(failed.map((r) => r.stderr)).toEqual([]);
    expect(reuse() - reuseBefore).toBe(0);
    // One refresh per round; a round that straddles the next refresh time may do a second.
    expect(refreshes() - refreshesBefore).toBeGreaterThanOrEqual(4);
    expect(refreshes() - refreshesBefore).toBeLessThanOrEqual(8);
    expect(new Set(results.map((r) => r.stdout)).size).toBeLessThanOrEqual(refreshes() - refreshesBefore);
    expect((await runCli(['token'], { env })).code).toBe(0);
  });

  it('--insecure-storage: the same, the unencrypted-storage warning once per process', { timeout: 60_000 }, async () => {
    await login(['--insecure-storage']);
    const reuseBefore = reuse();
    await untilRefreshDue(fromFile);
    const results = await Promise.all(Array.from({ length: 5 }, () => runCli(['token'], { env })));
    for (const r of results) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr.match(/stored unencrypted/g)).toHaveLength(1);
    }
    expect(reuse() - reuseBefore).toBe(0);
  });

  it('a logout while a refresh is in flight waits for it, revokes the newest refresh token and leaves no token file behind', { timeout: 60_000 }, async () => {
    await login(['--insecure-storage']);
    await untilRefreshDue(fromFile);
    provider.delayRefreshResponses(1500);
    try {
      const before = refreshes();
      const token = runCli(['token'], { env });
      await waitUntil(() => refreshes() > before, 20_000);
      // The provider has rotated the refresh token; its answer is still on the way.
      const out = await runCli(['logout'], { env });
      const t = await token;
      expect(out.code, out.stderr).toBe(0);
      expect(out.stdout).toContain('refresh token revoked at the provider; local tokens deleted');
      expect(t.code, t.stderr).toBe(0);
      expect(existsSync(tokenFile()), 'the token file came back after logout').toBe(false);
      expect((await runCli(['token'], { env })).code).toBe(4);
      expect(JSON.parse((await runCli(['status', '--json'], { env })).stdout)).toMatchObject({ loggedIn: false });
    } finally {
      provider.delayRefreshResponses(0);
    }
  });

  it('Ctrl+C during a refresh waits for the rotated refresh token to be saved, exits 130, and the login survives', { timeout: 60_000 }, async () => {
    await login(['--insecure-storage']);
    await untilRefreshDue(fromFile);
    const reuseBefore = reuse();
    provider.delayRefreshResponses(1500);
    try {
      const before = refreshes();
      const token = startCli(['token'], { env });
      await waitUntil(() => refreshes() > before, 20_000);
      token.child.kill('SIGINT');
      const r = await token.result;
      expect(r.code, r.stderr).toBe(130);
      expect(r.stdout).toBe('');
    } finally {
      provider.delayRefreshResponses(0);
    }
    await untilRefreshDue(fromFile);
    const next = await runCli(['token'], { env });
    expect(next.code, next.stderr).toBe(0);
    expect(reuse() - reuseBefore).toBe(0);
  });

  it('a crashed refresher (SIGKILL while holding the lock) does not block others for long', { timeout: 60_000 }, async () => {
    await login(['--insecure-storage']);
    const lockDir = path.join(keyring.env.XDG_CONFIG_HOME!, 'gprxy', 'state', 'locks', 'default.lock');
    await untilRefreshDue(fromFile);
    // Hold the lock as a process that then dies without releasing it.
    const holder = startCli(['token'], { env });
    const { mkdir } = await import('node:fs/promises');
    holder.child.kill('SIGKILL');
    await holder.result;
    await mkdir(lockDir, { recursive: true }); // what a kill in the middle of a refresh leaves behind
    const started = Date.now();
    const r = await runCli(['token'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
