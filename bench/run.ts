/**
 * `npm run bench`: gprxy against direct PostgreSQL and PgBouncer, measured side by side in one run on
 * loopback, with Debian's pgbench. Targets run interleaved (direct, PgBouncer, gprxy, direct, ...) so slow
 * drift of the machine hits all three alike; each figure is the median of its rounds.
 *
 *  1. relay throughput   pgbench -S, -M simple and extended, 1/10/100 clients, session pooling, no TLS;
 *                        with a bare Node.js pipe() relay as a fourth target (the floor of any Node relay)
 *  2. connection rate    pgbench -S -C, 10 clients, TLS (sslmode=require) on all three
 *  3. added latency      per round trip at 1 client, from the relay runs (paired per round)
 *  4. token verification cold RS256 and cached verifications per second (TokenVerifier, own process)
 *  5. tunnel             pgbench through `gprxy connect` against straight to `gprxy serve` (TLS)
 *  6. memory             RSS per idle TLS client connection, gprxy and PgBouncer, 1,000 and 5,000
 *  7. statement audit    pgbench -S through one proxy to the same database served with audit.statements
 *                        none, ddl and all (issue 22), interleaved, order rotated every round
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { decodeJwt } from 'jose';
import { idlePool, type IdleTarget } from './idle-connections.js';
import { parseOptions, USAGE, type BenchOptions } from './options.js';
import { pgbench, type Endpoint } from './pgbench.js';
import { cleanup, installSignalHandlers, startNodeChild, wasInterrupted } from './processes.js';
import { median, renderMarkdown, renderTable, TARGETS, type Row, type Samples, type Target } from './report.js';
import { startStack, type Stack } from './stack.js';

const started = Date.now();
const log = (line: string) => console.error(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);

interface Results {
  relay: Record<string, Samples>;
  audit: Record<string, Record<AuditMode, number[]>>;
  /** The proxy's CPU time (user + system) per transaction, µs: far less sensitive to other load than tps. */
  auditCpu: Record<string, Record<AuditMode, number[]>>;
  latency: Record<string, Samples>;
  connect: Samples;
  tunnel: { straight: number[]; tunnel: number[] };
  token?: { coldPerSecond: number; cachedPerSecond: number; tokenBytes: number };
  memory: Record<string, { count: number; rssBytes: number; baselineBytes: number; perConnection: number; ready: number; heapPerConnection?: number; externalPerConnection?: number }[]>;
}

function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

/** Other work on the machine skews every figure: wait for quiet if asked, and report the load seen. */
async function waitForQuiet(minutes: number): Promise<void> {
  const deadline = Date.now() + minutes * 60_000;
  let said = false;
  while (loadAverage() >= 1 && Date.now() < deadline) {
    if (!said) log(`waiting for the machine to be quiet (load average ${loadAverage()})`);
    said = true;
    await new Promise((r) => setTimeout(r, 5000));
  }
}

function readRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!kb) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb[1]) * 1024;
}

async function relay(stack: Stack, o: BenchOptions, results: Results): Promise<void> {
  if (o.pipe && !stack.pipe) await stack.startPipe();
  const endpoints = stack.endpoints();
  const targets: Target[] = endpoints.pipe ? ['direct', 'pgbouncer', 'pipe', 'gprxy'] : [...TARGETS];
  const at = (t: Target) => (t === 'pipe' ? endpoints.pipe! : endpoints[t]);
  const warm = o.quick ? 1 : 2;
  log(`relay: warming up every target (${Math.max(...o.clients)} clients, ${warm} s each)`);
  for (const t of targets) await pgbench({ endpoint: at(t), clients: Math.max(...o.clients), seconds: warm, mode: 'simple', sslmode: 'disable' });
  for (const mode of o.modes) {
    for (const clients of o.clients) {
      const key = `${mode}/${clients}`;
      const samples: Samples = {};
      for (let round = 0; round < o.rounds; round++) {
        const tps: Partial<Record<Target, number>> = {};
        for (const t of targets) {
          const r = await pgbench({ endpoint: at(t), clients, seconds: o.duration, mode, sslmode: 'disable' });
          (samples[t] ??= []).push(r.tps);
          tps[t] = r.tps;
          if (o.verbose) log(`  ${mode} ${clients} clients ${t}: ${r.tps.toFixed(0)} tps`);
        }
        if (clients === 1) {
          // Added latency per round trip, paired within the round so drift cancels.
          const lat = (results.latency[mode] ??= {});
          for (const t of targets) (lat[t] ??= []).push(1e6 / tps[t]! - 1e6 / tps.direct!);
        }
      }
      results.relay[key] = samples;
      log(`relay ${mode} ${String(clients).padStart(3)} clients: ${targets.map((t) => `${t} ${median(samples[t]!).toFixed(0)}`).join(', ')} tps`);
    }
  }
}

