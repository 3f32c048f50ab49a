import { exportJWK, exportSPKI, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TokenError } from '../../src/token/errors.js';
import { MAX_TOKEN_BYTES, TokenVerifier, tokenScopes } from '../../src/token/verifier.js';
import { AUDIENCE, b64url, FakeIdp, makeKey, refused } from './fake-idp.js';

describe('TokenVerifier', () => {
  let idp: FakeIdp;
  let other: FakeIdp;
  const clock = { t: Date.parse('2026-11-25T16:00:00Z') };
  const now = (): number => clock.t;
  const verifiers: TokenVerifier[] = [];

  function verifier(over: Partial<ConstructorParameters<typeof TokenVerifier>[0]> = {}): TokenVerifier {
    const v = new TokenVerifier({
      providers: [idp.providerConfig(), other.providerConfig({ algorithms: ['RS256', 'ES256'] })],
      jwks: { cacheTtlMs: 3_600_000 },
      now,
      ...over,
    });
    verifiers.push(v);
    return v;
  }

  beforeAll(async () => {
    idp = await FakeIdp.start();
    other = await FakeIdp.start({ issuerPath: '/tenant-b' });
  });
  afterAll(async () => {
    await Promise.all([idp.close(), other.close()]);
  });
  afterEach(() => {
    for (const v of verifiers.splice(0)) v.close();
    clock.t = Date.parse('2026-11-25T16:00:00Z');
  });

  it('accepts a valid token and reports its identity fields', async () => {
    const v = verifier();
    await v.start();
    const token = await idp.sign(now(), { jti: 'j-1' });
    const verified = await v.verify(token);
    expect(verified.issuer).toBe(idp.issuer);
    expect(verified.provider.issuer).toBe(idp.issuer);
    expect(verified.claims.sub).toBe('auth0|alice');
    expect(verified.expiresAt).toBe((Math.floor(now() / 1000) + 3600) * 1000);
    expect(verified.tokenId).toMatch(/^[0-9a-f]{12}$/);
    expect(verified.jti).toBe('j-1');
    expect(Object.isFrozen(verified.claims)).toBe(true);
  });

  it('accepts a token of the second provider (issuer without a trailing slash, discovery under its path)', async () => {
    const v = verifier();
    await v.start();
    const verified = await v.verify(await other.sign(now()));
    expect(verified.issuer).toBe(other.issuer);
    expect(other.paths).toContain('/tenant-b/.well-known/openid-configuration');
    expect(idp.paths).toContain('/.well-known/openid-configuration');
  });

  describe('hostile tokens', () => {
    let v: TokenVerifier;
    beforeAll(async () => {
      v = new TokenVerifier({
        providers: [idp.providerConfig(), other.providerConfig({ algorithms: ['RS256', 'ES256'] })],
        jwks: { cacheTtlMs: 3_600_000 },
        now,
      });
      await v.start();
    });
    afterAll(() => v.close());

    it('expired beyond the 30 s leeway → token_expired, with the time and what to do', async () => {
      const token = await idp.sign(now(), { exp: Math.floor(now() / 1000) - 31 });
      const e = await refused(v.verify(token), 'token_expired', token);
      expect(e.message).toMatch(/^token expired at 2026-11-25T15:59:29Z; run gprxy login \(or gprxy token\)/);
    });

    it('expired within the leeway → accepted', async () => {
      const token = await idp.sign(now(), { exp: Math.floor(now() / 1000) - 20 });
      await expect(v.verify(token)).resolves.toMatchObject({ issuer: idp.issuer });
    });

    it('nbf beyond the leeway → token_not_yet_valid', async () => {
      const token = await idp.sign(now(), { nbf: Math.floor(now() / 1000) + 120 });
      const e = await refused(v.verify(token), 'token_not_yet_valid', token);
      expect(e.message).toContain('not valid before 2026-11-25T16:02:00Z');
    });

    it('nbf within the leeway → accepted', async () => {
      const token = await idp.sign(now(), { nbf: Math.floor(now() / 1000) + 20 });
      await expect(v.verify(token)).resolves.toBeDefined();
    });

    it('an issuer that is not configured → token_issuer, naming the configured ones', async () => {
      const token = await idp.sign(now(), { iss: 'https://evil.example.com/' });
      const e = await refused(v.verify(token), 'token_issuer', token);
      expect(e.message).toContain('token issuer "https://evil.example.com/" is not a configured provider (configured: ');
      expect(e.message).toContain(idp.issuer);
    });

    it('an issuer differing by a trailing slash → token_issuer with a hint', async () => {
      const token = await idp.sign(now(), { iss: idp.issuer.replace(/\/$/, '') });
      const e = await refused(v.verify(token), 'token_issuer', token);
      expect(e.message).toContain('trailing slash');
    });

    it('no iss claim → token_issuer', async () => {
      const token = await idp.sign(now(), { iss: undefined });
      await refused(v.verify(token), 'token_issuer', token);
    });

    it('a token of one provider claiming to be the other (kid unknown there) → token_unknown_kid', async () => {
      const token = await idp.sign(now(), { iss: other.issuer });
      await refused(v.verify(token), 'token_unknown_kid', token);
    });

    it('wrong audience → token_audience "token audience is X, expected Y"', async () => {
      const token = await idp.sign(now(), { aud: 'https://other-api.example.com' });
      const e = await refused(v.verify(token), 'token_audience', token);
      expect(e.message).toContain(`token audience is "https://other-api.example.com", expected "${AUDIENCE}"`);
    });

    it('an audience array containing ours → accepted', async () => {
      const token = await idp.sign(now(), { aud: ['https://other', AUDIENCE] });
      await expect(v.verify(token)).resolves.toBeDefined();
    });

    it('no audience → token_audience', async () => {
      const token = await idp.sign(now(), { aud: undefined });
      const e = await refused(v.verify(token), 'token_audience', token);
      expect(e.message).toContain('token audience is missing');
    });

    it('alg none (hand-crafted unsecured JWT, empty signature) → token_algorithm', async () => {
      const payload = { iss: idp.issuer, aud: AUDIENCE, sub: 'x', exp: Math.floor(now() / 1000) + 600 };
      const token = `${b64url({ alg: 'none' })}.${b64url(payload)}.`;
      const e = await refused(v.verify(token), 'token_algorithm', token);
      expect(e.message).toBe('algorithm none (an unsigned token) is never accepted');
    });

    it('an RS256 header with an empty signature → token_malformed', async () => {
      const token = await idp.sign(now());
      const unsigned = `${token.split('.').slice(0, 2).join('.')}.`;
      await refused(v.verify(unsigned), 'token_malformed', unsigned);
    });

    it('alg none with a dummy signature → token_algorithm', async () => {
      const payload = { iss: idp.issuer, aud: AUDIENCE, sub: 'x', exp: Math.floor(now() / 1000) + 600 };
      const token = `${b64url({ alg: 'none', kid: idp.key.kid })}.${b64url(payload)}.${b64url('sig')}`;
      const e = await refused(v.verify(token), 'token_algorithm', token);
      expect(e.message).toContain('none');
    });

    it('HS256 with the public key PEM as the HMAC secret → token_algorithm', async () => {
      const pem = await exportSPKI(idp.key.publicKey);
      const token = await new SignJWT({ iss: idp.issuer, aud: AUDIENCE, sub: 'mallory', email: 'alice@example.com' })
        .setProtectedHeader({ alg: 'HS256', kid: idp.key.kid })
        .setExpirationTime('1h')
        .sign(new TextEncoder().encode(pem));
      const e = await refused(v.verify(token), 'token_algorithm', token);
      expect(e.message).toBe('algorithm "HS256" is not allowed (allowed: RS256)');
    });

    it('HS256 with the public JWK JSON as the HMAC secret → token_algorithm', async () => {
      const jwk = JSON.stringify(await exportJWK(idp.key.publicKey));
      const token = await new SignJWT({ iss: idp.issuer, aud: AUDIENCE, sub: 'mallory' })
        .setProtectedHeader({ alg: 'HS256', kid: idp.key.kid })
        .setExpirationTime('1h')
        .sign(new TextEncoder().encode(jwk));
      await refused(v.verify(token), 'token_algorithm', token);
    });

    it('HS256 is refused even if a provider config lists it', async () => {
      const w = verifier({ providers: [idp.providerConfig({ algorithms: ['HS256', 'RS256'] })] });
      const token = await new SignJWT({ iss: idp.issuer, aud: AUDIENCE, sub: 'm' })
        .setProtectedHeader({ alg: 'HS256', kid: idp.key.kid })
        .setExpirationTime('1h')
        .sign(new TextEncoder().encode(await exportSPKI(idp.key.publicKey)));
      const e = await refused(w.verify(token), 'token_algorithm', token);
      // Refused by the verifier's own rule, before any key lookup (the key cache would refuse HS* too).
      expect(e.message).toBe('algorithm "HS256" is not allowed (allowed: RS256)');
    });

    it('an unknown kid → token_unknown_kid naming the kid', async () => {
      const token = await idp.sign(now(), {}, { kid: 'no-such-key' });
      const e = await refused(v.verify(token), 'token_unknown_kid', token);
      expect(e.message).toContain('token was signed by key id "no-such-key" which the provider');
    });

    it('a tampered payload (claim flipped, signature kept) → token_signature', async () => {
      const token = await idp.sign(now());
      const [h, p, s] = token.split('.') as [string, string, string];
      const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
      claims['https://gprxy.io/roles'] = ['pg_admin'];
      const forged = `${h}.${b64url(claims)}.${s}`;
      await refused(v.verify(forged), 'token_signature', forged);
    });

    it('signed by another key under a known kid → token_signature', async () => {
      const attacker = await makeKey('RS256', idp.key.kid);
      const token = await idp.sign(now(), {}, { key: attacker });
      await refused(v.verify(token), 'token_signature', token);
    });

    it('"hunter2" (a password, not a token) → token_malformed / 28P01', async () => {
      const e = await refused(v.verify('hunter2'), 'token_malformed');
      expect(e.sqlstate).toBe('28P01');
      expect(e.message).not.toContain('hunter2');
    });

    it('an empty password → token_malformed', async () => {
      await refused(v.verify(''), 'token_malformed');
    });

    it('a 100 KB password → token_too_large / 28P01', async () => {
      const big = 'a'.repeat(100 * 1024);
      const e = await refused(v.verify(big), 'token_too_large', big);
      expect(e.sqlstate).toBe('28P01');
      expect(e.message).toContain(`${100 * 1024} bytes`);
    });

    it('a token of exactly the size cap passes the size check (and fails later)', async () => {
      const token = `${b64url({ alg: 'RS256' })}.${'A'.repeat(MAX_TOKEN_BYTES - 40)}.sig`;
      const padded = token + 'x'.repeat(MAX_TOKEN_BYTES - token.length);
      expect(padded.length).toBe(MAX_TOKEN_BYTES);
      await refused(v.verify(padded), 'token_malformed', padded);
    });

    it('multi-byte characters count as bytes for the size cap', async () => {
      await refused(v.verify('é'.repeat(MAX_TOKEN_BYTES / 2 + 1)), 'token_too_large');
    });

    it('a two-part token → token_malformed', async () => {
      const token = await idp.sign(now());
      const twoParts = token.split('.').slice(0, 2).join('.');
      await refused(v.verify(twoParts), 'token_malformed', twoParts);
    });

    it('bad base64url characters → token_malformed', async () => {
      const token = await idp.sign(now());
      const [h, p, s] = token.split('.') as [string, string, string];
      const bad = `${h}.${p.slice(0, 10)}*+/=${p.slice(10)}.${s}`;
      await refused(v.verify(bad), 'token_malformed', bad);
    });

    it('a header that is base64url but not JSON → token_malformed', async () => {
      const token = await idp.sign(now());
      const [, p, s] = token.split('.') as [string, string, string];
      const bad = `${b64url('not json{')}.${p}.${s}`;
      await refused(v.verify(bad), 'token_malformed', bad);
    });

    it('a payload that is a JSON array → token_malformed', async () => {
      const token = await idp.sign(now());
      const [h, , s] = token.split('.') as [string, string, string];
      const bad = `${h}.${b64url([1, 2])}.${s}`;
      await refused(v.verify(bad), 'token_malformed', bad);
    });

    it('a JWE (five parts) → token_malformed saying so', async () => {
      const e = await refused(v.verify('a.b.c.d.e'), 'token_malformed');
      expect(e.message).toContain('JWE');
    });

    it('no exp claim → token_malformed (only expiring tokens)', async () => {
      const token = await idp.sign(now(), { exp: undefined });
      const e = await refused(v.verify(token), 'token_malformed', token);
      expect(e.message).toContain('exp');
    });

    it('exp as a string → token_malformed', async () => {
      const token = await idp.sign(now(), { exp: 'tomorrow' });
      await refused(v.verify(token), 'token_malformed', token);
    });

    it('ES256 token when only RS256 is allowed → token_algorithm', async () => {
      const ec = await makeKey('ES256');
      idp.keys.push(ec);
      try {
        const token = await idp.sign(now(), {}, { key: ec });
        const e = await refused(v.verify(token), 'token_algorithm', token);
        expect(e.message).toBe('algorithm "ES256" is not allowed (allowed: RS256)');
      } finally {
        idp.keys = idp.keys.filter((k) => k !== ec);
      }
    });

    it('a header alg that does not fit the key under that kid → token_algorithm', async () => {
      // The other provider allows ES256, but kid names its RSA key.
      const fake = `${b64url({ alg: 'ES256', kid: other.key.kid })}.${b64url({ iss: other.issuer, aud: AUDIENCE, exp: 9e9 })}.${b64url('x'.repeat(64))}`;
      const e = await refused(v.verify(fake), 'token_algorithm', fake);
      expect(e.message).toContain('cannot verify a ES256 signature');
    });

    it('an unknown crit header parameter → token_malformed', async () => {
      const iat = Math.floor(now() / 1000);
      const claims = { iss: idp.issuer, aud: AUDIENCE, sub: 'auth0|alice', iat, exp: iat + 600 };
      const good = idp.signRaw({ alg: 'RS256', kid: idp.key.kid }, claims);
      await expect(v.verify(good)).resolves.toBeDefined(); // the raw signer itself is right
      const token = idp.signRaw({ alg: 'RS256', kid: idp.key.kid, crit: ['x-unknown'], 'x-unknown': 1 }, claims);
      await refused(v.verify(token), 'token_malformed', token);
    });

    it('a non-string kid → token_malformed', async () => {
      const token = await idp.sign(now(), {}, { header: { kid: 42 } });
      await refused(v.verify(token), 'token_malformed', token);
    });

    it('a signature over a different header (alg swapped RS256→RS384 with the same key) → refused', async () => {
      const token = await idp.sign(now());
      const [, p, s] = token.split('.') as [string, string, string];
      const swapped = `${b64url({ alg: 'RS384', kid: idp.key.kid, typ: 'at+jwt' })}.${p}.${s}`;
      await refused(v.verify(swapped), 'token_algorithm', swapped);
    });

    it('hostile text in the issuer is quoted and truncated in the message', async () => {
      const token = await idp.sign(now(), { iss: `https://x\n${'y'.repeat(500)}` });
      const e = await refused(v.verify(token), 'token_issuer', token);
      expect(e.message).not.toContain('\n');
      expect(e.message.length).toBeLessThan(400);
    });
  });

  describe('scopes', () => {
    it('a required scope missing → token_scope; present in scope or scp → accepted', async () => {
      const v = verifier({ providers: [idp.providerConfig({ requiredScopes: ['db:connect'] })] });
      const without = await idp.sign(now(), { scope: 'openid profile' });
      const e = await refused(v.verify(without), 'token_scope', without);
      expect(e.message).toContain('token lacks the required scope db:connect (token scopes: "openid" "profile")');
      await expect(v.verify(await idp.sign(now(), { scope: 'openid db:connect' }))).resolves.toBeDefined();
      await expect(v.verify(await idp.sign(now(), { scp: ['db:connect'] }))).resolves.toBeDefined();
      await refused(v.verify(await idp.sign(now(), { scope: undefined })), 'token_scope');
    });

    it('tokenScopes reads both claim forms', () => {
      expect(tokenScopes({ scope: 'a  b', scp: ['c', 1, 'd'] })).toEqual(['a', 'b', 'c', 'd']);
      expect(tokenScopes({ scp: 'x y' })).toEqual(['x', 'y']);
      expect(tokenScopes({})).toEqual([]);
    });
  });

  describe('verified-token cache', () => {
    it('a second verify of the same token does no crypto', async () => {
      const v = verifier();
      await v.start();
      const token = await idp.sign(now());
      const first = await v.verify(token);
      expect(v.stats()).toMatchObject({ verifications: 1, cacheHits: 0, cacheMisses: 1 });
      const second = await v.verify(token);
      expect(second).toBe(first);
      expect(v.stats()).toMatchObject({ verifications: 1, cacheHits: 1, cacheMisses: 1, cacheEntries: 1 });
    });

    it('a cached token is refused once the clock passes exp + leeway', async () => {
      const v = verifier();
      await v.start();
      const token = await idp.sign(now(), { exp: Math.floor(now() / 1000) + 60 });
      await v.verify(token);
      clock.t += 60_000 + 29_000;
      await expect(v.verify(token)).resolves.toBeDefined();
      clock.t += 2_000;
      await refused(v.verify(token), 'token_expired', token);
      expect(v.stats().verifications).toBe(1);
      // Dropped from the cache: a retry goes back to jose, which refuses it too.
      await refused(v.verify(token), 'token_expired', token);
      expect(v.stats().verifications).toBe(2);
    });

    it('failed verifications are not cached', async () => {
      const v = verifier();
      await v.start();
      const token = await idp.sign(now(), { aud: 'nope' });
      await refused(v.verify(token), 'token_audience');
      await refused(v.verify(token), 'token_audience');
      expect(v.stats()).toMatchObject({ verifications: 2, cacheHits: 0, cacheEntries: 0 });
    });

    it('is bounded: the least recently used entry goes first', async () => {
      const v = verifier({ cacheMaxEntries: 2 });
      await v.start();
      const [a, b, c] = await Promise.all([1, 2, 3].map((n) => idp.sign(now(), { jti: `t${n}` })));
      await v.verify(a!);
      await v.verify(b!);
      await v.verify(a!); // a is now the most recent
      await v.verify(c!); // evicts b
      expect(v.stats()).toMatchObject({ verifications: 3, cacheEntries: 2 });
      await v.verify(a!);
      expect(v.stats().verifications).toBe(3);
      await v.verify(b!);
      expect(v.stats().verifications).toBe(4);
    });

    it('concurrent verifies of one new token share a single verification', async () => {
      const v = verifier();
      await v.start();
      const token = await idp.sign(now());
      const results = await Promise.all(Array.from({ length: 20 }, () => v.verify(token)));
      expect(new Set(results).size).toBe(1);
      expect(v.stats().verifications).toBe(1);
    });
  });

  it('TokenError is an Error with a code and a SQLSTATE', async () => {
    const v = verifier();
    const e = await v.verify('x').catch((err: unknown) => err);
    expect(e).toBeInstanceOf(Error);
    expect(e).toBeInstanceOf(TokenError);
    expect((e as TokenError).name).toBe('TokenError');
  });
});
