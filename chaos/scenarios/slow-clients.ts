/**
 * Scenario slow-clients: abusive and slow clients while another user's latency is measured.
 * 1. A client asks for ~200 MB of results and never reads them: the proxy's memory must stay bounded
 *    (the relay's backpressure pauses the backend).
 * 2. Many idle TLS connections (10,000 in the long run; short: 300), each logged in (ReadyForQuery) on a
 *    transaction-pooling database, so it holds no backend: the proxy's memory per idle session. (On a
 *    session-pooling database all but pool.size of them would wait for a backend and be refused at
 *    login_timeout: a test of the queue, not of idle sessions.)
 * 3. A storm of logins (2,000; short: 200) with one token, 50 at a time: all end, none hangs; the
 *    verified-token cache makes the repeats cheap.
 * A probe (bob, `select 1` every 50 ms on its own session) measures what other users see throughout.
 * The harness's file limit must allow the idle connections (ulimit -n; `npm run chaos` says when it does not).
 */
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { idlePool } from '../../bench/idle-connections.js';
import { query } from '../../src/protocol/client-messages.js';
import { mb, percentile, Verdict, type Scenario, type ScenarioOptions, type ScenarioResult } from '../lib/scenario.js';
import { EMAIL, startChaosStack } from '../lib/stack.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function fileLimit(): number {
  try {
    return Number(execFileSync('sh', ['-c', 'ulimit -n']).toString().trim());
  } catch {
    return NaN;
  }
}

