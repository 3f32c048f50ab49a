/** The proxy's side toward PostgreSQL: TLS modes, auth methods, pool limits, broken and missing backends. */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/proxy/logger.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { buildProxyConfig } from '../../src/config/proxy-config.js';
import { freePort } from '../../src/demo/postgres-cluster.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { createAppDatabase, SERVICE_ACCOUNTS, startTestPostgres, type Cluster } from '../support/postgres.js';
import { LogCapture, proxyDocument } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';

let cluster: Cluster;
let idp: TestProvider;
let leaf: { cert: string; key: string };
let alice: string;
let bob: string;
const proxies: ProxyServer[] = [];

async function startProxy(overrides: Record<string, unknown>, fileOverrides: Record<string, string> = {}): Promise<{ proxy: ProxyServer; logs: LogCapture }> {
  const logs = new LogCapture();
  const files: Record<string, string> = { 'inline-cert': leaf.cert, 'inline-key': leaf.key, 'inline-ca': idp.provider.caCert, 'pg-ca': idp.ca.cert, ...fileOverrides };
  const config = buildProxyConfig(proxyDocument(cluster, idp, leaf, overrides), {}, '/inline', (p) => files[p.split('/').pop()!]!);
  const proxy = new ProxyServer(config, { logger: createLogger({ level: 'debug', destination: logs }) });
  await proxy.start();
  proxies.push(proxy);
  return { proxy, logs };
}

function clientFor(proxy: ProxyServer, user = 'alice@example.com', token = alice): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: proxy.address.port, user, password: token, database: 'mydb', ssl: { ca: idp.ca.cert, servername: 'localhost' } });
}

const db = (extra: Record<string, unknown>) => ({ databases: { mydb: { host: '127.0.0.1', port: cluster.port, dbname: 'mydb', ...extra } } });

beforeAll(async () => {
  idp = await startTestProvider();
  leaf = await idp.ca.issue(['localhost', '127.0.0.1']);
  cluster = await startTestPostgres({ tls: leaf, hba: ['host all md5_writer 127.0.0.1/32 md5', 'hostnossl all tls_only 0.0.0.0/0 reject'] });
  await createAppDatabase(cluster);
  await cluster.query("set password_encryption = 'md5'; create role md5_writer login password 'md5-secret-0123456789'; grant app_writer to md5_writer;");
  alice = (await loginAs(idp.provider, 'alice')).accessToken;
  bob = (await loginAs(idp.provider, 'bob')).accessToken;
});
afterAll(async () => {
  for (const p of proxies) await p.close();
  await idp?.close();
  await cluster?.stop();
});

