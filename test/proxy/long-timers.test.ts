/**
 * Timers beyond setTimeout's range (2^31-1 ms, ~24.8 days): a 30-day token or session_max_lifetime: 30d
 * used to end the session about 1 ms after login with a false "token expired". The session must live on.
 * (test/shared/long-timer.test.ts drives the clock 30 days forward; here the real proxy must not fire early.)
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';

let stack: ProxyStack;
const THIRTY_DAYS_S = 30 * 86_400;

beforeAll(async () => {
  stack = await startProxyStack();
});
afterAll(async () => {
  await stack?.stop();
});

async function survives(token: string): Promise<void> {
  const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'alice@example.com', password: token, database: 'mydb', ssl: stack.ssl });
  const errors: Error[] = [];
  c.on('error', (e) => errors.push(e));
  await c.connect();
  try {
    // A timer that overflowed fires ~1 ms after login and ends the session at the next message boundary
    // (within ~20 ms); this statement outlasts that by far, and the next one must still run.
    await c.query('select pg_sleep(0.3)');
    expect((await c.query('select 1 as one')).rows[0].one).toBe(1);
    expect(errors).toEqual([]);
  } finally {
    await c.end().catch(() => {});
  }
  expect(stack.logs.lines.filter((l) => l.event === 'session_end' && (l.reason === 'token_expired' || l.reason === 'session_max_lifetime'))).toEqual([]);
}

describe('long timers', () => {
  it('keeps a session opened with a 30-day token open', async () => {
    stack.idp.provider.setAccessTokenTtl(THIRTY_DAYS_S);
    const token = (await loginAs(stack.idp.provider, 'alice')).accessToken;
    stack.idp.provider.setAccessTokenTtl(300);
    await survives(token);
  });

  it('keeps a session open under session_max_lifetime: 30d', async () => {
    await stack.startProxy({ limits: { session_max_lifetime: '30d', end_session_at_token_expiry: false, login_timeout: '5s', pool_wait_timeout: '5s' } });
    const token = (await loginAs(stack.idp.provider, 'alice')).accessToken;
    await survives(token);
  });

  it('accepts logins under login_timeout and pool_wait_timeout of 30 days', async () => {
    await stack.startProxy({ limits: { login_timeout: '30d', pool_wait_timeout: '30d' } });
    const token = (await loginAs(stack.idp.provider, 'alice')).accessToken;
    await survives(token);
  });
});
