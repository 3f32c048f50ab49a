/** How long a session may live: until its token expires (default), or as the operator configures. */
import { connect } from 'node:net';
import { once } from 'node:events';
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

  it('logs a shutdown during login as server_shutdown, not as the client leaving', async () => {
    const socket = connect(stack.port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    const client = `127.0.0.1:${socket.localPort}`;
    // A GSSENCRequest answered 'N': the proxy now waits for this client's startup packet.
    const gssenc = Buffer.alloc(8);
    gssenc.writeInt32BE(8);
    gssenc.writeInt32BE(80877104, 4);
    socket.write(gssenc);
    const [answer] = (await once(socket, 'data')) as [Buffer];
    expect(answer.toString()).toBe('N');
    await stack.proxy.close();
    const line = await stack.logs.waitFor((l) => l.client === client && (l.event === 'connection_refused' || l.event === 'auth_failure'));
    expect(line.reason).toBe('server_shutdown');
    expect(line.event).toBe('connection_refused');
    socket.destroy();
    await stack.startProxy();
  });
});
