/**
 * limits.max_sessions_per_identity under `gprxy serve --workers 2`: the primary counts an identity's sessions
 * for the whole replica, so sessions spread over both workers stop at the limit (counted per worker, each
 * worker would have let the identity hold 2 × the limit); the refusal is the one of a single process (53300,
 * reason too_many_sessions_per_identity); and a worker killed outright gives its sessions' slots back.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { createAppDatabase, startTestPostgres, type Cluster } from '../support/postgres.js';
import { proxyDocument } from '../support/proxy-stack.js';
import { startServe, type LogLine, type ServeProcess } from '../support/serve-process.js';
import { loginAs, type TokenSet } from '../support/tokens.js';

const LIMIT = 2;

let cluster: Cluster;
let idp: TestProvider;
let serve: ServeProcess;
const tokens: Record<string, TokenSet> = {};

beforeAll(async () => {
  cluster = await startTestPostgres();
  await createAppDatabase(cluster);
  idp = await startTestProvider();
  const leaf = await idp.ca.issue(['localhost', '127.0.0.1']);
  for (const u of ['alice', 'bob']) tokens[u] = await loginAs(idp.provider, u);
  // Pools larger than the limit on each worker (5 + 5): the identity limit, not a pool, is what refuses.
  const document = proxyDocument(cluster, idp, { cert: '', key: '' }, {
    log: { level: 'info' },
    limits: { login_timeout: '5s', pool_wait_timeout: '5s', max_sessions_per_identity: LIMIT },
    databases: { mydb: { host: cluster.host, port: cluster.port, dbname: 'mydb', pool: { size: 10 } } },
  });
  serve = await startServe(document, { 'inline-cert': leaf.cert, 'inline-key': leaf.key, 'inline-ca': idp.provider.caCert }, ['--workers', '2']);
});

afterAll(async () => {
  await serve?.stop();
  await idp?.close();
  await cluster?.stop();
});

/** A session, or the error its login got; the log line of its login (auth_success / auth_failure) names the worker. */
async function attempt(user: string): Promise<{ client?: pg.Client; error?: { code?: string }; line: LogLine }> {
  const from = serve.lines().length;
  const c = new pg.Client({ host: '127.0.0.1', port: serve.port, user: `${user}@example.com`, password: tokens[user]!.accessToken, database: 'mydb', ssl: { ca: idp.ca.cert, servername: 'localhost' } });
  c.on('error', () => undefined); // a worker killed under it: the test asserts what it expects
  const mine = (l: LogLine) => (l.event === 'auth_success' || l.event === 'auth_failure') && l.user === `${user}@example.com`;
  try {
    await c.connect();
    return { client: c, line: await serve.waitFor(mine, 10_000, from) };
  } catch (e) {
    return { error: e as { code?: string }, line: await serve.waitFor(mine, 10_000, from) };
  }
}

const held: pg.Client[] = [];
const workerOf = new Map<pg.Client, number>();

describe('max_sessions_per_identity across workers', () => {
  it('stops an identity at the limit over both workers with the single-process refusal; others still connect', async () => {
    for (let i = 0; i < LIMIT; i++) {
      const a = await attempt('alice');
      expect(a.error).toBeUndefined();
      held.push(a.client!);
      workerOf.set(a.client!, a.line.worker as number);
    }
    // Every further login of alice is refused, whichever worker it reaches: attempts until both workers
    // have refused one (round-robin alternates them; a worker holding fewer than LIMIT sessions of alice
    // refusing is what a per-worker count cannot do).
    const refusedBy = new Set<number>();
    for (let i = 0; i < 8 && refusedBy.size < 2; i++) {
      const a = await attempt('alice');
      if (a.client) held.push(a.client);
      expect(a.error?.code, `attempt ${i + 1} past the limit, on worker ${String(a.line.worker)}`).toBe('53300');
      expect(a.line).toMatchObject({ event: 'auth_failure', reason: 'too_many_sessions_per_identity', sqlstate: '53300' });
      refusedBy.add(a.line.worker as number);
    }
    expect(refusedBy).toEqual(new Set([0, 1]));
    const bob = await attempt('bob');
    expect(bob.error).toBeUndefined();
    await bob.client!.end();
  });

  it('a worker killed while its sessions hold slots gives them back', async () => {
    expect(held).toHaveLength(LIMIT);
    const victimSlot = workerOf.get(held[0]!)!;
    const onVictim = held.filter((c) => workerOf.get(c) === victimSlot);
    const victimPid = [...serve.lines()].reverse().find((l) => l.event === 'worker_listening' && l.worker === victimSlot)!.pid as number;
    const from = serve.lines().length;
    process.kill(victimPid, 'SIGKILL');
    const exit = await serve.waitFor((l) => l.event === 'worker_exit' && l.worker === victimSlot, 10_000, from);
    expect(exit).toMatchObject({ signal: 'SIGKILL', pid: victimPid });
    // The released slots take new sessions (on the survivor, or on the replacement once it listens) ...
    const fresh: pg.Client[] = [];
    try {
      for (let i = 0; i < onVictim.length; i++) {
        const a = await attempt('alice');
        expect(a.error?.code).toBeUndefined();
        fresh.push(a.client!);
      }
      // ... and no more than those.
      const over = await attempt('alice');
      if (over.client) fresh.push(over.client);
      expect(over.error?.code).toBe('53300');
      // Alice's, and possibly bob's from the first test (his session's end may still be on its way).
      expect(exit.identity_slots_released).toBeGreaterThanOrEqual(onVictim.length);
    } finally {
      await Promise.all([...fresh, ...held].map((c) => c.end().catch(() => undefined)));
    }
    // The replacement is up before the proxy is stopped.
    await serve.waitFor((l) => l.event === 'worker_listening' && l.worker === victimSlot && l.pid !== victimPid, 20_000, from);
  });
});
