/**
 * One pgbench run (Debian's PostgreSQL 15 client). The password travels in PGPASSWORD, never argv; so do
 * sslmode and the connect timeout. Every run is bounded: -T seconds, and a kill after T + 30 s.
 */
import { spawnTracked, stopChild } from './processes.js';

export interface Endpoint {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password?: string;
  readonly database: string;
}

export interface PgbenchRun {
  readonly endpoint: Endpoint;
  readonly clients: number;
  readonly seconds: number;
  readonly mode: 'simple' | 'extended' | 'prepared';
  /** -C: a new connection for every transaction. */
  readonly connect?: boolean;
  readonly sslmode: 'disable' | 'require';
  /** Run pgbench pinned to these CPUs (`taskset -c`), e.g. "0". */
  readonly cpus?: string;
}

export interface PgbenchResult {
  readonly tps: number;
  /** Average latency per transaction in ms, as pgbench reports it. */
  readonly latencyMs: number;
  readonly failed: number;
  readonly output: string;
}

export class PgbenchError extends Error {
  readonly code = 'pgbench_failed' as const;
}

/**
 * pgbench's -T clock includes opening its connections, which for 100 SCRAM logins straight to PostgreSQL
 * can take seconds; its tps excludes that time. So each run gets -T = seconds + an allowance for the
 * connection phase, learnt per endpoint and client count from the previous run's "initial connection time".
 */
const allowance = new Map<string, number>();

export async function pgbench(run: PgbenchRun): Promise<PgbenchResult> {
  const key = `${run.endpoint.name}/${run.endpoint.port}/${run.clients}/${run.sslmode}/${run.connect ? 'C' : ''}/${run.cpus ?? ''}`;
  const guess = run.connect ? 0 : run.clients >= 50 ? 2 : 0;
  for (let attempt = 0; ; attempt++) {
    const extra = (allowance.get(key) ?? guess) + attempt * 5;
    const result = await runOnce(run, run.seconds + extra);
    if (result === 'no-transactions' && attempt < 2) continue;
    if (result === 'no-transactions') throw new PgbenchError(`pgbench against ${run.endpoint.name} completed no transaction in ${run.seconds + extra} s`);
    if (!run.connect && Number.isFinite(result.connectMs)) allowance.set(key, Math.ceil((result.connectMs * 1.5) / 1000));
    return result;
  }
}

async function runOnce(run: PgbenchRun, seconds: number): Promise<(PgbenchResult & { connectMs: number }) | 'no-transactions'> {
  const { endpoint } = run;
  const threads = Math.min(run.clients, 2);
  const args = [
    '-n', // no vacuum: the client may not own the tables
    '-S',
    '-M', run.mode,
    '-c', String(run.clients),
    '-j', String(threads),
    '-T', String(seconds),
    ...(run.connect ? ['-C'] : []),
    '-h', endpoint.host,
    '-p', String(endpoint.port),
    '-U', endpoint.user,
    endpoint.database,
  ];
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    LANG: 'C',
    PGSSLMODE: run.sslmode,
    PGGSSENCMODE: 'disable',
    PGCONNECT_TIMEOUT: '10',
    PGAPPNAME: 'pgbench',
    ...(endpoint.password ? { PGPASSWORD: endpoint.password } : {}),
  };
  const child = run.cpus ? spawnTracked('taskset', ['-c', run.cpus, 'pgbench', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] }) : spawnTracked('pgbench', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const killer = setTimeout(() => void stopChild(child, 'SIGINT', 2000), (seconds + 30) * 1000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(killer);
  const tps = /tps = ([\d.]+)/.exec(out);
  const latency = /latency average = ([\d.]+) ms/.exec(out);
  const failed = /number of failed transactions: (\d+)/.exec(out);
  const connect = /initial connection time = ([\d.]+) ms/.exec(out);
  if (code === 0 && !tps && /actually processed: 0\b/.test(out)) return 'no-transactions';
  if (code !== 0 || !tps) {
    throw new PgbenchError(`pgbench against ${endpoint.name} (${args.filter((a) => a !== endpoint.database).join(' ')}) failed with code ${code}:\n${out.trim().split('\n').slice(-15).join('\n')}`);
  }
  return { tps: Number(tps[1]), latencyMs: latency ? Number(latency[1]) : NaN, failed: failed ? Number(failed[1]) : 0, output: out, connectMs: connect ? Number(connect[1]) : NaN };
}
