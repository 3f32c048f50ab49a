/**
 * pgbench (TPC-B, libpq) through the proxy in back-to-back short runs, for fault scenarios. pgbench does
 * not reconnect: a client whose connection is lost is aborted and the run ends, so the loop starts the
 * next run, as an application's retry would. Per run: transactions pgbench saw committed, aborted clients,
 * the error lines libpq printed (pgbench prints no SQLSTATE: each line is classified by PostgreSQL's and
 * the proxy's message for it, see CLASSES), and whether it ended in time (a run not over 30 s after its -T
 * is a hang and is killed). The tables are initialised directly on PostgreSQL (pgbenchInit), not through
 * the proxy: the service account may not own them.
 */
import type { Cluster } from '../../src/demo/postgres-cluster.js';
import { spawnTracked, stopChild } from '../../bench/processes.js';

export interface PgbenchTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
}

/**
 * libpq / server messages → the SQLSTATE they carry (pgbench prints the message only). Checked in order.
 * 57P01: PostgreSQL's shutdown FATAL; 57P03: the proxy's "backend unavailable" (PostgreSQL down or starting),
 * or PostgreSQL's own "starting up / shutting down"; 08006: the connection cut without a message.
 */
const CLASSES: readonly [string, RegExp][] = [
  ['57P01', /terminating connection due to (administrator|immediate shutdown) command/i],
  ['57P02', /terminating connection because of crash of another server process/i],
  // The proxy's refusal while the database cannot be reached (src/proxy/disconnect.ts backend_unavailable).
  ['57P03', /database system is (starting up|shutting down|not yet accepting connections|in recovery mode)|is unavailable right now/i],
  // The proxy's "connection lost" (backend_closed mid-session), or libpq's own words for a cut connection.
  ['08006', /the database connection was lost|server closed the connection unexpectedly|connection to server was lost|SSL SYSCALL error|SSL error: unexpected eof|EOF detected|could not receive data from server|Connection reset by peer|no connection to the server|perhaps the backend died/i],
];

export function classifyPgbenchError(line: string): string {
  for (const [code, re] of CLASSES) if (re.test(line)) return code;
  return `other: ${line.replace(/\d+/g, 'N').slice(0, 120)}`;
}

/** Creates pgbench's tables (scale 1) as the superuser and lets `account` run TPC-B on them. */
export async function pgbenchInit(cluster: Cluster, database: string, account: string): Promise<void> {
  const child = spawnTracked('pgbench', ['-i', '-s', '1', '-q', '-h', cluster.host, '-p', String(cluster.port), '-U', cluster.superuser, database], {
    env: { PATH: process.env.PATH, LANG: 'C', PGPASSWORD: cluster.superuserPassword, PGSSLMODE: 'disable', PGGSSENCMODE: 'disable' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  if (code !== 0) throw new Error(`pgbench -i failed with code ${code}: ${out.trim().split('\n').slice(-5).join(' / ')}`);
  await cluster.query(
    `grant select, update on pgbench_accounts, pgbench_branches, pgbench_tellers to ${account}; grant select, insert on pgbench_history to ${account}`,
    [],
    database,
  );
}

export interface PgbenchLoopStats {
  runs: number;
  /** Runs in which at least one client was aborted (its connection lost or refused). */
  runsWithAborts: number;
  /** Transactions pgbench reported as processed: each one's COMMIT was acknowledged. */
  processed: number;
  errors: Record<string, number>;
  hangs: number;
  /** End times (ms since epoch) of runs with no aborted client and at least one transaction. */
  cleanRunEnds: number[];
  /** The first error lines no class matched, verbatim (for the scenario's report). */
  unclassified: string[];
}

export class PgbenchLoop {
  readonly stats: PgbenchLoopStats = { runs: 0, runsWithAborts: 0, processed: 0, errors: {}, hangs: 0, cleanRunEnds: [], unclassified: [] };
  private running = true;
  private readonly done: Promise<void>;

  constructor(
    private readonly target: PgbenchTarget,
    private readonly o: { clients: number; seconds: number },
  ) {
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const aborted = await this.runOnce();
      // A run refused at its first connection ends at once: do not spin.
      if (aborted && this.running) await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async runOnce(): Promise<boolean> {
    const t = this.target;
    const args = ['-n', '-M', 'simple', '-c', String(this.o.clients), '-j', '1', '-T', String(this.o.seconds), '-h', t.host, '-p', String(t.port), '-U', t.user, t.database];
    const child = spawnTracked('pgbench', args, {
      // The token travels in PGPASSWORD, never argv.
      env: { PATH: process.env.PATH, LANG: 'C', PGPASSWORD: t.password, PGSSLMODE: 'require', PGGSSENCMODE: 'disable', PGCONNECT_TIMEOUT: '10', PGAPPNAME: 'pgbench' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    let hung = false;
    const killer = setTimeout(() => {
      hung = true;
      void stopChild(child, 'SIGKILL', 1000);
    }, (this.o.seconds + 30) * 1000);
    await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    clearTimeout(killer);
    this.stats.runs++;
    if (hung) this.stats.hangs++;
    const processed = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? 0);
    this.stats.processed += processed;
    const aborted = /aborted|could not create connection|connection to server .* failed/i.test(out);
    if (aborted) this.stats.runsWithAborts++;
    else if (processed > 0) this.stats.cleanRunEnds.push(Date.now());
    // One error per failed connection or aborted client: the line that carries the server's or libpq's message.
    for (const line of out.split('\n')) {
      if (!/^pgbench: (error|fatal):/.test(line) && !/^\s*(FATAL|ERROR):/.test(line)) continue;
      // pgbench's own follow-up lines after the one that carries the message.
      if (/could not create connection for|Run was aborted|client \d+ aborted in command \d+ \(SQL\)/i.test(line) && !/FATAL:|ERROR:|closed the connection|connection was lost/.test(line)) continue;
      const code = classifyPgbenchError(line);
      this.stats.errors[code] = (this.stats.errors[code] ?? 0) + 1;
      if (code.startsWith('other') && this.stats.unclassified.length < 5) this.stats.unclassified.push(line.slice(0, 300));
    }
    return aborted;
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}
