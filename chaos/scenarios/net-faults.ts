/**
 * Scenario net-faults: a TCP fault proxy (chaos/lib/fault-proxy.ts) between gprxy and PostgreSQL while
 * writers and readers run through the proxy: every connection reset (RST), the path stalled for a while,
 * and (long run) new connections blackholed. Pass: clients see only 08006 / 57P03 / 57P01 (never a hang
 * beyond 15 s), a stall shorter than that is ridden out, new logins work within 5 s of the path being
 * back, a blackholed backend connect fails the login within limits.backend_connect_timeout (set here: 1 s
 * short, 3 s long) instead of hanging, logins work again within 5 s of the blackhole ending (connects in
 * flight to nowhere end at that timeout, and the logins waiting behind them fail with them instead of each
 * waiting for a connect of its own), and the proxy's backends match PostgreSQL's at the end.
 */
import pg from 'pg';
import { onCleanup } from '../../bench/processes.js';
import { FaultProxy } from '../lib/fault-proxy.js';
import { Load } from '../lib/load.js';
import { percentile, Verdict, type Scenario, type ScenarioOptions, type ScenarioResult } from '../lib/scenario.js';
import { serviceBackends, startChaosStack, type ChaosStack } from '../lib/stack.js';

const POOL_SIZE = 3;
const CLEAN = ['08006', '57P03', '57P01'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function loginTime(stack: ChaosStack, token: string, limitMs: number): Promise<{ ms: number; error?: string }> {
  const t0 = Date.now();
  for (;;) {
    const c = new pg.Client({ ...stack.clientConfig(token), connectionTimeoutMillis: 30_000 });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.query('select 1');
      await c.end();
      return { ms: Date.now() - t0 };
    } catch (e) {
      await c.end().catch(() => undefined);
      if (Date.now() - t0 > limitMs) return { ms: Date.now() - t0, error: String((e as { code?: string }).code ?? (e as Error).message) };
      await sleep(50);
    }
  }
}

export const netFaults: Scenario = {
  name: 'net-faults',
  summary: 'a TCP fault proxy between gprxy and PostgreSQL: resets, stalls, blackholed connects under load',
  async run(o: ScenarioOptions): Promise<ScenarioResult> {
    const v = new Verdict('net-faults');
    const phaseMs = (o.seconds ?? (o.short ? 1 : 10)) * 1000;
    let fault: FaultProxy | undefined;
    const stack = await startChaosStack({
      proxy: (cluster) => {
        fault ??= new FaultProxy({ host: cluster.host, port: cluster.port });
        return {};
      },
    });
    const faults = fault!;
    try {
      await faults.start();
      onCleanup('fault proxy', () => faults.close());
      const connectTimeoutMs = o.short ? 1000 : 3000;
      await stack.startProxy({
        databases: { mydb: { host: '127.0.0.1', port: faults.port, dbname: 'mydb', pool: { size: POOL_SIZE } } },
        limits: { login_timeout: '20s', pool_wait_timeout: '20s', backend_connect_timeout: `${connectTimeoutMs}ms` },
      });
      v.figure('backend_connect_timeout (ms)', connectTimeoutMs);
      const token = await stack.token('alice');
      // As many writers as backends, each ending its session every 100 writes: the logins measured below
      // compete for a slot with the writers' next logins (FIFO), never with a session held for the whole run.
      const load = new Load({
        workers: POOL_SIZE,
        stepsPerConnection: 100,
        config: () => stack.clientConfig(token),
        step: async (c) => void (await c.query("insert into notes (body) values ('net') returning id")),
      });
      await sleep(phaseMs);

      const resets = faults.resetAll();
      const afterReset = await loginTime(stack, token, 10_000);
      v.figure('reset: connections reset', resets);
      v.figure('reset: new login works after (ms)', afterReset.ms);
      v.check(!afterReset.error && afterReset.ms <= 5000, `after a reset of every backend connection a new login took ${afterReset.ms} ms (${afterReset.error ?? 'ok'}; bound 5 s)`);
      await sleep(phaseMs);

      const stallMs = o.short ? 1000 : 10_000;
      const before = load.stats.latenciesMs.length;
      faults.stall();
      await sleep(stallMs);
      faults.restore();
      await sleep(phaseMs);
      const during = load.stats.latenciesMs.slice(before);
      v.figure('stall (ms)', stallMs);
      v.figure('stall: slowest write across it (ms)', Math.round(Math.max(0, ...during)));

      {
        faults.blackholeNew(true);
        faults.resetAll();
        const t0 = Date.now();
        const refused = await loginTime(stack, token, 0);
        const refusedMs = Date.now() - t0;
        v.figure('blackhole: a login fails after (ms)', `${refusedMs} (${refused.error ?? 'it worked'})`);
        v.check(refused.error === '57P03' && refusedMs <= connectTimeoutMs + 10_000, `with backend connects blackholed a login ended after ${refusedMs} ms (${refused.error ?? 'it worked'}; expected 57P03 within the connect timeout + 10 s)`);
        // The blackhole lasts a while under load (the writers keep logging in and failing), then ends.
        await sleep(phaseMs);
        faults.restore();
        const back = await loginTime(stack, token, 15_000);
        v.figure('blackhole: login works again after (ms)', back.ms);
        v.check(!back.error && back.ms <= 5000, `after the blackhole a new login took ${back.ms} ms (${back.error ?? 'ok'}; bound 5 s)`);
      }
      await load.stop();
      const s = load.stats;
      v.figure('writes', s.steps);
      v.figure('write latency p50 / p99 (ms)', `${percentile(s.latenciesMs, 50).toFixed(1)} / ${percentile(s.latenciesMs, 99).toFixed(1)}`);
      v.figure('errors by SQLSTATE', JSON.stringify(s.errors));
      v.check(s.hangs === 0, `${s.hangs} client operations hung (no answer within 15 s)`);
      const unexpected = load.unexpected(CLEAN);
      v.check(Object.keys(unexpected).length === 0, `clients got errors other than ${CLEAN.join('/')}: ${JSON.stringify(unexpected)}`);
      let backends = 0;
      let proxyTotal = 0;
      const deadline = Date.now() + 5000;
      do {
        await sleep(100);
        backends = (await serviceBackends(stack.cluster)).app_writer ?? 0;
        proxyTotal = Object.values((await stack.stats()).pools).reduce((n, p) => n + p.total, 0);
      } while (backends !== proxyTotal && Date.now() < deadline);
      v.figure('service backends after (PostgreSQL / proxy)', `${backends} / ${proxyTotal}`);
      v.check(backends <= POOL_SIZE && backends === proxyTotal, `PostgreSQL has ${backends} backends of app_writer, the proxy counts ${proxyTotal} (pool size ${POOL_SIZE})`);
      v.check(stack.leakedTokens() === 0, 'a token appeared in the proxy log');
    } finally {
      await stack.stop();
      await faults.close();
    }
    return v.result();
  },
};
