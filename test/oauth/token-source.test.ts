import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_AUDIENCE, DEV_CLI_CLIENT_ID, startDevProvider, type DevProvider } from '../../src/demo/oidc-provider.js';
import { fetchWithCa } from '../../src/net/ca-fetch.js';
import { OidcClient } from '../../src/oauth/oidc-client.js';
import { refreshAt } from '../../src/shared/refresh-policy.js';
import { TokenSource } from '../../src/oauth/token-source.js';
import { MemoryTokenStore, type StoredTokens } from '../../src/oauth/token-store.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';

const SCOPES = 'openid profile email offline_access';
let stack: TestProvider;
let provider: DevProvider;

const person = (p: DevProvider = provider) => () =>
  OidcClient.discover({ issuer: p.issuer, clientId: DEV_CLI_CLIENT_ID, audience: DEV_AUDIENCE, scopes: SCOPES, fetch: fetchWithCa(p.caCert) });

/** Logs in as `username` through the device flow and returns what `gprxy login` would store. */
async function loggedIn(username: string, p: DevProvider = provider): Promise<StoredTokens> {
  const client = await person(p)();
  const device = await client.startDeviceAuthorization();
  const approving = p.approveDevice(device.userCode, username);
  const result = await client.pollDeviceAuthorization(device, { intervalSeconds: 0.05 });
  await approving;
  return {
    issuer: p.issuer,
    clientId: DEV_CLI_CLIENT_ID,
    refreshToken: result.refreshToken,
    accessToken: result.accessToken,
    accessTokenIssuedAt: result.issuedAt,
    accessTokenExpiresAt: result.expiresAt,
  };
}

const refreshes = () => provider.counters().tokenRequests.refresh_token ?? 0;

beforeAll(async () => {
  stack = await startTestProvider();
  provider = stack.provider;
});
afterAll(async () => {
  await stack?.close();
});

describe('the refresh policy (src/shared/refresh-policy.ts), as the source applies it', () => {
  const at = (nowMs: number) => new TokenSource({ profile: 'p', mode: { kind: 'static', token: 'x' }, now: () => nowMs });

  it('a 5-minute token: 60 s before expiry', () => {
    const token = { issuedAt: 0, expiresAt: 300_000 };
    expect(refreshAt(token)).toBe(240_000);
    expect(at(239_999).needsRefresh(token)).toBe(false);
    expect(at(240_000).needsRefresh(token)).toBe(true);
  });

  it('a one-hour token: at 80 % of its lifetime (48 min)', () => {
    const token = { issuedAt: 0, expiresAt: 3_600_000 };
    expect(refreshAt(token)).toBe(2_880_000);
    expect(at(2_879_000).needsRefresh(token)).toBe(false);
    expect(at(2_880_000).needsRefresh(token)).toBe(true);
  });

  it('a 6-second token: at half its life, not at once', () => {
    expect(refreshAt({ issuedAt: 0, expiresAt: 6000 })).toBe(3000);
    expect(at(2999).needsRefresh({ issuedAt: 0, expiresAt: 6000 })).toBe(false);
  });

  it('always refreshes a token it knows nothing about; never one without expiry', () => {
    expect(at(0).needsRefresh(undefined)).toBe(true);
    expect(at(0).needsRefresh({})).toBe(true);
    expect(refreshAt({ expiresAt: Number.POSITIVE_INFINITY })).toBe(Number.POSITIVE_INFINITY);
    expect(refreshAt({ expiresAt: 100_000 })).toBe(40_000); // issue time unknown: 60 s before expiry
  });
});

