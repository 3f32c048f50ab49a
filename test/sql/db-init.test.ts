import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DbInitError } from '../../src/sql/errors.js';
import { runDbInit, type DbInitResult, type RunDbInitOptions } from '../../src/sql/db-init.js';
import { scramVerifier } from '../../src/sql/scram.js';
import { startTestPostgres, type Cluster } from '../support/postgres.js';
import { ALICE, backendOf, beginSession, catalogDump, connect, contextFor, PASSWORDS, SECRET_1, SECRET_2, signRaw, testConfig } from './support.js';

let cluster: Cluster;

beforeAll(async () => {
  // track_functions lets the cost test count how often gprxy.claims() runs.
  cluster = await startTestPostgres({ settings: { track_functions: 'all' } });
  await cluster.createDatabase('mydb');
});

afterAll(async () => {
  await cluster?.stop();
});

async function init(config = testConfig(cluster), options: Partial<RunDbInitOptions> = {}): Promise<{ results: DbInitResult[]; output: string }> {
  let output = '';
  const results = await runDbInit(config, { adminUrl: cluster.url(), out: (t) => (output += `${t}\n`), ...options });
  return { results, output };
}

async function claimsWith(client: pg.Client, context: string | null): Promise<Record<string, unknown> | null> {
  await client.query(`select set_config('gprxy.context', $1, false)`, [context ?? '']);
  return (await client.query('select gprxy.claims() as c')).rows[0].c;
}

