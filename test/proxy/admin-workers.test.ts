/**
 * The admin console under `gprxy serve --workers 2` (issue 21): whichever worker the operator's connection
 * lands on, SHOW SESSIONS lists the sessions of both workers (ids unique per replica) and KILL USER ends
 * the user's sessions on both, through the primary over IPC; nobody else's session is touched. The status
 * page (GET /status on the primary's metrics listener) is answered by a worker with every worker's part.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_USERS } from '../../src/demo/oidc-provider.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { createAppDatabase, startTestPostgres, type Cluster } from '../support/postgres.js';
import { proxyDocument } from '../support/proxy-stack.js';
import { startServe, type ServeProcess } from '../support/serve-process.js';
import { loginAs, type TokenSet } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';

const OPS = { username: 'olivia', password: 'olivia-pw', sub: 'auth0|olivia0005', email: 'olivia@example.com', name: 'Olivia Ops', roles: ['pg_ops'] };

let cluster: Cluster;
let idp: TestProvider;
let serve: ServeProcess;
const tokens: Record<string, TokenSet> = {};

beforeAll(async () => {
  cluster = await startTestPostgres();
  await createAppDatabase(cluster);
  idp = await startTestProvider({ users: [...DEV_USERS, OPS] });
  const leaf = await idp.ca.issue(['localhost', '127.0.0.1']);
  for (const u of ['alice', 'bob', 'olivia']) tokens[u] = await loginAs(idp.provider, u);
  const document = proxyDocument(cluster, idp, { cert: '', key: '' }, {
    log: { level: 'info' },
    admin: { database: 'gprxy', roles: ['pg_ops'], status_page: true },
    metrics: { listen: '127.0.0.1:0' },
    databases: { mydb: { host: cluster.host, port: cluster.port, dbname: 'mydb', pool: { size: 12 } } },
  });
  serve = await startServe(document, { 'inline-cert': leaf.cert, 'inline-key': leaf.key, 'inline-ca': idp.provider.caCert }, ['--workers', '2']);
});

afterAll(async () => {
  await serve?.stop();
  await idp?.close();
  await cluster?.stop();
});

async function connect(user: string, database: string): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: serve.port, user: `${user}@example.com`, password: tokens[user]!.accessToken, database, ssl: { ca: idp.ca.cert, servername: 'localhost' } });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

/** Worker k of N numbers its sessions k+1, k+1+N, ...: the id names the worker. */
function workerOfSession(id: number): number {
  return (id - 1) % 2;
}

describe('admin console across workers', () => {
  it('SHOW SESSIONS lists both workers; KILL USER ends the user’s sessions on both', async () => {
    const alice: pg.Client[] = [];
    const bob = await connect('bob', 'mydb');
    const ops = await connect('olivia', 'gprxy');
    try {
      // Until alice has sessions on both workers (Node's round-robin spreads them; a few suffice).
      let workers = new Set<number>();
      for (let i = 0; i < 8 && workers.size < 2; i++) {
        alice.push(await connect('alice', 'mydb'));
        const ids = (await ops.query('SHOW SESSIONS')).rows.filter((r) => r.user === 'alice@example.com').map((r) => Number(r.id));
        workers = new Set(ids.map(workerOfSession));
      }
      expect(workers.size).toBe(2);
      const rows = (await ops.query('SHOW SESSIONS')).rows;
      const ids = rows.filter((r) => r.user === 'alice@example.com').map((r) => Number(r.id));
      expect(ids).toHaveLength(alice.length);
      expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
      expect(rows.some((r) => r.user === 'bob@example.com')).toBe(true);

      const ended = alice.map((c) => new Promise<{ code?: string }>((resolve) => c.once('error', (e: { code?: string }) => resolve(e))));
      await ops.query("KILL USER 'alice@example.com'");
      for (const e of await Promise.all(ended)) expect(e.code).toBe('57P01');
      const audit = await serve.waitFor((l) => l.event === 'admin_action' && l.command === 'KILL USER');
      expect([...(audit.sessions as number[])].sort((a, b) => a - b)).toEqual([...ids].sort((a, b) => a - b));
      // Each worker logged its own ends (log lines reach the primary in batches).
      for (const id of ids) {
        const end = await serve.waitFor((l) => l.event === 'session_end' && l.reason === 'killed_by_admin' && l.session === id);
        expect(end.worker).toBe(workerOfSession(id));
      }
      expect((await bob.query('select 1 as one')).rows[0].one).toBe(1);
      expect((await ops.query('SHOW SESSIONS')).rows.some((r) => r.user === 'alice@example.com')).toBe(false);
    } finally {
      await Promise.all([...alice, bob, ops].map((c) => c.end().catch(() => undefined)));
    }
  });
});

