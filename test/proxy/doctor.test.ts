/**
 * `gprxy doctor` (issue 19) against real parts: PostgreSQL, the proxy, a local issuer over HTTPS. Client
 * side: a healthy set-up (every check ✓, a real login through the proxy), then each failing check with its
 * fix: no profile, no proxy address, login required, wrong audience, no roles, issuer discovery, empty JWKS,
 * clock skew, the proxy's certificate, an unknown database, a refused token. Server side: a healthy config
 * (after db init) and a broken one: an unreachable provider, a wrong account password, a database that is
 * down, a database db init never prepared, and a config warning. The CLI for --json and the exit codes.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority } from '../../src/demo/certificates.js';
import { buildProxyConfig, type ProxyConfig } from '../../src/config/proxy-config.js';
import { resolveCliSettings } from '../../src/config/cli-config.js';
import { clientDoctor } from '../../src/doctor/client.js';
import { failed, formatCheck, type DoctorCheck } from '../../src/doctor/report.js';
import { serverDoctor } from '../../src/doctor/server.js';
import { runDbInit } from '../../src/sql/db-init.js';
import { CI_AUDIENCE as AUDIENCE, ciProvider, MAIN_BRANCH_RULE, startCiIssuer, type CiIssuer } from '../support/ci-issuer.js';
import { GITHUB_MAIN_PUSH, GITHUB_PULL_REQUEST } from '../support/ci-claims.js';
import { runCli } from '../support/cli.js';
import { SERVICE_ACCOUNTS } from '../support/postgres.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';

let stack: ProxyStack;
let issuer: CiIssuer;
let dir: string;

beforeAll(async () => {
  stack = await startProxyStack();
  issuer = await startCiIssuer(stack.idp.ca);
  await stack.startProxy({
    providers: [ciProvider(issuer, 'github_actions', [MAIN_BRANCH_RULE])],
    role_mapping: [],
  });
  await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: () => {} });
  await stack.cluster.query('CREATE DATABASE otherdb');
  dir = await mkdtemp(path.join(os.tmpdir(), 'gprxy-doctor-'));
  await writeFile(path.join(dir, 'ca.pem'), stack.idp.ca.cert);
  await writeFile(path.join(dir, 'other-ca.pem'), (await createCertificateAuthority('someone else')).cert);
});
afterAll(async () => {
  await issuer?.close();
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** The env of a CI-less client using a token as is (GPRXY_TOKEN) against the local issuer and proxy. */
function env(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return { HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'cfg'), GPRXY_ISSUER: issuer.issuer, GPRXY_AUDIENCE: AUDIENCE, GPRXY_PROXY: `127.0.0.1:${stack.port}`, GPRXY_CA: path.join(dir, 'ca.pem'), ...extra };
}

async function client(e: Record<string, string | undefined>, database?: string): Promise<DoctorCheck[]> {
  const settings = resolveCliSettings({ env: e as NodeJS.ProcessEnv });
  return clientDoctor({ settings, ...(database ? { database } : {}) });
}

function byCheck(checks: readonly DoctorCheck[], id: string): DoctorCheck {
  const found = checks.find((c) => c.check === id);
  if (!found) throw new Error(`no ${id} check in:\n${checks.map(formatCheck).join('\n')}`);
  return found;
}

const mainToken = () => issuer.mint({ ...GITHUB_MAIN_PUSH, 'https://gprxy.io/roles': [] }, { audience: AUDIENCE });

