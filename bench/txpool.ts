/**
 * `npm run bench:txpool`: transaction pooling (issue 17), gprxy against PgBouncer's transaction mode in the
 * same run: many clients (default 1,000) on a small pool (default 20 backends), pgbench -S, -M simple and
 * extended, interleaved rounds (PgBouncer, gprxy, PgBouncer, ...), medians. Same stack as `npm run bench`
 * (bench/stack.ts): PostgreSQL with SCRAM, gprxy in its own process with the signed identity context and
 * four context.settings set on every transaction, PgBouncer with SCRAM; no TLS (relay cost, not crypto).
 *
 * `-M prepared` is not compared: Debian's PgBouncer is 1.18, which has no max_prepared_statements (1.21+),
 * so named prepared statements cannot run through its transaction mode at all. gprxy's prepared row runs
 * with --prepared (when prepared statements across backends are available in this build).
 *
 * Each run also reports the proxy's CPU time per transaction (user + system of its process tree from /proc,
 * the run's logins included), which a shared machine disturbs far less than tps.
 *
 *   npm run bench:txpool [-- --clients 1000 --pool 20 --duration 10 --rounds 3 --pg-bin /usr/lib/postgresql/15/bin --modes simple,extended --prepared --profile-dir DIR]
 */
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { pgbench, type Endpoint } from './pgbench.js';
import { cleanup, installSignalHandlers, wasInterrupted } from './processes.js';
import { median } from './report.js';
import { startStack } from './stack.js';

