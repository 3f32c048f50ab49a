/**
 * `gprxy serve --workers 2` as a real process: connections land on both workers, a CancelRequest that
 * reaches the other worker is forwarded to the owner over IPC (the audit line names the user), a forged
 * cancel does nothing, /metrics adds up the workers, the pool size is divided so the total stays as
 * configured, and a worker killed with SIGKILL is logged and replaced while the other worker's clients go on.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { createAppDatabase, startTestPostgres, type Cluster } from '../support/postgres.js';
import { proxyDocument } from '../support/proxy-stack.js';
import { runCli, type CliProcess } from '../support/cli.js';
import { sendCancel, startServe, type LogLine, type ServeProcess } from '../support/serve-process.js';
import { loginAs, type TokenSet } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';

let cluster: Cluster;
let idp: TestProvider;
let files: Record<string, string>;
let serve: ServeProcess;
let alice: TokenSet;

function document(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return proxyDocument(cluster, idp, { cert: '', key: '' }, { log: { level: 'info' }, metrics: { listen: '127.0.0.1:0' }, ...overrides });
}

beforeAll(async () => {
  cluster = await startTestPostgres();
  await createAppDatabase(cluster);
  idp = await startTestProvider();
  const leaf = await idp.ca.issue(['localhost', '127.0.0.1']);
  files = { 'inline-cert': leaf.cert, 'inline-key': leaf.key, 'inline-ca': idp.provider.caCert };
  alice = await loginAs(idp.provider, 'alice');
  // Pool size 9 over 2 workers: 5 + 4 (Node's round-robin hands a connection to a worker that is free, so
  // the split of a few connections is not strictly alternating: room for all of them on either worker).
  serve = await startServe(document({ databases: { mydb: { host: cluster.host, port: cluster.port, dbname: 'mydb', pool: { size: 9 } } } }), files, ['--workers', '2']);
});

afterAll(async () => {
  const r = await serve?.stop();
  if (r) expect(r.code).toBe(143);
  await idp?.close();
  await cluster?.stop();
});

async function connect(): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: serve.port, user: 'alice@example.com', password: alice.accessToken, database: 'mydb', ssl: { ca: idp.ca.cert, servername: 'localhost' } });
  c.on('error', () => undefined); // a worker killed or the proxy stopping: the test asserts what it expects
  await c.connect();
  return c;
}

function metrics(): Promise<string> {
  const port = serve.lines().find((l) => l.event === 'metrics_listening')!.port as number;
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(body));
    })
      .on('error', reject)
      .end();
  });
}

function sumOf(text: string, metric: string, labels = ''): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${metric}${labels}`) || (labels === '' && l.startsWith(`${metric} `)))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

/** The worker slot that logged `auth_success` for the client whose backend pid is `pid`. */
function workerOf(backendPid: number): number {
  return serve.lines().find((l) => l.event === 'auth_success' && l.backend_pid === backendPid)!.worker as number;
}

/**
 * A second `gprxy serve --workers 2` whose worker 1 is held before gprxy starts in it
 * (test/support/hold-worker.mjs) until release(): what the replica says and does while a worker is starting.
 */