describe('TokenSource with stored tokens', () => {
  it('returns a fresh stored token without asking the provider', async () => {
    const store = new MemoryTokenStore();
    const record = await loggedIn('alice');
    await store.save('p', record);
    const before = refreshes();
    let discovered = 0;
    const source = new TokenSource({ profile: 'p', mode: { kind: 'stored', store }, client: () => (discovered++, person()()) });
    const token = await source.getAccessToken();
    expect(token.accessToken).toBe(record.accessToken);
    expect(token.claims.sub).toBe('auth0|alice0001');
    expect(refreshes()).toBe(before);
    expect(discovered).toBe(0);
  });

  it('refreshes once for many concurrent callers and stores the rotated refresh token', async () => {
    const store = new MemoryTokenStore();
    const record = await loggedIn('alice');
    await store.save('p', record);
    const later = record.accessTokenExpiresAt! - 30_000; // 30 s left: inside the 60 s margin
    const source = new TokenSource({ profile: 'p', mode: { kind: 'stored', store }, client: person(), now: () => later });
    const before = refreshes();
    const tokens = await Promise.all(Array.from({ length: 8 }, () => source.getAccessToken()));
    expect(refreshes()).toBe(before + 1);
    expect(new Set(tokens.map((t) => t.accessToken)).size).toBe(1);
    expect(tokens[0]!.accessToken).not.toBe(record.accessToken);
    const saved = (await store.load('p'))!;
    expect(saved.accessToken).toBe(tokens[0]!.accessToken);
    expect(saved.refreshToken).toBeTruthy();
    expect(saved.refreshToken).not.toBe(record.refreshToken);
    expect(saved.accessTokenIssuedAt).toBe(later);
  });

  it('a revoked refresh token is login_required with "run gprxy login"', async () => {
    const store = new MemoryTokenStore();
    const record = await loggedIn('bob');
    await (await person()()).revoke(record.refreshToken!);
    await store.save('p', { ...record, accessTokenExpiresAt: Date.now() - 1 });
    const source = new TokenSource({ profile: 'p', mode: { kind: 'stored', store }, client: person() });
    await expect(source.getAccessToken()).rejects.toMatchObject({ code: 'login_required', message: expect.stringMatching(/\(profile p\) has expired or was revoked: run gprxy login --profile p$/) });
  });

  it('nothing stored, or a login for another issuer, is login_required', async () => {
    const store = new MemoryTokenStore();
    const source = new TokenSource({ profile: 'work', mode: { kind: 'stored', store }, client: person() });
    await expect(source.getAccessToken()).rejects.toMatchObject({ code: 'login_required', message: 'not logged in (profile work): run gprxy login --profile work' });
    await store.save('work', { issuer: 'https://other.example/', clientId: DEV_CLI_CLIENT_ID, refreshToken: 'r' });
    const expecting = new TokenSource({ profile: 'work', mode: { kind: 'stored', store }, client: person(), expected: { issuer: provider.issuer, clientId: DEV_CLI_CLIENT_ID } });
    await expect(expecting.getAccessToken()).rejects.toMatchObject({ code: 'login_required' });
  });

  it('keeps using a still-valid token when the provider is unreachable, and says so', async () => {
    const other = await startDevProvider({ ca: stack.ca });
    const record = await loggedIn('alice', other);
    const client = await person(other)();
    await other.close();
    const store = new MemoryTokenStore();
    await store.save('p', record);
    const warnings: string[] = [];
    const nearEnd = record.accessTokenExpiresAt! - 10_000;
    const source = new TokenSource({ profile: 'p', mode: { kind: 'stored', store }, client: async () => client, now: () => nearEnd, logger: { warn: (m) => warnings.push(m) } });
    expect((await source.getAccessToken()).accessToken).toBe(record.accessToken);
    expect(warnings.join()).toMatch(/could not refresh the access token \(cannot reach the OIDC provider/);

    const expired = new TokenSource({ profile: 'p', mode: { kind: 'stored', store }, client: async () => client, now: () => record.accessTokenExpiresAt! + 1 });
    await expect(expired.getAccessToken()).rejects.toMatchObject({ code: 'provider_unreachable' });
  });
});

describe('TokenSource and other processes', () => {
  it('on invalid_grant it reads the store once more and uses the newer token another process saved', async () => {
    const store = new MemoryTokenStore();
    const record = await loggedIn('alice');
    await store.save('p', record);
    const due = record.accessTokenExpiresAt! - 30_000;
    // Process A refreshes (rotating the refresh token) and saves.
    const a = await new TokenSource({ profile: 'p', mode: { kind: 'stored', store }, client: person(), now: () => due }).getAccessToken();
    // Process B read the store before A saved (e.g. an older gprxy that takes no lock): its first reads are stale.
    let stale = 2;
    const staleStore = { kind: 'memory' as const, load: async (p: string) => (stale-- > 0 ? record : store.load(p)), save: store.save.bind(store), delete: store.delete.bind(store) };
    const b = await new TokenSource({ profile: 'p', mode: { kind: 'stored', store: staleStore }, client: person(), now: () => due }).getAccessToken();
    expect(b.accessToken).toBe(a.accessToken);
  });
});

describe('TokenSource CI modes', () => {
  it('client credentials: fetched once, kept in memory, fetched again near expiry', async () => {
    let now = Date.now();
    const ci = () => OidcClient.discover({ issuer: provider.issuer, clientId: provider.ciClient.clientId, clientSecret: provider.ciClient.clientSecret, audience: DEV_AUDIENCE, scopes: SCOPES, fetch: fetchWithCa(provider.caCert) });
    const source = new TokenSource({ profile: 'ci', mode: { kind: 'client_credentials' }, client: ci, now: () => now });
    const before = provider.counters().tokenRequests.client_credentials ?? 0;
    const a = await source.getAccessToken();
    const b = await source.getAccessToken();
    expect(b.accessToken).toBe(a.accessToken);
    expect(a.claims.sub).toBe('ci-bot');
    expect(provider.counters().tokenRequests.client_credentials).toBe(before + 1);
    now = a.expiresAt - 30_000;
    const c = await source.getAccessToken();
    expect(c.accessToken).not.toBe(a.accessToken);
    expect(provider.counters().tokenRequests.client_credentials).toBe(before + 2);
  });

  it('GPRXY_TOKEN: used as is, expiry from its exp claim', async () => {
    const jwt = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4IiwiZXhwIjoyMDAwMDAwMDAwfQ.';
    expect(await new TokenSource({ profile: 'p', mode: { kind: 'static', token: jwt } }).getAccessToken()).toEqual({ accessToken: jwt, expiresAt: 2_000_000_000_000, refreshAt: Number.POSITIVE_INFINITY, claims: { sub: 'x', exp: 2_000_000_000 } });
    const opaque = await new TokenSource({ profile: 'p', mode: { kind: 'static', token: 'opaque' } }).getAccessToken();
    expect(opaque.expiresAt).toBe(Number.POSITIVE_INFINITY);
  });
});
