/**
 * Scenario pg-restart: PostgreSQL stopped under load (fast, then immediate mode) and started again.
 * Writers (node-postgres) insert numbered rows through the proxy and remember every acknowledged one, and
 * pgbench (TPC-B over libpq, back-to-back short runs: chaos/lib/pgbench-loop.ts) runs through the proxy
 * too; together they leave one pooled backend free for the recovery probe. Pass: clients only see
 * 57P01 / 57P03 / 08006, nothing hangs, a new login works within 5 s of PostgreSQL accepting connections,
 * PostgreSQL's service-account backends return to at most the pool size (and match the proxy's own count),
 * every acknowledged row is there, pgbench_history holds at least the transactions pgbench saw committed,
 * and pgbench runs cleanly again after each restart. synchronous_commit is on here: the test cluster's default (off)
 * would let an immediate stop lose acknowledged commits by PostgreSQL's design, not the proxy's.
 */
import pg from 'pg';
import { Load } from '../lib/load.js';
import { PgbenchLoop, pgbenchInit } from '../lib/pgbench-loop.js';
import { percentile, Verdict, type Scenario, type ScenarioOptions, type ScenarioResult } from '../lib/scenario.js';
import { EMAIL, serviceBackends, startChaosStack, type ChaosStack } from '../lib/stack.js';

const POOL_SIZE = 7;
const WRITERS = 4;
const PGBENCH_CLIENTS = 2;
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
      await pgbenchInit(stack.cluster, 'mydb', 'app_writer');
      const token = await stack.token('alice');
      const acked: bigint[] = [];
      // Fewer clients than pooled backends (session pooling: each holds one), so a new login can always get one.
      const workers = WRITERS;
      const load = new Load({
        workers,
        config: () => stack.clientConfig(token),
        step: async (client, w, seq) => {
          const id = BigInt(w) * 1_000_000_000n + BigInt(seq);
          await client.query('insert into chaos_counter (id, worker) values ($1, $2)', [id.toString(), w]);
          acked.push(id);
        },
      });
      const bench = new PgbenchLoop({ host: '127.0.0.1', port: stack.proxy.port, user: EMAIL.alice!, password: token, database: 'mydb' }, { clients: PGBENCH_CLIENTS, seconds: o.short ? 1 : 2 });
      await sleep(phaseMs);
      for (const mode of ['fast', 'immediate'] as const) {
        const stepsBefore = load.stats.steps;
        o.log(`stopping PostgreSQL (${mode}) with ${workers} writers running`);
        const t0 = Date.now();
        await stack.cluster.halt(mode);
        v.figure(`${mode}: stop took (ms)`, Date.now() - t0);
        await sleep(phaseMs);
        await stack.cluster.start();
        const back = Date.now();
        const recovered = await timeToRecover(stack, token, 30_000);
        v.figure(`${mode}: new login works after (ms)`, recovered);
        v.check(recovered <= RECOVERY_BOUND_MS, `${mode}: a new login through the proxy worked only ${recovered} ms after PostgreSQL was back (bound ${RECOVERY_BOUND_MS} ms)`);
        const writersBack = Date.now();
        const stepsAt = load.stats.steps;
        while (load.stats.steps === stepsAt && Date.now() - writersBack < 15_000) await sleep(20);
        v.figure(`${mode}: writers write again after (ms)`, Date.now() - writersBack + recovered);
        // pgbench: the first run that starts after PostgreSQL is back and ends with no client aborted.
        while (!bench.stats.cleanRunEnds.some((t) => t > back) && Date.now() - back < 30_000) await sleep(50);
        const clean = bench.stats.cleanRunEnds.find((t) => t > back);
        v.figure(`${mode}: pgbench run ends cleanly after (ms)`, clean ? clean - back : 'none within 30 s');
        v.check(clean !== undefined, `${mode}: no clean pgbench run within 30 s of PostgreSQL being back`);
        await sleep(phaseMs);
        v.check(load.stats.steps > stepsBefore, `${mode}: the writers made no progress after the restart`);
      }
      await bench.stop();
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
      const b = bench.stats;
      const history = Number((await stack.cluster.query<{ n: string }>('select count(*) as n from pgbench_history', [], 'mydb')).rows[0]!.n);
      v.figure('pgbench runs (with aborted clients) / transactions committed', `${b.runs} (${b.runsWithAborts}) / ${b.processed}`);
      v.figure('pgbench errors', JSON.stringify(b.errors));
      if (b.unclassified.length) v.figure('pgbench errors not classified', JSON.stringify(b.unclassified));
      v.figure('pgbench_history rows (≥ transactions pgbench saw committed)', history);
      v.check(b.hangs === 0, `${b.hangs} pgbench runs hung (not over 30 s after their -T)`);
      v.check(history >= b.processed, `pgbench saw ${b.processed} transactions committed, pgbench_history has ${history}: acknowledged transactions lost`);
      const pgbenchUnexpected = Object.keys(b.errors).filter((k) => !CLEAN.includes(k));
      v.check(pgbenchUnexpected.length === 0, `pgbench got errors other than ${CLEAN.join('/')}: ${pgbenchUnexpected.join('; ')}`);
      v.check(stack.leakedTokens() === 0, 'a token appeared in the proxy log');
    } finally {
      await stack.stop();
    }
    return v.result();
  },
};
