/**
 * `gprxy serve` as a real process (the built CLI) with a config file written from a test's document, its
 * JSON log lines (stdout) parsed as they come: for workers, replicas and anything that needs the primary.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendRunLog } from './run-log.js';
import { startCli, type CliProcess, type CliResult } from './cli.js';

export type LogLine = Record<string, unknown>;

export interface ServeProcess {
  readonly cli: CliProcess;
  readonly port: number;
  readonly dir: string;
  lines(): LogLine[];
  waitFor(match: (l: LogLine) => boolean, timeoutMs?: number, from?: number): Promise<LogLine>;
  /** SIGTERM, then the exit. */
  stop(): Promise<CliResult>;
}

export interface ServeOptions {
  /** More environment for the process (e.g. NODE_OPTIONS with --import of test/support/hold-worker.mjs). */
  readonly env?: Record<string, string | undefined>;
  /** Every log line as it comes, also before the process is ready. */
  readonly onLine?: (line: LogLine) => void;
  /** The process, as soon as it is spawned (to signal it before it is ready). */
  readonly onSpawn?: (cli: CliProcess) => void;
}

/**
 * Writes `files` (name → content) and gprxy.json into a temporary directory and starts `gprxy serve`; resolves
 * when the process (with --workers: the primary, once every worker listens) logs `listening`.
 */
export async function startServe(document: Record<string, unknown>, files: Record<string, string>, args: string[] = [], options: ServeOptions = {}): Promise<ServeProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'gprxy-serve-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content, { mode: 0o600 });
  writeFileSync(join(dir, 'gprxy.json'), JSON.stringify(document));
  const cli = startCli(['serve', '--config', join(dir, 'gprxy.json'), ...args], { env: { NODE_OPTIONS: process.env.NODE_OPTIONS, ...options.env } });
  options.onSpawn?.(cli);
  const lines: LogLine[] = [];
  let partial = '';
  const waiters = new Set<() => void>();
  cli.child.stdout!.on('data', (d: Buffer) => {
    appendRunLog(d.toString());
    partial += d.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const p of parts) {
      if (!p.trim()) continue;
      let line: LogLine;
      try {
        line = JSON.parse(p) as LogLine;
      } catch {
        line = { raw: p };
      }
      lines.push(line);
      options.onLine?.(line);
    }
    for (const w of waiters) w();
  });
  const waitFor = (match: (l: LogLine) => boolean, timeoutMs = 20_000, from = 0): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const found = lines.slice(from).find(match);
        if (found) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`log line did not appear within ${timeoutMs} ms; stderr: ${cli.stderr().slice(-2000)}`));
      }, timeoutMs);
      waiters.add(check);
      void cli.result.then(() => setTimeout(check, 50));
      check();
    });
  let listening: LogLine;
  try {
    listening = await Promise.race([
      // A worker's own line is never what to wait for (a worker of --workers logs worker_started; older
      // builds logged `listening` per worker, long before the last worker listened under load).
      waitFor((l) => l.event === 'listening' && l.worker === undefined),
      cli.result.then((r) => Promise.reject(new Error(`gprxy serve exited (${r.code ?? r.signal}): ${r.stderr}`))),
    ]);
  } catch (e) {
    cli.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    cli,
    port: listening.port as number,
    dir,
    lines: () => lines,
    waitFor,
    async stop() {
      if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGTERM');
      const r = await cli.result;
      rmSync(dir, { recursive: true, force: true });
      return r;
    },
  };
}

/** Sends a CancelRequest (protocol 3.0 or 3.2 key) on a new plaintext connection, as libpq does, and waits for the close. */
export async function sendCancel(port: number, processId: number, secretKey: Buffer): Promise<void> {
  const { connect } = await import('node:net');
  const packet = Buffer.alloc(12 + secretKey.length);
  packet.writeUInt32BE(packet.length, 0);
  packet.writeUInt32BE(80877102, 4);
  packet.writeUInt32BE(processId, 8);
  secretKey.copy(packet, 12);
  await new Promise<void>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(packet));
    s.on('error', reject);
    s.on('close', () => resolve());
  });
}
