/**
 * `npm run bench:txprep`: pgbench -S through gprxy in transaction mode (pool.mode: transaction) with
 * -M simple, extended and prepared (named statements renamed and re-prepared per backend, issue 17), against
 * direct PostgreSQL, interleaved, medians of the rounds. The stack is bench/stack.ts's (PostgreSQL, the dev
 * OIDC provider, pgbench tables); the proxy is a second child process with the same config in transaction mode.
 *
 * No PgBouncer comparison for -M prepared: Debian 12's PgBouncer is 1.18, which has no max_prepared_statements
 * (1.21+), so pgbench -M prepared through its transaction mode fails ("prepared statement P_0 does not exist").
 *
 * Options: --clients LIST (default 10,100), --duration S (default 8), --rounds N (default 3), --pool N (default 20).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pgbench, type Endpoint } from './pgbench.js';
import { cleanup, installSignalHandlers, onCleanup, startNodeChild } from './processes.js';
import { startStack, DATABASE } from './stack.js';

const { values } = parseArgs({ options: { clients: { type: 'string' }, duration: { type: 'string' }, rounds: { type: 'string' }, pool: { type: 'string' } } });
const clientCounts = (values.clients ?? '10,100').split(',').map(Number);
const seconds = Number(values.duration ?? 8);
const rounds = Number(values.rounds ?? 3);
const pool = Number(values.pool ?? 20);
const MODES = ['simple', 'extended', 'prepared'] as const;

const started = Date.now();
const log = (line: string) => console.error(`[bench:txprep ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<number> {
  installSignalHandlers();
  try {
    const stack = await startStack({ pool, scale: 1, pgBin: process.env.GPRXY_BENCH_PG_BIN ?? '/usr/lib/postgresql/15/bin', maxClients: Math.max(...clientCounts), log });
    // The same configuration, the benchmark database in transaction mode.
    const config = JSON.parse(readFileSync(join(stack.dir, 'gprxy.json'), 'utf8')) as { databases: Record<string, { pool: Record<string, unknown> }>; log: { file: string } };
    config.databases = { [DATABASE]: { ...config.databases[DATABASE]!, pool: { mode: 'transaction', size: pool, prepared_statements: 200 } } };
    config.log.file = join(stack.dir, 'gprxy-tx.log');
    const configPath = join(stack.dir, 'gprxy-tx.json');
    writeFileSync(configPath, JSON.stringify(config), { mode: 0o600 });
    const child = await startNodeChild<{ port: number; pid: number }>(join(import.meta.dirname, 'proxy-child.ts'), { configPath });
    onCleanup('gprxy transaction mode', () => child.stop());
    const { direct } = stack.endpoints();
    const tx: Endpoint = { name: 'gprxy-tx', host: '127.0.0.1', port: child.ready.port, user: stack.email, password: stack.token, database: DATABASE };
    const tps: Record<string, number[]> = {};
    for (const clients of clientCounts) {
      for (const mode of MODES) {
        for (let r = 0; r < rounds; r++) {
          for (const endpoint of r % 2 ? [tx, direct] : [direct, tx]) {
            const result = await pgbench({ endpoint, clients, seconds, mode, sslmode: 'disable' });
            if (result.failed) throw new Error(`${endpoint.name} ${mode} ${clients}: ${result.failed} failed transactions`);
            (tps[`${clients}/${mode}/${endpoint.name}`] ??= []).push(result.tps);
            log(`${clients} clients, -M ${mode}, ${endpoint.name}: ${result.tps.toFixed(0)} tps`);
          }
        }
      }
    }
    const stats = (await child.request({ type: 'stats' })) as { pools: Record<string, { preparedHits: number; preparedMisses: number; preparedEvictions: number }> };
    console.log(`\ngprxy transaction mode, pgbench -S, ${seconds} s runs, ${rounds} rounds (medians), pool ${pool}; ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, Linux ${release()}`);
    console.log(Object.entries(stack.versions).map(([k, v]) => `${k}: ${v}`).join('; '));
    console.log('\n| clients | -M | direct tps | gprxy transaction mode tps | ratio |\n|---|---|---|---|---|');
    for (const clients of clientCounts) {
      for (const mode of MODES) {
        const d = median(tps[`${clients}/${mode}/direct`]!);
        const g = median(tps[`${clients}/${mode}/gprxy-tx`]!);
        console.log(`| ${clients} | ${mode} | ${d.toFixed(0)} | ${g.toFixed(0)} | ${(g / d).toFixed(2)} |`);
      }
    }
    for (const [name, s] of Object.entries(stats.pools)) console.log(`prepared statements, pool ${name}: ${s.preparedHits} hits, ${s.preparedMisses} misses, ${s.preparedEvictions} evictions`);
    console.log('PgBouncer: not compared for -M prepared (Debian 12 ships 1.18, without max_prepared_statements, which came in 1.21).');
    return 0;
  } catch (e) {
    console.error(`bench:txprep failed: ${(e as Error).stack ?? String(e)}`);
    return 1;
  } finally {
    await cleanup();
  }
}

process.exit(await main());
