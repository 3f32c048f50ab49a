/**
 * A machine without a Secret Service: login refuses (naming --insecure-storage and the CI variables)
 * before any flow starts, and --insecure-storage keeps the tokens in a 0600 file, warning at every use.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJwt } from 'jose';
import { DEV_AUDIENCE, DEV_CLI_CLIENT_ID, type DevProvider } from '../../src/demo/oidc-provider.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { startKeyringSession, type KeyringSession } from '../support/keyring.js';
import { runCli, startCli } from '../support/cli.js';

let stack: TestProvider;
let provider: DevProvider;
let home: KeyringSession;
let env: Record<string, string>;

beforeAll(async () => {
  stack = await startTestProvider({ deviceIntervalSeconds: 0.2 });
  provider = stack.provider;
  home = await startKeyringSession({ secretService: false });
  // Profile from the environment alone: no configure step, nothing but tokens will be written.
  env = { ...home.env, GPRXY_ISSUER: provider.issuer, GPRXY_AUDIENCE: DEV_AUDIENCE, GPRXY_CLIENT_ID: DEV_CLI_CLIENT_ID, GPRXY_CA: path.join(home.home, 'ca.pem') };
  const { writeFile } = await import('node:fs/promises');
  await writeFile(env.GPRXY_CA as string, provider.caCert);
});

afterAll(async () => {
  await home?.close();
  await stack?.close();
});

describe('without a Secret Service', () => {
  it('login fails at once with an error naming --insecure-storage and the CI variables', async () => {
    const before = provider.counters().tokenRequests;
    const r = await runCli(['login'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^gprxy: no usable OS keychain .*: run gprxy login --insecure-storage .*GPRXY_CLIENT_ID and GPRXY_CLIENT_SECRET .*GPRXY_TOKEN\n$/);
    expect(r.stderr).not.toContain('user_code'); // no flow was started
    expect(provider.counters().tokenRequests).toEqual(before);
  });

  it('--insecure-storage keeps the tokens in a 0600 file in a 0700 directory, warning once per process', async () => {
    const cli = startCli(['login', '--insecure-storage'], { env });
    const [, code] = await cli.waitFor(/check that it shows the code: (\S+)/);
    await provider.approveDevice(code as string, 'bob');
    const r = await cli.result;
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('as bob@example.com');
    expect(r.stderr).toMatch(/gprxy: warning: tokens for profile "default" are stored unencrypted in \S+default\.json \(--insecure-storage\)/);

    const file = path.join(home.env.XDG_CONFIG_HOME!, 'gprxy', 'tokens', 'default.json');
    expect(r.stdout).toContain(file);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(file))).mode & 0o777).toBe(0o700);
    const files = await home.files();
    // Besides the token file only non-secret state: the login generation marker running tunnels watch.
    const state = path.join(home.env.XDG_CONFIG_HOME!, 'gprxy', 'state');
    expect(files.filter((f) => !f.path.startsWith(state)).map((f) => f.path).sort()).toEqual([env.GPRXY_CA, file].sort());
    for (const f of files.filter((x) => x.path.startsWith(state))) expect(f.content.toString()).not.toMatch(/eyJ|refresh/i);

    const token = await runCli(['token'], { env });
    expect(token.code).toBe(0);
    expect(decodeJwt(token.stdout.trim()).sub).toBe('auth0|bob00002');
    expect(token.stderr).toMatch(/^gprxy: warning: tokens for profile "default" are stored unencrypted/);

    const status = JSON.parse((await runCli(['status', '--json'], { env })).stdout);
    expect(status).toMatchObject({ storage: 'file', loggedIn: true, roles: ['pg_reader'] });

    const out = await runCli(['logout'], { env });
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('refresh token revoked at the provider; local tokens deleted');
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('logout while the provider is unreachable deletes the local tokens and warns', async () => {
    const cli = startCli(['login', '--insecure-storage'], { env });
    const [, code] = await cli.waitFor(/check that it shows the code: (\S+)/);
    await provider.approveDevice(code as string, 'alice');
    expect((await cli.result).code).toBe(0);
    const r = await runCli(['logout'], { env: { ...env, GPRXY_ISSUER: 'https://localhost:1/' } });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('gprxy: warning: could not reach the provider to revoke the refresh token');
    expect(r.stdout).toContain('the provider was unreachable, so the refresh token was not revoked; local tokens deleted');
    await expect(stat(path.join(home.env.XDG_CONFIG_HOME!, 'gprxy', 'tokens', 'default.json'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses a token file that others can read', async () => {
    const cli = startCli(['login', '--insecure-storage'], { env });
    const [, code] = await cli.waitFor(/check that it shows the code: (\S+)/);
    await provider.approveDevice(code as string, 'alice');
    expect((await cli.result).code).toBe(0);
    const { chmod } = await import('node:fs/promises');
    const file = path.join(home.env.XDG_CONFIG_HOME!, 'gprxy', 'tokens', 'default.json');
    await chmod(file, 0o644);
    const r = await runCli(['token'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`is readable by others (mode 644): run chmod 600 ${file}`);
  });
});