describe('gprxy doctor, client side', () => {
  it('a healthy set-up: every check passes, with a real login through the proxy', async () => {
    const checks = await client(env({ GPRXY_TOKEN: await mainToken() }), 'mydb');
    expect(checks.filter((c) => c.status !== 'ok').map(formatCheck)).toEqual([]);
    expect(checks.map((c) => c.check)).toEqual(['profile', 'proxy_address', 'token', 'token_audience', 'token_roles', 'issuer_discovery', 'jwks', 'clock_skew', 'proxy_tls', 'proxy_database']);
    expect(byCheck(checks, 'jwks').detail).toMatch(/1 key \(RSA RS256\)/);
    expect(byCheck(checks, 'proxy_tls').detail).toMatch(/certificate for localhost, 127\.0\.0\.1/);
    expect(failed(checks)).toBe(0);
  });

  it('no profile, no proxy address, no login: each fails with its fix', async () => {
    const checks = await client({ HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'cfg') });
    expect(byCheck(checks, 'profile')).toMatchObject({ status: 'fail', fix: expect.stringContaining('gprxy configure --issuer') });
    expect(byCheck(checks, 'proxy_address')).toMatchObject({ status: 'fail', fix: expect.stringContaining('--proxy HOST:PORT') });
    expect(byCheck(checks, 'token')).toMatchObject({ status: 'fail' });
    expect(byCheck(checks, 'issuer_discovery')).toMatchObject({ status: 'fail', detail: 'not configured' });
  });

  it('a token for another audience, and one without roles', async () => {
    const checks = await client(env({ GPRXY_TOKEN: await issuer.mint({ sub: 'alice' }, { audience: 'https://other' }) }));
    expect(byCheck(checks, 'token_audience')).toMatchObject({ status: 'fail', detail: expect.stringContaining('https://other, not https://gprxy.example/ci') });
    expect(byCheck(checks, 'token_roles')).toMatchObject({ status: 'fail', fix: expect.stringContaining('setCustomClaim') });
  });

  it('issuer discovery that fails, an issuer that differs, an empty JWKS, a skewed clock', async () => {
    const unreachable = await client(env({ GPRXY_ISSUER: 'https://127.0.0.1:1', GPRXY_TOKEN: await mainToken() }));
    expect(byCheck(unreachable, 'issuer_discovery')).toMatchObject({ status: 'fail' });
    expect(byCheck(unreachable, 'jwks')).toMatchObject({ status: 'skip' });
    const slash = await client(env({ GPRXY_ISSUER: `${issuer.issuer}/`, GPRXY_TOKEN: await mainToken() }));
    expect(byCheck(slash, 'issuer_discovery')).toMatchObject({ status: 'fail', fix: expect.stringContaining('trailing slash') });
    issuer.publishKeys = false;
    issuer.dateSkewMs = -120_000;
    try {
      const checks = await client(env({ GPRXY_TOKEN: await mainToken() }));
      expect(byCheck(checks, 'jwks')).toMatchObject({ status: 'fail', detail: expect.stringContaining('no key that can verify') });
      expect(byCheck(checks, 'clock_skew')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/this clock is 1[12]\d s ahead of the issuer's/), fix: expect.stringContaining('NTP') });
    } finally {
      issuer.publishKeys = true;
      issuer.dateSkewMs = 0;
    }
  });

  it("the proxy's certificate from another CA, an unknown database, a refused token", async () => {
    const tls = await client(env({ GPRXY_TOKEN: await mainToken(), GPRXY_CA: path.join(dir, 'other-ca.pem') }), 'mydb');
    expect(byCheck(tls, 'proxy_tls')).toMatchObject({ status: 'fail', fix: expect.stringContaining('GPRXY_CA') });
    const unknown = await client(env({ GPRXY_TOKEN: await mainToken() }), 'nodb');
    expect(byCheck(unknown, 'proxy_database')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/^3D000: /) });
    const refused = await client(env({ GPRXY_TOKEN: await issuer.mint(GITHUB_PULL_REQUEST, { audience: AUDIENCE }) }), 'mydb');
    expect(byCheck(refused, 'proxy_database')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/^28000: no rule admits/), fix: expect.stringContaining('gprxy policy test') });
    expect(byCheck(refused, 'token_roles').status).toBe('fail');
  });
});

