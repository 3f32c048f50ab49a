/**
 * Transaction pooling (issue 17): nothing a client leaves on a shared backend reaches the next client of
 * that backend. One pool of ONE backend, so the next client always lands where the previous one was (the
 * pid is checked). Bob is the hostile user of the shared account, alice the next client. Each item of the
 * README's table: refused with 0A000 (named: transaction pooling), or kept for its own client only, and in
 * both cases reset or checked at release (hidden in a DO block, where the proxy cannot see it).
 */
import { connect } from 'node:net';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cancelRequest } from '../../src/protocol/client-messages.js';
import { runDbInit } from '../../src/sql/db-init.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs, type TokenSet } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';
import { TX_LIMITS } from '../support/all-on-writer.js';
import { connectClient, endAll } from '../support/proxy-clients.js';

let stack: ProxyStack;
const tokens: Record<string, TokenSet> = {};
const open = new Set<pg.Client>();

const ONE_BACKEND = {
  role_mapping: [
    { role: 'pg_writer', account: 'app_writer' },
    { role: 'pg_reader', account: 'app_writer' },
  ],
  limits: TX_LIMITS,
};

beforeAll(async () => {
  stack = await startProxyStack();
  await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: () => {} });
  for (const u of ['alice', 'bob']) tokens[u] = await loginAs(stack.idp.provider, u);
  await stack.startProxy({ ...ONE_BACKEND, databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool: { mode: 'transaction', size: 1 } } } });
});

afterEach(() => endAll(open));

afterAll(async () => {
  await stack?.stop();
});

function connectAs(username: 'alice' | 'bob'): Promise<pg.Client> {
  return connectClient(stack, `${username}@example.com`, tokens[username]!.accessToken, open);
}

async function one<T = unknown>(c: pg.Client, sql: string, values: unknown[] = []): Promise<T> {
  const r = await c.query(sql, values);
  return Object.values(r.rows[0] as Record<string, unknown>)[0] as T;
}

async function sqlstate(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return { code: (e as { code: string }).code, message: (e as Error).message };
  }
  throw new Error('expected an error');
}

const pidOf = (c: pg.Client) => one<number>(c, 'select pg_backend_pid()');

/** Alice's view of the backend bob just used: her identity, and the state bob might have left. */
async function aliceAfter(bobPid: number): Promise<pg.Client> {
  const alice = await connectAs('alice');
  expect(await pidOf(alice)).toBe(bobPid);
  expect(await one(alice, 'select gprxy.user_id()')).toBe('auth0|alice0001');
  expect(await one(alice, `select current_setting('app.user_id')`)).toBe('auth0|alice0001');
  expect(await one(alice, 'select current_user')).toBe('app_writer');
  return alice;
}

