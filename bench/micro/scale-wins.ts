/**
 * The two cheap wins of issue 18 in isolation (`node --import tsx bench/micro/scale-wins.ts`), CPU time of
 * this process (user + system, process.cpuUsage, so the write system calls count) per session:
 *  - log: the two JSON lines a session writes (auth_success, session_end, the shapes gprxy logs), to a file,
 *    sessions 1 ms apart (so that, as in a server, a line's write has finished when the next one comes), through createLogger's batched destination vs pino's destination with one write per line (before);
 *  - keys: CancelRegistry.register + unregister with the pre-filled random pool vs a randomBytes call per take.
 * Alternated A/B runs, medians.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { RandomPool } from '../../src/proxy/cancel-key.js';
import { CancelRegistry } from '../../src/proxy/cancel-registry.js';
import { createLogger } from '../../src/proxy/logger.js';

const dir = mkdtempSync(join(tmpdir(), 'gprxy-wins-'));
const SESSIONS = 20_000;
/** Log sessions are spread out in time as a server's are (a timer tick between sessions): fewer of them. */
const LOG_SESSIONS = 2000;
const ROUNDS = 7;

function cpuMicros(f: () => void): number {
  const before = process.cpuUsage();
  f();
  const d = process.cpuUsage(before);
  return d.user + d.system;
}

async function logRun(batched: boolean, round: number): Promise<number> {
  const file = join(dir, `log-${batched}-${round}.jsonl`);
  const dest = batched ? undefined : pino.destination({ dest: file, sync: false, mkdir: true });
  const logger = createLogger({ level: 'info', ...(dest ? { destination: dest } : { file }) });
  await new Promise((r) => setTimeout(r, 50)); // the file opens asynchronously
  const child = logger.child({ session: 1, client: '127.0.0.1:50000' });
  const before = process.cpuUsage();
  for (let i = 0; i < LOG_SESSIONS; i++) {
    child.info({ event: 'auth_success', auth_method: 'password', email: 'alice@example.com', sub: 'auth0|alice0001', issuer: 'https://issuer.example.com/', roles: ['pg_writer'], tenant: 'tenant-a', token: 'a1b2c3d4', backend_pid: 12345, duration_ms: 1 }, 'alice@example.com connected to mydb as app_writer');
    child.info({ event: 'session_end', reason: 'client_terminate', user: 'alice@example.com', duration_ms: 12, bytes_in: 1234, bytes_out: 5678 }, 'session ended');
    // Sessions arrive apart in time: the previous line's write has finished before the next session logs.
    await new Promise((r) => setTimeout(r, 1));
  }
  logger.flush();
  await new Promise((r) => setTimeout(r, 200));
  const d = process.cpuUsage(before);
  return (d.user + d.system) / LOG_SESSIONS;
}

function keysRun(pooled: boolean): number {
  const registry = new CancelRegistry({ random: pooled ? new RandomPool() : new RandomPool(1) });
  const target = { cancel: () => undefined };
  return (
    cpuMicros(() => {
      for (let i = 0; i < SESSIONS * 5; i++) registry.unregister(registry.register(target).processId);
    }) /
    (SESSIONS * 5)
  );
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const log = { before: [] as number[], after: [] as number[] };
const keys = { before: [] as number[], after: [] as number[] };
for (let round = 0; round < ROUNDS; round++) {
  log.before.push(await logRun(false, round));
  log.after.push(await logRun(true, round));
  keys.before.push(keysRun(false));
  keys.after.push(keysRun(true));
}
rmSync(dir, { recursive: true, force: true });
const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' / ');
console.log(`log lines of one session (2 lines): one write per line ${median(log.before).toFixed(2)} µs, batched ${median(log.after).toFixed(2)} µs (samples ${fmt(log.before)} | ${fmt(log.after)})`);
console.log(`cancel key per session: randomBytes per take ${median(keys.before).toFixed(3)} µs, pre-filled pool ${median(keys.after).toFixed(3)} µs (samples ${fmt(keys.before)} | ${fmt(keys.after)})`);
console.log(`load average ${(await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
