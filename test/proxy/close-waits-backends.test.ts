/**
 * `gprxy serve`'s graceful stop (ProxyServer.close) waits for the backend work a session left behind: a
 * release reset that transaction pooling runs after the client has gone (the session is over, nothing else
 * waits for it), and the drain of a backend whose client vanished mid-query (its CancelRequest, then the
 * server ending it). Without that, close() returned with the reset on the wire: in-process the reset then
 * completed and parked the backend in the closed pool's idle list (never closed), and in `gprxy serve` the
 * process exited under it (PostgreSQL: "unexpected EOF"). A drain cut short left the query running after
 * the proxy was gone. The path to PostgreSQL holds the reset (or the cancel) on demand (test/support/hold-path.ts)
 * so the stop lands exactly while it is in flight.
 */
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HoldPath } from '../support/hold-path.js';
import { connectClient } from '../support/proxy-clients.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';

let stack: ProxyStack;
let path: HoldPath;
let token: string;
const serverLog: string[] = [];

beforeAll(async () => {
  stack = await startProxyStack({ postgres: { onLog: (line) => serverLog.push(line) } });
  path = new HoldPath({ host: stack.cluster.host, port: stack.cluster.port });
  await path.start();
  token = (await loginAs(stack.idp.provider, 'alice')).accessToken;
});

afterEach(() => path.release());

afterAll(async () => {
  await stack?.stop();
  await path?.close();
});

/** A proxy whose database is reached through the hold path, one backend, in the given pool mode. */
async function proxyThroughPath(mode: 'session' | 'transaction'): Promise<void> {
  await stack.startProxy({ databases: { mydb: { host: '127.0.0.1', port: path.port, dbname: 'mydb', pool: { mode, size: 1 } } }, limits: { login_timeout: '5s', pool_wait_timeout: '5s', max_sessions_per_identity: 0 } });
}

const connect = (): Promise<pg.Client> => connectClient(stack, 'alice@example.com', token);

const writerBackends = async (): Promise<number[]> =>
  (await stack.cluster.query<{ pid: number }>("select pid from pg_stat_activity where usename = 'app_writer' and datname = 'mydb'")).rows.map((r) => r.pid);

/**
 * Stops the proxy while the held step is in flight, releasing it only once the proxy says it waits for it
 * (or, without that wait, once close() has returned): returns the log lines written before close() returned.
 */
async function closeWhileHeld(graceMs: number): Promise<Record<string, unknown>[]> {
  const closing = stack.proxy.close(graceMs);
  await Promise.race([closing, stack.logs.waitFor((l) => l.event === 'backends_settling', 20_000)]);
  path.release();
  await closing;
  return [...stack.logs.lines];
}

describe('ProxyServer.close() waits for backend resets and drains', () => {
  it('transaction pooling: a reset running after the client left finishes, then the backend closes cleanly (Terminate, no EOF at PostgreSQL)', async () => {
    await proxyThroughPath('transaction');
    const client = await connect();
    expect((await client.query('select 1 as one')).rows[0].one).toBe(1);
    await waitUntil(() => stack.proxy.pools.stats()['mydb/app_writer']?.idle === 1);
    const [pid] = await writerBackends();
    expect(pid).toBeDefined();
    // The next transaction's release reset is held on its way to PostgreSQL; the client leaves meanwhile.
    const held = path.holdNext(Buffer.from('pg_advisory_unlock_all'));
    await client.query('select 2');
    await held;
    await client.end();
    await stack.logs.waitFor((l) => l.event === 'session_end' && l.pool_mode === 'transaction');
    const logStart = stack.logs.lines.length;
    const serverLogStart = serverLog.length;

    const before = await closeWhileHeld(10_000);

    const during = before.slice(logStart);
    expect(during.find((l) => l.event === 'backends_settling')).toMatchObject({ pools: 1, backends: 1 });
    expect(during.filter((l) => l.event === 'backend_reset_failed' || l.level === 50)).toEqual([]);
    // Closed by the proxy before close() returned, not parked in the closed pool.
    expect(during.some((l) => l.event === 'backend_close' && l.pid === pid)).toBe(true);
    await waitUntil(async () => !(await writerBackends()).includes(pid!));
    expect(serverLog.slice(serverLogStart).filter((l) => /unexpected EOF|could not receive data|connection reset/i.test(l))).toEqual([]);
  });

  it('session pooling: a backend drained after its client vanished mid-query has ended before close() returns', async () => {
    await proxyThroughPath('session');
    const client = await connect();
    const running = client.query('select pg_sleep(60)').catch(() => undefined);
    await waitUntil(async () => (await stack.cluster.query("select 1 from pg_stat_activity where usename = 'app_writer' and query like 'select pg_sleep%' and state = 'active'")).rowCount === 1);
    const [pid] = await writerBackends();
    // The drain's CancelRequest (code 80877102) is held; the client vanishes mid-query.
    const held = path.holdNext(Buffer.from([0x04, 0xd2, 0x16, 0x2e]));
    (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await held;
    await running;
    await stack.logs.waitFor((l) => l.event === 'session_end' && l.reason === 'client_closed');
    const logStart = stack.logs.lines.length;

    const before = await closeWhileHeld(10_000);

    const during = before.slice(logStart);
    expect(during.find((l) => l.event === 'backends_settling')).toMatchObject({ pools: 1, backends: 1 });
    expect(during.find((l) => l.event === 'backend_close' && l.pid === pid)).toMatchObject({ reason: 'ended after cancel' });
    expect(during.filter((l) => l.level === 50)).toEqual([]);
  });
});