describe('gprxy doctor, server side', () => {
  function serverConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      listen: '127.0.0.1:0',
      tls: { allow_plaintext_loopback: true },
      providers: [{ issuer: issuer.issuer, kind: 'github_actions', audience: AUDIENCE, ca: 'ca.pem', rules: [{ match: { repository_id: '74' }, account: 'app_writer' }] }],
      accounts: Object.fromEntries(Object.entries(SERVICE_ACCOUNTS).map(([name, password]) => [name, { password }])),
      databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port } },
      ...overrides,
    };
  }
  const build = (doc: Record<string, unknown>): ProxyConfig => buildProxyConfig(doc, {}, dir);

  it('a healthy proxy config: provider, logins and db init all pass', async () => {
    const checks = await serverDoctor(build(serverConfig()), 'proxy.json');
    expect(checks.filter((c) => c.status !== 'ok').map(formatCheck)).toEqual([]);
    expect(checks.map((c) => c.check)).toEqual(['config', 'issuer_discovery', 'jwks', 'clock_skew', 'database_login', 'db_init']);
  });

  it('a broken one: unreachable provider, wrong password, database down, no db init, a config warning', async () => {
    const config = build(
      serverConfig({
        providers: [
          { issuer: issuer.issuer, kind: 'github_actions', prefix: 'gha', audience: AUDIENCE, ca: 'ca.pem', rules: [{ match: { repository: 'octo-org/octo-repo' }, account: 'app_writer' }, { match: { repository_id: '74' }, account: 'app_reader' }] },
          { issuer: 'https://127.0.0.1:1', prefix: 'gone', audience: AUDIENCE },
        ],
        role_mapping: [{ role: 'gone:pg_admin', account: 'app_admin' }],
        accounts: { ...Object.fromEntries(Object.entries(SERVICE_ACCOUNTS).map(([name, password]) => [name, { password }])), app_reader: { password: 'not-the-password' } },
        databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port }, otherdb: { host: stack.cluster.host, port: stack.cluster.port }, down: { host: '127.0.0.1', port: 1 } },
      }),
    );
    const checks = await serverDoctor(config, 'bad.json', { timeoutMs: 3_000 });
    const lines = checks.map(formatCheck).join('\n');
    expect(checks.find((c) => c.check === 'config_warning')).toMatchObject({ status: 'warn', detail: expect.stringContaining('pins only repository') });
    expect(checks.filter((c) => c.check === 'issuer_discovery').map((c) => c.status)).toEqual(['ok', 'fail']);
    expect(checks.find((c) => c.subject === 'mydb as app_reader (' + `${stack.cluster.host}:${stack.cluster.port}/mydb)`)).toMatchObject({ status: 'fail', detail: 'auth failed', fix: expect.stringContaining('gprxy db init') });
    expect(checks.find((c) => c.subject.startsWith('down as app_writer'))).toMatchObject({ status: 'fail', detail: 'unreachable' });
    expect(checks.find((c) => c.check === 'db_init' && c.subject === 'db init on otherdb')).toMatchObject({ status: 'fail', detail: expect.stringContaining('schema gprxy is missing'), fix: 'run gprxy db init --config bad.json' });
    expect(checks.find((c) => c.check === 'db_init' && c.subject === 'db init on mydb')).toMatchObject({ status: 'ok' });
    expect(checks.find((c) => c.check === 'db_init' && c.subject === 'db init on down')).toMatchObject({ status: 'skip' });
    expect(failed(checks)).toBeGreaterThanOrEqual(5);
    expect(lines).toMatch(/^✗ /m);
  });

  it('the CLI: --json and exit 0 when all pass, one line per check and exit 1 when any fails', { timeout: 30_000 }, async () => {
    await writeFile(path.join(dir, 'good.json'), JSON.stringify(serverConfig()));
    const good = await runCli(['doctor', '--config', path.join(dir, 'good.json'), '--json']);
    expect(good.code).toBe(0);
    expect(JSON.parse(good.stdout)).toMatchObject({ ok: true, failed: 0 });
    await writeFile(path.join(dir, 'bad.json'), JSON.stringify(serverConfig({ databases: { down: { host: '127.0.0.1', port: 1 } } })));
    const bad = await runCli(['doctor', '--config', path.join(dir, 'bad.json')]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/^✓ issuer discovery providers\[0\] /m);
    expect(bad.stdout).toMatch(/^✗ down as app_writer .*unreachable — fix: /m);
    expect(bad.stdout).toMatch(/checks failed$/m);
  });
});