describe('transaction pooling: session state never reaches the next client', () => {
  it('session SET and set_config(…, false) are kept for their client only', async () => {
    const bob = await connectAs('bob');
    const pid = await pidOf(bob);
    await bob.query(`set work_mem = '7MB'`);
    await bob.query(`select set_config('app.color', 'red', false)`);
    await bob.query(`select set_config('app.user_id', 'auth0|alice0001', false)`);
    await bob.query(`set statement_timeout = '1ms'`); // would break the next client's statements
    await bob.query(`reset statement_timeout`);
    // Kept for bob, in his next transactions.
    expect(await one(bob, `select current_setting('work_mem')`)).toBe('7MB');
    expect(await one(bob, `select current_setting('app.color')`)).toBe('red');
    expect(await one(bob, `select current_setting('statement_timeout')`)).toBe('0');
    // The plain identity settings are the proxy's: set again for every transaction.
    expect(await one(bob, `select current_setting('app.user_id')`)).toBe('auth0|bob00002');
    expect(await one(bob, 'select gprxy.user_id()')).toBe('auth0|bob00002');
    const alice = await aliceAfter(pid);
    expect(await one(alice, `select current_setting('work_mem')`)).toBe('4MB');
    expect(await one(alice, `select current_setting('app.color', true)`)).toBeFalsy();
    // A rolled-back SET is not kept.
    await bob.query('begin');
    await bob.query(`set work_mem = '9MB'`);
    await bob.query('rollback');
    expect(await one(bob, `select current_setting('work_mem')`)).toBe('7MB');
    await bob.query('reset all');
    expect(await one(bob, `select current_setting('work_mem')`)).toBe('4MB');
  });

  it("a user's own saved context, set again later, is only ever their own identity; a planted one is overwritten", async () => {
    const bob = await connectAs('bob');
    const pid = await pidOf(bob);
    const saved = await one<string>(bob, `select current_setting('gprxy.context')`);
    expect(saved).toMatch(/^[\w-]+\.[\w-]{43}$/);
    // Bob sets his saved context again at session level, in a later transaction: it is his own anyway.
    await bob.query(`select set_config('gprxy.context', $1, false)`, [saved]);
    await bob.query('begin');
    await bob.query(`set gprxy.context = 'forged.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'`);
    expect(await one(bob, 'select gprxy.user_id()')).toBeNull();
    await bob.query('commit');
    expect(await one(bob, 'select gprxy.user_id()')).toBe('auth0|bob00002');
    const alice = await aliceAfter(pid);
    expect(await one(alice, `select current_setting('gprxy.context') = $1`, [saved])).toBe(false);
    // Alice's context, replayed by bob on the same backend, would be alice: he never gets to see it.
    await alice.end();
    open.delete(alice);
  });

  it('SET ROLE and SET SESSION AUTHORIZATION are refused; SET LOCAL ROLE and RESET ROLE inside a transaction work', async () => {
    const bob = await connectAs('bob');
    const pid = await pidOf(bob);
    for (const sql of ['set role app_reader', 'set session role none', 'set session authorization app_reader', `select 1; set "role" = 'x'`]) {
      const e = await sqlstate(bob.query(sql));
      expect(e.code).toBe('0A000');
      expect(e.message).toMatch(/transaction pooling/);
    }
    await stack.cluster.query('GRANT app_reader TO app_writer');
    try {
      await bob.query('begin');
      await bob.query('set local role app_reader');
      expect(await one(bob, 'select current_user')).toBe('app_reader');
      await bob.query('reset role');
      expect(await one(bob, 'select current_user')).toBe('app_writer');
      await bob.query('set local role app_reader');
      await bob.query('commit');
      expect(await one(bob, 'select current_user')).toBe('app_writer');
      // Hidden where the proxy cannot see it: the release resets it.
      await bob.query(`do $$ begin execute 'set role app_reader'; end $$`);
      await aliceAfter(pid);
    } finally {
      await stack.cluster.query('REVOKE app_reader FROM app_writer');
    }
  });

  it('a refused statement inside a transaction fails it as an error would', async () => {
    const bob = await connectAs('bob');
    await bob.query('begin');
    expect((await sqlstate(bob.query('listen chan'))).code).toBe('0A000');
    expect((await sqlstate(bob.query('select 1'))).code).toBe('25P02');
    await bob.query('rollback');
    expect(await one(bob, 'select 2')).toBe(2);
  });

  it('LISTEN, WITH HOLD cursors, session advisory locks, SQL PREPARE/EXECUTE are refused; named statements work (txprep)', async () => {
    const bob = await connectAs('bob');
    const cases = [
      'listen chan',
      'declare c cursor with hold for select 1',
      'select pg_advisory_lock(42)',
      'select pg_try_advisory_lock_shared(1, 2)',
      'prepare p as select 1',
      'execute p',
    ];
    for (const sql of cases) {
      const e = await sqlstate(bob.query(sql));
      expect([sql, e.code]).toEqual([sql, '0A000']);
      expect(e.message).toMatch(/transaction pooling/);
    }
    // DEALLOCATE of a name the client never prepared: PostgreSQL's own answer (txprep-conformance covers the rest).
    expect((await sqlstate(bob.query('deallocate p'))).code).toBe('26000');
    expect((await bob.query({ name: 'stmt1', text: 'select 1 as n' })).rows[0].n).toBe(1);
    expect(await one(bob, 'select $1::int', [5])).toBe(5);
    await bob.query('deallocate all');
    // Transaction-scoped alternatives work.
    await bob.query('begin');
    expect(await one(bob, 'select pg_try_advisory_xact_lock(42)')).toBe(true);
    await bob.query('declare c cursor for select 1');
    await bob.query('commit');
  });

  it('what the proxy cannot see (a DO block) is reset at release: LISTEN, advisory locks, cursors', async () => {
    const bob = await connectAs('bob');
    const pid = await pidOf(bob);
    await bob.query(`do $$ begin perform pg_advisory_lock(4242); execute 'listen hidden'; end $$`);
    const alice = await aliceAfter(pid);
    expect(await one(alice, `select count(*)::int from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()`)).toBe(0);
    expect(await one(alice, 'select count(*)::int from pg_listening_channels()')).toBe(0);
    expect(await one(alice, 'select count(*)::int from pg_cursors')).toBe(0);
  });

  it('temporary tables are refused, except ON COMMIT DROP; one hidden in a DO block gets its backend closed', async () => {
    const bob = await connectAs('bob');
    for (const sql of ['create temp table t1 (x int)', 'create temporary table t2 as select 1', 'select 1 into temp t3', 'create table pg_temp.t4 (x int)', 'create function pg_temp.f() returns int language sql as $$select 1$$']) {
      expect([sql, (await sqlstate(bob.query(sql))).code]).toEqual([sql, '0A000']);
    }
    await bob.query('begin');
    await bob.query('create temp table scratch (x int) on commit drop');
    await bob.query('insert into scratch values (1)');
    await bob.query('commit');
    const pid = await pidOf(bob);
    await bob.query(`do $$ begin execute 'create temp table hidden (x int)'; end $$`);
    await stack.logs.waitFor((l) => l.event === 'backend_dirty' && l.pid === pid);
    const alice = await connectAs('alice');
    expect(await pidOf(alice)).not.toBe(pid);
    expect(await one(alice, `select count(*)::int from pg_class where relname = 'hidden'`)).toBe(0);
    expect(await one(alice, 'select gprxy.user_id()')).toBe('auth0|alice0001');
  });

  it('a waiting client sends the release reset with its first messages; a dirty backend ends before running any of them', async () => {
    const pool = () => stack.proxy.pools.stats()['mydb/app_writer']!;
    const bob = await connectAs('bob');
    const pid = await pidOf(bob);
    // Alice queues for the one backend while bob is inside a transaction: she gets it without a reset round
    // trip in between (her relay writes the reset, her identity and her query at once), and nothing of bob's.
    await bob.query('begin');
    await bob.query(`select set_config('app.color', 'blue', false)`);
    await bob.query(`do $$ begin perform pg_advisory_lock(77); end $$`);
    const alice = await connectAs('alice');
    const seen = alice.query(`select pg_backend_pid() as pid, gprxy.user_id() as sub, current_setting('app.color', true) as color, (select count(*)::int from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()) as locks`);
    await waitUntil(() => pool().waiting === 1);
    const pipelined = pool().pipelinedResets;
    await bob.query('commit');
    const row = (await seen).rows[0] as { pid: number; sub: string; color: string | null; locks: number };
    expect(row).toMatchObject({ pid, sub: 'auth0|alice0001', locks: 0 });
    expect(row.color).toBeFalsy();
    expect(pool().pipelinedResets).toBe(pipelined + 1);
    // A temporary table hidden in a DO block: the backend ends itself in the reset, before alice's query runs
    // (her session ends with it); she never sees the table, and the next backend is a new one.
    await bob.query('begin');
    await bob.query(`do $$ begin execute 'create temp table planted (x int)'; end $$`);
    const planted = alice.query(`select count(*)::int as n from pg_class where relname = 'planted'`).then(
      (r) => r.rows[0] as unknown,
      (e: unknown) => e,
    );
    await waitUntil(() => pool().waiting === 1);
    await bob.query('commit');
    expect(await planted).toBeInstanceOf(Error);
    await stack.logs.waitFor((l) => l.event === 'backend_dirty' && l.pid === pid);
    await bob.end();
    open.delete(bob);
    const next = await connectAs('alice');
    expect(await pidOf(next)).not.toBe(pid);
    expect(await one(next, `select count(*)::int from pg_class where relname = 'planted'`)).toBe(0);
  });

  it('a client that leaves inside a transaction: the backend is rolled back and reused; mid-query: drained, not reused', async () => {
    const bob = await connectAs('bob');
    const pid = await pidOf(bob);
    await bob.query('begin');
    await bob.query(`insert into public.notes (body) values ('never committed')`).catch(() => undefined);
    await bob.query(`select set_config('app.color', 'blue', true)`);
    open.delete(bob);
    await bob.end();
    const alice = await aliceAfter(pid);
    expect(await one(alice, 'select pg_current_xact_id_if_assigned() is null')).toBe(true);
    expect((await stack.cluster.query(`select count(*)::int as n from pg_stat_activity where pid = $1 and state like 'idle in%'`, [pid])).rows[0]!.n).toBe(0);
    await alice.end();
    open.delete(alice);

    const sleeper = await connectAs('bob');
    const sleeperPid = await pidOf(sleeper);
    void sleeper.query('select pg_sleep(30)').catch(() => undefined);
    await waitUntil(async () => (await stack.cluster.query(`select count(*)::int as n from pg_stat_activity where pid = $1 and state = 'active'`, [sleeperPid])).rows[0]!.n === 1);
    (sleeper as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    open.delete(sleeper);
    const next = await connectAs('alice');
    expect(await one(next, 'select gprxy.user_id()')).toBe('auth0|alice0001');
    expect(await pidOf(next)).not.toBe(sleeperPid);
  });

  it('a cancel reaches the backend running the query, and nothing once the client is between transactions', async () => {
    const bob = await connectAs('bob') as pg.Client & { processID: number; secretKey: number };
    const cancel = async () => {
      const key = Buffer.alloc(4);
      key.writeInt32BE(bob.secretKey);
      const s = connect(stack.port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      s.end(cancelRequest(bob.processID, key));
      await new Promise((r) => s.once('close', r));
    };
    const pid = await pidOf(bob);
    const running = sqlstate(bob.query('select pg_sleep(30)'));
    await waitUntil(async () => (await stack.cluster.query(`select count(*)::int as n from pg_stat_activity where pid = $1 and state = 'active'`, [pid])).rows[0]!.n === 1);
    const started = Date.now();
    await cancel();
    expect((await running).code).toBe('57014');
    expect(Date.now() - started).toBeLessThan(5_000);
    // Between transactions bob holds no backend: his cancel must not hit alice's statement on it.
    const alice = await connectAs('alice');
    const alicePid = await pidOf(alice);
    // Long enough for the poll below to see it running on a loaded machine (0.5 s could pass unseen).
    const hers = alice.query('select pg_sleep(2) as slept');
    await waitUntil(async () => (await stack.cluster.query(`select count(*)::int as n from pg_stat_activity where pid = $1 and state = 'active'`, [alicePid])).rows[0]!.n === 1);
    await cancel();
    expect((await hers).rows[0].slept).toBe('');
  });

  it('a read-only database (default_transaction_read_only = on, as on a hot standby): reads work, the setup and both resets write nothing', async () => {
    const pool = () => stack.proxy.pools.stats()['mydb/app_writer']!;
    // A backend reads the database's settings when it starts: the pool's backend must be a new one.
    const renew = async () => {
      await stack.cluster.query(`select pg_terminate_backend(pid) from pg_stat_activity where usename = 'app_writer'`);
      await waitUntil(() => pool().total === 0);
    };
    await stack.cluster.query('alter database mydb set default_transaction_read_only = on');
    try {
      await renew();
      const bob = await connectAs('bob');
      const WHO = `select gprxy.user_id() as sub, current_setting('transaction_read_only') as ro, pg_current_xact_id_if_assigned() as xid, pg_backend_pid() as pid`;
      const first = (await bob.query(WHO)).rows[0] as { sub: string; ro: string; xid: string | null; pid: number };
      expect(first).toMatchObject({ sub: 'auth0|bob00002', ro: 'on', xid: null });
      expect((await sqlstate(bob.query(`insert into notes (body) values ('x')`))).code).toBe('25006');
      // The reset at release (its own round trip), then the pipelined one (alice waits while bob is in a
      // transaction): the same backend serves both, nothing failed, no xid.
      expect(await one(bob, 'select gprxy.user_id()')).toBe('auth0|bob00002');
      await bob.query('begin isolation level serializable');
      expect(await one(bob, `select current_setting('transaction_isolation')`)).toBe('serializable');
      const alice = await connectAs('alice');
      const seen = alice.query(WHO);
      await waitUntil(() => pool().waiting === 1);
      const pipelined = pool().pipelinedResets;
      await bob.query('commit');
      expect((await seen).rows[0]).toMatchObject({ sub: 'auth0|alice0001', ro: 'on', xid: null, pid: first.pid });
      expect(pool().pipelinedResets).toBe(pipelined + 1);
      expect(await pidOf(bob)).toBe(first.pid);
    } finally {
      await stack.cluster.query('alter database mydb reset default_transaction_read_only');
      await renew();
    }
  });
});
