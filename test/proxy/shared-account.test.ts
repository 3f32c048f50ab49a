/**
 * Issue 11, the proxy's side: a user who holds a valid login to a shared service account and is hostile to
 * its other users (DESIGN.md 2.4). Everyone here maps to app_writer: bob is the attacker, alice the victim.
 * Each test poisons what the account can reach (its own objects, its role settings, its backends) the way
 * the attacks did, then checks that alice's next login through the proxy is unaffected.
 */
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runDbInit } from '../../src/sql/db-init.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs, type TokenSet } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';
// Everyone on one account: the attacker and the victim are peers.
import { ALL_ON_WRITER } from '../support/all-on-writer.js';

let stack: ProxyStack;
let initConfig: ProxyStack['config'];
const tokens: Record<string, TokenSet> = {};
const open = new Set<pg.Client>();


beforeAll(async () => {
  stack = await startProxyStack();
  initConfig = stack.config;
  await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: () => {} });
  // PostgreSQL 13/14 defaults: every role may create objects in public.
  await stack.cluster.query('GRANT CREATE ON SCHEMA public TO PUBLIC', [], 'mydb');
  for (const u of ['alice', 'bob']) tokens[u] = await loginAs(stack.idp.provider, u);
});

afterEach(async () => {
  await Promise.all([...open].map((c) => c.end().catch(() => {})));
  open.clear();
  await stack.cluster.query('ALTER ROLE app_writer RESET ALL; ALTER ROLE app_writer IN DATABASE mydb RESET ALL', [], 'mydb');
});

afterAll(async () => {
  await stack?.stop();
});

async function connectAs(username: 'alice' | 'bob', extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: `${username}@example.com`, password: tokens[username]!.accessToken, database: 'mydb', ssl: stack.ssl, ...extra });
  c.on('error', () => {});
  await c.connect();
  open.add(c);
  return c;
}

async function end(c: pg.Client): Promise<void> {
  open.delete(c);
  await c.end();
}

/**
 * The account's backends are replaced: the attacker leaves, and every backend of the account ends, as
 * the pool's idle timeout, max lifetime or a proxy restart would do (before db init took the signal
 * functions away from the accounts, the attacker could terminate his peers himself).
 */
async function killPeers(attacker: pg.Client): Promise<void> {
  await end(attacker);
  await stack.cluster.query(`select pg_terminate_backend(pid) from pg_stat_activity where usename = 'app_writer'`);
  await waitUntil(async () => (await stack.cluster.query(`select count(*)::int as n from pg_stat_activity where usename = 'app_writer'`)).rows[0]!.n === 0);
}

async function whoAmI(c: pg.Client): Promise<{ uid: string; sub: string | null; account: string }> {
  const r = await c.query(`select pg_catalog.current_setting('app.user_id') as uid, gprxy.user_id() as sub, current_user as account`);
  return r.rows[0] as { uid: string; sub: string | null; account: string };
}

