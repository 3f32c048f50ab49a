/** node-postgres clients of a ProxyStack's proxy, over TLS trusting the test CA, as the proxy suites open them. */
import pg from 'pg';
import type { ProxyStack } from './proxy-stack.js';

/** A client (not connected yet) logging in as `user` with `token` as the password. */
export function proxyClient(stack: ProxyStack, user: string, token: string, database = 'mydb'): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: stack.port, user, password: token, database, ssl: stack.ssl });
}

/** A connected client; errors after the connect are left to the test (not thrown at the process). `open` collects it for endAll. */
export async function connectClient(stack: ProxyStack, user: string, token: string, open?: Set<pg.Client>): Promise<pg.Client> {
  const c = proxyClient(stack, user, token);
  c.on('error', () => {});
  await c.connect();
  open?.add(c);
  return c;
}

/** The error of a login that must be refused (fails the test when it is accepted); the client is ended either way. */
export async function loginRefusal(c: pg.Client): Promise<{ code?: string; message: string }> {
  try {
    await c.connect();
  } catch (e) {
    return e as { code?: string; message: string };
  } finally {
    await c.end().catch(() => {});
  }
  throw new Error('connection was accepted');
}

/** Ends every client of `open` (ignoring those already gone) and empties it. */
export async function endAll(open: Set<pg.Client>): Promise<void> {
  await Promise.all([...open].map((c) => c.end().catch(() => {})));
  open.clear();
}
