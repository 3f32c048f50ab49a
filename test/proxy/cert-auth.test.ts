/**
 * Issue 11 item 3: a service account that logs in with a TLS client certificate (PostgreSQL `cert`
 * authentication, accounts.<name>.sslcert / sslkey). A user of the account who changes its password
 * (`ALTER ROLE CURRENT_USER PASSWORD ...`) locks nobody out, and the new password opens nothing.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProxyConfig, ConfigError } from '../../src/config/proxy-config.js';
import { createLogger } from '../../src/proxy/logger.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { createAppDatabase, SERVICE_ACCOUNTS, startTestPostgres, type Cluster } from '../support/postgres.js';
import { LogCapture, proxyDocument } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';

let cluster: Cluster;
let idp: TestProvider;
let proxy: ProxyServer;
const tokens: Record<string, string> = {};
let files: Record<string, string>;

const document = (overrides: Record<string, unknown> = {}) =>
  proxyDocument(cluster, idp, { cert: '', key: '' }, {
    role_mapping: [
      { role: 'pg_writer', account: 'app_writer' },
      { role: 'pg_reader', account: 'app_writer' },
    ],
    accounts: { ...Object.fromEntries(Object.entries(SERVICE_ACCOUNTS).map(([n, p]) => [n, { password: p }])), app_writer: { sslcert: 'writer.crt', sslkey: 'writer.key' } },
    databases: { mydb: { host: '127.0.0.1', port: cluster.port, dbname: 'mydb', sslmode: 'verify-full', ca: 'pg-ca' } },
    ...overrides,
  });

beforeAll(async () => {
  idp = await startTestProvider();
  const leaf = await idp.ca.issue(['localhost', '127.0.0.1']);
  const writer = await idp.ca.issueClient('app_writer');
  // The account may log in over TLS with its certificate only; a password opens nothing.
  cluster = await startTestPostgres({
    tls: { ...leaf, clientCa: idp.ca.cert },
    hba: ['hostssl all app_writer 127.0.0.1/32 cert', 'host all app_writer 0.0.0.0/0 reject', 'local all app_writer reject'],
  });
  await createAppDatabase(cluster);
  files = { 'inline-cert': leaf.cert, 'inline-key': leaf.key, 'inline-ca': idp.provider.caCert, 'pg-ca': idp.ca.cert, 'writer.crt': writer.cert, 'writer.key': writer.key };
  const config = buildProxyConfig(document(), {}, '/inline', (p) => files[p.split('/').pop()!]!);
  proxy = new ProxyServer(config, { logger: createLogger({ level: 'debug', destination: new LogCapture() }) });
  await proxy.start();
  tokens.alice = (await loginAs(idp.provider, 'alice')).accessToken;
  tokens.bob = (await loginAs(idp.provider, 'bob')).accessToken;
});

afterAll(async () => {
  await proxy?.close();
  await idp?.close();
  await cluster?.stop();
});

async function connectAs(username: 'alice' | 'bob'): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: proxy.address.port, user: `${username}@example.com`, password: tokens[username], database: 'mydb', ssl: { ca: idp.ca.cert, servername: 'localhost' } });
  c.on('error', () => {});
  await c.connect();
  return c;
}

describe('service accounts over TLS client certificates', () => {
  it('logs in with its certificate, and a password change by one of its users locks nobody out and opens nothing', async () => {
    const alice = await connectAs('alice');
    const tls = await alice.query(`select current_user as u, ssl, client_dn from pg_stat_ssl where pid = pg_backend_pid()`);
    expect(tls.rows[0]).toEqual({ u: 'app_writer', ssl: true, client_dn: '/CN=app_writer' });
    await alice.end();

    const bob = await connectAs('bob');
    await bob.query(`alter role current_user password 'bobs-own-password-123'`);
    await bob.end();
    await cluster.query(`select pg_terminate_backend(pid) from pg_stat_activity where usename = 'app_writer'`);
    await waitUntil(async () => (await cluster.query(`select count(*)::int as n from pg_stat_activity where usename = 'app_writer'`)).rows[0]!.n === 0);

    const again = await connectAs('alice');
    expect((await again.query('select current_user as u')).rows[0].u).toBe('app_writer');
    await again.end();
    // The password bob set does not log into PostgreSQL: without the certificate there is no way in.
    for (const ssl of [{ rejectUnauthorized: false }, false] as const) {
      const direct = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'app_writer', password: 'bobs-own-password-123', database: 'mydb', ssl });
      await expect(direct.connect()).rejects.toMatchObject({ code: '28000' });
    }
  });

  it('refuses a config whose certificate account would talk to the database without TLS', () => {
    const bad = document({ databases: { mydb: { host: '127.0.0.1', port: cluster.port, dbname: 'mydb', sslmode: 'disable' } } });
    expect(() => buildProxyConfig(bad, {}, '/inline', (p) => files[p.split('/').pop()!]!)).toThrow(ConfigError);
    const half = document({ accounts: { app_writer: { sslcert: 'writer.crt' } } });
    expect(() => buildProxyConfig(half, {}, '/inline', (p) => files[p.split('/').pop()!]!)).toThrow(/sslcert and sslkey go together/);
  });
});
