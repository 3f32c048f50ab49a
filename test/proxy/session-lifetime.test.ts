/** How long a session may live: until its token expires (default), or as the operator configures. */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';

let stack: ProxyStack;

beforeAll(async () => {
  stack = await startProxyStack();
});
afterAll(async () => {
  await stack?.stop();
});

async function session(token: string): Promise<{ client: pg.Client; ended: Promise<Error> }> {
  const client = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'alice@example.com', password: token, database: 'mydb', ssl: stack.ssl });
  const ended = new Promise<Error>((resolve) => client.on('error', resolve));
  await client.connect();
  return { client, ended };
}

describe('session lifetime', () => {
  it('ends a session when its token expires, with 28000 and the next step', { timeout: 20_000 }, async () => {
    stack.idp.provider.setAccessTokenTtl(2);
    const token = (await loginAs(stack.idp.provider, 'alice')).accessToken;
    stack.idp.provider.setAccessTokenTtl(300);
    const { client, ended } = await session(token);
    expect((await client.query("select gprxy_ok from (select current_setting('app.user_id') = 'auth0|alice0001' as gprxy_ok) s")).rows[0].gprxy_ok).toBe(true);
    const error = (await ended) as Error & { code?: string };
    expect(error.code).toBe('28000');
    expect(error.message).toMatch(/access token this session was opened with expired at .*gprxy connect renews tokens/);
    const line = await stack.logs.waitFor((l) => l.event === 'session_end' && l.reason === 'token_expired');
    expect(line.backend_reused).toBe(true);
    await client.end().catch(() => {});
  });

  it('lets sessions outlive tokens when end_session_at_token_expiry is false, up to session_max_lifetime', { timeout: 20_000 }, async () => {
    await stack.startProxy({ limits: { end_session_at_token_expiry: false, session_max_lifetime: '4s' } });
    stack.idp.provider.setAccessTokenTtl(1);
    const token = (await loginAs(stack.idp.provider, 'alice')).accessToken;
    stack.idp.provider.setAccessTokenTtl(300);
    const started = Date.now();
    const { client, ended } = await session(token);
    const error = (await ended) as Error & { code?: string };
    expect(Date.now() - started).toBeGreaterThanOrEqual(3500);
    expect(error.code).toBe('57P01');
    expect(error.message).toContain('limits.session_max_lifetime');
    await client.end().catch(() => {});
    await stack.startProxy();
  });
});
