/**
 * Scenario pg-restart: PostgreSQL stopped under load (fast, then immediate mode) and started again.
 * Writers (node-postgres, one fewer than the pool size) insert numbered rows through the proxy and remember
 * every acknowledged one. Pass: clients only see
 * 57P01 / 57P03 / 08006, nothing hangs, a new login works within 5 s of PostgreSQL accepting connections,
 * PostgreSQL's service-account backends return to at most the pool size (and match the proxy's own count),
 * and every acknowledged row is there. synchronous_commit is on here: the test cluster's default (off)
 * would let an immediate stop lose acknowledged commits by PostgreSQL's design, not the proxy's.
 */
import pg from 'pg';
import { Load } from '../lib/load.js';
import { percentile, Verdict, type Scenario, type ScenarioOptions, type ScenarioResult } from '../lib/scenario.js';
import { serviceBackends, startChaosStack, type ChaosStack } from '../lib/stack.js';

const POOL_SIZE = 5;
const CLEAN = ['57P01', '57P03', '08006'];
const RECOVERY_BOUND_MS = 5000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Time from now until a new login and a query through the proxy succeed (probing every 50 ms). */
async function timeToRecover(stack: ChaosStack, token: string, limitMs: number): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const c = new pg.Client({ ...stack.clientConfig(token), connectionTimeoutMillis: 3000 });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.query('select 1');
      await c.end();
      return Date.now() - t0;
    } catch {
      await c.end().catch(() => undefined);
      if (Date.now() - t0 > limitMs) return Infinity;
      await sleep(50);
    }
  }
}

export const pgRestart: Scenario = {
  name: 'pg-restart',
  summary: 'PostgreSQL stopped (fast, immediate) and started again under load through the proxy',
  async run(o: ScenarioOptions): Promise<ScenarioResult> {
    const v = new Verdict('pg-restart');
    const phaseMs = (o.seconds ?? (o.short ? 1 : 10)) * 1000;
    const stack = await startChaosStack({
      cluster: { settings: { synchronous_commit: 'on' } },
      proxy: (cluster) => ({ databases: { mydb: { host: cluster.host, port: cluster.port, dbname: 'mydb', pool: { size: POOL_SIZE } } }, limits: { login_timeout: '10s', pool_wait_timeout: '5s' } }),
    });
    try {
      await stack.cluster.query('create table chaos_counter (id bigint primary key, worker int not null); grant select, insert on chaos_counter to app_writer', [], 'mydb');
      const token = await stack.token('alice');
      const acked: bigint[] = [];
      // Fewer writers than pooled backends (session pooling: each holds one), so a new login can always get one.
      const workers = POOL_SIZE - 1;
      const load = new Load({
        workers,
        config: () => stack.clientConfig(token),
        step: async (client, w, seq) => {
          const id = BigInt(w) * 1_000_000_000n + BigInt(seq);
          await client.query('insert into chaos_counter (id, worker) values ($1, $2)', [id.toString(), w]);
          acked.push(id);
        },
      });
      await sleep(phaseMs);
      for (const mode of ['fast', 'immediate'] as const) {
        const stepsBefore = load.stats.steps;
        o.log(`stopping PostgreSQL (${mode}) with ${workers} writers running`);
        const t0 = Date.now();
        await stack.cluster.halt(mode);
        v.figure(`${mode}: stop took (ms)`, Date.now() - t0);
        await sleep(phaseMs);
        await stack.cluster.start();
        const recovered = await timeToRecover(stack, token, 30_000);
        v.figure(`${mode}: new login works after (ms)`, recovered);
        v.check(recovered <= RECOVERY_BOUND_MS, `${mode}: a new login through the proxy worked only ${recovered} ms after PostgreSQL was back (bound ${RECOVERY_BOUND_MS} ms)`);
        const writersBack = Date.now();
        const stepsAt = load.stats.steps;
        while (load.stats.steps === stepsAt && Date.now() - writersBack < 15_000) await sleep(20);
        v.figure(`${mode}: writers write again after (ms)`, Date.now() - writersBack + recovered);
        await sleep(phaseMs);
        v.check(load.stats.steps > stepsBefore, `${mode}: the writers made no progress after the restart`);
      }
      await load.stop();
      const s = load.stats;
      v.figure('writes acknowledged', acked.length);
      v.figure('connects', s.connects);
      v.figure('errors by SQLSTATE', JSON.stringify(s.errors));
      v.figure('write latency p50 / p99 (ms)', `${percentile(s.latenciesMs, 50).toFixed(1)} / ${percentile(s.latenciesMs, 99).toFixed(1)}`);
      v.check(s.hangs === 0, `${s.hangs} client operations hung (no answer within 15 s)`);
      const unexpected = load.unexpected(CLEAN);
      v.check(Object.keys(unexpected).length === 0, `clients got errors other than ${CLEAN.join('/')}: ${JSON.stringify(unexpected)}`);

      // Backends settle: at most the pool size, and the proxy's count agrees with PostgreSQL's.
      let backends = 0;
      let proxyTotal = 0;
      const deadline = Date.now() + 5000;
      do {
        await sleep(100);
        backends = (await serviceBackends(stack.cluster)).app_writer ?? 0;
        const stats = await stack.stats();
        proxyTotal = Object.values(stats.pools).reduce((n, p) => n + p.total, 0);
      } while ((backends > POOL_SIZE || backends !== proxyTotal) && Date.now() < deadline);
      v.figure('service backends after (PostgreSQL / proxy)', `${backends} / ${proxyTotal}`);
      v.check(backends <= POOL_SIZE, `PostgreSQL has ${backends} backends of app_writer, more than the pool size ${POOL_SIZE}`);
      v.check(backends === proxyTotal, `PostgreSQL has ${backends} backends of app_writer but the proxy counts ${proxyTotal}`);

      const present = await stack.cluster.query<{ n: string }>('select count(*) as n from chaos_counter where id = any($1::bigint[])', [acked.map(String)], 'mydb');
      const kept = Number(present.rows[0]!.n);
      v.figure('acknowledged writes found after the restarts', `${kept} of ${acked.length}`);
      v.check(kept === acked.length, `${acked.length - kept} acknowledged writes are missing after the restarts`);
      v.check(stack.leakedTokens() === 0, 'a token appeared in the proxy log');
    } finally {
      await stack.stop();
    }
    return v.result();
  },
};
