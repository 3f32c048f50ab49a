/**
 * Hostile and wrong tokens presented to the real proxy: every one is refused with 28000 (a token, but not
 * acceptable) or 28P01 (not a token at all) and an audit line naming the specific reason; none connects.
 */
import { createHmac } from 'node:crypto';
import { SignJWT, decodeJwt, decodeProtectedHeader, exportSPKI, generateKeyPair, importJWK } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/proxy/logger.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { buildProxyConfig } from '../../src/config/proxy-config.js';
import { fetchWithCa } from '../../src/net/ca-fetch.js';
import { LogCapture, startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';

let stack: ProxyStack;
let alice: string;
let providerKid: string;
let providerPublicJwk: Record<string, unknown>;

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

async function attempt(port: number, user: string, password: string): Promise<{ code?: string; message: string }> {
  const c = new pg.Client({ host: '127.0.0.1', port, user, password, database: 'mydb', ssl: stack.ssl });
  try {
    await c.connect();
    await c.end();
    return { message: 'ACCEPTED' };
  } catch (e) {
    return { code: (e as { code?: string }).code, message: (e as Error).message };
  }
}

beforeAll(async () => {
  stack = await startProxyStack();
  alice = (await loginAs(stack.idp.provider, 'alice')).accessToken;
  providerKid = decodeProtectedHeader(alice).kid!;
  const jwks = (await (await fetchWithCa(stack.idp.provider.caCert)(new URL('jwks', stack.idp.provider.issuer))).json()) as { keys: Record<string, unknown>[] };
  providerPublicJwk = jwks.keys.find((k) => k.kid === providerKid)!;
});
afterAll(async () => {
  await stack?.stop();
});

async function ownKeyToken(header: Record<string, unknown>, claims: Record<string, unknown>, alg = 'RS256'): Promise<string> {
  const { privateKey } = await generateKeyPair(alg);
  return new SignJWT(claims).setProtectedHeader({ alg, ...header }).sign(privateKey);
}

describe('hostile tokens at the proxy', () => {
  const aliceUser = 'alice@example.com';
  const cases: { name: string; user?: string; token: () => Promise<string> | string; sqlstate: '28000' | '28P01'; reason: string }[] = [
    { name: 'not a JWT at all', token: () => 'hunter2', sqlstate: '28P01', reason: 'token_malformed' },
    { name: 'empty password', token: () => '', sqlstate: '28P01', reason: 'token_malformed' },
    { name: 'two parts only', token: () => alice.split('.').slice(0, 2).join('.'), sqlstate: '28P01', reason: 'token_malformed' },
    { name: 'bad base64 in the header', token: () => `@@@.${alice.split('.')[1]}.${alice.split('.')[2]}`, sqlstate: '28P01', reason: 'token_malformed' },
    { name: 'a 100 KB password', token: () => 'x'.repeat(100 * 1024), sqlstate: '28P01', reason: 'token_too_large' },
    { name: 'a 20 KB JWT-shaped password', token: () => `${b64({ alg: 'RS256' })}.${b64({ pad: 'y'.repeat(20_000) })}.sig`, sqlstate: '28P01', reason: 'token_too_large' },
    { name: 'alg none', token: () => `${b64({ alg: 'none', kid: providerKid })}.${alice.split('.')[1]}.`, sqlstate: '28000', reason: 'token_algorithm' },
    {
      name: 'HS256 signed with the provider public key',
      token: async () => {
        const pem = await exportSPKI(await importJWK(providerPublicJwk as never, 'RS256') as never);
        const head = b64({ alg: 'HS256', kid: providerKid });
        const body = alice.split('.')[1];
        return `${head}.${body}.${createHmac('sha256', pem).update(`${head}.${body}`).digest('base64url')}`;
      },
      sqlstate: '28000',
      reason: 'token_algorithm',
    },
    { name: 'ES256 when only RS256 is allowed', token: () => ownKeyToken({ kid: providerKid }, decodeJwt(alice), 'ES256'), sqlstate: '28000', reason: 'token_algorithm' },
    { name: 'unknown kid', token: () => ownKeyToken({ kid: 'not-a-provider-key' }, decodeJwt(alice)), sqlstate: '28000', reason: 'token_unknown_kid' },
    { name: 'path-like kid', token: () => ownKeyToken({ kid: '../../../../etc/passwd' }, decodeJwt(alice)), sqlstate: '28000', reason: 'token_unknown_kid' },
    { name: 'another key under a known kid', token: () => ownKeyToken({ kid: providerKid }, decodeJwt(alice)), sqlstate: '28000', reason: 'token_signature' },
    {
      name: 'tampered payload (roles raised to pg_admin)',
      token: () => {
        const [h, p, s] = alice.split('.');
        const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
        claims['https://gprxy.io/roles'] = ['pg_admin'];
        return `${h}.${b64(claims)}.${s}`;
      },
      sqlstate: '28000',
      reason: 'token_signature',
    },
    { name: 'signature stripped', token: () => `${alice.split('.').slice(0, 2).join('.')}.`, sqlstate: '28P01', reason: 'token_malformed' },
    { name: 'foreign issuer', token: () => ownKeyToken({ kid: 'k' }, { ...decodeJwt(alice), iss: 'https://evil.example/' }), sqlstate: '28000', reason: 'token_issuer' },
    { name: 'no issuer', token: () => ownKeyToken({ kid: 'k' }, { ...decodeJwt(alice), iss: undefined }), sqlstate: '28000', reason: 'token_issuer' },
    { name: "another user's token", user: 'bob@example.com', token: () => alice, sqlstate: '28000', reason: 'token_user_mismatch' },
    { name: 'startup user differs only by case', user: 'Alice@example.com', token: () => alice, sqlstate: '28000', reason: 'token_user_mismatch' },
  ];

  for (const c of cases) {
    it(`refuses ${c.name}`, async () => {
      const token = await c.token();
      const before = stack.logs.events('auth_failure').length;
      const r = await attempt(stack.port, c.user ?? aliceUser, token);
      expect(r.message).not.toBe('ACCEPTED');
      expect(r.code).toBe(c.sqlstate);
      if (token.length > 20) expect(r.message).not.toContain(token.slice(-20));
      const line = await stack.logs.waitFor((l) => l.event === 'auth_failure' && stack.logs.events('auth_failure').indexOf(l) >= before);
      expect(line.reason).toBe(c.reason);
    });
  }

  it('refuses an expired token, one from the future, one with no mapped role, a wrong audience and a missing scope', async () => {
    // A second proxy on the same backends whose clock runs an hour ahead, or with stricter rules.
    const variants: { overrides: Record<string, unknown>; now?: () => number; token: string; reason: string }[] = [
      { overrides: {}, now: () => Date.now() + 3_600_000, token: alice, reason: 'token_expired' },
      { overrides: {}, now: () => Date.now() - 3_600_000, token: alice, reason: 'token_not_yet_valid' },
      { overrides: { role_mapping: [{ role: 'pg_admin', account: 'app_admin' }] }, token: alice, reason: 'token_no_role' },
      { overrides: { providers: [{ issuer: stack.idp.provider.issuer, audience: 'https://other.example', ca: 'inline-ca' }] }, token: alice, reason: 'token_audience' },
      { overrides: { providers: [{ issuer: stack.idp.provider.issuer, audience: 'https://gprxy.io', ca: 'inline-ca', required_scopes: ['db:write'] }] }, token: alice, reason: 'token_scope' },
    ];
    for (const v of variants) {
      const logs = new LogCapture();
      const doc = { ...(await import('../support/proxy-stack.js')).proxyDocument(stack.cluster, stack.idp, { cert: '', key: '' }), ...v.overrides };
      const files: Record<string, string> = { 'inline-cert': stack.config.tls!.cert, 'inline-key': stack.config.tls!.key, 'inline-ca': stack.idp.provider.caCert };
      const config = buildProxyConfig(doc, {}, '/inline', (p) => files[p.split('/').pop()!]!);
      const proxy = new ProxyServer(config, { logger: createLogger({ level: 'info', destination: logs }), ...(v.now ? { now: v.now } : {}) });
      await proxy.start();
      try {
        const r = await attempt(proxy.address.port, aliceUser, v.token);
        expect(r.code, v.reason).toBe('28000');
        expect((await logs.waitFor((l) => l.event === 'auth_failure')).reason).toBe(v.reason);
      } finally {
        await proxy.close();
      }
    }
  });

  it('never writes a token to the log', () => {
    expect(stack.logs.raw.length).toBeGreaterThan(0);
    expect(stack.logs.raw).not.toContain(alice.split('.')[2]!);
    expect(stack.logs.raw).not.toContain(alice.split('.')[1]!);
  });
});