type AuditMode = 'none' | 'ddl' | 'all' | 'all-file';

/** utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15, in clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
const AUDIT_MODES: readonly AuditMode[] = ['none', 'ddl', 'all', 'all-file'];

async function statementAudit(stack: Stack, o: BenchOptions, results: Results): Promise<void> {
  const clients = o.auditClients;
  const warm = o.quick ? 1 : 2;
  for (const m of AUDIT_MODES) await pgbench({ endpoint: stack.auditEndpoint(m), clients, seconds: warm, mode: 'simple', sslmode: 'disable' });
  for (const mode of o.modes) {
    const samples: Record<AuditMode, number[]> = { none: [], ddl: [], all: [], 'all-file': [] };
    const cpu: Record<AuditMode, number[]> = { none: [], ddl: [], all: [], 'all-file': [] };
    for (let round = 0; round < o.rounds; round++) {
      // Rotate the order each round (none, ddl, all, all-file / ddl, all, all-file, none / ...).
      const order = AUDIT_MODES.map((_, i) => AUDIT_MODES[(i + round) % AUDIT_MODES.length]!);
      for (const m of order) {
        const cpuBefore = cpuSeconds(stack.proxy.pid);
        const r = await pgbench({ endpoint: stack.auditEndpoint(m), clients, seconds: o.duration, mode, sslmode: 'disable' });
        const transactions = Number(/actually processed: (\d+)/.exec(r.output)?.[1] ?? NaN);
        const perTxn = ((cpuSeconds(stack.proxy.pid) - cpuBefore) / transactions) * 1e6;
        samples[m].push(r.tps);
        cpu[m].push(perTxn);
        if (o.verbose) log(`  audit ${mode} ${m}: ${r.tps.toFixed(0)} tps, proxy CPU ${perTxn.toFixed(1)} µs/transaction (load ${loadAverage()})`);
      }
    }
    results.audit[mode] = samples;
    results.auditCpu[mode] = cpu;
    log(`statement audit ${mode}: proxy CPU per transaction ${AUDIT_MODES.map((m) => `${m} ${median(cpu[m]).toFixed(1)} µs`).join(', ')}`);
    const none = median(samples.none);
    log(`statement audit ${mode} ${clients} clients: ${AUDIT_MODES.map((m) => `${m} ${median(samples[m]).toFixed(0)} (${(median(samples[m]) / none).toFixed(3)})`).join(', ')} tps`);
  }
}

async function connectRate(stack: Stack, o: BenchOptions, results: Results): Promise<void> {
  const endpoints = stack.endpoints();
  for (let round = 0; round < o.rounds; round++) {
    for (const t of TARGETS) {
      const r = await pgbench({ endpoint: endpoints[t], clients: o.connectClients, seconds: o.duration, mode: 'simple', sslmode: 'require', connect: true });
      (results.connect[t] ??= []).push(r.tps);
      if (o.verbose) log(`  -C ${t}: ${r.tps.toFixed(0)} connections/s`);
    }
  }
  log(`connection rate (-C, TLS, ${o.connectClients} clients): ${TARGETS.map((t) => `${t} ${median(results.connect[t]!).toFixed(0)}`).join(', ')} /s`);
}

async function tunnel(stack: Stack, o: BenchOptions, results: Results): Promise<void> {
  const child = await startNodeChild<{ port: number }>(join(import.meta.dirname, 'tunnel-child.ts'), {
    proxy: { host: '127.0.0.1', port: stack.proxy.port, ca: stack.ca.cert },
    token: stack.token,
  });
  try {
    const straight: Endpoint = stack.endpoints().gprxy;
    // The tunnel injects the token itself: no password on the local side.
    const viaTunnel: Endpoint = { name: 'tunnel', host: '127.0.0.1', port: child.ready.port, user: stack.email, database: 'mydb' };
    const warm = o.quick ? 1 : 2;
    await pgbench({ endpoint: straight, clients: o.tunnelClients, seconds: warm, mode: 'simple', sslmode: 'require' });
    await pgbench({ endpoint: viaTunnel, clients: o.tunnelClients, seconds: warm, mode: 'simple', sslmode: 'disable' });
    for (let round = 0; round < o.rounds; round++) {
      // Both reach the proxy over TLS: straight with sslmode=require, the tunnel by itself.
      results.tunnel.straight.push((await pgbench({ endpoint: straight, clients: o.tunnelClients, seconds: o.duration, mode: 'simple', sslmode: 'require' })).tps);
      results.tunnel.tunnel.push((await pgbench({ endpoint: viaTunnel, clients: o.tunnelClients, seconds: o.duration, mode: 'simple', sslmode: 'disable' })).tps);
    }
    log(`tunnel (${o.tunnelClients} clients): straight ${median(results.tunnel.straight).toFixed(0)} tps, through gprxy connect ${median(results.tunnel.tunnel).toFixed(0)} tps`);
  } finally {
    await child.stop();
  }
}

async function tokenVerification(stack: Stack, o: BenchOptions, results: Results): Promise<void> {
  const child = await startNodeChild<{ coldPerSecond: number; cachedPerSecond: number; tokenBytes: number }>(
    join(import.meta.dirname, 'token-child.ts'),
    { claims: decodeJwt(stack.token), coldTokens: o.tokenColdCount, cachedSeconds: o.tokenCachedSeconds },
    { timeoutMs: 120_000 },
  );
  await child.stop();
  results.token = { coldPerSecond: child.ready.coldPerSecond, cachedPerSecond: child.ready.cachedPerSecond, tokenBytes: child.ready.tokenBytes };
  log(`token verification: cold ${results.token.coldPerSecond.toFixed(0)}/s, cached ${results.token.cachedPerSecond.toFixed(0)}/s (${results.token.tokenBytes}-byte tokens)`);
}

/** Waits until the process's RSS stops moving (allocation after the last login has settled). */
async function settle(pid: number, extra?: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last = readRss(pid);
  let stable = 0;
  while (Date.now() < deadline && stable < 2) {
    await new Promise((r) => setTimeout(r, 300));
    const now = readRss(pid);
    stable = Math.abs(now - last) / last < 0.005 && (!extra || (await extra())) ? stable + 1 : 0;
    last = now;
  }
}

