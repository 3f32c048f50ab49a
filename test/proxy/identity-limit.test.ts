/**
 * limits.max_sessions_per_identity (issue 11, item 6): one identity cannot take the whole pool. Past the
 * limit its next login gets 53300 naming the limit and the user; other users are unaffected; a closed
 * session frees its slot.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProxyConfig, DEFAULT_MAX_SESSIONS_PER_IDENTITY } from '../../src/config/proxy-config.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs, type TokenSet } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';

let stack: ProxyStack;
const tokens: Record<string, TokenSet> = {};
const LIMIT = 3;

beforeAll(async () => {
  // A pool larger than the limit, so the limit (not the pool) is what refuses.
  stack = await startProxyStack({ overrides: { limits: { login_timeout: '5s', pool_wait_timeout: '2s', max_sessions_per_identity: LIMIT } } });
  for (const u of ['alice', 'bob']) tokens[u] = await loginAs(stack.idp.provider, u);
});
afterAll(async () => {
  await stack?.stop();
});

async function connectAs(username: string): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: `${username}@example.com`, password: tokens[username]!.accessToken, database: 'mydb', ssl: stack.ssl });
  await c.connect();
  return c;
}

describe('limits.max_sessions_per_identity', () => {
  it(`defaults to ${DEFAULT_MAX_SESSIONS_PER_IDENTITY} and accepts 0 for no limit`, () => {
    const doc = { tls: { allow_plaintext_loopback: true }, providers: [{ issuer: 'https://a.example/', audience: 'x' }], role_mapping: [{ role: 'r', account: 'a' }], accounts: { a: { password: 'p' } }, databases: { d: {} } };
    expect(buildProxyConfig(doc, {}, '/').limits.maxSessionsPerIdentity).toBe(10);
    expect(buildProxyConfig({ ...doc, limits: { max_sessions_per_identity: 0 } }, {}, '/').limits.maxSessionsPerIdentity).toBe(0);
  });

  it('refuses the next session of an identity at its limit with 53300 naming the limit and the user; others still connect', async () => {
    await stack.startProxy({ databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool: { size: 10 } } } });
    const held: pg.Client[] = [];
    try {
      for (let i = 0; i < LIMIT; i++) held.push(await connectAs('alice'));
      const error = (await connectAs('alice').then(
        (c) => (held.push(c), undefined),
        (e: unknown) => e,
      )) as { code?: string; message: string } | undefined;
      expect(error?.code).toBe('53300');
      expect(error?.message).toContain('max_sessions_per_identity is 3');
      expect(error?.message).toContain('alice@example.com');
      const line = await stack.logs.waitFor((l) => l.event === 'auth_failure' && l.reason === 'too_many_sessions_per_identity');
      expect(line.sqlstate).toBe('53300');

      const bob = await connectAs('bob');
      held.push(bob);
      expect((await bob.query('select 1 as one')).rows[0].one).toBe(1);

      // A session that ends frees its slot (given back after its session_end line is written: wait for the slot).
      const alice = `${stack.idp.provider.issuer}\nauth0|alice0001`;
      await held.shift()!.end();
      await waitUntil(() => stack.proxy.identitySessions.held(alice) === LIMIT - 1);
      held.push(await connectAs('alice'));
      expect(stack.proxy.identitySessions.held(alice)).toBe(LIMIT);
    } finally {
      await Promise.all(held.map((c) => c.end().catch(() => {})));
    }
  });

  it('refused logins and ended sessions give their slots back', async () => {
    await waitUntil(() => stack.proxy.activeSessions === 0);
    expect(stack.proxy.identitySessions.held(`${stack.idp.provider.issuer}\nauth0|alice0001`)).toBe(0);
  });
});
