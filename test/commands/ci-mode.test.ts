/**
 * CI: GPRXY_CLIENT_ID + GPRXY_CLIENT_SECRET (client credentials) and GPRXY_TOKEN, from the environment
 * alone, with an empty HOME that must stay empty; and nothing ever waits for input.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRemoteJWKSet, customFetch, jwtVerify, type FetchImplementation } from 'jose';
import { DEV_AUDIENCE, type DevProvider } from '../../src/demo/oidc-provider.js';
import { fetchWithCa } from '../../src/net/ca-fetch.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { runCli, startCli } from '../support/cli.js';

let stack: TestProvider;
let provider: DevProvider;
let home: string;
let caDir: string;
let baseEnv: Record<string, string>;

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.map((e) => path.join(e.parentPath, e.name));
}

beforeAll(async () => {
  stack = await startTestProvider();
  provider = stack.provider;
  home = await mkdtemp(path.join(os.tmpdir(), 'gprxy-ci-home-'));
  caDir = await mkdtemp(path.join(os.tmpdir(), 'gprxy-ci-ca-'));
  await writeFile(path.join(caDir, 'ca.pem'), provider.caCert);
  baseEnv = { HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), GPRXY_ISSUER: provider.issuer, GPRXY_AUDIENCE: DEV_AUDIENCE, GPRXY_CA: path.join(caDir, 'ca.pem') };
});

afterAll(async () => {
  await stack?.close();
  await rm(home, { recursive: true, force: true });
  await rm(caDir, { recursive: true, force: true });
});

describe('CI mode', () => {
  it('client credentials: gprxy token prints a verifiable token and writes nothing under HOME', async () => {
    const env = { ...baseEnv, GPRXY_CLIENT_ID: provider.ciClient.clientId, GPRXY_CLIENT_SECRET: provider.ciClient.clientSecret };
    const r = await runCli(['token'], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const jwks = createRemoteJWKSet(new URL('jwks', provider.issuer), { [customFetch]: fetchWithCa(provider.caCert) as FetchImplementation });
    const { payload } = await jwtVerify(r.stdout.trim(), jwks, { issuer: provider.issuer, audience: DEV_AUDIENCE });
    expect(payload.sub).toBe('ci-bot');
    expect(payload['https://gprxy.io/roles']).toEqual(['pg_reader']);

    const status = await runCli(['status', '--json'], { env });
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ mode: 'client_credentials', storage: 'none', loggedIn: true, identity: { sub: 'ci-bot' }, roles: ['pg_reader'] });

    expect(await filesUnder(home)).toEqual([]);
    expect(provider.counters().tokenRequests.client_credentials).toBe(2);
  });

  it('connect: a garbage GPRXY_TOKEN is "not a JWT" (exit 1), a wrong secret one line without "retrying", no proxy address one gprxy: line', async () => {
    const proxy = { GPRXY_PROXY: '127.0.0.1:9' };
    const garbage = await runCli(['connect', 'mydb'], { env: { ...baseEnv, ...proxy, GPRXY_TOKEN: 'garbage-token-value' } });
    expect(garbage.code).toBe(1);
    expect(garbage.stderr).toMatch(/^gprxy: GPRXY_TOKEN is not a JWT[^\n]*\n$/);
    expect(garbage.stderr).not.toContain('garbage-token-value');

    const secret = await runCli(['connect', 'mydb'], { env: { ...baseEnv, ...proxy, GPRXY_CLIENT_ID: provider.ciClient.clientId, GPRXY_CLIENT_SECRET: 'wrong' } });
    expect(secret.code).toBe(1);
    expect(secret.stderr).toMatch(/^gprxy: the provider refused client "ci-bot" [^\n]*GPRXY_CLIENT_SECRET\n$/);
    expect(secret.stderr).not.toContain('retrying');

    const noProxy = await runCli(['connect', 'mydb'], { env: { ...baseEnv, GPRXY_CLIENT_ID: provider.ciClient.clientId, GPRXY_CLIENT_SECRET: provider.ciClient.clientSecret } });
    expect(noProxy.code).toBe(1);
    expect(noProxy.stderr).toBe('gprxy: no proxy address in profile "default": run gprxy configure --proxy HOST:PORT (or set GPRXY_PROXY)\n');
  });

  it('an unreachable proxy names where its address was set: GPRXY_PROXY, or the profile', async () => {
    const ci = { GPRXY_CLIENT_ID: provider.ciClient.clientId, GPRXY_CLIENT_SECRET: provider.ciClient.clientSecret };
    const psql = ['--', 'psql', '-X', '-c', 'select 1'];
    // A started tunnel registers itself under HOME: its own HOME, so the shared one stays empty.
    const profileHome = await mkdtemp(path.join(os.tmpdir(), 'gprxy-ci-profile-'));
    try {
      const env = { HOME: profileHome, XDG_CONFIG_HOME: path.join(profileHome, '.config') };
      const fromEnv = await runCli(['connect', 'mydb', ...psql], { env: { ...baseEnv, ...env, ...ci, GPRXY_PROXY: '127.0.0.1:9' } });
      expect(fromEnv.code).not.toBe(0);
      expect(fromEnv.stderr).toContain('cannot reach the gprxy proxy at 127.0.0.1:9');
      expect(fromEnv.stderr).toContain('check GPRXY_PROXY (it overrides the profile)');

      const configured = await runCli(['configure', '--profile', 'work', '--issuer', provider.issuer, '--client-id', 'gprxy-cli', '--audience', DEV_AUDIENCE, '--proxy', '127.0.0.1:9', '--ca', path.join(caDir, 'ca.pem')], { env });
      expect(configured.code).toBe(0);
      const fromProfile = await runCli(['connect', '--profile', 'work', 'mydb', ...psql], { env: { ...env, ...ci } });
      expect(fromProfile.code).not.toBe(0);
      expect(fromProfile.stderr).toContain('check the proxy address of profile "work" (gprxy configure --profile work --proxy HOST:PORT)');
    } finally {
      await rm(profileHome, { recursive: true, force: true });
    }
  });

  it('connect --port is exact (a taken one is an error); without it, a taken 5432 is said with the port chosen', async () => {
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const token = `${b64({ alg: 'none' })}.${b64({ sub: 'someone', email: 'someone@example.com', exp: 4102444800 })}.`;
    const tunnelHome = await mkdtemp(path.join(os.tmpdir(), 'gprxy-ci-port-'));
    const env = { HOME: tunnelHome, XDG_CONFIG_HOME: path.join(tunnelHome, '.config'), GPRXY_ISSUER: provider.issuer, GPRXY_TOKEN: token, GPRXY_PROXY: '127.0.0.1:9' };
    const held = createServer();
    await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve));
    const taken = (held.address() as AddressInfo).port;
    // 5432: ours for the test, or already someone else's (a local PostgreSQL): taken either way.
    const pg = createServer();
    await new Promise<void>((resolve) => {
      pg.once('error', () => resolve());
      pg.listen(5432, '127.0.0.1', resolve);
    });
    try {
      const exact = await runCli(['connect', 'mydb', '--port', String(taken)], { env });
      expect(exact.code).toBe(1);
      expect(exact.stderr).toBe(`gprxy: port ${taken} on 127.0.0.1 is already in use; choose another with --port\n`);

      const cli = startCli(['connect', 'mydb'], { env });
      try {
        const [, listening] = await cli.waitFor(/^mydb: listening on 127\.0\.0\.1:(\d+)/m, 'stdout');
        expect(Number(listening)).toBeGreaterThan(5432);
        expect(cli.stdout()).toMatch(new RegExp(`^Port 5432 is in use .*: listening on ${listening} instead`, 'm'));
        // connect mydb nosuch: the names are checked lazily, and it says so once at start.
        await cli.waitFor(/^Press Ctrl\+C/m, 'stdout');
        expect(cli.stdout().match(/checks the database name at the first connection: one it does not serve is refused then/g)).toHaveLength(1);
      } finally {
        cli.child.kill('SIGINT');
      }
      expect((await cli.result).code).toBe(130);
    } finally {
      held.close();
      pg.close();
      await rm(tunnelHome, { recursive: true, force: true });
    }
  });

  it('connect before login: one line naming the profile, exit 4', async () => {
    const env = { ...baseEnv, GPRXY_CLIENT_ID: 'gprxy-cli', GPRXY_PROXY: '127.0.0.1:9', GPRXY_PROFILE: 'work' };
    const r = await runCli(['connect', 'mydb'], { env });
    expect(r.code).toBe(4);
    expect(r.stderr).toBe('gprxy: not logged in (profile work): run gprxy login --profile work\n');
  });

  it('a wrong client secret is one line that names the CI variables', async () => {
    const r = await runCli(['token'], { env: { ...baseEnv, GPRXY_CLIENT_ID: provider.ciClient.clientId, GPRXY_CLIENT_SECRET: 'wrong' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^gprxy: the provider refused client "ci-bot" \(invalid_client.*\): check GPRXY_CLIENT_ID and GPRXY_CLIENT_SECRET\n$/);
    expect(r.stderr).not.toContain('wrong');
  });

  it('GPRXY_TOKEN is printed as is, with no provider needed', async () => {
    const token = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJzb21lb25lIiwiZXhwIjo0MTAyNDQ0ODAwfQ.';
    const r = await runCli(['token'], { env: { HOME: home, GPRXY_TOKEN: token } });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${token}\n`);
    const status = JSON.parse((await runCli(['status', '--json'], { env: { HOME: home, GPRXY_TOKEN: token } })).stdout);
    expect(status).toMatchObject({ mode: 'token', identity: { sub: 'someone' }, accessToken: { expiresAt: '2100-01-01T00:00:00.000Z' } });
    expect(await filesUnder(home)).toEqual([]);
  });

  it('status shows the tenant as --json does', async () => {
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const token = `${b64({ alg: 'none' })}.${b64({ sub: 'someone', 'https://gprxy.io/org_id': 'tenant-a', exp: 4102444800 })}.`;
    const env = { HOME: home, GPRXY_TOKEN: token };
    const json = JSON.parse((await runCli(['status', '--json'], { env })).stdout);
    expect(json.identity.orgId).toBe('tenant-a');
    const human = await runCli(['status'], { env });
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^tenant\s+tenant-a$/m);
  });

  it('without any credentials, gprxy token fails at once instead of waiting for input', async () => {
    const r = await runCli(['token'], { env: { HOME: home, XDG_CONFIG_HOME: path.join(home, '.config') } });
    expect(r.code).toBe(4); // login required
    expect(r.stderr).toBe('gprxy: not logged in: run gprxy login\n');
    expect(await filesUnder(home)).toEqual([]);
  });
});
