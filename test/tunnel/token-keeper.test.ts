import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TokenKeeper, type KeptToken } from '../../src/tunnel/token-keeper.js';

let now = 1_000_000;

function token(lifetimeMs: number, n: number): KeptToken {
  return { accessToken: `token-${n}`, expiresAt: now + lifetimeMs, claims: { iat: now / 1000, sub: 'alice' } };
}

beforeEach(() => {
  vi.useFakeTimers({ now });
});
afterEach(() => {
  vi.useRealTimers();
});

async function advance(ms: number): Promise<void> {
  now += ms;
  await vi.advanceTimersByTimeAsync(ms);
}

describe('TokenKeeper', () => {
  it('serves the kept token to every connection and renews in the background at 80 % of a 1 h lifetime', async () => {
    let calls = 0;
    const keeper = new TokenKeeper({ source: { getAccessToken: async () => token(3_600_000, ++calls) }, now: () => now });
    expect((await keeper.getAccessToken()).accessToken).toBe('token-1');
    for (let i = 0; i < 100; i++) await keeper.getAccessToken();
    expect(calls).toBe(1);
    await advance(0.8 * 3_600_000 - 1000);
    expect(calls).toBe(1);
    await advance(2000);
    expect(calls).toBe(2);
    expect((await keeper.getAccessToken()).accessToken).toBe('token-2');
    keeper.close();
  });

  it('renews a 2-minute token 60 s before expiry, and a 5-second one at half its life, not in a loop', async () => {
    let calls = 0;
    let lifetime = 120_000;
    const keeper = new TokenKeeper({ source: { getAccessToken: async () => token(lifetime, ++calls) }, now: () => now });
    await keeper.getAccessToken();
    await advance(59_000);
    expect(calls).toBe(1);
    lifetime = 5000;
    await advance(2000);
    expect(calls).toBe(2);
    await advance(10_000);
    expect(calls).toBeGreaterThanOrEqual(5);
    expect(calls).toBeLessThanOrEqual(6);
    keeper.close();
  });

  it('retries failures with backoff while the current token still serves', async () => {
    let calls = 0;
    let fail = false;
    const failures: number[] = [];
    const keeper = new TokenKeeper({
      source: {
        getAccessToken: async () => {
          calls++;
          if (fail) throw new Error('provider unreachable');
          return token(100_000, calls);
        },
      },
      now: () => now,
      onRefreshFailed: (_e, retry) => failures.push(retry),
    });
    await keeper.getAccessToken();
    fail = true;
    // 100 s token: 60 s before expiry (40 s) is before half its life, so the renewal starts at 50 s.
    await advance(50_000);
    await advance(1000);
    await advance(2000);
    await advance(4000);
    expect(failures).toEqual([1000, 2000, 4000, 8000]);
    expect((await keeper.getAccessToken()).accessToken).toBe('token-1');
    fail = false;
    await advance(8000);
    expect((await keeper.getAccessToken()).accessToken).toMatch(/^token-/);
    expect((await keeper.getAccessToken()).accessToken).not.toBe('token-1');
    keeper.close();
  });

  it('once the login is dead, refuses every connection and says so once', async () => {
    const dead = Object.assign(new Error('refresh token revoked: run gprxy login'), { code: 'login_required' });
    let told = 0;
    const keeper = new TokenKeeper({ source: { getAccessToken: async () => Promise.reject(dead) }, now: () => now, onLoginRequired: () => told++ });
    for (let i = 0; i < 5; i++) await expect(keeper.getAccessToken()).rejects.toMatchObject({ code: 'login_required' });
    expect(told).toBe(1);
    keeper.close();
  });

  it('picks up a new login without a restart', async () => {
    let loggedIn = false;
    let calls = 0;
    const dead = Object.assign(new Error('run gprxy login'), { code: 'login_required' });
    const keeper = new TokenKeeper({
      source: { getAccessToken: async () => (calls++, loggedIn ? token(3_600_000, calls) : Promise.reject(dead)) },
      now: () => now,
    });
    await expect(keeper.getAccessToken()).rejects.toMatchObject({ code: 'login_required' });
    loggedIn = true;
    await expect(keeper.getAccessToken()).rejects.toMatchObject({ code: 'login_required' });
    expect(calls).toBe(1); // no provider storm while dead
    await advance(5000);
    expect((await keeper.getAccessToken()).accessToken).toMatch(/^token-/);
    keeper.close();
  });
});
