/**
 * Config reload (issue 18): ProxyServer.reload and the ConfigReloader on a real proxy, PostgreSQL and OIDC
 * provider. New providers, databases and certificates apply to new logins; an open session goes on
 * untouched; a broken config is refused and the running one keeps serving.
 */
import { X509Certificate } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProxyConfig, type ProxyConfig } from '../../src/config/proxy-config.js';
import { createLogger } from '../../src/proxy/logger.js';
import { ConfigReloader } from '../../src/proxy/reload.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { createAppDatabase } from '../support/postgres.js';
import { proxyDocument, startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';
import { loginRefusal } from '../support/proxy-clients.js';

let stack: ProxyStack;
let second: TestProvider;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gprxy-reload-'));
  stack = await startProxyStack();
  await createAppDatabase(stack.cluster, 'otherdb');
  second = await startTestProvider({ ca: stack.idp.ca });
});
afterAll(async () => {
  await second?.close();
  await stack?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A config as the stack's, with `overrides`, and a freshly issued server certificate (returned). */
async function configWith(overrides: Record<string, unknown>, leaf?: { cert: string; key: string }): Promise<{ config: ProxyConfig; cert: string }> {
  const pair = leaf ?? (await stack.idp.ca.issue(['localhost', '127.0.0.1']));
  const files: Record<string, string> = { 'inline-cert': pair.cert, 'inline-key': pair.key, 'inline-ca': stack.idp.provider.caCert };
  const readFile = (p: string) => files[p.split('/').pop()!] ?? '';
  const doc = proxyDocument(stack.cluster, stack.idp, pair, overrides);
  return { config: buildProxyConfig(doc, {}, '/inline', readFile), cert: pair.cert };
}

function client(user: string, token: string, database = 'mydb'): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: stack.port, user, password: token, database, ssl: stack.ssl });
}

async function refused(c: pg.Client): Promise<string | undefined> {
  return (await loginRefusal(c)).code;
}

/** The SHA-256 fingerprint of the certificate a new TLS handshake with the proxy presents. */
function servedFingerprint(): Promise<string> {
  return new Promise((resolve, reject) => {
    const raw = netConnect(stack.port, '127.0.0.1');
    raw.once('error', reject);
    raw.once('connect', () => raw.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])));
    raw.once('data', (answer) => {
      if (answer.toString() !== 'S') return reject(new Error(`SSLRequest answered ${answer.toString()}`));
      const tls = tlsConnect({ socket: raw, ca: stack.ssl.ca, servername: 'localhost' }, () => {
        resolve(tls.getPeerCertificate().fingerprint256);
        tls.destroy();
      });
      tls.once('error', reject);
    });
  });
}

describe('ProxyServer.reload', () => {
  it('adds a provider and a database for new logins while an open session goes on, and rotates the certificate', async () => {
    const alice = (await loginAs(stack.idp.provider, 'alice')).accessToken;
    const partnerAlice = (await loginAs(second.provider, 'alice')).accessToken;
    const open = client('alice@example.com', alice);
    await open.connect();
    await open.query('begin');
    await open.query("insert into notes (body) values ('before reload')");
    const before = await servedFingerprint();

    // Before: the second provider's tokens are foreign, otherdb is unknown.
    expect(await refused(client('alice@example.com', partnerAlice))).toBe('28000');
    expect(await refused(client('alice@example.com', alice, 'otherdb'))).toBe('3D000');

    const provider = (idp: TestProvider, prefix: string) => ({ issuer: idp.provider.issuer, audience: 'https://gprxy.io', algorithms: ['RS256'], ca: 'inline-ca', prefix });
    const { config, cert } = await configWith({
      providers: [provider(stack.idp, 'corp'), provider(second, 'partner')],
      role_mapping: [
        { role: 'corp:pg_writer', account: 'app_writer' },
        { role: 'partner:pg_writer', account: 'app_reader' },
      ],
      databases: {
        mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool: { size: 5 } },
        otherdb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'otherdb', pool: { size: 2 } },
      },
    });
    const changes = await stack.proxy.reload(config);
    expect(changes).toMatchObject({ providersAdded: [second.provider.issuer], databasesAdded: ['otherdb'], roleMappingChanged: true, tlsChanged: true, restartNeeded: [] });

    // New logins: the partner's token maps through its prefixed rule; otherdb is served; the new certificate.
    const partner = client('alice@example.com', partnerAlice);
    await partner.connect();
    expect((await partner.query('select current_user')).rows[0].current_user).toBe('app_reader');
    await partner.end();
    const other = client('alice@example.com', alice, 'otherdb');
    await other.connect();
    expect((await other.query('select current_database() as db')).rows[0].db).toBe('otherdb');
    await other.end();
    expect(await servedFingerprint()).toBe(new X509Certificate(cert).fingerprint256);
    expect(await servedFingerprint()).not.toBe(before);

    // mydb's pool changes: its pool is retired (new logins get a new one), the open session keeps its backend.
    const resized = await configWith({ databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool: { size: 3 } } } });
    expect(await stack.proxy.reload(resized.config)).toMatchObject({ databasesChanged: ['mydb'], databasesRemoved: ['otherdb'], providersRemoved: [second.provider.issuer] });
    await stack.logs.waitFor((l) => l.event === 'pool_retired' && l.pool === 'mydb/app_writer');
    const fresh = client('alice@example.com', alice);
    await fresh.connect();
    expect((await fresh.query('select 1 as one')).rows[0].one).toBe(1);
    expect(stack.proxy.pools.stats()['mydb/app_writer']).toMatchObject({ size: 3, active: 1 });
    await fresh.end();

    // The open session: same transaction, same backend, nothing dropped.
    await open.query("insert into notes (body) values ('after reload')");
    await open.query('commit');
    expect((await open.query("select count(*)::int as n from notes where body like '% reload'")).rows[0].n).toBe(2);
    await open.end();
    expect(stack.logs.events('session_end').filter((l) => l.reason !== 'client_terminate')).toEqual([]);
  });

  it('refuses a certificate that does not match its key, and keeps the running config', async () => {
    const a = await stack.idp.ca.issue(['localhost']);
    const b = await stack.idp.ca.issue(['localhost']);
    const running = stack.proxy.config;
    const { config } = await configWith({}, { cert: a.cert, key: b.key });
    await expect(stack.proxy.reload(config)).rejects.toMatchObject({ code: 'reload_refused' });
    expect(stack.proxy.config).toBe(running);
  });
});

describe('ConfigReloader', () => {
  it('refuses a broken file with the validation error logged, and the old config keeps serving', async () => {
    const file = join(dir, 'gprxy.yaml');
    writeFileSync(file, stringify({ listen: '127.0.0.1:0', providers: 'not a list' }));
    const reloader = new ConfigReloader({ file, env: {}, target: stack.proxy, logger: createLogger({ level: 'info', destination: stack.logs }) });
    const running = stack.proxy.config;
    const outcome = await reloader.reload('sighup');
    expect(outcome).toMatchObject({ ok: false, code: 'invalid_config' });
    const line = await stack.logs.waitFor((l) => l.event === 'config_reload_refused');
    expect(line).toMatchObject({ trigger: 'sighup', code: 'invalid_config' });
    expect(String(line.error)).toContain('providers');
    expect(stack.proxy.config).toBe(running);

    const c = client('alice@example.com', (await loginAs(stack.idp.provider, 'alice')).accessToken);
    await c.connect();
    expect((await c.query('select 1 as one')).rows[0].one).toBe(1);
    await c.end();
  });
});
