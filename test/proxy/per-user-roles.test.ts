/**
 * identity: per_user (issue 12) through the real proxy, PostgreSQL and psql: every SSO user is a PostgreSQL
 * role of her own, provisioned at login over the admin connection. alice and carol map to the same group
 * and are still two roles that cannot see or signal each other; groups follow the token at each login;
 * two proxies sharing only the secret both log a new user in at once; a role a user tampered with is
 * repaired at her next login; a role of the same name the proxy did not make is never adopted.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DevUser } from '../../src/demo/oidc-provider.js';
import { createLogger } from '../../src/proxy/logger.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { runDbInit } from '../../src/sql/db-init.js';
import { listUserRoles, pruneUserRoles } from '../../src/sql/db-users.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';
import { endAll } from '../support/proxy-clients.js';

const SECRET = 'per-user-test-secret-0123456789abcdef';
let aliceRoles: string[] = ['pg_writer', 'pg_reader'];
const USERS: DevUser[] = [
  {
    username: 'alice',
    password: 'alice-pw',
    sub: 'auth0|alice0001',
    email: 'alice@example.com',
    name: 'Alice',
    get roles() {
      return aliceRoles;
    },
    orgId: 'tenant-a',
  },
  { username: 'carol', password: 'carol-pw', sub: 'auth0|carol0005', email: 'carol@example.com', name: 'Carol', roles: ['pg_writer'], orgId: 'tenant-a' },
  { username: 'dave', password: 'dave-pw', sub: 'auth0|dave0006', email: 'dave@example.com', name: 'Dave', roles: ['pg_reader'], orgId: 'tenant-b' },
  { username: 'erin', password: 'erin-pw', sub: 'auth0|erin0007', email: 'erin@example.com', name: 'Erin', roles: ['pg_reader'], orgId: 'tenant-b' },
  { username: 'gina', password: 'gina-pw', sub: 'auth0|gina0009', email: 'gina@example.com', name: 'Gina', roles: ['pg_support'], orgId: 'tenant-b' },
  { username: 'frank', password: 'frank-pw', sub: 'auth0|frank0008', email: 'frank@example.com', name: 'Frank', roles: ['pg_writer'], orgId: 'tenant-b' },
];

let stack: ProxyStack;
const open = new Set<pg.Client>();

function perUserConfig(): Record<string, unknown> {
  return {
    databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', identity: 'per_user', pool: { size: 3 } } },
    provisioning: { admin_url: stack.cluster.url(), secret: SECRET },
  };
}

beforeAll(async () => {
  stack = await startProxyStack({ provider: { users: USERS } });
  await stack.startProxy(perUserConfig());
  await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: () => {} });
});

afterEach(() => endAll(open));

afterAll(async () => {
  await stack?.stop();
});

async function token(user: string): Promise<string> {
  return (await loginAs(stack.idp.provider, user)).accessToken;
}

async function connect(user: string, port = stack.port, accessToken?: string): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: `${user}@example.com`, password: accessToken ?? (await token(user)), database: 'mydb', ssl: stack.ssl });
  c.on('error', () => {});
  await c.connect();
  open.add(c);
  return c;
}

async function groupsOf(role: string): Promise<string[]> {
  const r = await stack.cluster.query(
    `select g.rolname from pg_auth_members m join pg_roles g on g.oid = m.roleid join pg_roles u on u.oid = m.member where u.rolname = $1 order by 1`,
    [role],
  );
  return r.rows.map((x) => String(x.rolname));
}

function psql(user: string, accessToken: string, sql: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('psql', ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(stack.port), '-U', user, '-d', 'mydb', '-c', sql], {
      env: { ...process.env, PGPASSWORD: accessToken, PGSSLMODE: 'require', PGCONNECT_TIMEOUT: '10' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('identity: per_user', () => {
  it('logs alice in as her own role: psql sees current_user and session_user being the person, the context still carries her claims', async () => {
    const result = await psql('alice@example.com', await token('alice'), `select current_user || ' ' || session_user || ' ' || gprxy.user_id() || ' ' || gprxy.tenant_id()`);
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe('alice@example.com alice@example.com auth0|alice0001 tenant-a');
    expect(await groupsOf('alice@example.com')).toEqual(['gprxy_reader', 'gprxy_users', 'gprxy_writer']);
    const created = await stack.logs.waitFor((l) => l.event === 'user_role_created' && l.role === 'alice@example.com');
    expect(created.groups).toEqual(['gprxy_reader', 'gprxy_writer']);
  });

  it('makes alice and carol (same group) two roles that see only their own query text and cannot cancel each other', async () => {
    const alice = await connect('alice');
    const carol = await connect('carol');
    await carol.query(`select 'carol-private-literal' as secret`);
    const carolPid = (await carol.query('select pg_backend_pid() as pid')).rows[0].pid as number;
    const alicePid = (await alice.query('select pg_backend_pid() as pid')).rows[0].pid as number;
    await alice.query(`select 'alice-own-literal'`);

    const seen = await alice.query(`select pid, usename, query from pg_stat_activity where pid = any($1) order by pid`, [[alicePid, carolPid]]);
    const byPid = new Map(seen.rows.map((r) => [r.pid as number, r as { usename: string; query: string }]));
    expect(byPid.get(alicePid)?.usename).toBe('alice@example.com');
    expect(byPid.get(alicePid)?.query).toContain('pg_stat_activity');
    expect(byPid.get(carolPid)?.usename).toBe('carol@example.com');
    expect(byPid.get(carolPid)?.query).toBe('<insufficient privilege>');

    await expect(alice.query('select pg_cancel_backend($1)', [carolPid])).rejects.toMatchObject({ code: '42501' });
    await expect(alice.query('select pg_terminate_backend($1)', [carolPid])).rejects.toMatchObject({ code: '42501' });
    expect((await carol.query('select 1 as ok')).rows[0].ok).toBe(1);
  });

  it('revokes a group at the next login when the token no longer carries its role', async () => {
    const before = await connect('alice');
    await before.query(`insert into notes (body) values ('alice can write')`);
    await before.end();
    open.delete(before);

    aliceRoles = ['pg_reader'];
    try {
      const after = await connect('alice');
      expect(await groupsOf('alice@example.com')).toEqual(['gprxy_reader', 'gprxy_users']);
      await expect(after.query(`insert into notes (body) values ('no more')`)).rejects.toMatchObject({ code: '42501' });
      expect((await after.query(`select count(*)::int as n from notes`)).rows[0].n).toBeGreaterThan(0);
      const changed = await stack.logs.waitFor((l) => l.event === 'user_role_groups_changed' && l.role === 'alice@example.com' && (l.revoked as string[]).length > 0);
      expect(changed.revoked).toEqual(['gprxy_writer']);
    } finally {
      aliceRoles = ['pg_writer', 'pg_reader'];
    }
  });

  it('two proxies sharing only the secret log the same new user in at the same moment', async () => {
    const second = new ProxyServer(stack.config, { logger: createLogger({ level: 'warn', destination: stack.logs }) });
    await second.start();
    try {
      const [t1, t2] = await Promise.all([token('dave'), token('dave')]);
      const [a, b] = await Promise.all([connect('dave', stack.port, t1), connect('dave', second.address.port, t2)]);
      const who = await Promise.all([a.query('select current_user as u'), b.query('select current_user as u')]);
      expect(who.map((r) => r.rows[0].u)).toEqual(['dave@example.com', 'dave@example.com']);
      expect(await groupsOf('dave@example.com')).toEqual(['gprxy_reader', 'gprxy_users']);
    } finally {
      await second.close();
    }
  });

  it("repairs a role its user tampered with (own password, role settings) at her next login, with an audit event", async () => {
    const alice = await connect('alice');
    await alice.query(`alter role current_user password 'alice-chose-this'`);
    await alice.query(`alter role current_user set work_mem = '64kB'`);
    await alice.query(`alter role current_user in database mydb set statement_timeout = '1ms'`);
    await alice.end();
    open.delete(alice);
    // Her pooled backends go away (idle timeout, restart): the next login needs a new backend and her password.
    await stack.cluster.query(`select pg_terminate_backend(pid) from pg_stat_activity where usename = 'alice@example.com'`);

    const again = await connect('alice');
    const settings = await again.query(`select current_setting('work_mem') as wm, current_setting('statement_timeout') as st`);
    expect(settings.rows[0]).toEqual({ wm: '4MB', st: '0' });
    const event = await stack.logs.waitFor((l) => l.event === 'user_role_tampered' && l.role === 'alice@example.com');
    expect(event.repaired).toEqual(expect.arrayContaining(['password', 'setting work_mem', 'setting mydb/statement_timeout']));
    const stored = await stack.cluster.query(`select count(*)::int as n from pg_db_role_setting where setrole = '"alice@example.com"'::regrole`);
    expect(stored.rows[0]!.n).toBe(0);
    expect(stack.logs.raw).not.toContain('alice-chose-this');
  });

  it('never adopts a role of the same name that the proxy did not create', async () => {
    await stack.cluster.query(`create role "erin@example.com" login createdb`);
    await expect(connect('erin')).rejects.toMatchObject({ code: '28000' });
    const r = await stack.cluster.query(`select rolcreatedb, (select count(*)::int from pg_auth_members where member = '"erin@example.com"'::regrole) as groups from pg_roles where rolname = 'erin@example.com'`);
    expect(r.rows[0]).toEqual({ rolcreatedb: true, groups: 0 });
    await stack.logs.waitFor((l) => l.reason === 'user_role_refused');
  });
});

describe('groups named in provisioning.groups', () => {
  it('grants a NOLOGIN group of the operator, and the identity context still binds to the checkout', async () => {
    await stack.cluster.query(`create role support_staff nologin; grant select on notes to support_staff`, [], 'mydb');
    const base = perUserConfig();
    await stack.startProxy({
      ...base,
      role_mapping: [{ role: 'pg_support', account: 'app_reader' }, { role: 'pg_writer', account: 'app_writer' }, { role: 'pg_reader', account: 'app_reader' }],
      provisioning: { ...(base.provisioning as object), groups: [{ role: 'pg_support', group: 'support_staff' }, { role: 'pg_writer', group: 'gprxy_writer' }, { role: 'pg_reader', group: 'gprxy_reader' }] },
    });
    try {
      await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: () => {} });
      const gina = await connect('gina');
      const r = await gina.query(`select current_user as u, gprxy.user_id() as uid, (select count(*) from notes) >= 0 as reads`);
      expect(r.rows[0]).toEqual({ u: 'gina@example.com', uid: 'auth0|gina0009', reads: true });
      expect(await groupsOf('gina@example.com')).toEqual(['gprxy_users', 'support_staff']);
    } finally {
      await stack.startProxy(perUserConfig());
    }
  });
});

describe('gprxy db users', () => {
  const DAY = 86_400_000;
  const age = (role: string, days: number) =>
    stack.cluster.query(`update gprxy.user_login set last_login = now() - make_interval(days => $2) where role = $1`, [role, days], 'mydb');

  it('lists the provisioned roles with their last login and groups (not a role the proxy did not make)', async () => {
    const roles = await listUserRoles(stack.config, { adminUrl: stack.cluster.url() });
    const names = roles.map((r) => r.role);
    expect(names).toEqual(expect.arrayContaining(['alice@example.com', 'carol@example.com', 'dave@example.com']));
    expect(names).not.toContain('erin@example.com');
    const carol = roles.find((r) => r.role === 'carol@example.com')!;
    expect(carol).toMatchObject({ canLogin: true, groups: ['gprxy_writer'], email: 'carol@example.com', subject: 'auth0|carol0005' });
    expect(Date.now() - carol.lastLogin!.getTime()).toBeLessThan(5 * 60_000);

    const dir = mkdtempSync(join(tmpdir(), 'gprxy-users-'));
    try {
      const file = join(dir, 'gprxy.yaml');
      writeFileSync(
        file,
        `tls: { allow_plaintext_loopback: true }
providers: [{ issuer: "https://idp.example/", audience: "https://gprxy.io" }]
role_mapping: [{ role: pg_writer, account: app_writer }]
accounts: { app_writer: { password: x } }
databases: { mydb: { host: ${stack.cluster.host}, port: ${stack.cluster.port}, identity: per_user } }
provisioning: { admin_url: "\${ADMIN}", secret: "${SECRET}" }
`,
      );
      const dev = fileURLToPath(new URL('../../bin/dev.js', import.meta.url));
      const out = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', dev, 'db', 'users', '--config', file], {
          env: { PATH: process.env.PATH, HOME: process.env.HOME, OCLIF_DISABLE_ENGINE_WARNING: '1', ADMIN: stack.cluster.url() },
        });
        let stdout = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.on('close', (code) => resolve({ code, stdout }));
      });
      expect(out.code).toBe(0);
      expect(out.stdout).toMatch(/^ROLE\s+LOGIN\s+LAST LOGIN/);
      expect(out.stdout).toMatch(/carol@example\.com\s+yes\s+\d{4}-\d\d-\d\dT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--prune --idle 90d locks idle roles, is idempotent, and the next login unlocks the role', async () => {
    await age('dave@example.com', 100);
    const first = await pruneUserRoles(stack.config, { adminUrl: stack.cluster.url(), idleMs: 90 * DAY });
    expect(first).toEqual([{ role: 'dave@example.com', server: `${stack.cluster.host}:${stack.cluster.port}`, action: 'locked' }]);
    expect((await stack.cluster.query(`select rolcanlogin from pg_roles where rolname = 'dave@example.com'`)).rows[0]!.rolcanlogin).toBe(false);
    expect(await pruneUserRoles(stack.config, { adminUrl: stack.cluster.url(), idleMs: 90 * DAY })).toEqual([]);

    const dave = await connect('dave');
    expect((await dave.query('select current_user as u')).rows[0].u).toBe('dave@example.com');
    expect((await stack.cluster.query(`select rolcanlogin from pg_roles where rolname = 'dave@example.com'`)).rows[0]!.rolcanlogin).toBe(true);
    await stack.logs.waitFor((l) => l.event === 'user_role_unlocked' && l.role === 'dave@example.com');
  });

  it('--drop reassigns what the role owns, drops its privileges in every database and the role, once', async () => {
    await stack.cluster.query(`grant create on schema public to "carol@example.com"`, [], 'mydb');
    const carol = await connect('carol');
    await carol.query(`create table public.carol_notes (body text)`);
    await carol.end();
    open.delete(carol);
    await stack.cluster.query(`grant select on public.notes to "carol@example.com"`, [], 'mydb');
    await stack.cluster.createDatabase('otherdb');
    await stack.cluster.query(`grant create on database otherdb to "carol@example.com"`);
    await stack.cluster.query(`select pg_terminate_backend(pid) from pg_stat_activity where usename = 'carol@example.com'`);
    await age('carol@example.com', 100);

    const dropped = await pruneUserRoles(stack.config, { adminUrl: stack.cluster.url(), idleMs: 90 * DAY, dropReassignTo: 'app_admin' });
    expect(dropped).toEqual([{ role: 'carol@example.com', server: `${stack.cluster.host}:${stack.cluster.port}`, action: 'dropped' }]);
    expect((await stack.cluster.query(`select count(*)::int as n from pg_roles where rolname = 'carol@example.com'`)).rows[0]!.n).toBe(0);
    expect((await stack.cluster.query(`select tableowner from pg_tables where tablename = 'carol_notes'`, [], 'mydb')).rows[0]!.tableowner).toBe('app_admin');
    expect(await pruneUserRoles(stack.config, { adminUrl: stack.cluster.url(), idleMs: 90 * DAY, dropReassignTo: 'app_admin' })).toEqual([]);
  });
});

describe('a provisioning role with CREATEROLE instead of a superuser', () => {
  it('db init grants it what it needs and says what CREATEROLE means on this version; it provisions, and repairs a password it cannot read', async () => {
    const password = 'provisioner-pw-0123456789';
    await stack.cluster.query(`create role gprxy_provisioner login createrole password '${password}'`);
    await stack.startProxy({ ...perUserConfig(), provisioning: { admin_url: stack.cluster.url('mydb', 'gprxy_provisioner', password), secret: SECRET } });
    const notes: string[] = [];
    await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: (t) => notes.push(t) });
    const version = Number((await stack.cluster.query(`select current_setting('server_version_num') as v`)).rows[0]!.v);
    expect(notes.join('\n')).toMatch(version < 160000 ? /gprxy_provisioner provisions with CREATEROLE\. On PostgreSQL \d+ \(before 16\) CREATEROLE is close to superuser/ : /gprxy_provisioner provisions with CREATEROLE and ADMIN OPTION/);

    // The proxy connects without TLS here (sslmode disable): the allow line must be `host`, not `hostssl`.
    expect(notes.join('\n')).toMatch(/^\s*host mydb \+gprxy_users PROXY_ADDRESS\/32 scram-sha-256$/m);
    const frank = await connect('frank');
    expect((await frank.query('select current_user as u')).rows[0].u).toBe('frank@example.com');
    expect(await groupsOf('frank@example.com')).toEqual(['gprxy_users', 'gprxy_writer']);
    await frank.query(`alter role current_user password 'frank-chose-this'`);
    await frank.end();
    open.delete(frank);
    await stack.cluster.query(`select pg_terminate_backend(pid) from pg_stat_activity where usename = 'frank@example.com'`);

    // The provisioner cannot read pg_authid: PostgreSQL refuses the derived password, the proxy sets it again.
    const again = await connect('frank');
    expect((await again.query('select current_user as u')).rows[0].u).toBe('frank@example.com');
    const event = await stack.logs.waitFor((l) => l.event === 'user_role_tampered' && l.role === 'frank@example.com');
    expect(event.repaired).toEqual(['password']);
  });
});
