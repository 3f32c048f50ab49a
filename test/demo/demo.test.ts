/**
 * `gprxy demo` as a newcomer runs it (the built CLI): the scripted tour exits 0 with every step as
 * described; the interactive demo serves psql with the command it prints; a person can approve the
 * login in the provider's pages; and after Ctrl+C (or SIGTERM) no process, port, temporary file or
 * profile is left. Each run gets its own TMPDIR and HOME, so "nothing left" is checked exactly.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { fetchWithCa } from '../../src/net/ca-fetch.js';
import { ScriptedBrowser, errorText, findForm, pageName } from '../../src/demo/scripted-browser.js';
import { runCli, startCli, type CliProcess } from '../support/cli.js';
import { appendRunLog } from '../support/run-log.js';
import { waitUntil } from '../support/wait.js';

const run = promisify(execFile);
const made: string[] = [];
const running: CliProcess[] = [];

afterEach(async () => {
  for (const p of running.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    const r = await p.result;
    appendRunLog(r.stdout + r.stderr);
  }
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh TMPDIR (traversable by the postgres user the cluster runs as) and an empty HOME. */
function isolated(): { env: Record<string, string>; tmp: string; home: string } {
  const tmp = mkdtempSync(join(tmpdir(), 'gprxy-demotest-tmp-'));
  chmodSync(tmp, 0o755);
  const home = mkdtempSync(join(tmpdir(), 'gprxy-demotest-home-'));
  made.push(tmp, home);
  return { env: { TMPDIR: tmp, HOME: home }, tmp, home };
}

/**
 * The tunnel on a port of the system's choosing (as --script does): the default, 5432 or the next free one, is
 * also where `gprxy connect` in exec mode (e2e tests in the other worker) opens its tunnels, so the check that
 * the demo's ports are closed afterwards could find one of theirs on it.
 */
function start(args: string[], env: Record<string, string>): CliProcess {
  const p = startCli(['demo', '--port', '0', ...args], { env });
  running.push(p);
  return p;
}

function psqlAvailable(): Promise<boolean> {
  return run('psql', ['--version']).then(
    () => true,
    () => false,
  );
}

interface Running {
  ports: { postgres: number; provider: number; proxy: number; tunnel: number };
  dirs: string[];
  dataDir: string;
}

