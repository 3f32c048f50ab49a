// Issue 11, the db init side: a user of a shared service account is hostile to its other users. Every test
// logs in as the account with its password (what the proxy does for each backend), does the attack, and
// shows what the next user of the account (the victim, on a new backend) gets after `gprxy db init`.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKEND_PREPARE_SQL, BACKEND_START_SQL } from '../../src/proxy/identity-context.js';
import { ACCOUNT_SETTINGS, accountSettingsFor, isExpectedAccountSetting, settingEntry } from '../../src/sql/account-settings.js';
import { runDbInit, type DbInitResult, type RunDbInitOptions } from '../../src/sql/db-init.js';
import { startTestPostgres, type Cluster } from '../support/postgres.js';
import { waitUntil } from '../support/wait.js';
import { catalogDump, connect, PASSWORDS, testConfig } from './support.js';

let cluster: Cluster;
const open: pg.Client[] = [];

beforeAll(async () => {
  cluster = await startTestPostgres();
  await cluster.createDatabase('mydb');
});

afterAll(async () => {
  await Promise.all(open.map((c) => c.end().catch(() => {})));
  await cluster?.stop();
});

async function init(options: Partial<RunDbInitOptions> = {}): Promise<{ results: DbInitResult[]; output: string }> {
  let output = '';
  const results = await runDbInit(testConfig(cluster), { adminUrl: cluster.url(), out: (t) => (output += `${t}\n`), ...options });
  return { results, output };
}

/** A backend of the account, as the proxy opens one. */
async function as(account: keyof typeof PASSWORDS): Promise<pg.Client> {
  const c = await connect(cluster, account, PASSWORDS[account]);
  c.on('error', () => {});
  open.push(c);
  return c;
}

const setting = async (c: pg.Client, name: string) => (await c.query('select pg_catalog.current_setting($1, true) as v', [name])).rows[0].v as string | null;

describe('item 2: account defaults poisoned by one user', () => {
  it('db init removes every role and role-in-database setting a user gave the account, says what it removed, keeps its own', async () => {
    await init();
    const attacker = await as('app_writer');
    await attacker.query(`alter role current_user set default_transaction_read_only = on`);
    await attacker.query(`alter role current_user set search_path = public, pg_catalog`);
    await attacker.query(`alter role current_user set row_security = off`);
    await attacker.query(`alter role current_user in database mydb set statement_timeout = '42s'`);
    await attacker.query(`alter role current_user reset client_connection_check_interval`);

    const poisoned = await as('app_writer');
    expect(await setting(poisoned, 'default_transaction_read_only')).toBe('on'); // what every later user got
    expect(await setting(poisoned, 'statement_timeout')).toBe('42s');

    const { results, output } = await init();
    expect(results[0]!.changed).toContain('roleSettings');
    for (const removed of ['default_transaction_read_only=on', 'search_path=public, pg_catalog', 'row_security=off', 'statement_timeout=42s']) {
      expect(output).toContain(`removed role setting ${removed} of app_writer`);
    }

    const victim = await as('app_writer');
    expect(await setting(victim, 'default_transaction_read_only')).toBe('off');
    expect(await setting(victim, 'statement_timeout')).toBe('0');
    expect(await setting(victim, 'search_path')).toBe('"$user", public');
    expect(await setting(victim, 'row_security')).toBe('on');
    const entries = (await cluster.query(`select setdatabase, setconfig from pg_db_role_setting where setrole = 'app_writer'::regrole`)).rows;
    expect(entries).toEqual([{ setdatabase: 0, setconfig: accountSettingsFor(cluster.majorVersion * 10000).map(settingEntry) }]);
    expect(entries[0]!.setconfig.every((e: string) => isExpectedAccountSetting(e))).toBe(true);
    expect(isExpectedAccountSetting('default_transaction_read_only=on')).toBe(false);
    expect(isExpectedAccountSetting(settingEntry(ACCOUNT_SETTINGS[0]!), 16384)).toBe(false);

    const before = await catalogDump(cluster);
    expect((await init()).results[0]!.changed).toEqual([]);
    expect(await catalogDump(cluster)).toEqual(before);
  });
});

