/**
 * `npm run bench:scale` (issue 18): the realistic rows and the scale-out figures, each next to PgBouncer
 * measured in the same run, targets interleaved per round, medians reported.
 *
 *  1. tls        pgbench -S over TLS (sslmode=require) to gprxy and to PgBouncer with client TLS: tps and
 *                the proxy's CPU per transaction (user + system, µs, from /proc) for each; relay at 10
 *                clients and -C (a new TLS connection per transaction).
 *  2. wins       the cheap wins of the last benchmark notes, each against the code before it in the same
 *                run (bench/scale-child.ts switches them back): batched log writes, pre-filled cancel keys.
 *                Measured as proxy CPU per connection with -C and no TLS, where per-session costs show.
 *  3. workers    PostgreSQL and pgbench pinned to CPU 0 (taskset), `gprxy serve` (the real CLI) pinned to
 *                CPU 1: one process, --workers 1, --workers 2; then --workers 2 on CPUs 0-1; PgBouncer on CPU 1.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { pgbench, type Endpoint, type PgbenchRun } from './pgbench.js';
import { cleanup, installSignalHandlers, onCleanup, spawnTracked, startNodeChild, stopChild } from './processes.js';
import { median } from './report.js';
import { startStack, type Stack } from './stack.js';

const started = Date.now();
const log = (line: string) => console.error(`[bench:scale ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);
const BIN = join(import.meta.dirname, '..', 'bin', 'run.js');

const args = new Set(process.argv.slice(2));
const only = (name: string) => ![...args].some((a) => a.startsWith('--only=')) || [...args].some((a) => a === `--only=${name}` || (a.startsWith('--only=') && a.slice(7).split(',').includes(name)));
const DURATION = Number([...args].find((a) => a.startsWith('--duration='))?.slice(11) ?? 5);
const ROUNDS = Number([...args].find((a) => a.startsWith('--rounds='))?.slice(9) ?? 3);

function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

/** utime + stime of a process and all its descendants (workers), in seconds. */
function cpuSeconds(pid: number): number {
  let total = 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    total += (Number(f[11]) + Number(f[12])) / 100;
    for (const child of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) total += cpuSeconds(Number(child));
  } catch {
    // the process ended
  }
  return total;
}

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

interface Measured {
  tps: number;
  /** µs of the measured process tree's CPU per transaction. */
  cpu: number;
}

async function measure(pid: number, run: PgbenchRun): Promise<Measured> {
  const before = cpuSeconds(pid);
  const r = await pgbench(run);
  const txns = Number(/actually processed: (\d+)/.exec(r.output)?.[1] ?? NaN);
  return { tps: r.tps, cpu: ((cpuSeconds(pid) - before) / txns) * 1e6 };
}

type Series = Record<string, Measured[]>;
const med = (s: Measured[], k: keyof Measured) => median(s.map((m) => m[k]));

function table(title: string, unit: string, series: Series, cpuUnit = 'µs/txn'): string[] {
  const lines = [`**${title}**`, '', `| target | ${unit} (median) | proxy CPU ${cpuUnit} (median) | samples (${unit} / CPU) |`, '|---|--:|--:|---|'];
  for (const [name, s] of Object.entries(series)) {
    lines.push(`| ${name} | ${med(s, 'tps').toFixed(0)} | ${med(s, 'cpu').toFixed(1)} | ${s.map((m) => `${m.tps.toFixed(0)} / ${m.cpu.toFixed(1)}`).join(', ')} |`);
  }
  return [...lines, ''];
}

interface Target {
  name: string;
  pid: () => number;
  endpoint: () => Endpoint;
  sslmode: 'disable' | 'require';
}