describe('status page across workers', () => {
  function status(token?: string): Promise<Response> {
    const port = serve.lines().find((l) => l.event === 'metrics_listening')!.port as number;
    return fetch(`http://127.0.0.1:${port}/status`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  }

  it('is served by the primary with every worker’s sessions and pools; the console’s access rule holds', async () => {
    expect((await status()).status).toBe(401);
    expect((await status(tokens.alice!.accessToken)).status).toBe(403);
    const alice: pg.Client[] = [];
    try {
      // Until alice has sessions on both workers (round-robin: the first two already are).
      const workers = new Set<number>();
      for (let i = 0; i < 8 && workers.size < 2; i++) {
        const from = serve.lines().length;
        alice.push(await connect('alice', 'mydb'));
        workers.add((await serve.waitFor((l) => l.event === 'auth_success' && l.user === 'alice@example.com', 10_000, from)).worker as number);
      }
      expect(workers.size).toBe(2);
      const page = await status(tokens.olivia!.accessToken);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-security-policy')).toMatch(/^default-src 'none'/);
      const text = await page.text();
      expect(text).toContain('2 workers');
      // Alice's sessions of both workers in one row; the pool's size is the configured total (6 + 6).
      expect(text).toContain(`<td class="user">alice@example.com</td><td>mydb</td><td class="n">${alice.length}</td>`);
      expect(text).toMatch(/<td>mydb\/app_writer<\/td><td class="n">12<\/td>/);
      const audit = await serve.waitFor((l) => l.event === 'admin_action' && l.command === 'STATUS PAGE' && l.outcome === 'ok');
      expect(audit).toMatchObject({ admin_sub: 'auth0|olivia0005' });
      expect(typeof audit.worker).toBe('number');
    } finally {
      await Promise.all(alice.map((c) => c.end().catch(() => undefined)));
    }
  });
});

describe('SHOW POOLS / DATABASES / STATS / LIMITS across workers', () => {
  it('answer for the replica: pools per worker (sizes add up to the configured one), the rest summed', async () => {
    const ops = await connect('olivia', 'gprxy');
    const alice: pg.Client[] = [];
    try {
      // Until alice has sessions on both workers (round-robin spreads them; a few suffice).
      let workers = new Set<number>();
      for (let i = 0; i < 8 && workers.size < 2; i++) {
        alice.push(await connect('alice', 'mydb'));
        workers = new Set((await ops.query('SHOW SESSIONS')).rows.filter((r) => r.user === 'alice@example.com').map((r) => workerOfSession(Number(r.id))));
      }
      expect(workers.size).toBe(2);
      const pools = await ops.query('SHOW POOLS');
      expect(pools.fields.map((f) => f.name)).toEqual(['database', 'account', 'pool_mode', 'size', 'total', 'active', 'idle', 'waiting', 'draining', 'paused', 'worker']);
      const mine = pools.rows.filter((r) => r.database === 'mydb' && r.account === 'app_writer');
      expect(mine.map((r) => Number(r.worker))).toEqual([0, 1]);
      expect(mine.map((r) => Number(r.size))).toEqual([6, 6]);

      // Sessions that ended just before (earlier tests) may still be leaving: read until the figures settle
      // on alice's sessions, then compare them all from one reading.
      const read = async () => {
        const sessions = (await ops.query('SHOW SESSIONS')).rows;
        const onWorker = (w: number) => sessions.filter((r) => r.user === 'alice@example.com' && workerOfSession(Number(r.id)) === w).length;
        const poolRows = (await ops.query('SHOW POOLS')).rows.filter((r) => r.database === 'mydb' && r.account === 'app_writer');
        const database = (await ops.query('SHOW DATABASES')).rows.find((r) => r.name === 'mydb')!;
        const stats = (await ops.query('SHOW STATS')).rows.find((r) => r.database === 'mydb')!;
        const limits = Object.fromEntries((await ops.query('SHOW LIMITS')).rows.map((r) => [r.name, Number(r.current)]));
        return {
          active: poolRows.map((r) => [Number(r.worker), Number(r.active)]),
          databasePoolSize: Number(database.pool_size),
          databaseSessions: Number(database.sessions),
          currentSessions: Number(stats.current_sessions),
          clientConnections: limits.max_client_connections,
          perIdentity: limits.max_sessions_per_identity,
          expected: { active: [[0, onWorker(0)], [1, onWorker(1)]], sessions: sessions.length },
        };
      };
      let last = await read();
      const settled = (r: typeof last) => JSON.stringify(r.active) === JSON.stringify(r.expected.active) && r.databaseSessions === alice.length && r.currentSessions === alice.length && r.clientConnections === alice.length + 1 && r.expected.sessions === alice.length + 1;
      await waitUntil(async () => settled((last = await read())), 10_000).catch(() => undefined);
      expect(last).toEqual({
        active: last.expected.active,
        databasePoolSize: 12,
        databaseSessions: alice.length,
        currentSessions: alice.length,
        clientConnections: alice.length + 1,
        perIdentity: alice.length,
        expected: { active: last.expected.active, sessions: alice.length + 1 },
      });
    } finally {
      await Promise.all([...alice, ops].map((c) => c.end().catch(() => undefined)));
    }
  });
});

describe('PAUSE / RESUME across workers', () => {
  /** The sessions of alice that wait for the RESUME of mydb (SHOW SESSIONS covers both workers; `paused`: at that worker's gate). */
  async function aliceWaiting(ops: pg.Client): Promise<number[]> {
    const rows = (await ops.query('SHOW SESSIONS')).rows.filter((r) => r.user === 'alice@example.com' && r.state === 'waiting' && r.wait === 'paused');
    return rows.map((r) => Number(r.id));
  }

  it('PAUSE holds new logins on every worker until RESUME, also on a worker started afterwards; a silent worker makes it 57P03; audited once', async () => {
    const ops = await connect('olivia', 'gprxy');
    const opsWorker = workerOfSession(Number((await ops.query('SHOW SESSIONS')).rows.find((r) => r.user === 'olivia@example.com')!.id));
    const logins: { client: pg.Client; done: Promise<void>; connected: boolean }[] = [];
    const login = () => {
      const client = new pg.Client({ host: '127.0.0.1', port: serve.port, user: 'alice@example.com', password: tokens.alice!.accessToken, database: 'mydb', ssl: { ca: idp.ca.cert, servername: 'localhost' } });
      client.on('error', () => undefined);
      const entry = { client, connected: false, done: Promise.resolve() };
      entry.done = client.connect().then(() => void (entry.connected = true));
      logins.push(entry);
    };
    /** Our logins' sessions (worker, id) as SHOW SESSIONS listed them while they waited. */
    let ours = new Map<number, number>();
    /** Starts logins one at a time until one waits on each worker of `want` (each must wait: none may get through). */
    const waitOnWorkers = async (want: Set<number>) => {
      for (let i = 0; i < 8 && [...want].some((w) => ![...ours.values()].includes(w)); i++) {
        login();
        // A login that got a backend is no longer listed as waiting: then only its connect can end the wait.
        await waitUntil(async () => logins.some((l) => l.connected) || (await aliceWaiting(ops)).length === logins.length, 15_000);
        expect(logins.filter((l) => l.connected).length, 'logins that got through while mydb was paused').toBe(0);
        for (const id of await aliceWaiting(ops)) ours.set(id, workerOfSession(id));
      }
      expect([...want].filter((w) => ![...ours.values()].includes(w))).toEqual([]);
    };
    const resumeAll = async (from: number) => {
      await ops.query('RESUME mydb');
      await Promise.all(logins.map((l) => l.done));
      // Each waiting login got its backend on the worker it waited on (the log line names both).
      for (const [id, worker] of ours) await serve.waitFor((l) => l.event === 'auth_success' && l.session === id && l.worker === worker, 10_000, from);
      for (const l of logins) expect((await l.client.query('select 1 as one')).rows[0].one).toBe(1);
      await Promise.all(logins.splice(0).map((l) => l.client.end().catch(() => undefined)));
      ours = new Map();
    };
    try {
      let from = serve.lines().length;
      await ops.query('PAUSE mydb');
      await expect(ops.query('PAUSE mydb')).rejects.toMatchObject({ code: '55000' });
      await waitOnWorkers(new Set([0, 1]));
      await resumeAll(from);
      await expect(ops.query('RESUME mydb')).rejects.toMatchObject({ code: '55000' });
      await serve.waitFor((l) => l.event === 'admin_action' && l.command === 'RESUME' && l.outcome === 'error', 10_000, from);
      const audit = serve.lines().slice(from).filter((l) => l.event === 'admin_action' && (l.command === 'PAUSE' || l.command === 'RESUME'));
      expect(audit.map((l) => [l.command, l.outcome, l.databases ?? null, l.worker])).toEqual([
        ['PAUSE', 'ok', ['mydb'], opsWorker],
        ['PAUSE', 'error', null, opsWorker],
        ['RESUME', 'ok', ['mydb'], opsWorker],
        ['RESUME', 'error', null, opsWorker],
      ]);

      // The other worker dies while mydb is paused: its replacement comes up paused (the primary remembers).
      await ops.query('PAUSE mydb');
      const other = 1 - opsWorker;
      const pid = [...serve.lines()].reverse().find((l) => l.event === 'worker_listening' && l.worker === other)!.pid as number;
      from = serve.lines().length;
      process.kill(pid, 'SIGKILL');
      await serve.waitFor((l) => l.event === 'worker_exit' && l.worker === other, 10_000, from);
      await serve.waitFor((l) => l.event === 'worker_listening' && l.worker === other, 20_000, from);
      await waitOnWorkers(new Set([other]));
      await resumeAll(from);

      // A worker that does not answer (stopped, a real hang): PAUSE is an error naming it, never a silent
      // partial success. Once it runs again it applies the command it missed (IPC is ordered), so every
      // worker agrees: PAUSE again is "already paused", and logins there wait.
      const stalled = [...serve.lines()].reverse().find((l) => l.event === 'worker_listening' && l.worker === other)!.pid as number;
      from = serve.lines().length;
      process.kill(stalled, 'SIGSTOP');
      let refused: { code?: string; message?: string } | undefined;
      try {
        refused = await ops.query('PAUSE mydb').then(
          () => undefined,
          (e: { code?: string; message?: string }) => e,
        );
      } finally {
        process.kill(stalled, 'SIGCONT');
      }
      expect(refused).toMatchObject({ code: '57P03' });
      expect(refused!.message).toContain(`worker ${other} did not answer`);
      await expect(ops.query('PAUSE mydb')).rejects.toMatchObject({ code: '55000' });
      await waitOnWorkers(new Set([other]));
      await resumeAll(from);
      const stalledAudit = await serve.waitFor((l) => l.event === 'admin_action' && l.command === 'PAUSE' && l.sqlstate === '57P03', 10_000, from);
      expect(stalledAudit.worker).toBe(opsWorker);
    } finally {
      await Promise.all(logins.map((l) => l.client.end().catch(() => undefined)));
      await ops.end();
    }
  });
});