describe('backends', () => {
  for (const sslmode of ['require', 'verify-full'] as const) {
    it(`connects to PostgreSQL over TLS with sslmode ${sslmode}`, async () => {
      const { proxy } = await startProxy(db({ sslmode, ca: 'pg-ca' }));
      const c = clientFor(proxy);
      await c.connect();
      expect((await c.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()')).rows[0].ssl).toBe(true);
      await c.end();
    });
  }

  it('refuses with 57P03 when verify-full cannot verify the server certificate', async () => {
    const { createCertificateAuthority } = await import('../../src/demo/certificates.js');
    const { proxy, logs } = await startProxy(db({ sslmode: 'verify-full', ca: 'pg-ca' }), { 'pg-ca': (await createCertificateAuthority('not the database CA')).cert });
    await expect(clientFor(proxy).connect()).rejects.toMatchObject({ code: '57P03' });
    expect((await logs.waitFor((l) => l.event === 'backend_unavailable')).message).toMatch(/TLS to 127\.0\.0\.1:\d+ failed/);
  });

  it('authenticates a service account with md5', async () => {
    const { proxy } = await startProxy({
      ...db({}),
      accounts: { ...Object.fromEntries(Object.entries(SERVICE_ACCOUNTS).map(([n, p]) => [n, { password: p }])), md5_writer: { password: 'md5-secret-0123456789' } },
      role_mapping: [{ role: 'pg_writer', account: 'md5_writer' }],
    });
    const c = clientFor(proxy);
    await c.connect();
    expect((await c.query('select current_user')).rows[0].current_user).toBe('md5_writer');
    await c.end();
  });

  it('says 08004, not "try again", when PostgreSQL refuses a service account password, with an audit event and a metric', async () => {
    const { proxy, logs } = await startProxy({ ...db({}), accounts: { app_admin: { password: 'x' }, app_writer: { password: 'wrong-password' }, app_reader: { password: 'x' } } });
    const err = await clientFor(proxy).connect().then(() => undefined, (e: { code: string; message: string }) => e);
    expect(err?.code).toBe('08004');
    // The client hears that the account (not its token) is refused and that an operator must act; the log says why.
    expect(err?.message).toMatch(/refused the service account .* not a problem with your token/);
    expect(err?.message).not.toMatch(/try again/);
    expect(err?.message).not.toContain('127.0.0.1');
    const event = await logs.waitFor((l) => l.event === 'service_account_login_failed');
    expect(event).toMatchObject({ account: 'app_writer', database: 'mydb', pool: 'mydb/app_writer', sqlstate: '28P01' });
    expect(event.reason).toMatch(/check the account password in the proxy config/);
    expect(await proxy.metrics.registry.getSingleMetricAsString('gprxy_service_account_events_total')).toMatch(/event="login_failed"[^\n]* 1/);
    expect(logs.raw).not.toContain('wrong-password');
  });

  it('says 57P03 when the database is down', async () => {
    const { proxy, logs } = await startProxy({ databases: { mydb: { host: '127.0.0.1', port: await freePort(), dbname: 'mydb' } } });
    const err = await clientFor(proxy).connect().then(() => undefined, (e: { code: string; message: string }) => e);
    expect(err?.code).toBe('57P03');
    expect((await logs.waitFor((l) => l.event === 'backend_unavailable')).message).toMatch(/ECONNREFUSED/);
  });

  it('queues clients beyond pool.size and refuses with 53300 after pool_wait_timeout', async () => {
    const { proxy } = await startProxy({ ...db({ pool: { size: 1 } }), limits: { pool_wait_timeout: '1s' } });
    const holder = clientFor(proxy);
    await holder.connect();
    const started = Date.now();
    const err = await clientFor(proxy).connect().then(() => undefined, (e: { code: string; message: string }) => e);
    expect(err?.code).toBe('53300');
    expect(err?.message).toMatch(/all 1 connections of pool mydb\/app_writer are busy/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    // A waiter is served as soon as the holder leaves.
    const waiter = clientFor(proxy);
    const waiting = waiter.connect();
    await new Promise((r) => setTimeout(r, 100));
    await holder.end();
    await waiting;
    expect((await waiter.query('select 1 as one')).rows[0].one).toBe(1);
    await waiter.end();
  });

  it('pools are per account: a busy writer pool does not block readers', async () => {
    const { proxy } = await startProxy({ ...db({ pool: { size: 1 } }), limits: { pool_wait_timeout: '1s' } });
    const writer = clientFor(proxy);
    await writer.connect();
    const reader = clientFor(proxy, 'bob@example.com', bob);
    await reader.connect();
    expect((await reader.query('select current_user')).rows[0].current_user).toBe('app_reader');
    await reader.end();
    await writer.end();
  });

  it('replaces a pooled backend that died while idle, without the next client noticing', async () => {
    const { proxy, logs } = await startProxy(db({}));
    const first = clientFor(proxy);
    await first.connect();
    const pid = (await first.query('select pg_backend_pid() as pid')).rows[0].pid as number;
    await first.end();
    await logs.waitFor((l) => l.event === 'session_end' && l.backend_reused === true);
    await cluster.query('select pg_terminate_backend($1)', [pid]);
    await logs.waitFor((l) => l.event === 'backend_close' && l.pid === pid);
    const second = clientFor(proxy);
    await second.connect();
    expect((await second.query('select pg_backend_pid() as pid')).rows[0].pid).not.toBe(pid);
    await second.end();
  });

  it('tells a client whose backend dies mid-session, and logs why', async () => {
    const { proxy, logs } = await startProxy(db({}));
    const c = clientFor(proxy);
    await c.connect();
    c.on('error', () => {});
    const pid = (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
    await cluster.query('select pg_terminate_backend($1)', [pid]);
    await expect(c.query('select 1')).rejects.toBeDefined();
    const end = await logs.waitFor((l) => l.event === 'session_end');
    expect(end.reason).toMatch(/^backend_/);
    expect(end.backend_reused).toBe(false);
  });
});