async function memory(stack: Stack, o: BenchOptions, results: Results): Promise<void> {
  // Fresh processes, so earlier runs' heaps and pools do not count; the proxy may be asked to collect garbage.
  await stack.proxy.handle.stop();
  const proxy = await stack.startProxy({ execArgv: ['--expose-gc'] });
  const pgb = await stack.startPgBouncer();
  type Stats = { sessions: number; memory: { rss: number; heapUsed: number; external: number; arrayBuffers: number } };
  const targets: { name: 'gprxy' | 'pgbouncer'; pid: number; target: IdleTarget; gc?: () => Promise<Stats>; sessions?: () => Promise<number> }[] = [
    {
      name: 'pgbouncer',
      pid: pgb.pid,
      target: { host: '127.0.0.1', port: pgb.port, user: 'app_writer', password: stack.endpoints().pgbouncer.password!, database: 'mydb', ca: stack.ca.cert },
    },
    {
      name: 'gprxy',
      pid: proxy.pid,
      target: { host: '127.0.0.1', port: proxy.port, user: stack.email, password: stack.token, database: 'mydb', ca: stack.ca.cert },
      gc: () => proxy.handle.request<Stats>({ type: 'gc' }),
      sessions: async () => (await proxy.handle.request<Stats>({ type: 'stats' })).sessions,
    },
  ];
  const counts = [...o.memory].sort((a, b) => a - b);
  for (const t of targets) {
    const series: Results['memory'][string] = [];
    const warm = idlePool(t.target);
    await warm.open(20, 20);
    await warm.close();
    await settle(t.pid);
    const baseStats = await t.gc?.();
    const baseline = readRss(t.pid);
    const pool = idlePool(t.target);
    try {
      for (const count of counts) {
        const t0 = Date.now();
        await pool.open(count - pool.connections.length);
        await settle(t.pid, t.sessions ? async () => (await t.sessions!()) >= count : undefined);
        const stats = await t.gc?.();
        const rss = readRss(t.pid);
        const perConnection = (rss - baseline) / count;
        // Where it goes, for gprxy: V8's heap (JS objects) and memory held outside it (buffers, OpenSSL via Node).
        const split =
          stats && baseStats
            ? { heap: (stats.memory.heapUsed - baseStats.memory.heapUsed) / count, external: (stats.memory.external - baseStats.memory.external) / count }
            : undefined;
        series.push({ count, rssBytes: rss, baselineBytes: baseline, perConnection, ready: pool.ready, ...(split ? { heapPerConnection: split.heap, externalPerConnection: split.external } : {}) });
        log(
          `memory ${t.name}: ${count} idle TLS connections (${pool.ready} with a backend) opened in ${((Date.now() - t0) / 1000).toFixed(1)} s: RSS ${(rss / 1048576).toFixed(1)} MiB, baseline ${(baseline / 1048576).toFixed(1)} MiB, ${(perConnection / 1024).toFixed(1)} KiB per connection` +
            (split ? ` (JS heap ${(split.heap / 1024).toFixed(1)} KiB, external ${(split.external / 1024).toFixed(1)} KiB)` : ''),
        );
      }
    } finally {
      await pool.close();
    }
    results.memory[t.name] = series;
  }
}