async function interleave(targets: Target[], run: Omit<PgbenchRun, 'endpoint' | 'sslmode'>, label: string): Promise<Series> {
  const out: Series = {};
  for (const t of targets) await pgbench({ ...run, seconds: 1, endpoint: t.endpoint(), sslmode: t.sslmode }); // warm-up
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order every round so drift of the shared machine does not favour one target.
    const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
    for (const t of order) {
      const m = await measure(t.pid(), { ...run, endpoint: t.endpoint(), sslmode: t.sslmode });
      (out[t.name] ??= []).push(m);
      log(`  ${label} ${t.name}: ${m.tps.toFixed(0)} tps, CPU ${m.cpu.toFixed(1)} µs/txn (load ${loadAverage()})`);
    }
  }
  return out;
}

/** `gprxy serve --config FILE [--workers N]` (the real CLI, built dist/), pinned with taskset; resolves when it listens. */
async function startServe(stack: Stack, port: number, cpuList: string, workers?: number): Promise<{ child: ChildProcess; pid: number }> {
  const config = JSON.parse(readFileSync(join(stack.dir, 'gprxy.json'), 'utf8')) as Record<string, unknown>;
  const file = join(stack.dir, `gprxy-serve-${port}.json`);
  writeFileSync(file, JSON.stringify({ ...config, listen: `127.0.0.1:${port}`, log: { level: 'info', file: join(stack.dir, `serve-${port}.log`) } }), { mode: 0o600 });
  const child = spawnTracked('taskset', ['-c', cpuList, process.execPath, BIN, 'serve', '--config', file, ...(workers ? ['--workers', String(workers)] : [])], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, OCLIF_DISABLE_ENGINE_WARNING: '1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  onCleanup(`gprxy serve ${port}`, () => stopChild(child));
  const deadline = Date.now() + 30_000;
  for (;;) {
    let text = '';
    try {
      text = readFileSync(join(stack.dir, `serve-${port}.log`), 'utf8');
    } catch {
      // not yet
    }
    if (text.includes('"event":"listening"')) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`gprxy serve on ${port} did not start`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, pid: child.pid! };
}

async function freePort(): Promise<number> {
  const { freePort: f } = await import('../src/demo/postgres-cluster.js');
  return f();
}

async function main(): Promise<number> {
  installSignalHandlers();
  const loadStart = loadAverage();
  const out: string[] = [];
  const stack = await startStack({ pool: 20, scale: 1, pgBin: '/usr/lib/postgresql/15/bin', maxClients: 100, log });
  const gprxy = (sslmode: 'disable' | 'require'): Target => ({ name: `gprxy${sslmode === 'require' ? ' (TLS)' : ''}`, pid: () => stack.proxy.pid, endpoint: () => stack.endpoints().gprxy, sslmode });
  const bouncer = (sslmode: 'disable' | 'require'): Target => ({ name: `PgBouncer${sslmode === 'require' ? ' (TLS)' : ''}`, pid: () => stack.pgbouncer.pid, endpoint: () => stack.endpoints().pgbouncer, sslmode });
  try {
    if (only('tls')) {
      log('tls: relay, 10 clients');
      const relay = await interleave([bouncer('require'), gprxy('require')], { clients: 10, seconds: DURATION, mode: 'simple' }, 'tls relay');
      out.push(...table('pgbench -S simple, 10 clients, TLS (sslmode=require)', 'tps', relay));
      log('tls: -C, 10 clients');
      const connect = await interleave([bouncer('require'), gprxy('require')], { clients: 10, seconds: DURATION, mode: 'simple', connect: true }, 'tls -C');
      out.push(...table('pgbench -S -C (a new TLS connection per transaction), 10 clients', 'conn/s', connect, 'µs/conn'));
    }
    if (only('wins')) {
      log('wins: -C without TLS, four gprxy variants and PgBouncer');
      await stack.proxy.handle.stop();
      const variants: { name: string; unbatchedLog: boolean; randomBytesPerKey: boolean }[] = [
        { name: 'gprxy before (1 write per log line, randomBytes per key)', unbatchedLog: true, randomBytesPerKey: true },
        { name: 'gprxy + batched log writes', unbatchedLog: false, randomBytesPerKey: true },
        { name: 'gprxy + pre-filled cancel keys', unbatchedLog: true, randomBytesPerKey: false },
        { name: 'gprxy now (both)', unbatchedLog: false, randomBytesPerKey: false },
      ];
      const children: { port: number; pid: number; stop(): Promise<void> }[] = [];
      for (const v of variants) {
        const h = await startNodeChild<{ port: number; pid: number }>(join(import.meta.dirname, 'scale-child.ts'), { configPath: join(stack.dir, 'gprxy.json'), unbatchedLog: v.unbatchedLog, randomBytesPerKey: v.randomBytesPerKey });
        onCleanup(v.name, () => h.stop());
        children.push({ port: h.ready.port, pid: h.ready.pid, stop: () => h.stop() });
      }
      const targets: Target[] = [
        bouncer('disable'),
        ...variants.map((v, i) => ({ name: v.name, pid: () => children[i]!.pid, endpoint: () => ({ ...stack.endpoints().gprxy, port: children[i]!.port }), sslmode: 'disable' as const })),
      ];
      const wins = await interleave(targets, { clients: 10, seconds: DURATION, mode: 'simple', connect: true }, 'wins -C');
      out.push(...table('pgbench -S -C without TLS, 10 clients: the cheap wins, A/B in one run', 'conn/s', wins, 'µs/conn'));
      for (const c of children) await c.stop();
      await stack.startProxy();
    }
    if (only('workers')) {
      log('workers: pinning PostgreSQL to CPU 0');
      const dataDir = (await stack.cluster.query<{ setting: string }>("select setting from pg_settings where name = 'data_directory'")).rows[0]!.setting;
      const postmaster = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      for (const pid of [postmaster, ...children(postmaster)]) execFileSync('taskset', ['-a', '-p', '-c', '0', String(pid)], { stdio: 'ignore' });
      execFileSync('taskset', ['-a', '-p', '-c', '1', String(stack.pgbouncer.pid)], { stdio: 'ignore' });
      const setups: { name: string; cpus: string; workers?: number }[] = [
        { name: 'gprxy, one process, CPU 1', cpus: '1' },
        { name: 'gprxy --workers 1, CPU 1', cpus: '1', workers: 1 },
        { name: 'gprxy --workers 2, CPU 1', cpus: '1', workers: 2 },
        { name: 'gprxy --workers 2, CPUs 0-1', cpus: '0-1', workers: 2 },
      ];
      const serves: { pid: number; port: number }[] = [];
      for (const s of setups) {
        const port = await freePort();
        const { pid } = await startServe(stack, port, s.cpus, s.workers);
        serves.push({ pid, port });
      }
      const targets: Target[] = [
        { ...bouncer('require'), name: 'PgBouncer (TLS), CPU 1' },
        ...setups.map((s, i) => ({ name: s.name, pid: () => serves[i]!.pid, endpoint: () => ({ ...stack.endpoints().gprxy, port: serves[i]!.port }), sslmode: 'require' as const })),
      ];
      const w = await interleave(targets, { clients: 10, seconds: DURATION, mode: 'simple', cpus: '0' }, 'workers');
      out.push(...table('pgbench -S simple, 10 clients, TLS; PostgreSQL and pgbench on CPU 0 (taskset)', 'tps', w));
    }
    console.log('');
    console.log(`bench:scale, ${new Date().toISOString()}, ${DURATION} s runs, ${ROUNDS} rounds (order rotated), medians; pool size 20 (gprxy and PgBouncer, session mode)`);
    console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, Linux ${release()}; load average ${loadStart} at start, ${loadAverage()} at the end`);
    console.log(Object.entries(stack.versions).map(([k, v]) => `${k}: ${v}`).join('; '));
    console.log('');
    console.log(out.join('\n'));
    return 0;
  } catch (e) {
    console.error(`bench:scale failed: ${(e as Error).stack ?? String(e)}`);
    return 1;
  } finally {
    await cleanup();
  }
}

process.exit(await main());
