/**
 * Identities across identity providers, through the real proxy with the example RLS schema (issue 11,
 * items 9 and 10). A second provider that mints alice's `sub`, tenant and e-mail must not become alice:
 * with several providers every user and tenant id carries its provider's prefix, and the context carries
 * the issuer (gprxy.issuer()). An e-mail the provider has not verified is never an identity.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_USERS } from '../../src/demo/oidc-provider.js';
import { runDbInit } from '../../src/sql/db-init.js';
import { MULTITENANT_EXAMPLE_SQL } from '../../src/sql/example.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';
import { loginRefusal, proxyClient } from '../support/proxy-clients.js';

let stack: ProxyStack;
let second: TestProvider;
const alice = DEV_USERS.find((u) => u.username === 'alice')!;
const sathwick = DEV_USERS.find((u) => u.username === 'sathwick')!;

beforeAll(async () => {
  stack = await startProxyStack();
  await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: () => {} });
  await stack.cluster.query(MULTITENANT_EXAMPLE_SQL, [], 'mydb');
  // The second provider: same CA (so the proxy trusts it with the same file), hostile users.
  second = await startTestProvider({
    ca: stack.idp.ca,
    users: [
      // Everything alice has: sub, verified e-mail, tenant, role.
      { ...alice, username: 'mallory', password: 'mallory-pw', name: 'Not Alice' },
      // An administrator of the partner's own provider (or anyone who controls it) mints corp's admin role name.
      { ...sathwick, username: 'trudy', password: 'trudy-pw', sub: 'partner|trudy', email: 'trudy@partner.example', name: 'Partner Admin' },
      { username: 'eve', password: 'eve-pw', sub: 'auth0|eve0004', email: 'bob@example.com', name: 'Eve', roles: ['pg_reader'], orgId: 'tenant-b', emailVerified: false },
    ],
  });
});
afterAll(async () => {
  await second?.close();
  await stack?.stop();
});

function provider(idp: TestProvider, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { issuer: idp.provider.issuer, audience: 'https://gprxy.io', algorithms: ['RS256'], ca: 'inline-ca', ...extra };
}

async function connect(user: string, token: string, applicationName = 'psql'): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user, password: token, database: 'mydb', ssl: stack.ssl, application_name: applicationName });
  await c.connect();
  return c;
}

function refusal(user: string, token: string): Promise<{ code?: string; message: string }> {
  return loginRefusal(proxyClient(stack, user, token));
}

async function whoAmI(c: pg.Client): Promise<Record<string, unknown>> {
  const r = await c.query(
    `select gprxy.user_id() as user_id, gprxy.tenant_id() as tenant, gprxy.issuer() as issuer, gprxy.email() as email,
            current_setting('application_name') as app,
            current_setting('app.email', true) as plain_email`,
  );
  return r.rows[0] as Record<string, unknown>;
}

async function tenantsSeen(c: pg.Client): Promise<string[]> {
  const r = await c.query('select distinct tenant_id from (select tenant_id from public.posts union all select tenant_id from public.users) t order by 1');
  return r.rows.map((row) => row.tenant_id as string);
}

describe('one provider without a prefix', () => {
  it("keeps today's user and tenant ids, and the context carries the issuer", async () => {
    const c = await connect('alice@example.com', (await loginAs(stack.idp.provider, 'alice')).accessToken);
    try {
      expect(await whoAmI(c)).toMatchObject({ user_id: 'auth0|alice0001', tenant: 'tenant-a', issuer: stack.idp.provider.issuer, email: 'alice@example.com' });
      expect(await tenantsSeen(c)).toEqual(['tenant-a']);
    } finally {
      await c.end();
    }
  });
});

describe('two providers, each with its prefix', () => {
  beforeAll(async () => {
    await stack.startProxy({
      providers: [provider(stack.idp, { prefix: 'corp' }), provider(second, { prefix: 'partner' })],
      // Roles are namespaced like ids: each rule names the provider whose role it trusts.
      role_mapping: [
        { role: 'corp:pg_admin', account: 'app_admin' },
        { role: 'partner:pg_admin', account: 'app_admin' },
        { role: 'corp:pg_writer', account: 'app_writer' },
        { role: 'partner:pg_writer', account: 'app_writer' },
      ],
    });
    // The data of corp's tenant A after the move to prefixed ids (README: several providers).
    await stack.cluster.query(
      `insert into public.users (id, tenant_id, email, display_name) values ('corp:auth0|alice0001', 'corp:tenant-a', 'alice@example.com', 'Alice (corp)');
       insert into public.posts (title, tenant_id, owner_id) values ('corp A secret', 'corp:tenant-a', 'corp:auth0|alice0001');`,
      [],
      'mydb',
    );
  });
  afterAll(async () => {
    await stack.startProxy();
  });

  it('the real alice is corp:auth0|alice0001 in corp:tenant-a and sees its rows', async () => {
    const c = await connect('alice@example.com', (await loginAs(stack.idp.provider, 'alice')).accessToken);
    try {
      expect(await whoAmI(c)).toMatchObject({ user_id: 'corp:auth0|alice0001', tenant: 'corp:tenant-a', issuer: stack.idp.provider.issuer });
      expect((await c.query('select title from posts order by title')).rows.map((r) => r.title)).toEqual(['corp A secret']);
    } finally {
      await c.end();
    }
  });

  it("a second issuer minting alice's sub, tenant and verified e-mail is another identity and reads none of her rows", async () => {
    const token = (await loginAs(second.provider, 'mallory')).accessToken;
    const c = await connect('alice@example.com', token);
    try {
      const who = await whoAmI(c);
      expect(who).toMatchObject({ user_id: 'partner:auth0|alice0001', tenant: 'partner:tenant-a', issuer: second.provider.issuer });
      expect(await tenantsSeen(c)).toEqual([]);
      expect((await c.query('select count(*)::int as n from posts')).rows[0].n).toBe(0);
      await expect(c.query(`insert into posts (title, tenant_id, owner_id) values ('x', 'corp:tenant-a', 'corp:auth0|alice0001')`)).rejects.toMatchObject({ code: '42501' });
      await expect(c.query(`insert into posts (title, tenant_id, owner_id) values ('x', 'tenant-a', 'auth0|alice0001')`)).rejects.toMatchObject({ code: '42501' });
    } finally {
      await c.end();
    }
    const success = await stack.logs.waitFor((l) => l.event === 'auth_success' && l.issuer === second.provider.issuer);
    expect(success.sub).toBe('partner:auth0|alice0001');
  });
});

describe("a second provider's roles", () => {
  beforeAll(async () => {
    await stack.startProxy({
      providers: [provider(stack.idp, { prefix: 'corp' }), provider(second, { prefix: 'partner' })],
      role_mapping: [
        { role: 'corp:pg_admin', account: 'app_admin' },
        { role: 'partner:pg_admin', account: 'app_admin' },
        { role: 'corp:pg_writer', account: 'app_writer' },
      ],
    });
    // corp's admin policy, written as README "Several providers" says: it trusts corp's admin role only.
    await stack.cluster.query(
      `create policy posts_corp_admin on public.posts for all using ((select gprxy.has_role('corp:pg_admin')));
       insert into public.posts (title, tenant_id, owner_id) values ('corp A admin-only', 'corp:tenant-a', 'corp:auth0|alice0001');`,
      [],
      'mydb',
    );
  });
  afterAll(async () => {
    await stack.cluster.query('drop policy if exists posts_corp_admin on public.posts', [], 'mydb');
    await stack.startProxy();
  });

  it("a partner token with corp's admin role name is the partner's admin, not corp's: no corp row", async () => {
    const c = await connect('partner|trudy', (await loginAs(second.provider, 'trudy')).accessToken);
    try {
      const r = await c.query(`select current_user as account, gprxy.roles() as roles, gprxy.has_role('pg_admin') as raw, gprxy.has_role('corp:pg_admin') as corp`);
      expect(r.rows[0]).toMatchObject({ account: 'app_admin', roles: ['partner:pg_admin'], raw: false, corp: false });
      expect((await c.query(`select count(*)::int as n from posts where tenant_id like 'corp:%'`)).rows[0].n).toBe(0);
    } finally {
      await c.end();
    }
  });

  it("corp's own admin holds corp:pg_admin and its policy lets it see corp's rows", async () => {
    const c = await connect('sathwick@example.com', (await loginAs(stack.idp.provider, 'sathwick')).accessToken);
    try {
      expect((await c.query(`select gprxy.has_role('corp:pg_admin') as corp`)).rows[0].corp).toBe(true);
      expect((await c.query(`select count(*)::int as n from posts where title = 'corp A admin-only'`)).rows[0].n).toBe(1);
    } finally {
      await c.end();
    }
  });

  it('a role no rule maps for that provider is refused (28000 token_no_role), whatever another provider may map', async () => {
    const token = (await loginAs(second.provider, 'mallory')).accessToken;
    const e = await refusal('alice@example.com', token);
    expect(e.code).toBe('28000');
    await stack.logs.waitFor((l) => l.event === 'auth_failure' && l.reason === 'token_no_role');
  });
});

describe('e-mail verification', () => {
  beforeAll(async () => {
    // eve's provider alone, without a prefix: the e-mail is the only thing standing between eve and bob's name.
    await stack.startProxy({ providers: [provider(second)] });
  });
  afterAll(async () => {
    await stack.startProxy();
  });

  it('an unverified e-mail cannot be the login name: 28000 naming the reason', async () => {
    const token = (await loginAs(second.provider, 'eve')).accessToken;
    const e = await refusal('bob@example.com', token);
    expect(e.code).toBe('28000');
    expect(e.message).toContain('not verified');
    const line = await stack.logs.waitFor((l) => l.event === 'auth_failure' && l.reason === 'token_email_unverified');
    expect(line.sqlstate).toBe('28000');
  });

  it('logging in by sub works, and the unverified e-mail is in neither the context, the settings nor application_name', async () => {
    const token = (await loginAs(second.provider, 'eve')).accessToken;
    const c = await connect('auth0|eve0004', token);
    try {
      const who = await whoAmI(c);
      expect(who).toMatchObject({ user_id: 'auth0|eve0004', email: null, app: 'auth0|eve0004 via psql' });
      expect(who.plain_email ?? '').toBe('');
    } finally {
      await c.end();
    }
  });
});
