import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDbInit } from '../../src/sql/db-init.js';
import { MULTITENANT_EXAMPLE_SQL } from '../../src/sql/example.js';
import { CONTEXT_SECRET, startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs, type TokenSet } from '../support/tokens.js';
import { BOB, backendOf, contextFor, signRaw } from './support.js';

let stack: ProxyStack;
const tokens: Record<string, TokenSet> = {};
const open: pg.Client[] = [];

beforeAll(async () => {
  stack = await startProxyStack();
  await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: () => {} });
  await stack.cluster.query(MULTITENANT_EXAMPLE_SQL, [], 'mydb');
  for (const u of ['alice', 'bob', 'sathwick']) tokens[u] = await loginAs(stack.idp.provider, u);
});

afterAll(async () => {
  await Promise.all(open.map((c) => c.end().catch(() => {})));
  await stack?.stop();
});

async function connectAs(username: string, applicationName = 'rls-test'): Promise<pg.Client> {
  const c = new pg.Client({
    host: '127.0.0.1',
    port: stack.port,
    user: `${username}@example.com`,
    password: tokens[username]!.accessToken,
    database: 'mydb',
    ssl: stack.ssl,
    application_name: applicationName,
  });
  await c.connect();
  open.push(c);
  return c;
}

/** Every tenant whose rows this session can see, in either table. */
async function visibleTenants(c: pg.Client): Promise<string[]> {
  const r = await c.query('select distinct tenant_id from (select tenant_id from public.posts union all select tenant_id from public.users) t order by 1');
  return r.rows.map((row) => row.tenant_id as string);
}

const OWN = { alice: 'tenant-a', bob: 'tenant-b' } as const;

/** After an attack, the session sees its own tenant at most: never another one. */
async function expectNoOtherTenant(c: pg.Client, who: keyof typeof OWN): Promise<void> {
  const seen = await visibleTenants(c);
  expect(seen.filter((t) => t !== OWN[who])).toEqual([]);
}

