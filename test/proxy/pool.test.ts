/**
 * BackendPool on its own, against a real PostgreSQL: FIFO waiters, the size limit, idle and lifetime
 * sweeping, acquireFresh, and the slot accounting when opening fails or a backend dies. The only seam used is
 * the dialer, for a server that refuses the TCP connection at the moment the test chooses.
 */
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/demo/postgres-cluster.js';
import { createLogger } from '../../src/proxy/logger.js';
import { BackendPool, type PoolOptions } from '../../src/proxy/pool.js';
import type { Backend, BackendTarget, Dialer } from '../../src/proxy/backend.js';
import { errorCode } from '../../src/shared/errors.js';
import { createAppDatabase, SERVICE_ACCOUNTS, startTestPostgres, type Cluster } from '../support/postgres.js';
import { LogCapture } from '../support/proxy-stack.js';
import { waitUntil } from '../support/wait.js';

let cluster: Cluster;
let target: BackendTarget;
const pools: BackendPool[] = [];

beforeAll(async () => {
  cluster = await startTestPostgres();
  await createAppDatabase(cluster);
  target = { host: '127.0.0.1', port: cluster.port, dbname: 'mydb', sslmode: 'disable', user: 'app_writer', password: SERVICE_ACCOUNTS.app_writer };
});
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close();
  // Backends still checked out belong to no pool now: end them so the next test counts only its own.
  await cluster.query("select pg_terminate_backend(pid) from pg_stat_activity where usename = 'app_writer'");
  await waitUntil(async () => (await serverConnections()) === 0);
});
afterAll(async () => {
  await cluster?.stop();
});

function makePool(options: Partial<PoolOptions> = {}): { pool: BackendPool; logs: LogCapture } {
  const logs = new LogCapture();
  const pool = new BackendPool({
    name: 'mydb/app_writer',
    target,
    size: 2,
    idleTimeoutMs: 60_000,
    maxLifetimeMs: 0,
    waitTimeoutMs: 10_000,
    logger: createLogger({ level: 'debug', destination: logs }),
    ...options,
  });
  pools.push(pool);
  return { pool, logs };
}

/** Server processes of the service account, as PostgreSQL sees them (the pool's own count may not lie). */
async function serverConnections(): Promise<number> {
  const r = await cluster.query("select count(*)::int as n from pg_stat_activity where usename = 'app_writer' and backend_type = 'client backend'");
  return (r.rows[0] as { n: number }).n;
}

/** Settles to 'pending' while the promise has not settled yet. */
function state<T>(p: Promise<T>): Promise<'pending' | 'resolved' | 'rejected'> {
  return Promise.race([p.then(() => 'resolved' as const, () => 'rejected' as const), new Promise<'pending'>((r) => setImmediate(() => r('pending')))]);
}

