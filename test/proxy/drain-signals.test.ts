/**
 * `gprxy serve` as an orchestrator sees it (issue 18): a real process, real signals. SIGTERM turns /readyz
 * unready at once and drains under load: no query of an open session fails before the grace period ends,
 * then every session gets 57P01 with `server_shutdown` logged; --exit-zero-on-sigterm exits 0. SIGHUP and
 * the opt-in file watch reload the config; a broken file is refused and the proxy keeps serving.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCli, type CliProcess } from '../support/cli.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { createAppDatabase, startTestPostgres, type Cluster } from '../support/postgres.js';
import { proxyDocument } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';
import { DEV_USERS } from '../../src/demo/oidc-provider.js';
import { waitUntil } from '../support/wait.js';

const OPS = { username: 'olivia', password: 'olivia-pw', sub: 'auth0|olivia0005', email: 'olivia@example.com', name: 'Olivia Ops', roles: ['pg_ops'] };

let cluster: Cluster;
let idp: TestProvider;
let dir: string;
let aliceToken: string;
let opsToken: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gprxy-drain-'));
  cluster = await startTestPostgres();
  await createAppDatabase(cluster);
  await createAppDatabase(cluster, 'otherdb');
  idp = await startTestProvider({ users: [...DEV_USERS, OPS] });
  const leaf = await idp.ca.issue(['localhost', '127.0.0.1']);
  writeFileSync(join(dir, 'server.crt'), leaf.cert);
  writeFileSync(join(dir, 'server.key'), leaf.key, { mode: 0o600 });
  writeFileSync(join(dir, 'idp-ca.crt'), idp.provider.caCert);
  aliceToken = (await loginAs(idp.provider, 'alice')).accessToken;
  opsToken = (await loginAs(idp.provider, 'olivia')).accessToken;
});
afterAll(async () => {
  await idp?.close();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, overrides: Record<string, unknown> = {}): string {
  const doc = proxyDocument(cluster, idp, { cert: '', key: '' }, {
    tls: { cert: 'server.crt', key: 'server.key' },
    log: { level: 'info' },
    metrics: { listen: '127.0.0.1:0' },
    admin: { database: 'gprxy', roles: ['pg_ops'] },
    ...overrides,
  });
  (doc.providers as Record<string, unknown>[])[0]!.ca = 'idp-ca.crt';
  const file = join(dir, name);
  writeFileSync(file, stringify(doc));
  return file;
}

async function serve(args: string[]): Promise<{ cli: CliProcess; port: number; readyz: () => Promise<{ status: number; body: string }> }> {
  const cli = startCli(['serve', ...args]);
  const port = Number((await cli.waitFor(/"event":"listening".*?"port":(\d+)/, 'stdout'))[1]);
  const metricsPort = Number((await cli.waitFor(/"event":"metrics_listening".*?"port":(\d+)/, 'stdout'))[1]);
  const readyz = async () => {
    const r = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
    return { status: r.status, body: await r.text() };
  };
  return { cli, port, readyz };
}

const connect = async (port: number, database = 'mydb') => {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'alice@example.com', password: aliceToken, database, ssl: { ca: idp.ca.cert, servername: 'localhost' } });
  await c.connect();
  return c;
};

describe('SIGTERM drain', () => {
  it('turns /readyz unready at once, lets open sessions work through the grace period, then ends them with 57P01; exit 0 with --exit-zero-on-sigterm', async () => {
    const graceMs = 1500;
    const { cli, port, readyz } = await serve(['--config', writeConfig('drain.yaml'), '--drain-timeout', String(graceMs / 1000), '--exit-zero-on-sigterm']);
    expect(await readyz()).toEqual({ status: 200, body: 'ready\n' });
    const clients = await Promise.all([1, 2, 3, 4].map(() => connect(port)));
    // Load: each client runs short queries back to back until its session is ended; `okAfterSignal` counts
    // the ones answered after the proxy logged the SIGTERM (a count of queries per 1.5 s would depend on the
    // machine's speed: the point is that sessions keep working once the drain has begun).
    let signalled = false;
    const oks = clients.map(() => 0);
    const outcomes = clients.map(async (c, i) => {
      c.on('error', () => undefined);
      let okAfterSignal = 0;
      for (;;) {
        try {
          await c.query('select pg_sleep(0.02)');
          oks[i]!++;
          if (signalled) okAfterSignal++;
        } catch (e) {
          return { okAfterSignal, code: (e as { code?: string }).code, at: Date.now() };
        }
      }
    });
    await waitUntil(() => oks.every((n) => n > 0));
    const termAt = Date.now();
    cli.child.kill('SIGTERM');
    await cli.waitFor(/"event":"signal"/, 'stdout');
    signalled = true;
    const unready = await readyz();
    expect(unready.status).toBe(503);
    expect(unready.body).toContain('draining');
    // Stopped accepting: a new client is refused at the TCP level (the replica is out of the Service).
    await expect(connect(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    const ends = await Promise.all(outcomes);
    for (const end of ends) {
      expect(end.code).toBe('57P01');
      expect(end.at - termAt).toBeGreaterThanOrEqual(graceMs - 100);
      expect(end.okAfterSignal).toBeGreaterThan(0);
    }
    const r = await cli.result;
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => l.event === 'session_end' && l.reason === 'server_shutdown')).toHaveLength(4);
    expect(lines.find((l) => l.event === 'drain_ended')).toMatchObject({ sessions: 4, grace_ms: graceMs });
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  });
});

describe('SIGHUP and --watch-config', () => {
  it('reload the config for new logins, refuse a broken one, and never drop the open session', async () => {
    const file = writeConfig('reload.yaml');
    const { cli, port } = await serve(['--config', file, '--watch-config', '--watch-interval', '100ms']);
    const open = await connect(port);
    await expect(connect(port, 'otherdb')).rejects.toMatchObject({ code: '3D000' });

    // SIGHUP: a database added.
    const databases = (extra: Record<string, unknown> = {}) => ({
      mydb: { host: cluster.host, port: cluster.port, dbname: 'mydb', pool: { size: 5 } },
      otherdb: { host: cluster.host, port: cluster.port, dbname: 'otherdb', pool: { size: 2 } },
      ...extra,
    });
    writeConfig('reload.yaml', { databases: databases() });
    // The watch may see the write first; either way one reload applies it.
    cli.child.kill('SIGHUP');
    await cli.waitFor(/"event":"config_reloaded".*"databasesAdded":\["otherdb"\]/, 'stdout');
    const other = await connect(port, 'otherdb');
    expect((await other.query('select current_database() as db')).rows[0].db).toBe('otherdb');
    await other.end();

    // A broken file (the watch sees it): refused, logged with the validation error, the proxy serves on.
    writeFileSync(file, stringify({ providers: [], databases: {} }));
    await cli.waitFor(/"event":"config_reload_refused".*"trigger":"file_watch".*"code":"invalid_config"/, 'stdout');
    const again = await connect(port, 'otherdb');
    await again.end();

    // The watch again: a valid change (otherdb removed) applies without a signal.
    writeConfig('reload.yaml');
    await cli.waitFor(/"event":"config_reloaded".*"trigger":"file_watch".*"databasesRemoved":\["otherdb"\]/, 'stdout');
    await expect(connect(port, 'otherdb')).rejects.toMatchObject({ code: '3D000' });

    // The admin console's RELOAD: a broken file is F0000 with the running config kept; a good one applies.
    const console = new pg.Client({ host: '127.0.0.1', port, user: 'olivia@example.com', password: opsToken, database: 'gprxy', ssl: { ca: idp.ca.cert, servername: 'localhost' } });
    await console.connect();
    writeFileSync(file, 'providers: [');
    await expect(console.query('RELOAD')).rejects.toMatchObject({ code: 'F0000' });
    writeConfig('reload.yaml', { databases: databases() });
    const notices: string[] = [];
    console.on('notice', (n) => notices.push(n.message ?? ''));
    await console.query('RELOAD');
    // The file watch may have applied the write first (then RELOAD finds no change): either way otherdb is served.
    expect(notices.join('\n')).toMatch(/configuration reloaded \((databases added: otherdb|no change)\): applies to new logins/);
    await (await connect(port, 'otherdb')).end();
    await console.end();

    // The session opened before all this: still the same backend, still working.
    expect((await open.query('select 1 as one')).rows[0].one).toBe(1);
    await open.end();
    cli.child.kill('SIGTERM');
    const r = await cli.result;
    expect(r.code).toBe(143);
    expect(r.stdout + r.stderr).not.toContain(aliceToken.split('.')[2]!);
  });
});

describe('with --workers 2', () => {
  it("the admin console's RELOAD reloads every worker; SIGTERM drains them all and --exit-zero-on-sigterm exits 0", async () => {
    const file = writeConfig('workers.yaml');
    const { cli, port, readyz } = await serve(['--config', file, '--workers', '2', '--drain-timeout', '1s', '--exit-zero-on-sigterm']);
    await waitUntil(async () => (await readyz()).status === 200);
    const open = await connect(port);
    open.on('error', () => undefined);
    const lines = () => cli.stdout().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

    // RELOAD lands on one worker's console; every worker applies the file.
    const console = new pg.Client({ host: '127.0.0.1', port, user: 'olivia@example.com', password: opsToken, database: 'gprxy', ssl: { ca: idp.ca.cert, servername: 'localhost' } });
    await console.connect();
    writeConfig('workers.yaml', {
      databases: {
        mydb: { host: cluster.host, port: cluster.port, dbname: 'mydb', pool: { size: 4 } },
        otherdb: { host: cluster.host, port: cluster.port, dbname: 'otherdb', pool: { size: 2 } },
      },
    });
    await console.query('RELOAD');
    // Log lines reach the primary's stream in batches: wait for both workers' lines.
    const applied = () => lines().filter((l) => l.event === 'config_reloaded' && l.trigger === 'admin').map((l) => l.worker);
    await waitUntil(() => applied().length >= 2, 5000);
    expect(applied().sort()).toEqual([0, 1]);
    for (let i = 0; i < 4; i++) await (await connect(port, 'otherdb')).end();
    // A broken file: refused (F0000), every worker keeps serving the config it has.
    writeFileSync(file, 'databases: {}');
    await expect(console.query('RELOAD')).rejects.toMatchObject({ code: 'F0000' });
    await (await connect(port, 'otherdb')).end();
    await console.end();

    // SIGTERM: unready at once, the open session works through the grace period, then 57P01; exit 0.
    const ended = new Promise<unknown>((resolve) => open.on('error', resolve));
    cli.child.kill('SIGTERM');
    await cli.waitFor(/"event":"signal"/, 'stdout');
    expect((await readyz()).body).toContain('draining');
    expect((await open.query('select 1 as one')).rows[0].one).toBe(1);
    expect(await ended).toMatchObject({ code: '57P01' });
    expect((await cli.result).code).toBe(0);
    await open.end().catch(() => undefined);
  });
});
