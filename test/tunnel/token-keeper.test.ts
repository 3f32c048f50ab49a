/**
 * TokenKeeper with the real TokenSource and refresh policy over a store that counts its reads. Only the
 * provider is a fake here, because the clock is (fake timers: an hour of a one-hour token in a moment):
 * it rotates refresh tokens and, like oidc-provider and Auth0, answers a reused one with invalid_grant.
 * An earlier version of this test used a source that returned a new token on every call, which hid the
 * keeper re-reading the keychain every 250 ms while the source refused to refresh.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LoginRequiredError, ProviderUnreachableError } from '../../src/oauth/errors.js';
import type { OidcClient, TokenResult } from '../../src/oauth/oidc-client.js';
import { TokenSource } from '../../src/oauth/token-source.js';
import { MemoryTokenStore, type StoredTokens } from '../../src/oauth/token-store.js';
import { TokenKeeper, type KeptToken } from '../../src/tunnel/token-keeper.js';

let now = 1_000_000;

beforeEach(() => {
  now = 1_000_000;
  vi.useFakeTimers({ now });
});
afterEach(() => {
  vi.useRealTimers();
});

async function advance(ms: number): Promise<void> {
  const step = 1000;
  for (let left = ms; left > 0; left -= step) {
    const d = Math.min(step, left);
    now += d;
    await vi.advanceTimersByTimeAsync(d);
  }
}

/** base64url JSON, so decodeClaims() sees a JWT-shaped token. */
function jwt(claims: Record<string, unknown>): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'none' })}.${part(claims)}.sig`;
}

/** A provider with refresh-token rotation and reuse detection, on the fake clock. */
class FakeProvider {
  lifetimeMs = 3_600_000;
  refreshes = 0;
  reuse = 0;
  unreachable = false;
  private valid = new Set<string>();
  private n = 0;

  issue(): TokenResult {
    const refreshToken = `rt-${++this.n}`;
    this.valid.add(refreshToken);
    return {
      accessToken: jwt({ sub: 'alice', email: 'alice@example.com', n: this.n, iat: Math.floor(now / 1000) }),
      refreshToken,
      idToken: undefined,
      scope: undefined,
      issuedAt: now,
      expiresAt: now + this.lifetimeMs,
      claims: { sub: 'alice', email: 'alice@example.com' },
      idClaims: {},
    };
  }

  client(): () => Promise<OidcClient> {
    const refresh = async (rt: string): Promise<TokenResult> => {
      if (this.unreachable) throw new ProviderUnreachableError('cannot reach the OIDC provider: test');
      this.refreshes++;
      if (!this.valid.delete(rt)) {
        this.reuse++;
        throw new LoginRequiredError('the stored login has expired or was revoked: run gprxy login');
      }
      return this.issue();
    };
    return async () => ({ refresh }) as unknown as OidcClient;
  }
}

class CountingStore extends MemoryTokenStore {
  loads = 0;
  override async load(profile: string): Promise<StoredTokens | undefined> {
    this.loads++;
    return super.load(profile);
  }
}

async function setup(lifetimeMs: number) {
  const provider = new FakeProvider();
  provider.lifetimeMs = lifetimeMs;
  const store = new CountingStore();
  const first = provider.issue();
  await store.save('p', { issuer: 'https://idp/', clientId: 'cli', refreshToken: first.refreshToken, accessToken: first.accessToken, accessTokenIssuedAt: now, accessTokenExpiresAt: first.expiresAt });
  const source = new TokenSource({ profile: 'p', mode: { kind: 'stored', store }, client: provider.client(), now: () => now });
  return { provider, store, source };
}

describe('TokenKeeper with the real TokenSource', () => {
  it('one hour of a one-hour token: one refresh at 48 min and a handful of store reads, not one every 250 ms', async () => {
    const { provider, store, source } = await setup(3_600_000);
    const keeper = new TokenKeeper({ source, now: () => now });
    const first = await keeper.getAccessToken();
    for (let i = 0; i < 100; i++) expect(await keeper.getAccessToken()).toBe(first);
    expect(store.loads).toBe(1);
    await advance(48 * 60_000 - 1000);
    expect(provider.refreshes).toBe(0);
    await advance(2000);
    expect(provider.refreshes).toBe(1);
    expect((await keeper.getAccessToken()).accessToken).not.toBe(first.accessToken);
    await advance(12 * 60_000);
    // Initial read, then two reads per refresh (before and under the lock).
    expect(store.loads).toBeLessThanOrEqual(3);
    expect(provider.reuse).toBe(0);
    keeper.close();
  });

  it('a 2-minute token is renewed 60 s before expiry, a 6-second one at half its life, not in a loop', async () => {
    const { provider, store, source } = await setup(120_000);
    const keeper = new TokenKeeper({ source, now: () => now });
    await keeper.getAccessToken();
    await advance(59_000);
    expect(provider.refreshes).toBe(0);
    provider.lifetimeMs = 6000;
    await advance(2000);
    expect(provider.refreshes).toBe(1);
    const loadsBefore = store.loads;
    await advance(30_000);
    // Every 3 s: 10 refreshes in 30 s, two store reads each.
    expect(provider.refreshes - 1).toBeGreaterThanOrEqual(9);
    expect(provider.refreshes - 1).toBeLessThanOrEqual(11);
    expect(store.loads - loadsBefore).toBeLessThanOrEqual(2 * (provider.refreshes - 1) + 2);
    keeper.close();
  });

  it('retries failures with backoff while the current token still serves', async () => {
    const { provider, source } = await setup(100_000);
    const failures: number[] = [];
    const keeper = new TokenKeeper({ source, now: () => now, onRefreshFailed: (_e, retry) => failures.push(retry) });
    const first = await keeper.getAccessToken();
    provider.unreachable = true;
    // 100 s token: 60 s before expiry (40 s) is before half its life, so the renewal starts at 50 s;
    // the source keeps serving the valid token and warns, the keeper backs off 1, 2, 4, 8 s.
    await advance(50_000 + 1000 + 2000 + 4000 + 100);
    expect((await keeper.getAccessToken()).accessToken).toBe(first.accessToken);
    provider.unreachable = false;
    await advance(8000);
    expect((await keeper.getAccessToken()).accessToken).not.toBe(first.accessToken);
    expect(provider.refreshes).toBe(1);
    keeper.close();
  });

  it('gives up with backoff on errors and reports each retry', async () => {
    const failures: number[] = [];
    let calls = 0;
    const source = {
      getAccessToken: async (): Promise<KeptToken> => {
        calls++;
        if (calls > 1) throw new Error('token endpoint answered 500');
        return { accessToken: 't', expiresAt: now + 100_000, refreshAt: now + 50_000, claims: {} };
      },
    };
    const keeper = new TokenKeeper({ source, now: () => now, onRefreshFailed: (_e, retry) => failures.push(retry) });
    await keeper.getAccessToken();
    await advance(50_000 + 1000 + 2000 + 4000 + 100);
    expect(failures).toEqual([1000, 2000, 4000, 8000]);
    keeper.close();
  });

  it('once the login is dead, refuses every connection and says so once', async () => {
    const { store, source } = await setup(3_600_000);
    await store.delete('p');
    let told = 0;
    const keeper = new TokenKeeper({ source, now: () => now, onLoginRequired: () => told++ });
    for (let i = 0; i < 5; i++) await expect(keeper.getAccessToken()).rejects.toMatchObject({ code: 'login_required' });
    expect(told).toBe(1);
    expect(store.loads).toBe(1); // no keychain storm while dead
    keeper.close();
  });

  it('picks up a new login without a restart, and at once after invalidate()', async () => {
    const { provider, store, source } = await setup(3_600_000);
    const saved = (await store.load('p'))!;
    await store.delete('p');
    const keeper = new TokenKeeper({ source, now: () => now });
    await expect(keeper.getAccessToken()).rejects.toMatchObject({ code: 'login_required' });
    await store.save('p', saved);
    await expect(keeper.getAccessToken()).rejects.toMatchObject({ code: 'login_required' });
    await advance(5000);
    expect((await keeper.getAccessToken()).accessToken).toBe(saved.accessToken);
    // Logout elsewhere: invalidate() makes the very next connection see it.
    await store.delete('p');
    keeper.invalidate();
    await expect(keeper.getAccessToken()).rejects.toMatchObject({ code: 'login_required' });
    const again = provider.issue();
    await store.save('p', { ...saved, accessToken: again.accessToken, refreshToken: again.refreshToken, accessTokenIssuedAt: now, accessTokenExpiresAt: again.expiresAt });
    keeper.invalidate();
    expect((await keeper.getAccessToken()).accessToken).toBe(again.accessToken);
    keeper.close();
  });
});
