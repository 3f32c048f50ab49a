import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPostgres, type Cluster } from '../../support/postgres.js';

// The command from src/ (bin/dev.js under tsx): no build needed, same oclif wiring as the built CLI.
const DEV = fileURLToPath(new URL('../../../bin/dev.js', import.meta.url));

function gprxy(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', DEV, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, OCLIF_DISABLE_ENGINE_WARNING: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

let dir: string;
let cluster: Cluster;
const WRITER_PASSWORD = 'writer-cleartext-7f3a9c';
const SECRET = 'cli-context-secret-0123456789abcdef';

function writeConfig(port: number): string {
  const file = join(dir, 'gprxy.yaml');
  writeFileSync(
    file,
    `listen: "127.0.0.1:6432"
tls: { allow_plaintext_loopback: true }
providers:
  - { issuer: "https://idp.example/", audience: "https://gprxy.io" }
role_mapping:
  - { role: pg_admin, account: app_admin }
  - { role: pg_writer, account: app_writer }
  - { role: pg_reader, account: app_reader }
accounts:
  app_admin: { password: "admin-cleartext-1b2c3d" }
  app_writer: { password: "\${PG_WRITER_PASSWORD}" }
  app_reader: { password: "reader-cleartext-4e5f6a" }
databases:
  mydb: { host: 127.0.0.1, port: ${port} }
context:
  secret: "\${GPRXY_CONTEXT_SECRET}"
`,
  );
  return file;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gprxy-dbinit-cli-'));
  cluster = await startTestPostgres();
  await cluster.createDatabase('mydb');
});

afterAll(async () => {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('gprxy db init (command)', () => {
  it('--print without a server prints SQL with SCRAM verifiers only, and exits 0; --level and --schema reach the plan', async () => {
    const config = writeConfig(cluster.port);
    const r = await gprxy(['db', 'init', '--config', config, '--print', '--level', 'app_reader=writer', '--schema', 'app', '--schema', 'public'], {
      PG_WRITER_PASSWORD: WRITER_PASSWORD,
      GPRXY_CONTEXT_SECRET: SECRET,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`ALTER ROLE "app_writer" PASSWORD 'SCRAM-SHA-256$4096:`);
    expect(r.stdout).toContain(":'gprxy_context_secret'");
    expect(r.stdout).toContain('GRANT "gprxy_writer" TO "app_reader";');
    expect(r.stdout).toContain('GRANT USAGE ON SCHEMA "app" TO');
    for (const secret of [WRITER_PASSWORD, SECRET, 'admin-cleartext-1b2c3d']) expect(r.stdout).not.toContain(secret);
    expect((await cluster.query(`select count(*)::int as n from pg_roles where rolname like 'gprxy%'`)).rows[0]!.n).toBe(0);
  });

  it('--keep-public-create, --keep-peer-access and --force-rls reach the plan', async () => {
    const config = writeConfig(cluster.port);
    const env = { PG_WRITER_PASSWORD: WRITER_PASSWORD, GPRXY_CONTEXT_SECRET: SECRET };
    const plain = await gprxy(['db', 'init', '--config', config, '--print'], env);
    expect(plain.stdout).toContain('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
    expect(plain.stdout).toContain("REVOKE EXECUTE ON FUNCTION %I.%I(%s) FROM PUBLIC");
    expect(plain.stdout).not.toContain('FORCE ROW LEVEL SECURITY');
    expect(plain.stdout).toContain('hostssl mydb app_admin,app_writer,app_reader PROXY_ADDRESS/32 cert');
    const flagged = await gprxy(['db', 'init', '--config', config, '--print', '--keep-public-create', '--keep-peer-access', '--force-rls'], env);
    expect(flagged.code).toBe(0);
    expect(flagged.stdout).not.toContain('REVOKE CREATE ON SCHEMA public');
    expect(flagged.stdout).not.toContain('REVOKE EXECUTE ON FUNCTION');
    expect(flagged.stdout).toContain('FORCE ROW LEVEL SECURITY');
  });

  it('without an admin URL (and without --print) exits 1 and says what to pass', async () => {
    const r = await gprxy(['db', 'init', '--config', writeConfig(cluster.port)], { PG_WRITER_PASSWORD: WRITER_PASSWORD, GPRXY_CONTEXT_SECRET: SECRET });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--admin-url .*GPRXY_ADMIN_URL/);
  });

  it('an admin connection that fails is named (without its password) with where it came from', async () => {
    const url = new URL(cluster.url());
    url.password = 'admin-pw-never-shown';
    url.port = '1';
    const env = { PG_WRITER_PASSWORD: WRITER_PASSWORD, GPRXY_CONTEXT_SECRET: SECRET, GPRXY_ADMIN_URL: url.toString() };
    const r = await gprxy(['db', 'init', '--config', writeConfig(cluster.port)], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^gprxy: cannot open the admin connection postgresql:\/\/[^@\s]*@127\.0\.0\.1:1\/mydb \(from GPRXY_ADMIN_URL\): .*ECONNREFUSED/);
    expect(r.stderr).not.toContain('admin-pw-never-shown');
  });

  it('applies with GPRXY_ADMIN_URL, then reports nothing changed on a re-run', async () => {
    const env = { PG_WRITER_PASSWORD: WRITER_PASSWORD, GPRXY_CONTEXT_SECRET: SECRET, GPRXY_ADMIN_URL: cluster.url() };
    const config = writeConfig(cluster.port);
    const first = await gprxy(['db', 'init', '--config', config], env);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^mydb: applied \(changed: /);
    expect(first.stdout).not.toContain(WRITER_PASSWORD);
    const second = await gprxy(['db', 'init', '--config', config], env);
    expect(second.stdout.split('\n')[0]).toBe('mydb: up to date, nothing changed');
  });
});