describe('items 5 and 15: what db init sets for the accounts on purpose', () => {
  it('every backend of an account keeps bind values out of the log and checks for a vanished client (14+)', async () => {
    await init();
    for (const account of Object.keys(PASSWORDS) as (keyof typeof PASSWORDS)[]) {
      const c = await as(account);
      expect(await setting(c, 'log_parameter_max_length')).toBe('0');
      expect(await setting(c, 'log_parameter_max_length_on_error')).toBe('0');
      if (cluster.majorVersion >= 14) expect(await setting(c, 'client_connection_check_interval')).toBe('10s');
      // A user cannot turn the log setting back on for the account: it needs a superuser.
      await expect(c.query('alter role current_user set log_parameter_max_length = -1')).rejects.toMatchObject({ code: '42501' });
      await expect(c.query('set log_parameter_max_length = -1')).rejects.toMatchObject({ code: '42501' });
    }
  });

  it('a non-superuser admin cannot set log_parameter_max_length or change pg_catalog ACLs: db init says so instead of failing', async () => {
    await cluster.query(`create role limited_admin login createrole password 'limited-admin-pw-0123'`);
    await cluster.query(`grant all on database mydb to limited_admin`);
    await cluster.query(`alter role app_reader reset log_parameter_max_length`);
    await cluster.query(`grant execute on function pg_catalog.pg_cancel_backend(integer) to public`, [], 'mydb');
    try {
      const { planDbInit } = await import('../../src/sql/db-init.js');
      const { inspectDatabase } = await import('../../src/sql/db-init.js');
      const c = await connect(cluster, 'limited_admin', 'limited-admin-pw-0123');
      try {
        const state = await inspectDatabase(c, testConfig(cluster));
        expect(state.privileged).toBe(false);
        const plan = planDbInit(testConfig(cluster), testConfig(cluster).databases.mydb!, {}, state);
        expect(plan.notes).toContainEqual(expect.stringContaining('log_parameter_max_length not set for the accounts: it needs a superuser'));
        expect(plan.notes).toContainEqual(expect.stringContaining('peer isolation not applied: only a superuser may revoke EXECUTE on pg_cancel_backend(integer)'));
        expect(plan.notes).not.toContainEqual(expect.stringContaining('revoked EXECUTE'));
      } finally {
        await c.end();
      }
    } finally {
      await cluster.query(`drop owned by limited_admin; drop role limited_admin`, [], 'mydb');
      await init();
    }
  });
});