describe('BackendPool', () => {
  it('never opens more than size backends and hands released ones to waiters in FIFO order', async () => {
    const { pool } = makePool({ size: 2 });
    const a = await pool.acquire();
    const b = await pool.acquire();
    const third = pool.acquire();
    const fourth = pool.acquire();
    expect(await state(third)).toBe('pending');
    expect(pool.stats()).toMatchObject({ total: 2, active: 2, waiting: 2 });
    expect(await serverConnections()).toBe(2);

    await pool.release(b, true);
    expect(await third).toBe(b);
    expect(await state(fourth)).toBe('pending');
    await pool.release(a, true);
    expect(await fourth).toBe(a);
    expect(pool.stats()).toMatchObject({ total: 2, active: 2, waiting: 0 });
    expect(await serverConnections()).toBe(2);
  });

  it('refuses a waiter after the wait timeout with pool_timeout, and the slot count is unchanged', async () => {
    const { pool } = makePool({ size: 1, waitTimeoutMs: 200 });
    const a = await pool.acquire();
    const err = await pool.acquire().catch((e: unknown) => e);
    expect(errorCode(err)).toBe('pool_timeout');
    expect((err as { sqlstate: string }).sqlstate).toBe('53300');
    expect(pool.stats()).toMatchObject({ total: 1, active: 1, waiting: 0 });
    await pool.release(a, true);
    expect(await pool.acquire()).toBe(a);
  });

  it('a failed open frees its slot, for the caller and for a waiter', async () => {
    const refused = await freePort();
    let refuse = false;
    const dialer: Dialer = (host, port) => netConnect({ host, port: refuse ? refused : port });
    const { pool } = makePool({ size: 1, dialer });

    refuse = true;
    expect(errorCode(await pool.acquire().catch((e: unknown) => e))).toBe('backend_unavailable');
    expect(pool.stats()).toMatchObject({ total: 0, active: 0 });

    refuse = false;
    const a = await pool.acquire();
    const waiter = pool.acquire();
    expect(await state(waiter)).toBe('pending');
    refuse = true;
    await pool.release(a, false); // not reusable: closed, the slot goes to the waiter, whose open fails
    expect(errorCode(await waiter.catch((e: unknown) => e))).toBe('backend_unavailable');
    expect(pool.stats()).toMatchObject({ total: 0, active: 0, waiting: 0 });

    refuse = false;
    const b = await pool.acquire();
    expect(b.processId).not.toBe(a.processId);
    expect(pool.stats()).toMatchObject({ total: 1, active: 1 });
  });

  it('connects to a server that never answers end at the connect timeout, and waiters behind them get the same 57P03 instead of a connect each', async () => {
    // A host that accepts and never answers (a dead server behind a load balancer): the fault no real
    // PostgreSQL produces on demand.
    const held: Socket[] = [];
    const sink: Server = createServer((s) => {
      held.push(s);
      s.on('error', () => undefined);
      s.resume();
    });
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
    try {
      let dialed = 0;
      const dialer: Dialer = () => {
        dialed++;
        return netConnect({ host: '127.0.0.1', port: (sink.address() as { port: number }).port });
      };
      const { pool } = makePool({ size: 2, dialer, connectTimeoutMs: () => 300, waitTimeoutMs: 60_000 });
      // Four logins at once: two open the pool's two slots, two wait behind those connects.
      const outcomes = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire(), pool.acquire()].map((p) => p.catch((e: unknown) => e)));
      for (const e of outcomes) {
        expect(errorCode(e)).toBe('backend_unavailable');
        expect((e as { sqlstate: string }).sqlstate).toBe('57P03');
      }
      expect((outcomes[0] as Error).message).toContain('limits.backend_connect_timeout');
      // The waiters were not each given a new connect to the same unanswering server.
      expect(dialed).toBe(2);
      expect(pool.stats()).toMatchObject({ total: 0, active: 0, waiting: 0 });
    } finally {
      for (const s of held) s.destroy();
      await new Promise<void>((r) => sink.close(() => r()));
    }
  });

  it('a backend the server ended is not reused when released as reusable', async () => {
    const { pool } = makePool({ size: 1 });
    const a = await pool.acquire();
    await cluster.query('select pg_terminate_backend($1)', [a.processId]);
    await waitUntil(() => a.broken);
    await pool.release(a, true);
    expect(pool.stats()).toMatchObject({ total: 0, idle: 0 });
    const b = await pool.acquire();
    expect(b).not.toBe(a);
    expect(b.processId).not.toBe(a.processId);
    expect(pool.stats()).toMatchObject({ total: 1, active: 1 });
  });

  it('an idle backend the server ended is dropped and not handed out', async () => {
    const { pool, logs } = makePool({ size: 1 });
    const a = await pool.acquire();
    await pool.release(a, true);
    await cluster.query('select pg_terminate_backend($1)', [a.processId]);
    await logs.waitFor((l) => l.event === 'backend_close' && l.reason === 'closed by server while idle');
    expect(pool.stats()).toMatchObject({ total: 0, idle: 0 });
    const b = await pool.acquire();
    expect(b.processId).not.toBe(a.processId);
  });

  it('sweeps backends idle longer than the idle timeout', async () => {
    const { pool, logs } = makePool({ size: 2, idleTimeoutMs: 1 });
    const a = await pool.acquire();
    await pool.release(a, true);
    expect(pool.stats()).toMatchObject({ total: 1, idle: 1 });
    await logs.waitFor((l) => l.event === 'backend_close' && l.reason === 'idle timeout');
    expect(pool.stats()).toMatchObject({ total: 0, idle: 0 });
    await waitUntil(async () => (await serverConnections()) === 0);
  });

  it('does not hand out a backend past its max lifetime', async () => {
    let now = Date.now();
    const { pool, logs } = makePool({ size: 1, maxLifetimeMs: 60_000, now: () => now });
    const a = await pool.acquire();
    await pool.release(a, true);
    expect(await pool.acquire()).toBe(a);
    await pool.release(a, true);
    now += 60_000; // exactly the max lifetime, on the pool's clock
    const b = await pool.acquire();
    expect(b.processId).not.toBe(a.processId);
    expect(logs.events('backend_close').map((l) => l.reason)).toContain('max lifetime');
    expect(pool.stats()).toMatchObject({ total: 1, active: 1 });
  });

  it('acquireFresh never returns a backend someone used, and stays within size', async () => {
    const { pool } = makePool({ size: 1 });
    const a = await pool.acquire();
    await pool.release(a, true);
    const fresh = await pool.acquireFresh(); // the idle one is closed to make room
    expect(fresh.processId).not.toBe(a.processId);
    expect(pool.stats()).toMatchObject({ total: 1, active: 1, idle: 0 });

    const waiting = pool.acquireFresh();
    expect(await state(waiting)).toBe('pending');
    await pool.release(fresh, true); // reusable, but the waiter wants a fresh one: closed, a new one opened
    const next = await waiting;
    expect(next.processId).not.toBe(fresh.processId);
    expect(pool.stats()).toMatchObject({ total: 1, active: 1, waiting: 0 });
    await waitUntil(async () => (await serverConnections()) === 1);
  });

  it('close rejects waiters with pool_closed and refuses new acquires', async () => {
    const { pool } = makePool({ size: 1 });
    const a: Backend = await pool.acquire();
    const waiter = pool.acquire();
    await pool.close();
    expect(errorCode(await waiter.catch((e: unknown) => e))).toBe('pool_closed');
    expect(errorCode(await pool.acquire().catch((e: unknown) => e))).toBe('pool_closed');
    await pool.release(a, true);
    expect(pool.stats()).toMatchObject({ total: 0, idle: 0 });
  });
});
