import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { createAppDatabase, startTestPostgres, type Cluster } from '../support/postgres.js';
import { proxyDocument } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';
import { runCli, startCli } from '../support/cli.js';

let cluster: Cluster;
let idp: TestProvider;
let dir: string;
let aliceToken: string;

function writeConfig(name: string, overrides: Record<string, unknown> = {}): string {
  const doc = proxyDocument(cluster, idp, { cert: '', key: '' }, { tls: { cert: 'server.crt', key: 'server.key' }, log: { level: 'info' }, ...overrides });
  (doc.providers as Record<string, unknown>[])[0]!.ca = 'idp-ca.crt';
  (doc.accounts as Record<string, { password: string }>).app_writer = { password: '${WRITER_PASSWORD}' };
  const file = join(dir, name);
  writeFileSync(file, stringify(doc));
  return file;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gprxy-serve-'));
  cluster = await startTestPostgres();
  await createAppDatabase(cluster);
  idp = await startTestProvider();
  const leaf = await idp.ca.issue(['localhost', '127.0.0.1']);
  writeFileSync(join(dir, 'server.crt'), leaf.cert);
  writeFileSync(join(dir, 'server.key'), leaf.key, { mode: 0o600 });
  writeFileSync(join(dir, 'idp-ca.crt'), idp.provider.caCert);
  aliceToken = (await loginAs(idp.provider, 'alice')).accessToken;
});
afterAll(async () => {
  await idp?.close();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const env = { WRITER_PASSWORD: 'writer-secret-0123456789' };

describe('gprxy serve', () => {
  it('--check validates a config and says what it will serve', async () => {
    const r = await runCli(['serve', '--config', writeConfig('ok.yaml'), '--check'], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/config OK: .*mydb → 127\.0\.0\.1:\d+\/mydb \(oauth\)/);
  });

  it('rejects an unknown key naming its path, and a missing variable naming it', async () => {
    const bad = writeConfig('bad.yaml', { limits: { login_timeout: '5s', pool_wiat_timeout: '5s' } });
    const r = await runCli(['serve', '--config', bad, '--check'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unknown key limits.pool_wiat_timeout');
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace without --debug

    const missing = await runCli(['serve', '--config', writeConfig('env.yaml'), '--check'], { env: {} });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('WRITER_PASSWORD');
  });

  it('names every missing variable at once, and an unknown key with its line and the closest known key', async () => {
    const file = writeConfig('polish.yaml', { limits: { login_timeout: '5s', pool_wiat_timeout: '5s' }, context: { secret: '${CONTEXT_SECRET}' } });
    const text = readFileSync(file, 'utf8').split('\n');
    const line = text.findIndex((l) => l.includes('pool_wiat_timeout')) + 1;
    const typo = await runCli(['serve', '--config', file, '--check'], { env: { ...env, CONTEXT_SECRET: 'x'.repeat(40) } });
    expect(typo.code).toBe(1);
    expect(typo.stderr).toContain(`unknown key limits.pool_wiat_timeout (line ${line}; did you mean limits.pool_wait_timeout?)`);

    const missing = await runCli(['serve', '--config', file, '--check'], { env: {} });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/WRITER_PASSWORD \(used at accounts\.app_writer\.password\).*CONTEXT_SECRET \(used at context\.secret\)/s);
  });

  for (const [signal, exitCode] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    it(`serves clients, and on ${signal} stops accepting, drains and exits ${exitCode}`, async () => {
      const { child, result } = startCli(['serve', '--config', writeConfig(`run-${signal}.yaml`), '--drain-timeout', '20'], { env });
      let out = '';
      const port = await new Promise<number>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /"event":"listening".*?"port":(\d+)/.exec(out);
          if (m) resolve(Number(m[1]));
        });
        child.once('exit', () => reject(new Error(`serve exited early: ${out}`)));
      });
      const connect = () => new pg.Client({ host: '127.0.0.1', port, user: 'alice@example.com', password: aliceToken, database: 'mydb', ssl: { ca: idp.ca.cert, servername: 'localhost' } });
      const session = connect();
      await session.connect();
      expect((await session.query('select current_user')).rows[0].current_user).toBe('app_writer');

      child.kill(signal);
      await new Promise<void>((resolve) => {
        const check = () => (/"event":"draining"/.test(out) ? resolve() : setTimeout(check, 20));
        check();
      });
      // Draining: no new connections, but the open session still works.
      await expect(connect().connect()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      expect((await session.query('select 1 as one')).rows[0].one).toBe(1);
      await session.end();

      const r = await result;
      expect(r.code).toBe(exitCode);
      expect(out).toContain('"event":"session_end"');
      expect(out).toContain('"event":"stopped"');
      expect(out + r.stderr).not.toContain(aliceToken.split('.')[2]!);
    });
  }
});
