/**
 * identity: per_user, attacker = a user whose role claim the IdP later takes away (DESIGN.md 2.4, issue 12).
 * Group memberships follow the token at each login, but whatever the user left *owned by a group* while in it
 * would keep the group's power after the membership is revoked: a SECURITY DEFINER function owned by
 * gprxy_admin (EXECUTE is PUBLIC's by default), a view owned by it. A per-user role may hold a group's
 * privileges, never leave objects owned by one (db init's event trigger gprxy_no_group_objects).
 */
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DevUser } from '../../src/demo/oidc-provider.js';
import { runDbInit } from '../../src/sql/db-init.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';
import { endAll } from '../support/proxy-clients.js';

let hankRoles: string[] = ['pg_admin'];
const USERS: DevUser[] = [
  {
    username: 'hank',
    password: 'hank-pw',
    sub: 'auth0|hank0011',
    email: 'hank@example.com',
    name: 'Hank',
    get roles() {
      return hankRoles;
    },
    orgId: 'tenant-a',
  },
];

let stack: ProxyStack;
const open = new Set<pg.Client>();

beforeAll(async () => {
  stack = await startProxyStack({ provider: { users: USERS } });
  await stack.startProxy({
    databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', identity: 'per_user', pool: { size: 2 } } },
    provisioning: { admin_url: stack.cluster.url(), secret: 'per-user-group-objects-secret-0123456789' },
  });
  await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: () => {} });
});

afterEach(() => endAll(open));

afterAll(async () => {
  await stack?.stop();
});

async function connect(): Promise<pg.Client> {
  const accessToken = (await loginAs(stack.idp.provider, 'hank')).accessToken;
  const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'hank@example.com', password: accessToken, database: 'mydb', ssl: stack.ssl });
  c.on('error', () => {});
  await c.connect();
  open.add(c);
  return c;
}

const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? String(e));

describe('identity: per_user: nothing a user did while in a group outlives the membership', () => {
  it('an admin cannot leave objects owned by his group (SET ROLE, ALTER ... OWNER TO), so a demotion takes the power away', async () => {
    hankRoles = ['pg_admin'];
    const admin = await connect();
    expect((await admin.query('select current_user as u')).rows[0].u).toBe('hank@example.com');
    // What an admin may do stays: create objects of his own in a schema the admin group may create in.
    expect(await code(admin.query('create table public.hank_notes (body text)'))).toBe('ok');
    expect(await code(admin.query(`create function public.hank_own() returns text language sql as $$ select current_user::text $$`))).toBe('ok');
    // The backdoor: as the group, a SECURITY DEFINER function that runs anything as gprxy_admin later.
    await admin.query('set role gprxy_admin');
    const backdoor = `create function public.backdoor(q text) returns text language plpgsql security definer as $$ begin execute q; return current_user; end $$`;
    expect(await code(admin.query(backdoor))).toBe('42501');
    expect(await code(admin.query('create view public.group_view as select 1 as one'))).toBe('42501');
    await admin.query('reset role');
    expect(await code(admin.query('alter function public.hank_own() owner to gprxy_admin'))).toBe('42501');
    expect(await code(admin.query('alter table public.hank_notes owner to gprxy_admin'))).toBe('42501');
    // Nothing owned by a group (db init's own default privileges for gprxy_admin aside).
    const owned = await stack.cluster.query(
      `select count(*)::int as n from pg_shdepend d join pg_roles r on r.oid = d.refobjid where d.deptype = 'o' and d.classid <> 'pg_default_acl'::regclass and r.rolname in ('gprxy_admin', 'gprxy_writer', 'gprxy_reader', 'gprxy_users') and d.dbid = (select oid from pg_database where datname = 'mydb')`,
      [],
      'mydb',
    );
    expect(owned.rows[0]!.n).toBe(0);
    await admin.end();
    open.delete(admin);

    // Demoted by the IdP: the next login revokes the group, and nothing of it is left to call.
    hankRoles = ['pg_reader'];
    const reader = await connect();
    expect(await code(reader.query(`select public.backdoor('select 1')`))).toBe('42883');
    expect((await reader.query('select public.hank_own() as u')).rows[0].u).toBe('hank@example.com');
  });
});
