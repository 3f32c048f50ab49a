import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';

let stack: ProxyStack;
let base: string;

beforeAll(async () => {
  stack = await startProxyStack({ overrides: { metrics: { listen: '127.0.0.1:0' } } });
  base = `http://127.0.0.1:${stack.proxy.metricsAddress!.port}`;
});
afterAll(async () => {
  await stack?.stop();
});

describe('metrics and health', () => {
  it('counts logins by result and reason, and shows pools and token checks', async () => {
    const token = (await loginAs(stack.idp.provider, 'alice')).accessToken;
    const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'alice@example.com', password: token, database: 'mydb', ssl: stack.ssl });
    await c.connect();
    const bad = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'alice@example.com', password: 'hunter2', database: 'mydb', ssl: stack.ssl });
    await expect(bad.connect()).rejects.toMatchObject({ code: '28P01' });
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/gprxy_auth_total\{result="success",reason="ok"\} 1/);
    expect(text).toMatch(/gprxy_auth_total\{result="failure",reason="token_malformed"\} 1/);
    expect(text).toMatch(/gprxy_pool_connections\{pool="mydb\/app_writer",state="active"\} 1/);
    expect(text).toMatch(/gprxy_client_sessions 1/);
    expect(text).toMatch(/gprxy_jwks_keys\{issuer="https:\/\/localhost:\d+\/"\} 1/);
    expect(text).not.toContain(token.split('.')[2]!);
    await c.end();
  });

  it('answers /healthz and /readyz', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${base}/readyz`)).text()).toBe('ready\n');
  });
});