const ALL: readonly Target[] = ['direct', 'pgbouncer', 'pipe', 'gprxy'];

function rows(o: BenchOptions, r: Results): Row[] {
  const out: Row[] = [];
  for (const mode of o.modes) {
    for (const clients of o.clients) {
      const s = r.relay[`${mode}/${clients}`];
      if (!s) continue;
      const v = Object.fromEntries(ALL.map((t) => [t, median(s[t] ?? [])])) as Record<Target, number>;
      out.push({
        label: `relay -S ${mode}, ${clients} client${clients > 1 ? 's' : ''}`,
        unit: 'tps',
        values: v,
        target: { text: '≥1.0 PgB, ≥0.85 direct', met: v.gprxy >= v.pgbouncer && v.gprxy >= 0.85 * v.direct },
      });
    }
  }
  if (r.connect.gprxy) {
    const v = Object.fromEntries(TARGETS.map((t) => [t, median(r.connect[t] ?? [])])) as Record<Target, number>;
    out.push({ label: `connect -S -C TLS, ${o.connectClients} clients`, unit: 'conn/s', values: v, target: { text: '≥10× direct, ≥1.0 PgB', met: v.gprxy >= 10 * v.direct && v.gprxy >= v.pgbouncer } });
  }
  for (const mode of o.modes) {
    const s = r.latency[mode];
    if (!s) continue;
    const v = Object.fromEntries(ALL.map((t) => [t, median(s[t] ?? [])])) as Record<Target, number>;
    out.push({ label: `added latency, ${mode}, 1 client`, unit: 'µs', values: v, target: { text: '≤50 µs', met: v.gprxy <= 50 }, lowerIsBetter: true });
  }
  for (const [i, count] of [...o.memory].sort((a, b) => a - b).entries()) {
    const g = r.memory.gprxy?.[i];
    const p = r.memory.pgbouncer?.[i];
    if (!g && !p) continue;
    out.push({
      label: `memory, ${count.toLocaleString('en-US')} idle TLS clients`,
      unit: 'KiB/conn',
      values: { ...(p ? { pgbouncer: p.perConnection / 1024 } : {}), ...(g ? { gprxy: g.perConnection / 1024 } : {}) },
      target: { text: '≤20 KiB', met: g ? g.perConnection <= 20 * 1024 : undefined },
      lowerIsBetter: true,
    });
  }
  const g = r.memory.gprxy;
  const p = r.memory.pgbouncer;
  const marginal = (series: Results['memory'][string] | undefined) =>
    series && series.length >= 2 ? (series.at(-1)!.rssBytes - series[0]!.rssBytes) / (series.at(-1)!.count - series[0]!.count) / 1024 : undefined;
  if ((g?.length ?? 0) >= 2 || (p?.length ?? 0) >= 2) {
    const [first, last] = [g?.[0] ?? p![0]!, g?.at(-1) ?? p!.at(-1)!];
    const gm = marginal(g);
    const pm = marginal(p);
    // Free of the baseline's noise (how much freed memory the process happened to hold when it was read).
    out.push({
      label: `memory, each client from ${first.count.toLocaleString('en-US')} to ${last.count.toLocaleString('en-US')}`,
      unit: 'KiB/conn',
      values: { ...(pm !== undefined ? { pgbouncer: pm } : {}), ...(gm !== undefined ? { gprxy: gm } : {}) },
      target: { text: '≤20 KiB', met: gm === undefined ? undefined : gm <= 20 },
      lowerIsBetter: true,
    });
  }
  return out;
}

