/**
 * Token verification throughput of the proxy's TokenVerifier, in a process of its own (nothing else on
 * its event loop). Tokens carry the same claims as a real access token from the dev provider (passed in
 * by the driver) and are signed RS256 with a key served through the verifier's fetch seam, so thousands
 * of distinct tokens can be minted without a login each.
 *   cold:   every token distinct, so each verify is a full RS256 signature and claim check;
 *   cached: the same token again, the verified-token cache's hit path (shape checks, hash, lookup).
 */
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import pino from 'pino';
import type { ProviderConfig } from '../src/config/proxy-config.js';
import { TokenVerifier } from '../src/token/verifier.js';

interface Init {
  type: 'init';
  claims: Record<string, unknown>;
  coldTokens: number;
  cachedSeconds: number;
}

async function measure(init: Init): Promise<{ coldPerSecond: number; cachedPerSecond: number; tokenBytes: number; coldTokens: number; cachedCalls: number }> {
  const issuer = 'https://issuer.bench.invalid/';
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'bench', alg: 'RS256', use: 'sig' };
  const jwksUri = `${issuer}.well-known/jwks.json`;
  const fakeFetch = (async () => new Response(JSON.stringify({ keys: [jwk] }), { status: 200, headers: { 'content-type': 'application/json' } })) as typeof fetch;
  const provider: ProviderConfig = {
    issuer,
    audience: ['https://gprxy.io'],
    jwksUri,
    algorithms: ['RS256'],
    rolesClaim: 'https://gprxy.io/roles',
    usernameClaims: ['https://gprxy.io/email', 'email', 'sub'],
    requiredScopes: [],
  };
  const verifier = new TokenVerifier({ providers: [provider], jwks: { cacheTtlMs: 3_600_000 }, fetch: fakeFetch, logger: pino({ level: 'silent' }), cacheMaxEntries: init.coldTokens + 10 });
  await verifier.start();

  const { iat: _iat, exp: _exp, jti: _jti, iss: _iss, aud: _aud, ...claims } = init.claims;
  const now = Math.floor(Date.now() / 1000);
  const sign = (i: number) =>
    new SignJWT({ ...claims, jti: `bench-${i}-${now}` })
      .setProtectedHeader({ alg: 'RS256', kid: 'bench', typ: 'at+jwt' })
      .setIssuer(issuer)
      .setAudience('https://gprxy.io')
      .setIssuedAt(now)
      .setExpirationTime(now + 3600)
      .sign(privateKey);
  const tokens: string[] = [];
  for (let i = 0; i < init.coldTokens; i++) tokens.push(await sign(i));

  // Warm the code paths (JIT) on tokens not used for the measurement.
  for (let i = 0; i < 50; i++) await verifier.verify(await sign(1_000_000 + i));

  let t0 = process.hrtime.bigint();
  for (const t of tokens) await verifier.verify(t);
  const coldSeconds = Number(process.hrtime.bigint() - t0) / 1e9;

  const token = tokens[0]!;
  // Warm the hit path as a busy proxy would have it (optimised code), then measure.
  for (let i = 0; i < 50_000; i++) await verifier.verify(token);
  let calls = 0;
  t0 = process.hrtime.bigint();
  const until = t0 + BigInt(Math.round(init.cachedSeconds * 1e9));
  let now2 = t0;
  while (now2 < until) {
    for (let i = 0; i < 1000; i++) await verifier.verify(token);
    calls += 1000;
    now2 = process.hrtime.bigint();
  }
  const cachedSeconds = Number(now2 - t0) / 1e9;
  verifier.close();
  return { coldPerSecond: tokens.length / coldSeconds, cachedPerSecond: calls / cachedSeconds, tokenBytes: Buffer.byteLength(token), coldTokens: tokens.length, cachedCalls: calls };
}

process.on('message', (raw: unknown) => {
  const m = raw as Init & { id?: number };
  if (m.type !== 'init') return;
  measure(m).then(
    (r) => {
      process.send!({ type: 'ready', ...r });
      process.disconnect();
    },
    (e: Error) => {
      process.send!({ type: 'error', error: e.stack ?? String(e) });
      process.disconnect();
    },
  );
});
process.on('disconnect', () => process.exit(0));