describe('gprxy db init against a real server', () => {
  it('--print with an admin URL reads the catalogs and changes nothing', async () => {
    const before = await catalogDump(cluster);
    const { output, results } = await init(undefined, { print: true });
    expect(results).toEqual([]);
    expect(output).toContain('CREATE OR REPLACE FUNCTION gprxy.claims()');
    expect(output).toContain(`ALTER ROLE "app_writer" PASSWORD 'SCRAM-SHA-256$4096:`);
    for (const secret of [...Object.values(PASSWORDS), SECRET_1]) expect(output).not.toContain(secret);
    expect(await catalogDump(cluster)).toEqual(before);
    expect((await cluster.query(`select count(*)::int as n from pg_roles where rolname like 'app_%' or rolname like 'gprxy_%'`)).rows[0]!.n).toBe(0);
  });

  it('creates the accounts, groups, schema gprxy and the secret in one run; the accounts log in with the config passwords', async () => {
    const { results, output } = await init();
    expect(results).toHaveLength(1);
    expect(results[0]!.changed).toEqual(expect.arrayContaining(['roles', 'memberships', 'routines', 'schemas', 'secret']));
    expect(output).toContain('account app_writer created (writer)');
    expect(output).toContain('context secret installed');
    const members = await cluster.query(
      `select u.rolname as account, g.rolname as grp from pg_auth_members m join pg_roles g on g.oid = m.roleid join pg_roles u on u.oid = m.member where u.rolname like 'app_%' order by 1`,
    );
    expect(members.rows).toEqual([
      { account: 'app_admin', grp: 'gprxy_admin' },
      { account: 'app_reader', grp: 'gprxy_reader' },
      { account: 'app_writer', grp: 'gprxy_writer' },
    ]);
    const roles = await cluster.query(`select rolname, rolcanlogin, rolsuper, rolbypassrls, rolpassword like 'SCRAM-SHA-256$4096:%' as scram from pg_authid where rolname like 'app_%' or rolname like 'gprxy_%' order by 1`);
    expect(roles.rows.map((r) => [r.rolname, r.rolcanlogin, r.rolsuper || r.rolbypassrls])).toEqual([
      ['app_admin', true, false],
      ['app_reader', true, false],
      ['app_writer', true, false],
      ['gprxy_admin', false, false],
      ['gprxy_owner', false, false],
      ['gprxy_reader', false, false],
      ['gprxy_writer', false, false],
    ]);
    expect(roles.rows.filter((r) => r.rolname.startsWith('app_')).every((r) => r.scram)).toBe(true);
    for (const [user, password] of Object.entries(PASSWORDS)) {
      const c = await connect(cluster, user, password);
      expect((await c.query('select current_user as u')).rows[0].u).toBe(user);
      await c.end();
    }
    const fns = await cluster.query(
      `select proname, prosecdef, provolatile, proparallel, proconfig::text, proowner::regrole::text as owner from pg_proc where pronamespace = 'gprxy'::regnamespace order by 1`,
      [],
      'mydb',
    );
    expect(fns.rows.map((r) => r.proname)).toEqual(['begin_session', 'claims', 'email', 'has_role', 'hmac_sha256', 'issuer', 'prepared_statements_state', 'roles', 'tenant_id', 'transaction_contexts', 'user_id']);
    for (const f of fns.rows) {
      expect(f.owner).toBe('gprxy_owner');
      expect(f.proconfig).toBe('{"search_path=pg_catalog, pg_temp"}');
      if (f.proname === 'begin_session') expect([f.prosecdef, f.provolatile, f.proparallel]).toEqual([true, 'v', 'u']);
      else if (f.proname === 'transaction_contexts') expect([f.prosecdef, f.provolatile, f.proparallel]).toEqual([false, 'i', 's']);
      else if (f.proname === 'prepared_statements_state') expect([f.prosecdef, f.provolatile, f.proparallel]).toEqual([true, 'v', 'r']);
      else if (f.proname !== 'hmac_sha256') expect([f.prosecdef, f.provolatile, f.proparallel]).toEqual([true, 's', 'r']);
    }
    const epochTable = await cluster.query(`select relowner::regrole::text as owner, relpersistence, relacl::text as acl from pg_class where oid = 'gprxy.backend_epoch'::regclass`, [], 'mydb');
    expect(epochTable.rows[0]).toMatchObject({ owner: 'gprxy_owner', relpersistence: 'u' });
    expect(epochTable.rows[0]!.acl).toMatch(/^\{gprxy_owner=\w+\/gprxy_owner\}$/); // the owner only
    const beginAcl = (await cluster.query(`select proacl::text as acl from pg_proc where oid = 'gprxy.begin_session(bigint)'::regprocedure`, [], 'mydb')).rows[0]!.acl as string;
    expect(beginAcl).not.toMatch(/(^|[{,])=X/); // not PUBLIC
    for (const group of ['gprxy_admin', 'gprxy_writer', 'gprxy_reader']) expect(beginAcl).toContain(`${group}=X/gprxy_owner`);
  });

  it('a second run succeeds and changes nothing', async () => {
    const before = await catalogDump(cluster);
    const { results, output } = await init();
    expect(results[0]!.changed).toEqual([]);
    expect(output.split('\n')[0]).toBe('mydb: up to date, nothing changed');
    expect(await catalogDump(cluster)).toEqual(before);
  });

  it('service accounts cannot read the secret or the epochs, or call the HMAC helper (42501)', async () => {
    for (const [user, password] of Object.entries(PASSWORDS)) {
      const c = await connect(cluster, user, password);
      try {
        await expect(c.query('select * from gprxy.context_secret')).rejects.toMatchObject({ code: '42501' });
        await expect(c.query('select * from gprxy.backend_epoch')).rejects.toMatchObject({ code: '42501' });
        await expect(c.query(`insert into gprxy.backend_epoch values (pg_backend_pid(), 'x', 1)`)).rejects.toMatchObject({ code: '42501' });
        await expect(c.query('delete from gprxy.backend_epoch')).rejects.toMatchObject({ code: '42501' });
        await expect(c.query(`select gprxy.hmac_sha256('x', 'y')`)).rejects.toMatchObject({ code: '42501' });
        await expect(c.query('create or replace function gprxy.user_id() returns text language sql as $$ select 1::text $$')).rejects.toMatchObject({ code: '42501' });
        await expect(c.query('create function gprxy.extra() returns int language sql as $$ select 1 $$')).rejects.toMatchObject({ code: '42501' });
      } finally {
        await c.end();
      }
    }
  });

  it('claims() accepts only a context signed with the secret, for this backend, not expired', async () => {
    const c = await connect(cluster, 'app_writer', PASSWORDS.app_writer);
    const other = await connect(cluster, 'app_writer', PASSWORDS.app_writer);
    try {
      const me = await beginSession(c);
      const valid = contextFor(SECRET_1, ALICE, me);
      expect(await claimsWith(c, valid)).toMatchObject({ sub: ALICE.sub, tenant: 'tenant-a', roles: ['pg_writer'], pid: me.pid, bst: me.startMicros, epoch: me.epoch });
      const helpers = await c.query(`select gprxy.user_id() as u, gprxy.tenant_id() as t, gprxy.email() as e, gprxy.roles() as r, gprxy.has_role('pg_writer') as w, gprxy.has_role('pg_admin') as a`);
      expect(helpers.rows[0]).toEqual({ u: ALICE.sub, t: 'tenant-a', e: 'alice@example.com', r: ['pg_writer'], w: true, a: false });

      const [body, sig] = valid.split('.') as [string, string];
      const edited = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body, 'base64url').toString()), tenant: 'tenant-b' })).toString('base64url');
      expect(await claimsWith(c, `${edited}.${sig}`)).toBeNull();
      expect(await claimsWith(c, contextFor('not-the-secret-0123456789abcdefghij', ALICE, me))).toBeNull();
      expect(await claimsWith(c, contextFor(SECRET_1, ALICE, await beginSession(other)))).toBeNull();
      expect(await claimsWith(c, contextFor(SECRET_1, ALICE, { ...me, startMicros: String(BigInt(me.startMicros) - 1n) }))).toBeNull();
      // An earlier or later checkout of this backend, or none at all.
      expect(await claimsWith(c, contextFor(SECRET_1, ALICE, { ...me, epoch: me.epoch - 1 }))).toBeNull();
      expect(await claimsWith(c, contextFor(SECRET_1, ALICE, { ...me, epoch: me.epoch + 1 }))).toBeNull();
      const signed = (await claimsWith(c, valid))!;
      expect(await claimsWith(c, signRaw(SECRET_1, signed))).toEqual(signed); // control for the next line
      expect(await claimsWith(c, signRaw(SECRET_1, { ...signed, epoch: undefined }))).toBeNull();
      expect(await claimsWith(c, contextFor(SECRET_1, ALICE, me, Date.now() - 1000))).toBeNull();
      expect(await claimsWith(c, signRaw(SECRET_1, { sub: ALICE.sub, tenant: 'tenant-a', roles: [], pid: me.pid, bst: me.startMicros }))).toBeNull(); // no exp
      expect(await claimsWith(c, signRaw(SECRET_1, [1, 2]))).toBeNull();
      for (const junk of [null, '', 'x', `${body}.`, `.${sig}`, `${body}.${sig}.x`, `${body}!.${sig}`, 'a'.repeat(20000) + `.${sig}`]) {
        expect(await claimsWith(c, junk)).toBeNull();
      }
      const nulls = await c.query(`select gprxy.user_id() as u, gprxy.tenant_id() as t, gprxy.email() as e, gprxy.roles() as r, gprxy.has_role('pg_writer') as w, not gprxy.has_role('x') as n`);
      expect(nulls.rows[0]).toEqual({ u: null, t: null, e: null, r: null, w: null, n: null });
    } finally {
      await c.end();
      await other.end();
    }
  });

  it('begin_session: only a later epoch starts a checkout; a previous backend\'s row with the same pid is replaced', async () => {
    const c = await connect(cluster, 'app_writer', PASSWORDS.app_writer);
    try {
      const fresh = await backendOf(c);
      // No checkout recorded for this backend: even a context right in every other way is NULL.
      await cluster.query('delete from gprxy.backend_epoch where pid = $1', [fresh.pid], 'mydb');
      expect(await claimsWith(c, contextFor(SECRET_1, ALICE, { ...fresh, epoch: 1 }))).toBeNull();

      const me = await beginSession(c);
      const valid = contextFor(SECRET_1, ALICE, me);
      expect((await claimsWith(c, valid))?.sub).toBe(ALICE.sub);
      for (const epoch of [me.epoch, me.epoch - 1, 0]) {
        await expect(c.query('select gprxy.begin_session($1)', [epoch])).rejects.toMatchObject({ code: 'XG001' });
      }
      await expect(c.query('select gprxy.begin_session(null)')).rejects.toMatchObject({ code: '22004' });
      expect((await claimsWith(c, valid))?.sub).toBe(ALICE.sub); // the refusals changed nothing
      // Moving it forward (what a client can do too) ends the old checkout's context.
      await c.query('select gprxy.begin_session($1)', [me.epoch + 1]);
      expect(await claimsWith(c, valid)).toBeNull();
      expect((await claimsWith(c, contextFor(SECRET_1, ALICE, { ...me, epoch: me.epoch + 1 })))?.sub).toBe(ALICE.sub);

      // A row left by an earlier backend with this pid (another start time) does not hold this one back.
      await cluster.query('update gprxy.backend_epoch set bst = $2, epoch = $3 where pid = $1', [me.pid, String(BigInt(me.startMicros) - 5_000_000n), 9e15], 'mydb');
      expect(await claimsWith(c, contextFor(SECRET_1, ALICE, { ...me, epoch: 9e15 }))).toBeNull();
      await c.query('select gprxy.begin_session($1)', [me.epoch + 2]);
      const row = (await cluster.query('select bst, epoch::text from gprxy.backend_epoch where pid = $1', [me.pid], 'mydb')).rows;
      expect(row).toEqual([{ bst: me.startMicros, epoch: String(me.epoch + 2) }]);
    } finally {
      await c.end();
    }
  });

  it('works when called from an application SECURITY DEFINER function (needs pg_read_all_stats for the owner)', async () => {
    await cluster.query(
      `create role app_fn_owner nologin;
       create function public.my_tenant() returns text language sql stable security definer set search_path = pg_catalog as $$ select gprxy.tenant_id() $$;
       alter function public.my_tenant() owner to app_fn_owner;`,
      [],
      'mydb',
    );
    const c = await connect(cluster, 'app_writer', PASSWORDS.app_writer);
    try {
      await c.query(`select set_config('gprxy.context', $1, false)`, [contextFor(SECRET_1, ALICE, await beginSession(c))]);
      expect((await c.query('select public.my_tenant() as t')).rows[0].t).toBe('tenant-a');
      // The reason for the grant: without it, backend_start is hidden from the owner and everything fails closed.
      await cluster.query('revoke pg_read_all_stats from gprxy_owner');
      expect((await c.query('select gprxy.tenant_id() as t')).rows[0].t).toBeNull();
      await cluster.query('grant pg_read_all_stats to gprxy_owner');
      expect((await c.query('select gprxy.tenant_id() as t')).rows[0].t).toBe('tenant-a');
    } finally {
      await c.end();
      await cluster.query('drop function public.my_tenant(); drop role app_fn_owner', [], 'mydb');
    }
  });

  it('(select gprxy.tenant_id()) in a policy verifies once per query, not once per row', async () => {
    await cluster.query(
      `create table cost_probe (id int primary key, tenant text not null);
       insert into cost_probe select i, case when i % 2 = 0 then 'tenant-a' else 'tenant-b' end from generate_series(1, 2000) i;
       alter table cost_probe enable row level security;
       create policy per_query on cost_probe for select using (tenant = (select gprxy.tenant_id()));
       create table cost_probe_row (like cost_probe);
       insert into cost_probe_row select * from cost_probe;
       alter table cost_probe_row enable row level security;
       create policy per_row on cost_probe_row for select using (tenant = gprxy.tenant_id());
       grant select on cost_probe, cost_probe_row to gprxy_writer;`,
      [],
      'mydb',
    );
    const c = await connect(cluster, 'app_writer', PASSWORDS.app_writer);
    try {
      await c.query(`select set_config('gprxy.context', $1, false)`, [contextFor(SECRET_1, ALICE, await beginSession(c))]);
      // Pending function counts are flushed between transactions at most once a second: a delta inside one
      // transaction is exact on every version.
      const counter = async () => (await c.query(`select coalesce(pg_stat_get_xact_function_calls('gprxy.claims()'::regprocedure), 0)::int as n`)).rows[0].n as number;
      const calls = async (sql: string): Promise<{ rows: number; calls: number }> => {
        await c.query('begin');
        const before = await counter();
        const rows = (await c.query(sql)).rows[0].n as number;
        const after = await counter();
        await c.query('commit');
        return { rows, calls: after - before };
      };
      expect(await calls('select count(*)::int as n from cost_probe')).toEqual({ rows: 1000, calls: 1 });
      expect(await calls('select count(*)::int as n from cost_probe where id <= 10')).toEqual({ rows: 5, calls: 1 });
      // The same policy without the sub-select runs the verification for every row: why policies wrap it.
      // (2000 rows scanned, plus one evaluation by the planner's selectivity estimate.)
      const perRow = await calls('select count(*)::int as n from cost_probe_row');
      expect(perRow.rows).toBe(1000);
      expect(perRow.calls).toBeGreaterThanOrEqual(2000);
    } finally {
      await c.end();
      await cluster.query('drop table cost_probe, cost_probe_row', [], 'mydb');
    }
  });

  it('produces the same verifier PostgreSQL computes from a cleartext password (ASCII and SASLprep cases)', async () => {
    for (const [i, password] of ['plain-ascii-pw', 'caf\u00e9 na\u00efve', 'non\u00a0breaking\u00adsoft', '\ufb01ligature\u2168'].entries()) {
      const role = `scram_probe_${i}`;
      await cluster.query(`set password_encryption = 'scram-sha-256'; create role ${role} login password '${password.replace(/'/g, "''")}'`);
      const stored = (await cluster.query('select rolpassword from pg_authid where rolname = $1', [role])).rows[0]!.rolpassword as string;
      const [, iterations, salt] = /^SCRAM-SHA-256\$(\d+):([^$]+)\$/.exec(stored)!;
      expect(scramVerifier(password, { salt: Buffer.from(salt!, 'base64'), iterations: Number(iterations) })).toBe(stored);
      await cluster.query(`drop role ${role}`);
    }
  });

  it('sets a password that changed in the config and leaves the others alone', async () => {
    const config = testConfig(cluster, { accounts: { ...Object.fromEntries(Object.entries(PASSWORDS).map(([k, p]) => [k, { password: p }])), app_reader: { password: 'a-new-reader-password-42' } } });
    const verifier = async (role: string) => (await cluster.query('select rolpassword from pg_authid where rolname = $1', [role])).rows[0]!.rolpassword as string;
    const writerBefore = await verifier('app_writer');
    const { results, output } = await init(config);
    expect(results[0]!.changed).toEqual(['roles']);
    expect(output).toContain('password of app_reader set');
    expect(output).not.toContain('password of app_writer');
    expect(await verifier('app_writer')).toBe(writerBefore);
    const c = await connect(cluster, 'app_reader', 'a-new-reader-password-42');
    await c.end();
    await init(); // back to the shared passwords
  });

  it('rotates the secret: refuses a silent change, accepts old and new during the rotation, drops the old one after', async () => {
    const rotated = testConfig(cluster, { context: { secret: SECRET_2 } });
    const before = await catalogDump(cluster);
    const refused = await init(rotated).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DbInitError);
    expect((refused as DbInitError).code).toBe('secret_mismatch');
    expect((refused as DbInitError).message).not.toContain(SECRET_2);
    expect(await catalogDump(cluster)).toEqual(before);

    const c = await connect(cluster, 'app_writer', PASSWORDS.app_writer);
    try {
      const me = await beginSession(c);
      const signedWith = async (secret: string) => (await claimsWith(c, contextFor(secret, ALICE, me)))?.tenant ?? null;

      const rotation = await init(rotated, { rotateSecret: true });
      expect(rotation.results[0]!.changed).toEqual(['secret']);
      expect(rotation.output).toContain('context secret rotated');
      expect([await signedWith(SECRET_1), await signedWith(SECRET_2)]).toEqual(['tenant-a', 'tenant-a']);

      const again = await init(rotated, { rotateSecret: true });
      expect(again.results[0]!.changed).toEqual([]);
      expect(await signedWith(SECRET_1)).toBe('tenant-a');

      const finish = await init(rotated);
      expect(finish.results[0]!.changed).toEqual(['secret']);
      expect(finish.output).toContain('previous context secret dropped');
      expect([await signedWith(SECRET_1), await signedWith(SECRET_2)]).toEqual([null, 'tenant-a']);

      expect((await init(rotated)).results[0]!.changed).toEqual([]);
      // Back to SECRET_1 for the tests after this one, the same way.
      await init(testConfig(cluster), { rotateSecret: true });
      await init(testConfig(cluster));
      expect([await signedWith(SECRET_1), await signedWith(SECRET_2)]).toEqual(['tenant-a', null]);
    } finally {
      await c.end();
    }
  });

  const psql = ['/usr/lib/postgresql/15/bin/psql', '/usr/bin/psql'].find((p) => existsSync(p));
  it.skipIf(!psql)('the --print output applied with psql gives what db init would: a db init afterwards changes nothing', async () => {
    await cluster.createDatabase('printed');
    const config = testConfig(cluster, { databases: { printed: { host: cluster.host, port: cluster.port } } });
    let sql = '';
    await runDbInit(config, { print: true, out: (t) => (sql += t) });
    const dir = mkdtempSync(join(tmpdir(), 'gprxy-print-'));
    try {
      writeFileSync(join(dir, 'init.sql'), sql);
      const run = () =>
        execFileSync(psql!, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-v', `gprxy_context_secret=${SECRET_1}`, '-f', join(dir, 'init.sql'), cluster.url('printed')], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
      run();
      const c = await connect(cluster, 'app_writer', PASSWORDS.app_writer, 'printed');
      await c.query(`select set_config('gprxy.context', $1, false)`, [contextFor(SECRET_1, ALICE, await beginSession(c))]);
      expect((await c.query('select gprxy.tenant_id() as t')).rows[0].t).toBe('tenant-a');
      await c.end();
      const { results } = await init(config);
      expect(results[0]!.changed).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