function extras(o: BenchOptions, r: Results): string[] {
  const lines: string[] = [];
  if (r.tunnel.tunnel.length) {
    const s = median(r.tunnel.straight);
    const t = median(r.tunnel.tunnel);
    lines.push(
      `tunnel, -S simple, ${o.tunnelClients} clients: straight to gprxy serve (TLS) ${s.toFixed(0)} tps, through gprxy connect ${t.toFixed(0)} tps, ratio ${(t / s).toFixed(2)}   target ≥0.90 ${t / s >= 0.9 ? '✓' : '✗'}`,
    );
  }
  for (const [mode, s] of Object.entries(r.audit)) {
    const none = median(s.none);
    const ratio = (m: AuditMode) => median(s[m]) / none;
    const c = r.auditCpu[mode]!;
    lines.push(
      `statement audit, -S ${mode}, ${o.auditClients} clients: none ${none.toFixed(0)} tps, ddl ${median(s.ddl).toFixed(0)} (${ratio('ddl').toFixed(3)}), all ${median(s.all).toFixed(0)} (${ratio('all').toFixed(3)}), all to audit.file ${median(s['all-file']).toFixed(0)} (${ratio('all-file').toFixed(3)})   target ddl ≥0.95 ${ratio('ddl') >= 0.95 ? '✓' : '✗'}, all ≥0.75 ${ratio('all') >= 0.75 ? '✓' : '✗'}; ` +
        `proxy CPU per transaction ${AUDIT_MODES.map((m) => `${m} ${median(c[m]).toFixed(1)} µs`).join(', ')}`,
    );
  }
  if (r.token) {
    lines.push(`token verification, RS256: cold ${Math.round(r.token.coldPerSecond).toLocaleString('en-US')}/s, cached ${Math.round(r.token.cachedPerSecond).toLocaleString('en-US')}/s   target cached ≥200,000/s ${r.token.cachedPerSecond >= 200_000 ? '✓' : '✗'}`);
  }
  return lines;
}

async function main(): Promise<number> {
  let o: BenchOptions | 'help';
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (o === 'help') {
    console.log(USAGE);
    return 0;
  }
  installSignalHandlers();
  if (o.waitIdleMinutes > 0) await waitForQuiet(o.waitIdleMinutes);
  const loadAtStart = loadAverage();
  const results: Results = { relay: {}, audit: {}, auditCpu: {}, latency: {}, connect: {}, tunnel: { straight: [], tunnel: [] }, memory: {} };
  let stack: Stack | undefined;
  try {
    const profileDir = o.profileDir ? resolve(o.profileDir) : undefined;
    if (profileDir) mkdirSync(profileDir, { recursive: true });
    stack = await startStack({
      pool: o.pool,
      scale: o.scale,
      pgBin: o.pgBin,
      maxClients: Math.max(...o.memory, ...o.clients),
      ...(profileDir ? { proxyExecArgv: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] } : {}),
      log,
    });
    log(`PostgreSQL on ${stack.cluster.port}, PgBouncer on ${stack.pgbouncer.port}, gprxy on ${stack.proxy.port} (pid ${stack.proxy.pid}); pool size ${o.pool}`);
    if (o.sections.has('relay')) await relay(stack, o, results);
    if (o.sections.has('audit')) await statementAudit(stack, o, results);
    if (o.sections.has('connect')) await connectRate(stack, o, results);
    if (o.sections.has('tunnel')) await tunnel(stack, o, results);
    if (o.sections.has('token')) await tokenVerification(stack, o, results);
    if (o.sections.has('memory')) await memory(stack, o, results);

    const table = rows(o, results);
    console.log('');
    console.log(`gprxy benchmark, ${new Date().toISOString()}, ${o.duration} s runs, ${o.rounds} rounds, medians; pool size ${o.pool} (gprxy and PgBouncer, session mode)`);
    console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}; load average ${loadAtStart} at start, ${loadAverage()} at the end`);
    console.log(Object.entries(stack.versions).map(([k, v]) => `${k}: ${v}`).join('; '));
    console.log('');
    console.log(renderTable(table));
    for (const line of extras(o, results)) console.log(line);
    if (o.json) {
      mkdirSync(dirname(resolve(o.json)), { recursive: true });
      writeFileSync(o.json, JSON.stringify({ date: new Date().toISOString(), options: { ...o, sections: [...o.sections] }, versions: stack.versions, load: { start: loadAtStart, end: loadAverage() }, results, markdown: renderMarkdown(table), extras: extras(o, results) }, null, 2));
      log(`samples written to ${o.json}`);
    }
    log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return 0;
  } catch (e) {
    // On Ctrl+C pgbench may die of the same signal before our handler runs: give it a moment.
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
