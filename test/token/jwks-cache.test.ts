import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { discoveryUrl, JwksCache, jwksCacheFileName, type JwksCacheOptions } from '../../src/token/jwks-cache.js';
import { TokenVerifier } from '../../src/token/verifier.js';
import { FakeIdp, makeKey, refused, type SigningKey } from './fake-idp.js';

describe('JwksCache', () => {
  let idp: FakeIdp;
  let initialKey: SigningKey;
  let dir: string;
  const clock = { t: Date.parse('2026-11-25T16:00:00Z') };
  const now = (): number => clock.t;
  const closers: Array<{ close(): void }> = [];

  function cache(opts: Partial<JwksCacheOptions> = {}, provider: FakeIdp = idp): JwksCache {
    const c = new JwksCache({ issuer: provider.issuer, ttlMs: 3_600_000, now, ...opts });
    closers.push(c);
    return c;
  }

  function verifier(opts: Partial<ConstructorParameters<typeof TokenVerifier>[0]> = {}): TokenVerifier {
    const v = new TokenVerifier({ providers: [idp.providerConfig()], jwks: { cacheTtlMs: 3_600_000 }, now, ...opts });
    closers.push(v);
    return v;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gprxy-jwks-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  beforeAll(async () => {
    idp = await FakeIdp.start();
    initialKey = idp.key;
  });
  afterAll(async () => {
    await idp.close();
  });
  afterEach(async () => {
    for (const c of closers.splice(0)) c.close();
    idp.mode = 'ok';
    idp.gate = undefined;
    idp.extraJwks = [];
    idp.keys = [initialKey];
    clock.t = Date.parse('2026-11-25T16:00:00Z');
  });

  it('discovery URL honours a trailing slash', () => {
    expect(discoveryUrl('https://t.us.auth0.com/')).toBe('https://t.us.auth0.com/.well-known/openid-configuration');
    expect(discoveryUrl('https://idp.example.com/realms/x')).toBe('https://idp.example.com/realms/x/.well-known/openid-configuration');
  });

  it('discovers the jwks_uri, then returns the key for a kid', async () => {
    const before = { ...idp.counts };
    const c = cache();
    await c.start();
    expect(idp.counts.discovery - before.discovery).toBe(1);
    expect(idp.counts.jwks - before.jwks).toBe(1);
    const key = await c.getKey({ kid: idp.key.kid, alg: 'RS256' });
    expect(key.type).toBe('public');
    expect(c.stats()).toEqual({ keys: 1, fetchedAt: clock.t, fetches: 1, failures: 0, nextRefreshAt: clock.t + 0.8 * 3_600_000, kids: [idp.key.kid] });
    // No kid in the header is fine while the provider publishes one key for the algorithm.
    await expect(c.getKey({ alg: 'RS256' })).resolves.toBe(key);
  });

  it('uses a configured jwks_uri without discovery', async () => {
    const before = idp.counts.discovery;
    const c = cache({ jwksUri: idp.jwksUri });
    await c.start();
    expect(idp.counts.discovery).toBe(before);
    expect(c.stats().keys).toBe(1);
  });

  it('refuses a discovery document that names another issuer', async () => {
    const c = cache({ issuer: idp.issuer.replace(/\/$/, '') });
    const e = await refused(c.start(), 'jwks_unavailable');
    expect(e.message).toContain('names issuer');
    expect(c.stats().lastErrorCode).toBe('discovery_issuer_mismatch');
  });

  it('uses only signature keys: use=enc, private and symmetric entries are ignored', async () => {
    const enc = await makeKey('RS256', 'enc-1');
    const withPrivate = await makeKey('RS256', 'priv-1');
    idp.extraJwks = [
      { ...enc.publicJwk, use: 'enc' },
      { ...withPrivate.publicJwk, d: 'AAAA' },
      { kty: 'oct', kid: 'hmac-1', k: 'c2VjcmV0' },
      { kty: 'RSA', kid: 'ops-1', key_ops: ['encrypt'], n: 'AQAB', e: 'AQAB' },
    ];
    const c = cache({ jwksUri: idp.jwksUri });
    await c.start();
    expect(c.stats().keys).toBe(1);
    for (const kid of ['enc-1', 'priv-1', 'hmac-1', 'ops-1']) await refused(c.getKey({ kid, alg: 'RS256' }), 'token_unknown_kid');
  });

  it('key rotation: a new kid is accepted after a refetch, without a restart', async () => {
    const v = verifier();
    await v.start();
    await v.verify(await idp.sign(now()));
    const jwksBefore = idp.counts.jwks;
    const rotated = await idp.rotate();
    clock.t += 31_000; // past the unknown-kid cooldown
    const verified = await v.verify(await idp.sign(now(), {}, { key: rotated }));
    expect(verified.issuer).toBe(idp.issuer);
    expect(idp.counts.jwks).toBe(jwksBefore + 1);
  });

  it('unknown kid refetches are rate limited by the cooldown', async () => {
    const c = cache({ jwksUri: idp.jwksUri });
    await c.start();
    const start = idp.counts.jwks;
    // Within the cooldown of the initial fetch: no refetch at all.
    for (let i = 0; i < 5; i++) await refused(c.getKey({ kid: `random-${i}`, alg: 'RS256' }), 'token_unknown_kid');
    expect(idp.counts.jwks).toBe(start);
    clock.t += 30_000;
    for (let i = 0; i < 5; i++) await refused(c.getKey({ kid: `random-b${i}`, alg: 'RS256' }), 'token_unknown_kid');
    expect(idp.counts.jwks).toBe(start + 1);
    clock.t += 29_000;
    await refused(c.getKey({ kid: 'random-c', alg: 'RS256' }), 'token_unknown_kid');
    expect(idp.counts.jwks).toBe(start + 1);
    clock.t += 1_000;
    await refused(c.getKey({ kid: 'random-d', alg: 'RS256' }), 'token_unknown_kid');
    expect(idp.counts.jwks).toBe(start + 2);
    expect(c.stats().fetches).toBe(3);
  });

  it('a JWKS endpoint answering 500 leaves the known keys in use', async () => {
    const v = verifier();
    await v.start();
    const known = await idp.sign(now(), { jti: 'a' });
    idp.mode = 'error';
    clock.t += 31_000;
    const before = idp.counts.jwks;
    // An unknown kid forces a refetch, which fails: still unknown, and the old keys are untouched.
    await refused(v.verify(await idp.sign(now(), {}, { kid: 'rotated?' })), 'token_unknown_kid');
    expect(idp.counts.jwks).toBe(before + 1);
    const stats = v.jwksStats()[idp.issuer]!;
    expect(stats.lastError).toContain('HTTP 500');
    expect(stats.keys).toBe(1);
    await expect(v.verify(known)).resolves.toBeDefined();
    await expect(v.verify(await idp.sign(now(), { jti: 'b' }))).resolves.toBeDefined();
  });

  it('fetches are single-flight under 50 concurrent verifies (cold start)', async () => {
    const v = verifier();
    const tokens = await Promise.all(Array.from({ length: 50 }, (_, i) => idp.sign(now(), { jti: `c${i}` })));
    const before = { ...idp.counts };
    let release!: () => void;
    idp.gate = new Promise<void>((resolve) => (release = resolve));
    const all = Promise.all(tokens.map((t) => v.verify(t)));
    await idp.waitFor('jwks', before.jwks + 1);
    release();
    const results = await all;
    expect(results).toHaveLength(50);
    expect(idp.counts.discovery - before.discovery).toBe(1);
    expect(idp.counts.jwks - before.jwks).toBe(1);
    expect(v.stats().verifications).toBe(50);
  });

  it('fetches are single-flight under 50 concurrent verifies of a rotated key', async () => {
    const v = verifier();
    await v.start();
    const rotated = await idp.rotate();
    clock.t += 31_000;
    const tokens = await Promise.all(Array.from({ length: 50 }, (_, i) => idp.sign(now(), { jti: `r${i}` }, { key: rotated })));
    const before = idp.counts.jwks;
    let release!: () => void;
    idp.gate = new Promise<void>((resolve) => (release = resolve));
    const all = Promise.all(tokens.map((t) => v.verify(t)));
    await idp.waitFor('jwks', before + 1);
    release();
    await expect(all).resolves.toHaveLength(50);
    expect(idp.counts.jwks).toBe(before + 1);
  });

  describe('persistence', () => {
    it('writes the JWKS atomically (0600 file in a 0700 dir) and a restart while the provider is down still verifies', async () => {
      const down = await FakeIdp.start();
      const cacheDir = join(dir, 'nested', 'jwks');
      try {
        const first = cache({ cacheDir }, down);
        await first.start();
        first.close();
        const file = join(cacheDir, jwksCacheFileName(down.issuer));
        expect(jwksCacheFileName(down.issuer)).toMatch(/^[0-9a-f]{16}\.json$/);
        expect((await stat(file)).mode & 0o777).toBe(0o600);
        expect((await stat(cacheDir)).mode & 0o777).toBe(0o700);
        expect(await readdir(cacheDir)).toEqual([jwksCacheFileName(down.issuer)]); // no tmp files left
        const saved = JSON.parse(await readFile(file, 'utf8')) as { issuer: string; fetchedAt: number; jwks: { keys: unknown[] } };
        expect(saved).toMatchObject({ issuer: down.issuer, fetchedAt: clock.t });
        expect(saved.jwks.keys).toHaveLength(1);
      } finally {
        await down.close();
      }
      const token = await down.sign(now());

      // The provider is gone (connection refused): the persisted keys serve.
      clock.t += 60_000;
      const restarted = cache({ cacheDir }, down);
      await restarted.start();
      // start() returns at once with the persisted keys; the refetch runs (and fails) in the background.
      expect(restarted.stats()).toMatchObject({ keys: 1, fetchedAt: clock.t - 60_000 });
      await vi.waitFor(() => expect(restarted.stats().lastError).toMatch(/failed/));
      await expect(restarted.getKey({ kid: down.key.kid, alg: 'RS256' })).resolves.toBeDefined();

      const v = new TokenVerifier({ providers: [down.providerConfig()], jwks: { cacheTtlMs: 3_600_000, cacheDir }, now });
      closers.push(v);
      await v.start();
      await expect(v.verify(token)).resolves.toMatchObject({ issuer: down.issuer });

      // Without the persisted keys the same outage is jwks_unavailable.
      const e = await refused(cache({}, down).start(), 'jwks_unavailable');
      expect(e.message).toContain(`the signing keys of ${down.issuer} could not be fetched`);
    });

    it('ignores a persisted file of another issuer', async () => {
      const cacheDir = join(dir, 'foreign');
      const first = cache({ cacheDir });
      await first.start();
      first.close();
      const { writeFile } = await import('node:fs/promises');
      const file = join(cacheDir, jwksCacheFileName('https://elsewhere.example.com/'));
      await writeFile(file, await readFile(join(cacheDir, jwksCacheFileName(idp.issuer))));
      const c = new JwksCache({ issuer: 'https://elsewhere.example.com/', jwksUri: 'http://127.0.0.1:1/jwks', ttlMs: 1000, cacheDir, now, fetchTimeoutMs: 2000 });
      closers.push(c);
      await refused(c.start(), 'jwks_unavailable');
      expect(c.stats().keys).toBe(0);
    });
  });

  describe('background refresh and failures (real timers)', () => {
    it('refreshes at 80 % of the TTL and picks up rotated keys without an unknown-kid refetch', async () => {
      const c = new JwksCache({ issuer: idp.issuer, jwksUri: idp.jwksUri, ttlMs: 200, unknownKidCooldownMs: 3_600_000 });
      closers.push(c);
      const rotated = await makeKey(); // generated first: RSA key generation takes longer than the TTL here
      const old = idp.key.kid;
      const requests: number[] = [];
      const onRequest = (kind: string): void => {
        if (kind === 'jwks') requests.push(Date.now());
      };
      idp.on('request', onRequest);
      try {
        const before = idp.counts.jwks;
        await c.start();
        const firstFetchedAt = c.stats().fetchedAt!;
        idp.keys = [rotated];
        await idp.waitFor('jwks', before + 2);
        const delay = requests[1]! - firstFetchedAt;
        expect(delay).toBeGreaterThanOrEqual(155); // 80 % of 200 ms, less timer granularity
        expect(delay).toBeLessThan(1_000);
        await vi.waitFor(() => expect(c.stats().fetches).toBeGreaterThanOrEqual(2), { interval: 5 });
        await expect(c.getKey({ kid: rotated.kid, alg: 'RS256' })).resolves.toBeDefined();
        await refused(c.getKey({ kid: old, alg: 'RS256' }), 'token_unknown_kid');
      } finally {
        idp.off('request', onRequest);
      }
    });

    it('backs off exponentially while the provider fails, keeps the last-known-good keys, and recovers', async () => {
      const c = new JwksCache({
        issuer: idp.issuer,
        jwksUri: idp.jwksUri,
        ttlMs: 100,
        backoff: { initialMs: 40, maxMs: 160 },
        random: () => 0.999, // jitter at its top: delays ≈ 40, 80, 160, 160
      });
      closers.push(c);
      await c.start();
      const known = idp.key.kid;
      const times: number[] = [];
      const onRequest = (kind: string): void => {
        if (kind === 'jwks') times.push(Date.now());
      };
      idp.on('request', onRequest);
      try {
        idp.mode = 'error';
        const base = idp.counts.jwks;
        await idp.waitFor('jwks', base + 4); // the 80 % refresh, then three retries
        const gaps = times.slice(1, 4).map((t, i) => t - times[i]!);
        expect(gaps[0]).toBeGreaterThanOrEqual(35);
        expect(gaps[1]).toBeGreaterThanOrEqual(75);
        expect(gaps[2]).toBeGreaterThanOrEqual(150);
        await vi.waitFor(() => expect(c.stats().lastError).toContain('HTTP 500'), { interval: 5 });
        expect(c.stats().lastErrorCode).toBe('http_status');
        await expect(c.getKey({ kid: known, alg: 'RS256' })).resolves.toBeDefined();
        idp.mode = 'ok';
        await vi.waitFor(() => expect(c.stats().lastError).toBeUndefined(), { interval: 10 });
        expect(c.stats().keys).toBe(1);
      } finally {
        idp.off('request', onRequest);
      }
    });

    it('a stalled endpoint times out; without keys, callers get jwks_unavailable at once during the backoff', async () => {
      idp.mode = 'stall';
      const c = new JwksCache({ issuer: idp.issuer, jwksUri: idp.jwksUri, ttlMs: 60_000, fetchTimeoutMs: 150, backoff: { initialMs: 60_000, maxMs: 60_000 } });
      closers.push(c);
      const e = await refused(c.start(), 'jwks_unavailable');
      expect(e.message).toContain('timed out after 150 ms');
      expect(c.stats().lastErrorCode).toBe('timeout');
      expect(e.message).toMatch(/retrying in \d+ s/);
      const before = idp.counts.jwks;
      await refused(c.getKey({ kid: 'x', alg: 'RS256' }), 'jwks_unavailable');
      expect(idp.counts.jwks).toBe(before);
    });

    it('close() aborts a fetch in flight and later calls are refused', async () => {
      idp.mode = 'stall';
      const c = new JwksCache({ issuer: idp.issuer, jwksUri: idp.jwksUri, ttlMs: 60_000 });
      const before = idp.counts.jwks;
      const starting = c.start();
      await idp.waitFor('jwks', before + 1);
      c.close();
      await refused(starting, 'jwks_unavailable');
      await refused(c.getKey({ kid: 'x', alg: 'RS256' }), 'jwks_unavailable');
    });
  });

  it('reports jwks_unavailable when nothing was ever loaded, naming the cause', async () => {
    idp.mode = 'error';
    const v = verifier({ backoff: { initialMs: 60_000, maxMs: 60_000 } });
    const token = await idp.sign(now());
    const e = await refused(v.verify(token), 'jwks_unavailable', token);
    expect(e.message).toContain('HTTP 500');
    await refused(v.start(), 'jwks_unavailable');
  });
});