function parseRunning(stdout: string): Running {
  const num = (re: RegExp) => Number(re.exec(stdout)?.[1]);
  const dirs = /Temporary files: (\S+) and (\S+)/.exec(stdout);
  expect(dirs, stdout).not.toBeNull();
  return {
    ports: {
      postgres: num(/PostgreSQL 18\.\d+\s+127\.0\.0\.1:(\d+)/),
      provider: num(/OIDC provider\s+https:\/\/localhost:(\d+)\//),
      proxy: num(/gprxy serve\s+127\.0\.0\.1:(\d+)/),
      tunnel: num(/gprxy connect demo\s+127\.0\.0\.1:(\d+)/),
    },
    dirs: [dirs![1]!, dirs![2]!],
    dataDir: `${dirs![2]}/data`,
  };
}

async function listeningPorts(): Promise<Set<number>> {
  const { stdout } = await run('ss', ['-ltnH']);
  return new Set(stdout.split('\n').map((l) => Number(/:(\d+)\s/.exec(l)?.[1])).filter((n) => n > 0));
}

async function processesMentioning(text: string): Promise<string[]> {
  const { stdout } = await run('ps', ['-eo', 'pid,args']);
  return stdout.split('\n').filter((l) => l.includes(text));
}

/** Nothing of the demo is left: its processes, ports, temporary files, or anything in HOME. */
async function expectNothingLeft(state: Running, iso: { tmp: string; home: string }): Promise<void> {
  for (const dir of state.dirs) expect(existsSync(dir), dir).toBe(false);
  expect(readdirSync(iso.tmp)).toEqual([]);
  expect(readdirSync(iso.home)).toEqual([]);
  expect(await processesMentioning(state.dataDir)).toEqual([]);
  const ports = await listeningPorts();
  for (const [what, port] of Object.entries(state.ports)) {
    expect(port, what).toBeGreaterThan(0);
    expect(ports.has(port), `${what} port ${port} still listening`).toBe(false);
  }
}

describe('gprxy demo', () => {
  it('--script: the tour exits 0, each step printing what it did and what came back, within 60 s', { timeout: 120_000 }, async () => {
    const iso = isolated();
    const t0 = Date.now();
    const r = await runCli(['demo', '--script'], { env: iso.env });
    const seconds = (Date.now() - t0) / 1000;
    appendRunLog(r.stdout + r.stderr);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(seconds).toBeLessThan(60);
    const out = r.stdout;

    // Start-up: every part of the system, and where it runs.
    expect(out).toMatch(/✓ PostgreSQL and the OIDC provider: PostgreSQL 18 on 127\.0\.0\.1:\d+, provider https:\/\/localhost:\d+\//);
    expect(out).toMatch(/✓ gprxy db init \+ examples\/multitenant\.sql: database demo: service accounts app_admin, app_writer, app_reader; schema gprxy/);
    expect(out).toMatch(/✓ gprxy serve: 127\.0\.0\.1:\d+ \(TLS\)/);
    expect(out).toMatch(/approving it as alice/);
    expect(out).toMatch(/✓ device-flow login and gprxy connect: alice@example\.com \(pg_writer\)/);
    const state = parseRunning(out);

    // 1: alice, with real psql and the printed command, then a write.
    expect(out).toContain('[1/5] as alice (pg_writer, tenant-a)');
    expect(out).toMatch(/\$ psql "host=127\.0\.0\.1 port=\d+ dbname=demo user=alice@example\.com" -c "select current_user, gprxy\.user_id\(\), gprxy\.tenant_id\(\)"/);
    if (await psqlAvailable()) expect(out).not.toContain('psql is not installed');
    expect(out).toMatch(/ app_writer\s+\| auth0\|alice0001 \| tenant-a/);
    expect(out).toMatch(/insert into posts .* returning tenant_id, owner_id\n.*\n.*\n\s+tenant-a\s+\| auth0\|alice0001\n/);
    expect(out).toContain('✓ the post was written');
    expect(out).toContain('✓ alice sees her tenant only (3 posts of tenant-a, hers included)');

    // 2: bob reads his tenant and is refused a write with 42501.
    expect(out).toContain('[2/5] as bob (pg_reader, tenant-b): read, then try to write');
    expect(out).toMatch(/ app_reader\s+\| auth0\|bob00002 \| tenant-b/);
    expect(out).toContain('✓ bob reads tenant-b’s 2 posts');
    expect(out).toContain('ERROR:  permission denied for table posts  (SQLSTATE 42501)');
    expect(out).toContain('✓ refused with 42501');

    // 3: a forged context shows nothing.
    expect(out).toContain('[3/5] as bob: forge gprxy.context');
    expect(out).toMatch(/tenant_a_posts\n\s+-+\n\s+0\n/);
    expect(out).toMatch(/ NULL\s+\| NULL\s+\| 0\n/);
    expect(out).toContain('✓ the forged context fails its HMAC check');

    // 4: sathwick sees both tenants.
    expect(out).toContain('[4/5] as sathwick (pg_admin): see both tenants');
    expect(out).toMatch(/ app_admin\s+\| tenant-a\s+\| 3\n\s+app_admin\s+\| tenant-b\s+\| 2\n/);
    // 5: many clients on a small pool (transaction pooling): own identity per transaction, at most 2 backends per account.
    expect(out).toContain('[5/5] many clients on a small pool: 12 connections of alice and bob to demo_tx (transaction pooling, 2 backends per account)');
    expect(out).toMatch(/ alice\s+\| app_writer\s+\| 6\s+\| 30\s+\| [12]\s+\| auth0\|alice0001 \| 3\n/);
    expect(out).toMatch(/ bob\s+\| app_reader\s+\| 6\s+\| 30\s+\| [12]\s+\| auth0\|bob00002\s+\| 2\n/);
    expect(out).toContain("✓ 60 transactions, each with its own client's identity");
    expect(out).toMatch(/✓ 12 connections served by [2-4] PostgreSQL backends \(at most 2 per account\)/);
    expect(out).toMatch(/Tour complete: 5 steps passed in [\d.]+ s\./);
    expect(r.stderr).toBe('');

    // The tunnels and every other port are closed by then.
    await expectNothingLeft(state, iso);
  });

  it('--yes: psql with the printed command works; Ctrl+C stops everything (exit 130) and leaves nothing', { timeout: 120_000 }, async () => {
    const iso = isolated();
    const demo = start(['--yes'], iso.env);
    await demo.waitFor(/Press Ctrl\+C to stop everything\./, 'stdout');
    const out = demo.stdout();
    const state = parseRunning(out);
    const command = /^\s+psql "(host=127\.0\.0\.1 port=(\d+) dbname=demo user=alice@example\.com)"$/m.exec(out);
    expect(command, out).not.toBeNull();
    expect(Number(command![2])).toBe(state.ports.tunnel);
    expect(out).toMatch(/alice\s+password alice-pw\s+role pg_writer\s+tenant tenant-a/);
    expect(out).toMatch(/bob\s+password bob-pw\s+role pg_reader\s+tenant tenant-b/);
    expect(out).toMatch(/sathwick\s+password sathwick-pw\s+role pg_admin\s+tenant tenant-a/);

    const { stdout } = await run('psql', [command![1]!, '-X', '-A', '-t', '-c', "select current_user || ' ' || gprxy.user_id() || ' ' || (select count(*) from posts)"], {
      env: { PATH: process.env.PATH!, PGCONNECT_TIMEOUT: '10' },
    });
    expect(stdout.trim()).toBe('app_writer auth0|alice0001 2');
    // The demo's processes exist while it runs (so the checks below can fail).
    expect((await processesMentioning(state.dataDir)).length).toBeGreaterThan(0);
    expect((await listeningPorts()).has(state.ports.proxy)).toBe(true);

    demo.child.kill('SIGINT');
    const r = await demo.result;
    expect(r.code, r.stderr).toBe(130);
    expect(r.stdout).toContain('Stopped everything and removed the temporary files.');
    await expectNothingLeft(state, iso);
  });

  it('without --yes a person approves in the provider pages (here as bob); SIGTERM stops it with 143', { timeout: 120_000 }, async () => {
    const iso = isolated();
    const demo = start([], iso.env);
    const [, url, code] = await demo.waitFor(/^\s+(https:\/\/localhost:\d+\/device\?user_code=(\S+))$/m, 'stdout');
    const [, caPath] = await demo.waitFor(/throwaway CA \((\S+)\)/, 'stdout');
    await demo.waitFor(/Waiting for the approval/, 'stdout');

    // The person: open the URL, confirm the code, sign in as bob, allow.
    const browser = new ScriptedBrowser(url!, fetchWithCa(readFileSync(caPath!, 'utf8')));
    let page = await browser.request(url!);
    for (let i = 0; i < 10 && pageName(page.body) !== 'device-success'; i++) {
      const name = pageName(page.body);
      if (name === 'device-input') page = await browser.submit(page, findForm(page, 'op.deviceInputForm'), { user_code: code! });
      else if (name === 'device-confirm') {
        expect(page.body).toContain(code!);
        page = await browser.submit(page, findForm(page, 'op.deviceConfirmForm'));
      } else if (name === 'login') page = await browser.submit(page, findForm(page, 'login'), { username: 'bob', password: 'bob-pw' });
      else if (name === 'consent') page = await browser.submit(page, findForm(page, 'allow'));
      else if (name === 'form-post') page = await browser.submit(page, findForm(page)); // the browser's script submits it
      else throw new Error(`unexpected page ${name ?? page.url}: ${errorText(page.body) ?? page.status}`);
    }
    expect(pageName(page.body)).toBe('device-success');

    await demo.waitFor(/Press Ctrl\+C to stop everything\./, 'stdout');
    const out = demo.stdout();
    const state = parseRunning(out);
    expect(out).toMatch(/gprxy connect demo\s+127\.0\.0\.1:\d+\s+as bob@example\.com \(pg_reader\)/);
    expect(out).toMatch(/psql "host=127\.0\.0\.1 port=\d+ dbname=demo user=bob@example\.com"/);
    // The suggested SQL fits bob, a reader: the insert is marked as refused.
    expect(out).toContain("insert into posts (title) values ('hello from psql');   -- refused (42501): a reader may only read");

    demo.child.kill('SIGTERM');
    const r = await demo.result;
    expect(r.code, r.stderr).toBe(143);
    await expectNothingLeft(state, iso);
  });

  it('Ctrl+C while waiting for the approval stops what already runs (exit 130) and removes the temporary files', { timeout: 120_000 }, async () => {
    const iso = isolated();
    const demo = start([], iso.env);
    await demo.waitFor(/Waiting for the approval/, 'stdout');
    const pgPort = Number(/PostgreSQL 18 on 127\.0\.0\.1:(\d+)/.exec(demo.stdout())?.[1]);
    expect(readdirSync(iso.tmp).length).toBeGreaterThan(0);
    demo.child.kill('SIGINT');
    const r = await demo.result;
    expect(r.code, r.stderr).toBe(130);
    expect(r.stdout).toContain('stopped by SIGINT');
    expect(readdirSync(iso.tmp)).toEqual([]);
    expect(readdirSync(iso.home)).toEqual([]);
    expect((await listeningPorts()).has(pgPort)).toBe(false);
  });

  it('SIGTERM to `npm run demo` (npm exits, the demo is orphaned) still stops everything and leaves nothing', { timeout: 120_000 }, async () => {
    const iso = isolated();
    const npmCache = mkdtempSync(join(tmpdir(), 'gprxy-demotest-npm-'));
    made.push(npmCache);
    // npm runs the script through `sh -c`; npm itself exits on SIGTERM without waiting for it.
    const npm = spawn('npm', ['run', '--silent', 'demo', '--', '--yes', '--port', '0'], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      env: { PATH: process.env.PATH!, ...iso.env, npm_config_cache: npmCache, npm_config_update_notifier: 'false' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    npm.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    npm.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    // 'close' comes when every holder of the pipes is gone: npm, the shell and the demo's node process.
    const closed = new Promise<void>((resolve) => npm.once('close', () => resolve()));
    await waitUntil(() => out.includes('Press Ctrl+C to stop everything.'), 60_000);
    const state = parseRunning(out);
    expect((await processesMentioning(state.dataDir)).length).toBeGreaterThan(0);

    npm.kill('SIGTERM');
    await closed;
    appendRunLog(out + err);
    expect(err).toContain('exited; stopping as on SIGTERM');
    expect(out).toContain('Stopped everything and removed the temporary files.');
    await expectNothingLeft(state, iso);
  });
});
