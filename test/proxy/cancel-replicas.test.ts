/**
 * Two replicas behind HAProxy (Debian's package, TCP mode, round-robin) on loopback: replica 1 runs
 * `--workers 2`, replica 2 is a single process; they forward cancels to each other over the peer channel
 * (TLS + HMAC with cluster.secret). psql's Ctrl+C (SIGINT: libpq sends a real CancelRequest on a new
 * connection, which HAProxy may hand to the other replica) cancels the query 20 times out of 20, the
 * audit line on the owner names the user, and forged cancels (a wrong secret through HAProxy, a peer
 * message without the right HMAC) do nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/demo/postgres-cluster.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { createAppDatabase, startTestPostgres, type Cluster } from '../support/postgres.js';
import { proxyDocument } from '../support/proxy-stack.js';
import { sendCancel, startServe, type LogLine, type ServeProcess } from '../support/serve-process.js';
import { loginAs, type TokenSet } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';

const CLUSTER_SECRET = 'cluster-secret-for-tests-0123456789abcdef';
let cluster: Cluster;
let idp: TestProvider;
let replicas: ServeProcess[] = [];
let haproxy: ChildProcess | undefined;
let haproxyPort: number;
let peerPorts: number[];
let dir: string;
let alice: TokenSet;

beforeAll(async () => {
  cluster = await startTestPostgres();
  await createAppDatabase(cluster);
  idp = await startTestProvider();
  alice = await loginAs(idp.provider, 'alice');
  const leaf = await idp.ca.issue(['localhost', '127.0.0.1']);
  const files = { 'inline-cert': leaf.cert, 'inline-key': leaf.key, 'inline-ca': idp.provider.caCert };
  peerPorts = [await freePort(), await freePort()];
  const doc = (i: number) =>
    proxyDocument(cluster, idp, leaf, {
      log: { level: 'info' },
      databases: { mydb: { host: cluster.host, port: cluster.port, dbname: 'mydb', pool: { size: 24 } } },
      limits: { login_timeout: '10s', pool_wait_timeout: '10s', max_sessions_per_identity: 0 },
      cluster: { replica_id: i + 1, listen: `127.0.0.1:${peerPorts[i]}`, secret: CLUSTER_SECRET, peers: [`127.0.0.1:${peerPorts[1 - i]}`] },
    });
  // Both started before either failure is raised, so afterAll stops the one that did start (a replica too slow to
  // listen under load used to leave the other one running after the run).
  const started = await Promise.allSettled([startServe(doc(0), files, ['--workers', '2']), startServe(doc(1), files)]);
  replicas = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  for (const r of started) if (r.status === 'rejected') throw r.reason;
  dir = mkdtempSync(join(tmpdir(), 'gprxy-haproxy-'));
  writeFileSync(join(dir, 'root.crt'), idp.ca.cert);
  haproxyPort = await freePort();
  writeFileSync(
    join(dir, 'haproxy.cfg'),
    [
      'global',
      '  maxconn 200',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 60s',
      '  timeout server 60s',
      'frontend pg',
      `  bind 127.0.0.1:${haproxyPort}`,
      '  default_backend gprxy',
      'backend gprxy',
      '  balance roundrobin',
      ...replicas.map((r, i) => `  server replica${i + 1} 127.0.0.1:${r.port}`),
      '',
    ].join('\n'),
  );
  haproxy = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'ignore', 'pipe'] });
  // Ready when it accepts: a TCP connect to the frontend.
  await waitUntil(
    () =>
      new Promise<boolean>((resolve) => {
        const s = connect({ host: '127.0.0.1', port: haproxyPort, rejectUnauthorized: false });
        s.on('error', () => resolve(false));
        s.on('connect', () => (s.destroy(), resolve(true)));
      }),
    10_000,
  );
}, 90_000);

afterAll(async () => {
  haproxy?.kill('SIGTERM');
  await Promise.all(replicas.map((r) => r.stop()));
  await idp?.close();
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const sleepers = (n: number) => async () => (await cluster.query("select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'", [], 'mydb')).rows[0]?.n === n;

function allLines(): LogLine[] {
  return replicas.flatMap((r) => r.lines());
}

describe('cancel across two replicas behind HAProxy', () => {
  it("psql's Ctrl+C cancels the query 20 times out of 20, wherever the CancelRequest lands", async () => {
    let cancelled = 0;
    // Two rounds of ten psql sessions at once (the machine has two cores: sequential rounds would take long).
    for (let round = 0; round < 2; round++) {
      const psqls = Array.from({ length: 10 }, () => {
        const p = spawn('psql', ['-X', '-h', 'localhost', '-p', String(haproxyPort), '-U', 'alice@example.com', '-d', 'mydb', '-c', 'select pg_sleep(30)'], {
          env: { PATH: process.env.PATH, PGPASSWORD: alice.accessToken, PGSSLMODE: 'verify-full', PGSSLROOTCERT: join(dir, 'root.crt'), PGCONNECT_TIMEOUT: '20' },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stderr = '';
        p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
        // 'close', not 'exit': the exit can be seen before the last of psql's stderr is read (ten psqls exiting at
        // once lost the "canceling statement" line about once in 300 here), which looked like a lost cancel.
        return { p, stderr: () => stderr, closed: once(p, 'close') as Promise<[number | null]> };
      });
      try {
        await waitUntil(sleepers(10), 30_000, 50);
        for (const { p } of psqls) p.kill('SIGINT');
        for (const { closed, stderr } of psqls) {
          // Every Ctrl+C must work the first time: a psql still running 10 s later fails with what it printed.
          let timer: NodeJS.Timeout | undefined;
          const ended = await Promise.race([closed, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 10_000)))]);
          clearTimeout(timer);
          expect(ended, `psql still running 10 s after its Ctrl+C; stderr: ${stderr()}`).toBeDefined();
          const [code] = ended!;
          expect(stderr(), stderr()).toContain('canceling statement due to user request');
          expect(code).toBe(1);
          cancelled++;
        }
      } finally {
        for (const { p } of psqls) p.kill('SIGKILL');
      }
    }
    expect(cancelled).toBe(20);
    await waitUntil(() => allLines().filter((l) => l.event === 'cancel_request' && l.outcome === 'cancelled').length >= 20, 10_000);
    const done = allLines().filter((l) => l.event === 'cancel_request' && l.outcome === 'cancelled');
    expect(done.every((l) => l.user === 'alice@example.com')).toBe(true);
    // Some cancels crossed replicas (HAProxy alternates), and some crossed workers of replica 1.
    expect(done.some((l) => typeof l.via === 'string' && l.via.startsWith('replica'))).toBe(true);
  });

  it('a forged cancel (wrong secret) through HAProxy and a peer message without the HMAC do nothing', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: haproxyPort, user: 'alice@example.com', password: alice.accessToken, database: 'mydb', ssl: { ca: idp.ca.cert, servername: 'localhost' } });
    c.on('error', () => undefined);
    await c.connect();
    try {
      const key = c as unknown as { processID: number; secretKey: number };
      const sleeping = c.query('select pg_sleep(30)').then(
        () => 'finished',
        (e: { code?: string }) => e.code,
      );
      await waitUntil(sleepers(1), 10_000);
      const before = allLines().filter((l) => l.event === 'cancel_request' && l.outcome === 'no_match').length;
      // Twice, so that one of them reaches the other replica (round-robin) and crosses the peer channel.
      for (let i = 0; i < 2; i++) await sendCancel(haproxyPort, key.processID, Buffer.from([1, 2, 3, 4]));
      await waitUntil(() => allLines().filter((l) => l.event === 'cancel_request' && l.outcome === 'no_match').length >= before + 2, 10_000);
      // A peer request with a made-up HMAC, straight to replica 2's peer port.
      const from = replicas[1]!.lines().length;
      await new Promise<void>((resolve) => {
        const s = connect({ host: '127.0.0.1', port: peerPorts[1]!, rejectUnauthorized: false }, () =>
          s.write(`${JSON.stringify({ v: 1, ts: Date.now(), nonce: 'n1', hops: 1, replica: 2, from: 1, pid: key.processID, key: 'AAAAAA==', mac: 'forged' })}\n`),
        );
        s.on('data', () => undefined);
        s.on('close', () => resolve());
        s.on('error', () => resolve());
      });
      const refused = await replicas[1]!.waitFor((l) => l.event === 'cluster_cancel_refused', 10_000, from);
      expect(refused.reason).toBe('bad_mac');
      expect(await Promise.race([sleeping, Promise.resolve('still running')])).toBe('still running');
      const secret = Buffer.alloc(4);
      secret.writeInt32BE(key.secretKey);
      await sendCancel(haproxyPort, key.processID, secret);
      expect(await sleeping).toBe('57014');
    } finally {
      await c.end();
    }
  });
});