function startHeld() {
  const hold = mkdtempSync(join(tmpdir(), 'gprxy-hold-'));
  const file = join(hold, 'release');
  const lines: LogLine[] = [];
  const waiters = new Set<() => void>();
  let worker0Up!: () => void;
  const worker0 = new Promise<void>((resolve) => (worker0Up = resolve));
  let ready = false;
  let cli: CliProcess | undefined;
  const starting = startServe(document({ databases: { mydb: { host: cluster.host, port: cluster.port, dbname: 'mydb', pool: { size: 4 } } } }), files, ['--workers', '2'], {
    env: {
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${fileURLToPath(new URL('../support/hold-worker.mjs', import.meta.url))}`.trim(),
      TEST_HOLD_WORKER_SLOT: '1',
      TEST_HOLD_WORKER_FILE: file,
    },
    onSpawn: (c) => (cli = c),
    onLine: (l) => {
      lines.push(l);
      // Worker 0's own start line: it comes after worker 0 listens.
      if (l.worker === 0 && (l.event === 'worker_started' || l.event === 'listening')) worker0Up();
      for (const w of waiters) w();
    },
  }).then((s) => ((ready = true), s));
  return {
    starting,
    worker0,
    ready: () => ready,
    cli: () => cli!,
    lines: () => lines,
    line: (match: (l: LogLine) => boolean) =>
      new Promise<void>((resolve) => {
        const check = () => (lines.some(match) ? (waiters.delete(check), resolve()) : undefined);
        waiters.add(check);
        check();
      }),
    release: () => writeFileSync(file, ''),
    cleanup: () => rmSync(hold, { recursive: true, force: true }),
  };
}

describe('gprxy serve --workers 2', () => {
  it('spreads connections over both workers, one log stream, metrics summed, pool divided 5 + 4', async () => {
    // One after the other: Node's round-robin gives each new connection to the next free worker (a worker
    // busy at that instant is skipped, so the test allows a few connections to see both).
    const seen = new Set<number>();
    let ended = 0;
    for (let i = 0; i < 8 && seen.size < 2; i++) {
      const c = await connect();
      const pid = (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
      await c.end();
      ended++;
      await waitUntil(() => serve.lines().some((l) => l.event === 'auth_success' && l.backend_pid === pid));
      seen.add(workerOf(pid));
    }
    // Seen once under load 18: all eight on worker 0. The cause: each worker logged its own `listening` line,
    // and startServe took worker 0's for the replica's while worker 1 was still starting (Node's round-robin
    // hands connections only to workers that listen). Now a worker logs worker_started and startServe waits
    // for the primary's line (see the test "says `listening` only when every worker listens" below).
    // Should it happen again, the workers' life-cycle lines say whether worker 1 was up the whole time.
    const lifecycle = serve.lines().filter((l) => typeof l.event === 'string' && /^(worker_|listening$)/.test(l.event));
    expect(seen, JSON.stringify(lifecycle)).toEqual(new Set([0, 1]));
    // The client sees its connection close before the worker has reset the backend and counted the session
    // out: wait for those sessions' ends, or the session gauge below may still include one.
    await waitUntil(() => serve.lines().filter((l) => l.event === 'session_end').length >= ended);
    const clients = [await connect(), await connect(), await connect()];
    try {
      const text = await metrics();
      expect(sumOf(text, 'gprxy_client_sessions')).toBe(3);
      expect(sumOf(text, 'gprxy_pool_connections', '{pool="mydb/app_writer",state="max"}')).toBe(9);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });

  it('forwards a cancel that reaches the other worker to the owner (audit names the user); a forged key does nothing', async () => {
    const c = await connect();
    try {
      const pid = (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
      await waitUntil(() => serve.lines().some((l) => l.event === 'auth_success' && l.backend_pid === pid));
      const owner = workerOf(pid);
      const key = c as unknown as { processID: number; secretKey: number };
      let forwarded = 0;
      // Round-robin hands consecutive connections to alternating workers (mostly): within a few tries a
      // cancel arrives at the worker that does not own the session.
      for (let i = 0; i < 10 && !(forwarded > 0 && i >= 2); i++) {
        const from = serve.lines().length;
        const sleeping = c.query('select pg_sleep(30)').then(
          () => 'finished',
          (e: { code?: string }) => e.code,
        );
        await waitUntil(async () => (await cluster.query("select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'", [], 'mydb')).rows[0]?.n === 1);
        // Every other round a forged key first (the right process id, a wrong secret); it also shifts
        // which worker the real cancel's connection lands on.
        if (i % 2 === 0) {
          const forged = Buffer.from(key.secretKey === 0 ? [0, 0, 0, 1] : [0, 0, 0, 0]);
          await sendCancel(serve.port, key.processID, forged);
          await serve.waitFor((l) => l.event === 'cancel_request' && l.outcome === 'no_match', 10_000, from);
          expect(await Promise.race([sleeping, Promise.resolve('still running')])).toBe('still running');
        }
        const secret = Buffer.alloc(4);
        secret.writeInt32BE(key.secretKey);
        await sendCancel(serve.port, key.processID, secret);
        expect(await sleeping).toBe('57014');
        const line = await serve.waitFor((l) => l.event === 'cancel_request' && l.outcome === 'cancelled', 10_000, from);
        expect(line.user).toBe('alice@example.com');
        expect(line.worker).toBe(owner);
        if (typeof line.via === 'string') forwarded++;
      }
      expect(forwarded).toBeGreaterThan(0);
    } finally {
      await c.end();
    }
  });

  it('replaces a worker killed with SIGKILL: logged, its slot re-forked, the other worker’s client unaffected', async () => {
    // One client on each worker (round-robin, a few tries).
    const bySlot = new Map<number, pg.Client>();
    for (let i = 0; i < 8 && bySlot.size < 2; i++) {
      const c = await connect();
      const pid = (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
      await waitUntil(() => serve.lines().some((l) => l.event === 'auth_success' && l.backend_pid === pid));
      const slot = workerOf(pid);
      if (bySlot.has(slot)) await c.end();
      else bySlot.set(slot, c);
    }
    expect(bySlot.size).toBe(2);
    const slots = [...bySlot.keys()];
    const clients = slots.map((slot) => bySlot.get(slot)!);
    const victimSlot = slots[0]!;
    const victimPid = [...serve.lines()].reverse().find((l) => l.event === 'worker_listening' && l.worker === victimSlot)!.pid as number;
    const from = serve.lines().length;
    const lost = new Promise<string>((resolve) => clients[0]!.once('end', () => resolve('ended')));
    process.kill(victimPid, 'SIGKILL');
    const exit = await serve.waitFor((l) => l.event === 'worker_exit' && l.worker === victimSlot, 10_000, from);
    expect(exit).toMatchObject({ level: 'error', signal: 'SIGKILL', pid: victimPid });
    await serve.waitFor((l) => l.event === 'worker_listening' && l.worker === victimSlot && l.pid !== victimPid, 20_000, from);
    expect(await lost).toBeTruthy();
    // The survivor's session goes on; new sessions work on the replacement too.
    expect((await clients[1]!.query('select 1 as one')).rows[0].one).toBe(1);
    const fresh = await Promise.all(Array.from({ length: 2 }, () => connect()));
    for (const f of fresh) expect((await f.query('select 1 as one')).rows[0].one).toBe(1);
    await Promise.all([...fresh, clients[1]!].map((c) => c.end()));
    clients[0]!.end().catch(() => undefined);
  });

  it('SIGHUP to the primary: every worker reloads the config, nothing stops; /readyz asks every worker', async () => {
    const from = serve.lines().length;
    serve.cli.child.kill('SIGHUP');
    await serve.waitFor((l) => l.event === 'config_reloaded' && l.worker === 0, 10_000, from);
    await serve.waitFor((l) => l.event === 'config_reloaded' && l.worker === 1, 10_000, from);
    const c = await connect();
    expect((await c.query('select 1 as one')).rows[0].one).toBe(1);
    await c.end();
    const port = serve.lines().find((l) => l.event === 'metrics_listening')!.port as number;
    const status = await new Promise<number>((resolve, reject) => request({ host: '127.0.0.1', port, path: '/readyz' }, (res) => (res.resume(), resolve(res.statusCode!))).on('error', reject).end());
    expect(status).toBe(200);
  });

  it('says `listening` only when every worker listens; then consecutive connections go one to each worker', async () => {
    const held = startHeld();
    let serving: ServeProcess | undefined;
    try {
      await held.worker0;
      await new Promise((r) => setImmediate(r)); // whatever that line resolved has run
      expect(held.ready()).toBe(false);
      held.release();
      serving = await held.starting;
      const lines = serving.lines();
      const at = (match: (l: Record<string, unknown>) => boolean) => lines.findIndex(match);
      const firstListening = at((l) => l.event === 'listening');
      expect(lines[firstListening]).toMatchObject({ workers: 2 });
      expect(firstListening).toBeGreaterThan(at((l) => l.event === 'worker_listening' && l.worker === 0));
      expect(firstListening).toBeGreaterThan(at((l) => l.event === 'worker_listening' && l.worker === 1));
      // Both workers are in the round-robin now: two connections one after the other land on both.
      const slots: number[] = [];
      for (let i = 0; i < 2; i++) {
        const from = serving.lines().length;
        const c = new pg.Client({ host: '127.0.0.1', port: serving.port, user: 'alice@example.com', password: alice.accessToken, database: 'mydb', ssl: { ca: idp.ca.cert, servername: 'localhost' } });
        await c.connect();
        slots.push((await serving.waitFor((l) => l.event === 'auth_success', 10_000, from)).worker as number);
        await c.end();
      }
      expect(new Set(slots)).toEqual(new Set([0, 1]));
    } finally {
      held.release();
      const r = await (serving ?? (await held.starting.catch(() => undefined)))?.stop();
      held.cleanup();
      if (r) expect(r.code).toBe(143);
    }
  });

  it('a SIGTERM while a worker is still starting reaches that worker once it is up: the drain ends, exit 143', async () => {
    const held = startHeld();
    try {
      await held.worker0;
      held.cli().child.kill('SIGTERM');
      await held.line((l) => l.event === 'signal' && l.role === 'primary');
      held.release();
      await expect(held.starting).rejects.toThrow(/exited \(143\)/);
      // Worker 1 drained on its own (it was told), not cut by the primary's SIGKILL after the drain time.
      expect(held.lines().some((l) => l.event === 'signal' && l.worker === 1)).toBe(true);
      expect(held.lines().some((l) => l.event === 'listening')).toBe(false);
    } finally {
      held.release();
      const c = held.cli();
      if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
      await c.result;
      await held.starting.catch(() => undefined);
      held.cleanup();
    }
  });

  it('refuses --workers above a pool size, naming the setting', async () => {
    const r = await runCli(['serve', '--config', `${serve.dir}/gprxy.json`, '--workers', '10', '--check']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('databases.mydb.pool.size is 9, fewer than --workers 10');
  });
});