const started = Date.now();
const log = (line: string) => console.error(`[bench:txpool ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '1000' },
    pool: { type: 'string', default: '20' },
    duration: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    'pg-bin': { type: 'string' },
    prepared: { type: 'boolean', default: false },
    'profile-dir': { type: 'string' },
    modes: { type: 'string', default: 'simple,extended' },
  },
});
const CLIENTS = Number(values.clients);
const POOL = Number(values.pool);
const DURATION = Number(values.duration);
const ROUNDS = Number(values.rounds);

function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

/** utime + stime of a process and its descendants, in seconds (/proc; steadier than tps on a shared machine). */
function cpuSeconds(pid: number): number {
  let total = 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    total += (Number(fields[11]) + Number(fields[12])) / 100;
    for (const child of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) total += cpuSeconds(Number(child));
  } catch {
    // the process ended
  }
  return total;
}

async function main(): Promise<number> {
  installSignalHandlers();
  const loadAtStart = loadAverage();
  try {
    const profileDir = values['profile-dir'];
    const stack = await startStack({ pool: POOL, scale: 1, pgBin: values['pg-bin'], maxClients: CLIENTS, log, ...(profileDir ? { proxyExecArgv: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] } : {}) });
    log(`PgBouncer in transaction mode, pool ${POOL}`);
    await stack.startPgBouncer('transaction');
    const targets: Record<string, Endpoint> = { pgbouncer: { ...stack.endpoints().pgbouncer, name: 'pgbouncer-tx' }, gprxy: stack.txEndpoint() };
    const modes = [...values.modes.split(',').filter((m): m is 'simple' | 'extended' => m === 'simple' || m === 'extended'), ...(values.prepared ? (['prepared'] as const) : [])];
    const pids: Record<string, number> = { pgbouncer: stack.pgbouncer.pid, gprxy: stack.proxy.pid };
    // The postmaster (parent of the checkpointer, which lives as long as it): its live children's CPU is
    // PostgreSQL's share of each transaction.
    const checkpointer = Number((await stack.cluster.query<{ pid: number }>(`select pid from pg_stat_activity where backend_type = 'checkpointer'`)).rows[0]!.pid);
    const postmaster = Number(readFileSync(`/proc/${checkpointer}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
    log(`warming up (${CLIENTS} clients, 3 s each)`);
    for (const t of Object.values(targets)) await pgbench({ endpoint: t, clients: CLIENTS, seconds: 3, mode: 'simple', sslmode: 'disable' });
    const samples: Record<string, Record<string, number[]>> = {};
    const latency: Record<string, Record<string, number[]>> = {};
    const cpu: Record<string, Record<string, number[]>> = {};
    const pgCpu: Record<string, Record<string, number[]>> = {};
    for (const mode of modes) {
      for (let round = 0; round < ROUNDS; round++) {
        const order = round % 2 ? ['gprxy', 'pgbouncer'] : ['pgbouncer', 'gprxy'];
        for (const name of order) {
          if (mode === 'prepared' && name === 'pgbouncer') continue;
          const before = cpuSeconds(pids[name]!);
          const pgBefore = cpuSeconds(postmaster);
          const r = await pgbench({ endpoint: targets[name]!, clients: CLIENTS, seconds: DURATION, mode, sslmode: 'disable' });
          const transactions = Number(/actually processed: (\d+)/.exec(r.output)?.[1] ?? NaN);
          // Includes the run's 1,000 logins (SCRAM for PgBouncer, a cached token check for gprxy).
          const us = ((cpuSeconds(pids[name]!) - before) / transactions) * 1e6;
          const pgUs = ((cpuSeconds(postmaster) - pgBefore) / transactions) * 1e6;
          ((samples[mode] ??= {})[name] ??= []).push(r.tps);
          ((latency[mode] ??= {})[name] ??= []).push(r.latencyMs);
          ((cpu[mode] ??= {})[name] ??= []).push(us);
          ((pgCpu[mode] ??= {})[name] ??= []).push(pgUs);
          log(`${mode} round ${round + 1}: ${name} ${r.tps.toFixed(0)} tps, ${r.latencyMs.toFixed(1)} ms, proxy CPU ${us.toFixed(0)} µs/txn, PostgreSQL CPU ${pgUs.toFixed(0)} µs/txn, load ${loadAverage()}${r.failed ? `, ${r.failed} failed` : ''}`);
        }
      }
    }
    const stats = (await stack.proxy.handle.request({ type: 'stats' })) as { pools: Record<string, { waits: number; waitMs: number; transactions: number; transactionMs: number; total: number; pipelinedResets?: number }> };
    console.log('');
    console.log(`gprxy transaction pooling vs PgBouncer ${stack.versions.pgbouncer} (pool_mode = transaction), ${new Date().toISOString()}`);
    console.log(`${CLIENTS} clients, pool ${POOL}, pgbench -S, ${DURATION} s runs, ${ROUNDS} rounds, medians; ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}`);
    console.log(`${stack.versions.postgres}; node ${stack.versions.node}; load average ${loadAtStart} at start, ${loadAverage()} at the end`);
    console.log(`gprxy's release reset: ${process.env.GPRXY_BENCH_UNPIPELINED_RESET === '1' ? 'its own round trip at every release (GPRXY_BENCH_UNPIPELINED_RESET=1, the behaviour before)' : "pipelined into the next waiting client's first write"}`);
    console.log('');
    console.log('| pgbench -S | PgBouncer tps | gprxy tps | gprxy / PgBouncer | latency PgBouncer / gprxy (ms) | proxy CPU µs/txn PgBouncer / gprxy | PostgreSQL CPU µs/txn PgBouncer / gprxy |');
    console.log('|---|---:|---:|---:|---:|---:|---:|');
    for (const mode of modes) {
      const p = samples[mode]!.pgbouncer;
      const g = samples[mode]!.gprxy!;
      const pm = p ? median(p) : NaN;
      const gm = median(g);
      console.log(
        `| -M ${mode}, ${CLIENTS} clients | ${p ? pm.toFixed(0) : 'n/a (1.18)'} | ${gm.toFixed(0)} | ${p ? (gm / pm).toFixed(2) : '–'} | ${p ? median(latency[mode]!.pgbouncer!).toFixed(1) : '–'} / ${median(latency[mode]!.gprxy!).toFixed(1)} | ${p ? median(cpu[mode]!.pgbouncer!).toFixed(0) : '–'} / ${median(cpu[mode]!.gprxy!).toFixed(0)} | ${p ? median(pgCpu[mode]!.pgbouncer!).toFixed(0) : '–'} / ${median(pgCpu[mode]!.gprxy!).toFixed(0)} |`,
      );
    }
    console.log('');
    console.log('per-round samples (tps):', JSON.stringify(samples));
    console.log('per-round proxy CPU (µs/txn):', JSON.stringify(cpu));
    console.log('per-round PostgreSQL CPU (µs/txn):', JSON.stringify(pgCpu));
    const pool = Object.entries(stats.pools).find(([k]) => k.startsWith('mydb_tx/'));
    if (pool) {
      const [name, s] = pool;
      console.log(
        `gprxy pool ${name}: ${s.transactions} transactions, average ${(s.transactionMs / Math.max(1, s.transactions)).toFixed(2)} ms attached; ${s.waits} waits, average ${(s.waitMs / Math.max(1, s.waits)).toFixed(1)} ms; ${s.pipelinedResets ?? 0} resets pipelined into the next client's first write; ${s.total} backends`,
      );
    }
    return 0;
  } catch (e) {
    await new Promise((r) => setTimeout(r, 200));
    if (wasInterrupted()) return 130;
    console.error(`benchmark failed: ${(e as Error).stack ?? String(e)}`);
    return 1;
  } finally {
    log('cleaning up');
    await cleanup();
  }
}

process.exit(await main());