describe('item 4: peers of an account cannot read, signal or share with each other', () => {
  it('another user of the account cannot read the victim\'s query text, cancel or terminate the victim\'s backend', async () => {
    await init();
    const victim = await as('app_writer');
    const attacker = await as('app_writer');
    const victimPid = (await victim.query('select pg_backend_pid() as p')).rows[0].p as number;
    // The victim's statement waits on a lock the test holds: it is running while the attacker tries.
    const holder = new pg.Client({ connectionString: cluster.url('mydb') });
    await holder.connect();
    open.push(holder);
    await holder.query('select pg_advisory_lock(4242)');
    const running = victim.query(`select pg_advisory_lock(4242), 'alice-ssn-078-05-1120' as secret`).then(
      (r) => r.rows[0].secret as string,
      (e: { code?: string }) => `failed ${e.code}`,
    );
    await waitUntil(async () => (await cluster.query(`select count(*)::int as n from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'`, [victimPid])).rows[0]!.n === 1);

    for (const sql of [
      'select query from pg_stat_activity',
      'select pg_stat_get_activity(null)',
      'select pg_stat_get_backend_activity(s.id) from pg_stat_get_backend_idset() s(id)',
    ]) {
      await expect(attacker.query(sql), sql).rejects.toMatchObject({ code: '42501' });
    }
    await expect(attacker.query('select pg_cancel_backend($1)', [victimPid])).rejects.toMatchObject({ code: '42501' });
    await expect(attacker.query('select pg_terminate_backend($1)', [victimPid])).rejects.toMatchObject({ code: '42501' });
    await holder.query('select pg_advisory_unlock(4242)');
    expect(await running).toBe('alice-ssn-078-05-1120'); // the victim's query ran to its end

    // What stays: the DBA's and monitoring's view, and this backend's own start time (what the proxy reads).
    const dba = (await cluster.query(`select query from pg_stat_activity where pid = $1`, [victimPid])).rows[0]!.query as string;
    expect(dba).toContain('alice-ssn');
    await victim.query(`select 'alice-ssn-again' as s`);
    await cluster.query(`create role monitor login password 'monitor-pw-0123456789' in role pg_monitor`);
    const monitor = await connect(cluster, 'monitor', 'monitor-pw-0123456789');
    open.push(monitor);
    expect((await monitor.query(`select query from pg_stat_activity where pid = $1`, [victimPid])).rows[0].query).toContain('alice-ssn-again');
    await monitor.end();
    await cluster.query('drop role monitor');
    const own = (await attacker.query({ text: BACKEND_START_SQL, rowMode: 'array' })).rows[0]![0] as string;
    const seen = (await cluster.query(`select (extract(epoch from backend_start) * 1000000)::bigint::text as s from pg_stat_activity where pid = pg_backend_pid()`)).rows[0]!.s;
    expect(own).toMatch(/^\d{16}$/);
    expect(seen).toMatch(/^\d{16}$/);
    const attackerPid = (await attacker.query('select pg_backend_pid() as p')).rows[0].p as number;
    expect(own).toBe((await cluster.query(`select (extract(epoch from backend_start) * 1000000)::bigint::text as s from pg_stat_activity where pid = $1`, [attackerPid])).rows[0]!.s);
    const prepared = (await attacker.query({ text: BACKEND_PREPARE_SQL, rowMode: 'array' })).rows[0]!;
    expect(prepared).toEqual([own, true, false, true, true]);
  });

  it('another user of the account cannot read the large objects the victim created', async () => {
    await init({ keepPeerAccess: true });
    // As before db init: every role may use large objects.
    await cluster.query(`grant execute on function pg_catalog.lo_from_bytea(oid, bytea), pg_catalog.lo_get(oid) to public`, [], 'mydb');
    const victim = await as('app_writer');
    const oid = (await victim.query(`select lo_from_bytea(0, 'alice private file') as oid`)).rows[0].oid as number;
    const { output } = await init();
    expect(output).toMatch(/revoked EXECUTE on [^\n]*lo_from_bytea\(oid,bytea\), lo_get\(oid\)[^\n]* from PUBLIC/);
    const attacker = await as('app_writer');
    await expect(attacker.query('select lo_get($1)', [oid])).rejects.toMatchObject({ code: '42501' });
    await expect(attacker.query('select lo_open($1, 262144)', [oid])).rejects.toMatchObject({ code: '42501' });
    await expect(attacker.query('select lo_unlink($1)', [oid])).rejects.toMatchObject({ code: '42501' });
    await expect(attacker.query('select lo_put($1, 0, $2)', [oid, Buffer.from('x')])).rejects.toMatchObject({ code: '42501' });
    expect((await cluster.query('select convert_from(lo_get($1), $2) as t', [oid, 'UTF8'], 'mydb')).rows[0]!.t).toBe('alice private file');
    // libpq's large-object client calls (psql's \lo_export) go through the fast-path protocol: refused too.
    const psql = ['/usr/lib/postgresql/15/bin/psql', '/usr/bin/psql'].find((p) => existsSync(p));
    if (psql) {
      const dir = mkdtempSync(join(tmpdir(), 'gprxy-lo-'));
      try {
        const r = spawnSync(psql, ['-X', '-c', `\\lo_export ${oid} ${join(dir, 'stolen')}`, cluster.url('mydb', 'app_writer', PASSWORDS.app_writer)], { encoding: 'utf8' });
        expect(r.stderr).toContain('permission denied for function lo_open');
        expect(existsSync(join(dir, 'stolen'))).toBe(false);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it('db init says what it changed in the catalog, why and what it breaks; --keep-peer-access leaves PUBLIC its EXECUTE', async () => {
    await cluster.query(
      `grant execute on function pg_catalog.pg_stat_get_activity(integer), pg_catalog.pg_cancel_backend(integer) to public`,
      [],
      'mydb',
    );
    const kept = await init({ keepPeerAccess: true });
    expect(kept.output).not.toContain('revoked EXECUTE');
    const { results, output } = await init();
    expect(results[0]!.changed).toContain('peerFunctions');
    expect(output).toMatch(/revoked EXECUTE on pg_stat_get_activity\(integer\)[^\n]* from PUBLIC in this database, granted to pg_read_all_stats, gprxy_owner: [^\n]*SQL text[^\n]* Breaks: pg_stat_activity/);
    expect(output).toMatch(/revoked EXECUTE on pg_cancel_backend\(integer\)[^\n]* from PUBLIC in this database, granted to pg_signal_backend: [^\n]*Breaks:/);
    const acl = (await cluster.query(`select proacl::text as a from pg_proc where oid = 'pg_catalog.pg_stat_get_activity(integer)'::regprocedure`, [], 'mydb')).rows[0]!.a as string;
    expect(acl).not.toMatch(/[{,]=X/);
    expect(acl).toContain('pg_read_all_stats=X');
    expect(acl).toContain('gprxy_owner=X');
  });
});

describe('item 1: objects planted where a service account can create', () => {
  it('with PostgreSQL 13/14 default grants, db init takes CREATE on public from PUBLIC, gives it to the database owner and says so', async () => {
    await cluster.query(`grant create on schema public to public`, [], 'mydb'); // what 13/14 grant
    const attacker = await as('app_writer');
    await attacker.query(`create function public.planted() returns int language sql as $$ select 1 $$`);
    const { output } = await init();
    expect(output).toContain('revoked CREATE on schema public from PUBLIC and granted it to the database owner postgres');
    const again = await as('app_writer');
    await expect(again.query(`create function public.set_config(text, text, boolean) returns text language sql as $$ select 'x' $$`)).rejects.toMatchObject({ code: '42501' });
    const reader = await as('app_reader');
    await expect(reader.query(`create table public.t (x int)`)).rejects.toMatchObject({ code: '42501' });
    expect((await cluster.query(`select has_schema_privilege((select datdba from pg_database where datname = 'mydb'), 'public', 'CREATE') as ok`, [], 'mydb')).rows[0]!.ok).toBe(true);
    await cluster.query('drop function public.planted()', [], 'mydb');
  });

  it('--keep-public-create leaves it and says what that allows; any schema the accounts can create in is reported', async () => {
    await cluster.query(`grant create on schema public to public; create schema scratch; grant usage, create on schema scratch to public`, [], 'mydb');
    try {
      const kept = await init({ keepPublicCreate: true });
      expect(kept.output).toMatch(/! schema public: app_admin, app_reader, app_writer can create objects in it/);
      expect(kept.output).toMatch(/! schema scratch: app_admin, app_reader, app_writer can create objects in it: /);
      const { output } = await init();
      expect(output).toMatch(/! schema public: app_admin can create objects in it \(admin level, by design/);
      expect(output).toMatch(/! schema scratch: app_admin, app_reader, app_writer/);
    } finally {
      await cluster.query('drop schema scratch', [], 'mydb');
    }
  });

  it("db init's own statements resolve nothing a service account planted, whatever the admin's search_path", async () => {
    await cluster.query(`grant create on schema public to app_admin`, [], 'mydb');
    const attacker = await as('app_admin');
    // Runs as whoever calls now() with public first on the search_path: db init's admin, a superuser.
    await attacker.query(`create function public.now() returns timestamptz language plpgsql as $$
      begin execute 'alter role app_admin superuser'; return pg_catalog.now(); end $$`);
    const admin = cluster.url().replace(/\/?(\?|$)/, '?options=-c%20search_path%3Dpublic%2Cpg_catalog&');
    try {
      await init({ adminUrl: admin, rotateSecret: true });
      await init({ adminUrl: admin });
      expect((await cluster.query(`select rolsuper from pg_roles where rolname = 'app_admin'`)).rows[0]!.rolsuper).toBe(false);
    } finally {
      await cluster.query('drop function public.now(); alter role app_admin nosuperuser', [], 'mydb');
    }
  });
});

describe('item 16: row-level security an account skips', () => {
  it('reports RLS tables owned by an account without FORCE, and accounts that bypass RLS; --force-rls forces them', async () => {
    await init();
    const owner = await as('app_admin');
    await owner.query(`create table public.tenant_notes (tenant text, body text); alter table public.tenant_notes enable row level security;
      create policy own on public.tenant_notes using (tenant = (select gprxy.tenant_id()));
      insert into public.tenant_notes values ('tenant-a', 'a note'), ('tenant-b', 'b note')`);
    // The owner (every user of app_admin) skips the policy: no context at all, and every row.
    expect((await owner.query('select count(*)::int as n from public.tenant_notes')).rows[0].n).toBe(2);
    await cluster.query(`create role bypasser nologin bypassrls; grant bypasser to app_writer`);
    try {
      const { output } = await init();
      expect(output).toContain('! table public.tenant_notes: row-level security is enabled but not forced and its owner app_admin');
      expect(output).toContain('! account app_writer can SET ROLE to bypasser (BYPASSRLS)');
      const forced = await init({ forceRls: true });
      expect(forced.output).not.toContain('! table public.tenant_notes');
      expect((await owner.query('select count(*)::int as n from public.tenant_notes')).rows[0].n).toBe(0);
      expect((await init({ forceRls: true })).results[0]!.changed).toEqual([]);
    } finally {
      await cluster.query('drop role bypasser');
      await cluster.query('drop table public.tenant_notes', [], 'mydb');
    }
  });
});

describe('item 3: certificate authentication of the accounts', () => {
  it('an account configured without a password (certificate only) keeps none a user could have set: nothing logs in with one', async () => {
    await init();
    const attacker = await as('app_reader');
    await attacker.query(`alter role current_user password 'attacker-chosen-pw-42'`); // harmless only with cert auth
    const base = testConfig(cluster);
    const certOnly = { ...base, accounts: { ...base.accounts, app_reader: { name: 'app_reader' } } } as unknown as typeof base;
    await runDbInit(certOnly, { adminUrl: cluster.url(), out: () => {} });
    await expect(connect(cluster, 'app_reader', 'attacker-chosen-pw-42')).rejects.toMatchObject({ code: '28P01' });
    expect((await cluster.query(`select rolpassword from pg_authid where rolname = 'app_reader'`)).rows[0]!.rolpassword).toBeNull();
    let second = '';
    await runDbInit(certOnly, { adminUrl: cluster.url(), out: (t) => (second += `${t}\n`) });
    expect(second.split('\n')[0]).toBe('mydb: up to date, nothing changed');
    await init(); // the password back for the other tests
  });

  it('db init prints the pg_hba lines that make the accounts log in with certificates only', async () => {
    const { output } = await init();
    expect(output).toContain('hostssl mydb app_admin,app_writer,app_reader PROXY_ADDRESS/32 cert');
    expect(output).toContain('hostnossl all app_admin,app_writer,app_reader 0.0.0.0/0 reject');
    let printed = '';
    await runDbInit(testConfig(cluster), { print: true, out: (t) => (printed += t) });
    expect(printed).toContain('-- hostssl mydb app_admin,app_writer,app_reader PROXY_ADDRESS/32 cert');
  });
});

describe('item 11: epoch poisoning', () => {
  it("a user's begin_session calls, however huge, touch only the caller's own record; other users' checkouts work", async () => {
    await init();
    const victim = await as('app_reader');
    const attacker = await as('app_writer');
    const victimPid = (await victim.query('select pg_backend_pid() as p')).rows[0].p as number;
    await victim.query('select gprxy.begin_session($1)', [1000]);
    for (const epoch of ['9223372036854775807', '9223372036854775806', '-9223372036854775808', '0']) {
      await attacker.query('select gprxy.begin_session($1)', [epoch]).catch((e: { code?: string }) => expect(e.code).toBe('XG001'));
    }
    await expect(attacker.query('select gprxy.begin_session($1)', ['9223372036854775808'])).rejects.toMatchObject({ code: '22003' });
    const rows = (await cluster.query('select pid, epoch::text from gprxy.backend_epoch order by pid', [], 'mydb')).rows;
    const attackerPid = (await attacker.query('select pg_backend_pid() as p')).rows[0].p as number;
    expect(rows.filter((r) => r.pid !== attackerPid && r.pid !== victimPid)).toEqual([]);
    expect(rows.find((r) => r.pid === victimPid)!.epoch).toBe('1000');
    // The poisoned backend itself is the only one refused, with the code that tells the proxy to use a fresh one.
    await expect(attacker.query('select gprxy.begin_session($1)', [Date.now() * 1000])).rejects.toMatchObject({ code: 'XG001' });
    await victim.query('select gprxy.begin_session($1)', [Date.now() * 1000]);
    const fresh = await as('app_writer');
    await fresh.query('select gprxy.begin_session($1)', [Date.now() * 1000]);
  });

  it('a poisoned record left by an ended backend does not block a new backend that gets the same pid', async () => {
    await init();
    const next = await as('app_writer');
    const pid = (await next.query('select pg_backend_pid() as p')).rows[0].p as number;
    // What an attacker whose backend had this pid earlier left behind (another start time, the largest epoch).
    await cluster.query(
      `insert into gprxy.backend_epoch values ($1, '1', 9223372036854775807) on conflict (pid) do update set bst = '1', epoch = 9223372036854775807`,
      [pid],
      'mydb',
    );
    await next.query('select gprxy.begin_session($1)', [Date.now() * 1000]);
  });

  it('a refusal that a fresh backend would not cure has its own code: NULL epoch 22004, unverifiable backend 55000', async () => {
    await init();
    const c = await as('app_writer');
    await expect(c.query('select gprxy.begin_session(null)')).rejects.toMatchObject({ code: '22004' });
    await cluster.query('revoke pg_read_all_stats from gprxy_owner');
    try {
      const d = await as('app_writer');
      await expect(d.query('select gprxy.begin_session($1)', [Date.now() * 1000])).rejects.toMatchObject({ code: '55000' });
    } finally {
      await cluster.query('grant pg_read_all_stats to gprxy_owner');
    }
  });
});