export const slowClients: Scenario = {
  name: 'slow-clients',
  summary: 'a client that never reads results, many idle TLS connections, a login storm; other users latency measured',
  async run(o: ScenarioOptions): Promise<ScenarioResult> {
    const v = new Verdict('slow-clients');
    const idleCount = o.short ? 300 : 10_000;
    const storm = o.short ? 200 : 2000;
    const limit = fileLimit();
    v.figure('file limit (ulimit -n)', limit);
    // Each end is in its own process (the harness, the proxy child), each needs a descriptor per connection.
    if (limit < idleCount + 500) {
      v.fail(`ulimit -n is ${limit}: ${idleCount} idle connections need about ${idleCount + 500} descriptors per process; raise it (ulimit -n 65536) and run again`);
      return v.result();
    }
    const stack = await startChaosStack({
      // Tokens outlive the run: the probe keeps one session (and token) throughout, and opening 10,000 TLS
      // connections takes minutes on a busy machine (with the default 5 minutes the probe's session ended by
      // its token's expiry halfway through the long run, 57P01... as designed, but not what this measures).
      accessTokenTtlSeconds: 3600,
      proxy: (cluster) => ({
        databases: {
          mydb: { host: cluster.host, port: cluster.port, dbname: 'mydb', pool: { size: 5 } },
          mydb_tx: { host: cluster.host, port: cluster.port, dbname: 'mydb', pool: { mode: 'transaction', size: 5 } },
        },
        limits: { login_timeout: '60s', pool_wait_timeout: '10m', max_client_connections: idleCount + storm + 100 },
      }),
    });
    try {
      const alice = await stack.token('alice');
      const bob = await stack.token('bob');
      let probeError: unknown;
      // The probe: bob's own session.
      const probe = new pg.Client(stack.clientConfig(bob, 'bob'));
      probe.on('error', (e) => (probeError ??= e));
      await probe.connect();
      const lat: { phase: string; ms: number }[] = [];
      let phase = 'quiet';
      let probing = true;
      const probing$ = (async () => {
        while (probing) {
          const t0 = performance.now();
          await probe.query('select 1').catch((e: unknown) => (probeError ??= e));
          lat.push({ phase, ms: performance.now() - t0 });
          await sleep(50);
        }
      })();
      await sleep(1000);
      const base = await stack.stats(true);
      const target = { host: '127.0.0.1', port: stack.proxy.port, user: EMAIL.alice!, password: alice, database: 'mydb', ca: stack.idp.ca.cert };

      // 1. A client that never reads.
      phase = 'non-reader';
      const reader = idlePool(target);
      await reader.open(1, 1);
      const sock = reader.connections[0]!.socket;
      sock.pause();
      sock.removeAllListeners('data');
      sock.write(query("select repeat('x', 1000000) from generate_series(1, 200)"));
      let peak = base.memory.rss;
      for (let i = 0; i < (o.short ? 6 : 20); i++) {
        await sleep(500);
        peak = Math.max(peak, (await stack.stats()).memory.rss);
      }
      await reader.close();
      v.figure('non-reading client: proxy RSS peak over start (MB)', mb(peak - base.memory.rss));
      v.check(peak - base.memory.rss < 64 * 1048576, `a client that never reads made the proxy grow by ${mb(peak - base.memory.rss)} MB (bound 64 MB)`);

      // 2. Idle TLS connections.
      phase = 'idle';
      await sleep(500);
      const before = await stack.stats(true);
      const idle = idlePool({ ...target, database: 'mydb_tx' });
      const t0 = Date.now();
      await idle.open(idleCount, 64);
      // Opened means the token was sent; logged in means ReadyForQuery came back.
      for (const until = Date.now() + 60_000; idle.ready < idleCount && Date.now() < until; ) await sleep(200);
      const opened = Date.now() - t0;
      await sleep(1000);
      const withIdle = await stack.stats(true);
      const perConn = (withIdle.memory.rss - before.memory.rss) / idleCount;
      v.figure('idle TLS connections', `${idle.connections.length}, ${idle.ready} logged in (in ${(opened / 1000).toFixed(1)} s); proxy sessions ${withIdle.sessions}`);
      v.check(idle.ready === idleCount && withIdle.sessions >= idleCount, `of ${idleCount} idle connections ${idle.ready} logged in and the proxy holds ${withIdle.sessions} sessions`);
      v.figure('proxy RSS with them (MB)', mb(withIdle.memory.rss));
      v.figure('memory per idle connection (KB, RSS / heap)', `${(perConn / 1024).toFixed(1)} / ${((withIdle.memory.heapUsed - before.memory.heapUsed) / idleCount / 1024).toFixed(1)}`);
      await idle.close();

      // 3. A login storm with one token.
      phase = 'storm';
      const stormStart = Date.now();
      let ok = 0;
      const errors: Record<string, number> = {};
      let next = 0;
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          while (next < storm) {
            next++;
            const c = new pg.Client({ ...stack.clientConfig(alice), connectionTimeoutMillis: 30_000 });
            c.on('error', () => undefined);
            try {
              await c.connect();
              ok++;
            } catch (e) {
              const code = String((e as { code?: string }).code ?? 'other');
              errors[code] = (errors[code] ?? 0) + 1;
            } finally {
              await c.end().catch(() => undefined);
            }
          }
        }),
      );
      const stormS = (Date.now() - stormStart) / 1000;
      phase = 'after';
      await sleep(1000);
      probing = false;
      await probing$;
      await probe.end();
      v.figure('login storm: logins / ok / errors', `${storm} / ${ok} / ${JSON.stringify(errors)}`);
      v.figure('login storm: logins per second', Math.round(storm / stormS));
      const byPhase = (p: string) => lat.filter((l) => l.phase === p).map((l) => l.ms);
      for (const p of ['quiet', 'non-reader', 'idle', 'storm', 'after']) v.figure(`other user's latency p50 / p99 (ms), ${p}`, `${percentile(byPhase(p), 50).toFixed(1)} / ${percentile(byPhase(p), 99).toFixed(1)}`);
      v.check(ok + Object.values(errors).reduce((a, b) => a + b, 0) === storm, 'some storm logins never ended');
      v.check(Object.keys(errors).every((k) => ['53300', '57P03'].includes(k)), `storm logins failed with ${JSON.stringify(errors)}`);
      v.check(probeError === undefined, `the other user's session failed: ${String((probeError as Error | undefined)?.message)}`);
      v.check(stack.leakedTokens() === 0, 'a token appeared in the proxy log');
    } finally {
      await stack.stop();
    }
    return v.result();
  },
};