describe('row-level security through the proxy, with the example schema', () => {
  it('alice sees only tenant A, bob only tenant B, sathwick (admin) everything', async () => {
    const [alice, bob, sathwick] = [await connectAs('alice'), await connectAs('bob'), await connectAs('sathwick')];
    expect(await visibleTenants(alice)).toEqual(['tenant-a']);
    expect(await visibleTenants(bob)).toEqual(['tenant-b']);
    expect(await visibleTenants(sathwick)).toEqual(['tenant-a', 'tenant-b']);
    expect((await alice.query('select count(*)::int as n from posts')).rows[0].n).toBe(2);
    expect((await bob.query('select title from posts order by title')).rows.map((r) => r.title)).toEqual(['Tenant B budget', 'Tenant B launch']);
    expect((await sathwick.query('select count(*)::int as n from posts')).rows[0].n).toBe(4);
    const who = await alice.query('select gprxy.user_id() as u, gprxy.tenant_id() as t, gprxy.email() as e, gprxy.roles() as r, current_user as account');
    expect(who.rows[0]).toEqual({ u: 'auth0|alice0001', t: 'tenant-a', e: 'alice@example.com', r: ['pg_writer'], account: 'app_writer' });
    await Promise.all([alice.end(), bob.end(), sathwick.end()]);
  });

  it('writers change only their own rows in their own tenant; readers cannot write; the admin can', async () => {
    const alice = await connectAs('alice');
    const inserted = await alice.query(`insert into posts (title) values ('alice via proxy') returning tenant_id, owner_id`);
    expect(inserted.rows[0]).toEqual({ tenant_id: 'tenant-a', owner_id: 'auth0|alice0001' });
    await expect(alice.query(`insert into posts (title, tenant_id) values ('into B', 'tenant-b')`)).rejects.toMatchObject({ code: '42501' });
    await expect(alice.query(`insert into posts (title, owner_id) values ('as sathwick', 'auth0|sathwick0003')`)).rejects.toMatchObject({ code: '42501' });
    expect((await alice.query(`update posts set title = 'mine' where owner_id = 'auth0|alice0001' and title = 'Tenant A roadmap'`)).rowCount).toBe(1);
    expect((await alice.query(`update posts set title = 'hijacked' where owner_id <> 'auth0|alice0001'`)).rowCount).toBe(0);
    expect((await alice.query(`delete from posts where owner_id = 'auth0|sathwick0003'`)).rowCount).toBe(0);
    expect((await alice.query(`update users set display_name = 'Alice W.' where id = 'auth0|alice0001'`)).rowCount).toBe(1);
    expect((await alice.query(`update users set display_name = 'x' where id = 'auth0|sathwick0003'`)).rowCount).toBe(0);
    await alice.query(`delete from posts where title = 'alice via proxy'`);
    await alice.query(`update posts set title = 'Tenant A roadmap' where title = 'mine'`);
    await alice.end();

    const bob = await connectAs('bob');
    await expect(bob.query(`insert into posts (title) values ('bob')`)).rejects.toMatchObject({ code: '42501' });
    await bob.end();

    const sathwick = await connectAs('sathwick');
    expect((await sathwick.query(`update posts set body = body where tenant_id = 'tenant-b'`)).rowCount).toBe(2);
    await sathwick.end();
  });

  describe('attacks by the session that holds the service account (alice as app_writer, bob as app_reader)', () => {
    for (const who of ['alice', 'bob'] as const) {
      it(`${who}: forged, edited and re-signed-with-a-guess contexts, by SET and by set_config, give nothing`, async () => {
        const c = await connectAs(who);
        const own = (await c.query(`select current_setting('gprxy.context') as v`)).rows[0].v as string;
        const [body, sig] = own.split('.') as [string, string];
        const payload = JSON.parse(Buffer.from(body, 'base64url').toString()) as Record<string, unknown>;
        const otherTenant = who === 'alice' ? 'tenant-b' : 'tenant-a';
        const edited = Buffer.from(JSON.stringify({ ...payload, tenant: otherTenant, roles: ['pg_admin'] })).toString('base64url');
        const attempts = [
          `${edited}.${sig}`, // edited payload, old signature
          signRaw('guessed-secret-0123456789abcdefghijkl', { ...payload, tenant: otherTenant }), // signed with a wrong key
          `${edited}.${'A'.repeat(43)}`,
          edited,
          'tenant-b',
        ];
        for (const forged of attempts) {
          await c.query(`select set_config('gprxy.context', $1, false)`, [forged]);
          await expectNoOtherTenant(c, who);
          expect(await visibleTenants(c)).toEqual([]);
          await c.query(`set gprxy.context = '${forged.replace(/'/g, "''")}'`);
          expect(await visibleTenants(c)).toEqual([]);
        }
        // Plain settings are as forgeable as ever, and change nothing here.
        await c.query(`set app.tenant_id = '${otherTenant}'; set app.user_id = 'auth0|bob00002'; set app.roles = 'pg_admin'`);
        expect(await visibleTenants(c)).toEqual([]);
        await c.end();
      });

      it(`${who}: a valid context replayed on another backend gives nothing`, async () => {
        const a = await connectAs(who);
        const b = await connectAs(who);
        const backendA = await backendOf(a);
        const backendB = await backendOf(b); // before B's context is replaced: it carries B's checkout epoch
        expect(backendA.pid).not.toBe(backendB.pid);
        // 1. the proxy's own context for session A, copied to session B
        const fromA = (await a.query(`select current_setting('gprxy.context') as v`)).rows[0].v as string;
        await b.query(`select set_config('gprxy.context', $1, false)`, [fromA]);
        expect(await visibleTenants(b)).toEqual([]);
        // 2. a context for another tenant, correctly signed with the real secret, but for backend A
        await b.query(`select set_config('gprxy.context', $1, false)`, [contextFor(CONTEXT_SECRET, { ...BOB, tenant: 'tenant-b', roles: ['pg_admin'] }, backendA)]);
        await expectNoOtherTenant(b, who);
        expect(await visibleTenants(b)).toEqual([]);
        // Control: the same context built for B's own backend is accepted, so the refusal above is the binding.
        await b.query(`select set_config('gprxy.context', $1, false)`, [contextFor(CONTEXT_SECRET, BOB, backendB)]);
        expect(await visibleTenants(b)).toEqual(['tenant-b']);
        // And A, untouched, still sees its own tenant.
        expect(await visibleTenants(a)).toEqual([OWN[who]]);
        await Promise.all([a.end(), b.end()]);
      });

      it(`${who}: RESET ALL, SET ... TO DEFAULT, DISCARD ALL and SET ROLE give nothing more`, async () => {
        const c = await connectAs(who);
        expect(await visibleTenants(c)).toEqual([OWN[who]]);
        const group = who === 'alice' ? 'gprxy_writer' : 'gprxy_reader';
        await c.query(`set role ${group}`);
        expect(await visibleTenants(c)).toEqual([OWN[who]]);
        for (const role of ['app_admin', 'gprxy_admin', 'gprxy_owner', 'postgres']) {
          await expect(c.query(`set role ${role}`)).rejects.toMatchObject({ code: '42501' });
        }
        await c.query('reset role');
        await c.query('set gprxy.context to default');
        expect(await visibleTenants(c)).toEqual([]);
        await c.end();
        for (const reset of ['reset all', 'discard all']) {
          const d = await connectAs(who);
          await d.query(reset);
          expect(await visibleTenants(d)).toEqual([]);
          await d.end();
        }
      });
    }

    it("the context never appears in pg_stat_activity, for another writer or for the superuser", async () => {
      const watcher = await connectAs('alice', 'watcher');
      const fresh = await connectAs('alice', 'fresh-writer');
      // Another user of the account cannot read pg_stat_activity at all after db init (peer isolation).
      await expect(watcher.query('select * from pg_stat_activity')).rejects.toMatchObject({ code: '42501' });
      // The fresh session has run nothing yet: its last statement is the end of the proxy's setup.
      const seen = await stack.cluster.query(`select pid, query from pg_stat_activity where usename = 'app_writer' and application_name like '%fresh-writer'`);
      expect(seen.rows).toHaveLength(1);
      expect(seen.rows[0]!.query).toBe('RESET search_path');
      const asSuperuser = JSON.stringify((await stack.cluster.query('select * from pg_stat_activity')).rows);
      const context = (await fresh.query(`select current_setting('gprxy.context') as v`)).rows[0].v as string;
      expect(context).toMatch(/^[\w-]+\.[\w-]{43}$/);
      for (const text of [asSuperuser]) {
        expect(text).not.toContain(context);
        expect(text).not.toContain(context.split('.')[1]);
      }
      await Promise.all([watcher.end(), fresh.end()]);
    });

    it('functions, operators and pgcrypto look-alikes earlier on the search_path change nothing', async () => {
      // Worst case: the service accounts may create objects (as PostgreSQL 13/14 let everyone in public).
      await stack.cluster.query('create schema evil authorization app_writer; grant create on schema public to app_writer', [], 'mydb');
      const c = await connectAs('alice');
      try {
        await c.query(`
          grant usage on schema evil to public;
          create function evil.user_id() returns text language sql as $$ select 'auth0|bob00002' $$;
          create function evil.tenant_id() returns text language sql as $$ select 'tenant-b' $$;
          create function evil.has_role(text) returns boolean language sql as $$ select true $$;
          create function evil.claims() returns jsonb language sql as $$ select '{"sub":"auth0|bob00002","tenant":"tenant-b"}'::jsonb $$;
          create function evil.current_setting(text, boolean) returns text language sql as $$ select 'forged' $$;
          create function evil.pg_backend_pid() returns int language sql as $$ select 1 $$;
          create function evil.split_part(text, text, int) returns text language sql as $$ select 'x' $$;
          create function evil.hmac(bytea, bytea, text) returns bytea language sql as $$ select '\\x00'::bytea $$;
          create function public.hmac(bytea, bytea, character varying) returns bytea language sql as $$ select '\\x00'::bytea $$;
          create function evil.always_true(text, text) returns boolean language sql as $$ select true $$;
          create operator evil.= (leftarg = text, rightarg = text, function = evil.always_true);
          create function evil.ne_false(text, text) returns boolean language sql as $$ select false $$;
          create function evil.field(jsonb, text) returns text language sql as $$ select 'tenant-b' $$;
          create operator evil.->> (leftarg = jsonb, rightarg = text, function = evil.field);
          create operator evil.<> (leftarg = text, rightarg = text, function = evil.ne_false);
        `);
        const me = await backendOf(c); // before the search_path games: the test's own query is not pinned
        for (const path of ['evil, public', 'evil, pg_catalog, public', 'evil, pg_temp, pg_catalog, public']) {
          await c.query(`set search_path = ${path}`);
          expect(await visibleTenants(c)).toEqual(['tenant-a']);
          expect((await c.query('select gprxy.tenant_id() as t, tenant_id() as shadow')).rows[0]).toEqual({ t: 'tenant-a', shadow: 'tenant-b' });
        }
        // A context right in every way but its key (this backend, not expired, tenant B), with = shadowed to
        // always match: only the pinned search_path keeps the signature check honest.
        const forged = contextFor('wrong-secret-0123456789abcdefghijklmn', BOB, me);
        await c.query(`select pg_catalog.set_config('gprxy.context', $1, false)`, [forged]);
        expect(await visibleTenants(c)).toEqual([]);
        expect((await c.query('select gprxy.claims() as c')).rows[0].c).toBeNull();
        await expect(c.query('create function gprxy.tenant_id2() returns text language sql as $$ select 1::text $$')).rejects.toMatchObject({ code: '42501' });
      } finally {
        await c.end();
        await stack.cluster.query('drop schema evil cascade; drop function public.hmac(bytea, bytea, character varying); revoke create on schema public from app_writer', [], 'mydb');
      }
    });

    it('an expired context (right secret, right backend) gives nothing', async () => {
      const c = await connectAs('bob');
      await c.query(`select set_config('gprxy.context', $1, false)`, [contextFor(CONTEXT_SECRET, BOB, await backendOf(c), Date.now() - 1000)]);
      expect(await visibleTenants(c)).toEqual([]);
      await c.end();
    });

    it('no proxied user can read the secret table (42501)', async () => {
      for (const u of ['alice', 'bob', 'sathwick']) {
        const c = await connectAs(u);
        await expect(c.query('select * from gprxy.context_secret')).rejects.toMatchObject({ code: '42501' });
        await c.end();
      }
    });
  });
});