describe('a hostile user of a shared service account', () => {
  it("cannot hijack the next user's login through functions on the account's search_path", async () => {
    await stack.startProxy(ALL_ON_WRITER);
    const bob = await connectAs('bob');
    // His functions shadow what an unqualified setup statement would call, and record who they ran for.
    await bob.query(`
      create table public.hijack_log (fn text, victim text);
      grant insert, select on public.hijack_log to public;
      create function public.set_config(text, text, boolean) returns text language plpgsql as $$
        begin insert into public.hijack_log values ('set_config', $2); return pg_catalog.set_config($1, $2, $3); end $$;
      create function public.pg_backend_pid() returns integer language plpgsql as $$
        begin insert into public.hijack_log values ('pg_backend_pid', null); return pg_catalog.pg_backend_pid(); end $$;
      create function public.pg_is_in_recovery() returns boolean language plpgsql as $$
        begin insert into public.hijack_log values ('pg_is_in_recovery', null); return pg_catalog.pg_is_in_recovery(); end $$;
      create function public.to_regprocedure(text) returns regprocedure language plpgsql as $$
        begin insert into public.hijack_log values ('to_regprocedure', null); return pg_catalog.to_regprocedure($1); end $$;
      create function public.setseed(double precision) returns void language plpgsql as $$
        begin insert into public.hijack_log values ('setseed', null); perform pg_catalog.setseed($1); end $$;
      create function public.times(numeric, integer) returns numeric language plpgsql as $$
        begin insert into public.hijack_log values ('operator *', null); return $1 operator(pg_catalog.*) $2; end $$;
      create operator public.* (leftarg = numeric, rightarg = integer, function = public.times);
      alter role current_user set search_path = public, pg_catalog;
    `);
    await killPeers(bob);

    const alice = await connectAs('alice');
    expect(await whoAmI(alice)).toEqual({ uid: 'auth0|alice0001', sub: 'auth0|alice0001', account: 'app_writer' });
    await end(alice);
    await stack.logs.waitFor((l) => l.event === 'session_end' && l.user === 'alice@example.com' && l.backend_reused === true);
    const again = await connectAs('alice');
    expect((await whoAmI(again)).sub).toBe('auth0|alice0001');
    await end(again);

    const calls = await stack.cluster.query(`select fn, victim from public.hijack_log`, [], 'mydb');
    expect(calls.rows).toEqual([]);
    await stack.cluster.query(
      `drop operator public.* (numeric, integer); drop function public.times(numeric, integer), public.set_config(text, text, boolean), public.pg_backend_pid(),
       public.pg_is_in_recovery(), public.to_regprocedure(text), public.setseed(double precision); drop table public.hijack_log`,
      [],
      'mydb',
    );
  });

  it("cannot make another user's login fail by pushing the checkout epochs of the pooled backends forward", async () => {
    await stack.startProxy({ ...ALL_ON_WRITER, databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool: { size: 2 } } } });
    // Bob takes both backends of the pool and poisons each: every later begin_session there is refused.
    const [b1, b2] = [await connectAs('bob'), await connectAs('bob')];
    const pids: number[] = [];
    for (const b of [b1, b2]) {
      await b.query(`select gprxy.begin_session(9223372036854775000)`);
      pids.push((await b.query('select pg_backend_pid() as pid')).rows[0].pid as number);
      await end(b);
    }
    await waitUntil(() => stack.logs.events('session_end').filter((l) => l.user === 'bob@example.com' && l.backend_reused === true).length >= 2);

    for (let i = 0; i < 3; i++) {
      const alice = await connectAs('alice');
      expect(await whoAmI(alice)).toEqual({ uid: 'auth0|alice0001', sub: 'auth0|alice0001', account: 'app_writer' });
      expect(pids).not.toContain((await alice.query('select pg_backend_pid() as pid')).rows[0].pid);
      await end(alice);
    }
    expect(stack.logs.events('backend_epoch_refused').length).toBeGreaterThanOrEqual(1);
  });

  it("cannot predict the next user's random(): the release reset reseeds", async () => {
    await stack.startProxy({ ...ALL_ON_WRITER, databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool: { size: 1 } } } });
    const seeded = await stack.cluster.query<{ r: number }>(`select setseed(0.5); select random() as r`);
    const known = (seeded as unknown as pg.QueryResult<{ r: number }>[])[1]!.rows[0]!.r;
    const bob = await connectAs('bob');
    const pid = (await bob.query('select pg_backend_pid() as pid')).rows[0].pid as number;
    await bob.query('select setseed(0.5)');
    await end(bob);
    await stack.logs.waitFor((l) => l.event === 'session_end' && l.user === 'bob@example.com' && l.backend_reused === true);

    const alice = await connectAs('alice');
    expect((await alice.query('select pg_backend_pid() as pid')).rows[0].pid).toBe(pid);
    const r = (await alice.query('select random() as r')).rows[0].r as number;
    expect(r).not.toBe(known);
    await end(alice);
  });

  it("cannot poison the account's role settings for the next user: the proxy finds, reports and repairs them", async () => {
    await stack.startProxy(ALL_ON_WRITER);
    const mark = stack.logs.lines.length;
    const bob = await connectAs('bob');
    await bob.query(`alter role current_user set default_transaction_read_only = on`);
    await bob.query(`alter role current_user set statement_timeout = '20ms'`);
    await bob.query(`alter role current_user set search_path = public, pg_catalog`);
    await bob.query(`alter role current_user in database mydb set row_security = off`);
    await killPeers(bob);

    const alice = await connectAs('alice');
    const settings = await alice.query(
      `select current_setting('default_transaction_read_only') as ro, current_setting('statement_timeout') as st, current_setting('search_path') as sp, current_setting('row_security') as rs`,
    );
    expect(settings.rows[0]).toEqual({ ro: 'off', st: '0', sp: '"$user", public', rs: 'on' });
    await alice.query('select pg_sleep(0.1)');
    expect((await alice.query(`insert into notes (body) values ('alice writes') returning author`)).rows[0].author).toBe('auth0|alice0001');
    expect((await whoAmI(alice)).sub).toBe('auth0|alice0001');

    const event = stack.logs.lines.slice(mark).find((l) => l.event === 'service_account_tampered')!;
    expect(event).toMatchObject({ account: 'app_writer', database: 'mydb', pool: 'mydb/app_writer' });
    expect(new Set((event.settings as { name: string }[]).map((x) => x.name))).toEqual(new Set(['default_transaction_read_only', 'statement_timeout', 'search_path', 'row_security']));
    expect(JSON.stringify(event)).not.toContain('20ms');
    const left = await stack.cluster.query(`select unnest(setconfig) as entry from pg_db_role_setting where setrole = 'app_writer'::regrole`);
    expect(left.rows.filter((r) => /^(default_transaction_read_only|statement_timeout|search_path|row_security)=/.test(r.entry as string))).toEqual([]);
    expect(await stack.proxy.metrics.registry.getSingleMetricAsString('gprxy_service_account_events_total')).toMatch(/event="tampered"[^\n]* [1-9]/);
  });

  it('repairs settings that would stop the check itself (a 1 ms statement_timeout, a role to switch to)', async () => {
    await stack.startProxy(ALL_ON_WRITER);
    const bob = await connectAs('bob');
    await bob.query(`alter role current_user in database mydb set statement_timeout = '1ms'`);
    await bob.query(`alter role current_user set role = gprxy_writer`);
    await killPeers(bob);
    const alice = await connectAs('alice');
    expect((await alice.query(`select current_setting('statement_timeout') as st, current_user as u`)).rows[0]).toEqual({ st: '0', u: 'app_writer' });
    await alice.query('select pg_sleep(0.05)');
    expect((await stack.cluster.query(`select setconfig from pg_db_role_setting where setrole = 'app_writer'::regrole`)).rows).toEqual([]);
  });

  it('repairs settings that end every connection, the repair connection included (transaction_timeout on 17+, idle_session_timeout)', async () => {
    await stack.startProxy(ALL_ON_WRITER);
    const bob = await connectAs('bob');
    const major = Number((await bob.query(`select current_setting('server_version_num')::int / 10000 as v`)).rows[0].v);
    if (major >= 17) await bob.query(`alter role current_user set transaction_timeout = '1ms'`);
    await bob.query(`alter role current_user set idle_session_timeout = '1ms'`);
    await killPeers(bob);
    const alice = await connectAs('alice');
    await alice.query('select pg_sleep(0.05)');
    expect((await whoAmI(alice)).sub).toBe('auth0|alice0001');
    expect((await stack.cluster.query(`select setconfig from pg_db_role_setting where setrole = 'app_writer'::regrole`)).rows).toEqual([]);
  });

  it("gives db init's own settings their value back when a user changes them", async () => {
    await runDbInit(initConfig, { adminUrl: stack.cluster.url(), out: () => {} });
    await stack.startProxy(ALL_ON_WRITER);
    const bob = await connectAs('bob');
    await bob.query(`alter role current_user set client_connection_check_interval = 0`);
    await killPeers(bob);
    const alice = await connectAs('alice');
    expect((await alice.query(`select current_setting('client_connection_check_interval') as v`)).rows[0].v).toBe('10s');
    const entries = await stack.cluster.query(`select unnest(setconfig) as entry from pg_db_role_setting where setrole = 'app_writer'::regrole`);
    expect(entries.rows.map((r) => r.entry)).toContain('client_connection_check_interval=10s');
  });
  it('cannot fill max_connections with queries left running: a busy backend is cancelled and counted until it is gone', async () => {
    // No client_connection_check_interval (PostgreSQL 13, or db init not re-run): the cancel alone must do it.
    await stack.cluster.query('ALTER ROLE app_writer RESET ALL');
    await stack.startProxy({ ...ALL_ON_WRITER, databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool: { size: 2 } } } });
    const backends = async (): Promise<number> => (await stack.cluster.query(`select count(*)::int as n from pg_stat_activity where usename = 'app_writer'`)).rows[0]!.n as number;
    for (let i = 0; i < 5; i++) {
      const bob = await connectAs('bob');
      const pid = (await bob.query('select pg_backend_pid() as pid')).rows[0].pid as number;
      void bob.query('select pg_sleep(3600)').catch(() => {});
      await waitUntil(async () => (await stack.cluster.query(`select query from pg_stat_activity where pid = $1 and state = 'active'`, [pid])).rows[0]?.query === 'select pg_sleep(3600)');
      // Bob vanishes: his TCP connection is cut, no Terminate.
      (bob as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
      open.delete(bob);
      expect(await backends()).toBeLessThanOrEqual(2);
    }
    await waitUntil(async () => (await stack.cluster.query(`select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(3600)' and state = 'active'`)).rows[0]!.n === 0);
    expect(await backends()).toBeLessThanOrEqual(2);
    const alice = await connectAs('alice');
    expect((await whoAmI(alice)).sub).toBe('auth0|alice0001');
    expect(stack.proxy.pools.stats()['mydb/app_writer']!.total).toBeLessThanOrEqual(2);
  });

  it('cannot pass as someone else in pg_stat_activity unseen: application_name changes are audited with the real user', async () => {
    await stack.startProxy(ALL_ON_WRITER);
    const mark = stack.logs.lines.length;
    const bob = await connectAs('bob', { application_name: 'psql' });
    expect(stack.logs.lines.slice(mark).filter((l) => l.event === 'application_name_changed')).toEqual([]);
    await bob.query(`set application_name = 'carol@example.com via psql'`);
    const event = await stack.logs.waitFor((l) => l.event === 'application_name_changed' && l.application_name === 'carol@example.com via psql');
    expect(event).toMatchObject({ user: 'bob@example.com', email: 'bob@example.com', sub: 'auth0|bob00002', account: 'app_writer', database: 'mydb' });
    await end(bob);
  });
});
