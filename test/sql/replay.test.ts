// A context saved in one session must be worthless in a later session on the same pooled backend (same pid
// and start time): each checkout records a new epoch with gprxy.begin_session. Pools of one backend per
// account make "the same backend" certain; every check runs through the real proxy.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDbInit } from '../../src/sql/db-init.js';
import { MULTITENANT_EXAMPLE_SQL } from '../../src/sql/example.js';
import { SERVICE_ACCOUNTS } from '../support/postgres.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { ciToken, loginAs } from '../support/tokens.js';
import { payloadOf } from './support.js';

let stack: ProxyStack;
const tokens: Record<string, string> = {};
const open: pg.Client[] = [];

beforeAll(async () => {
  stack = await startProxyStack({
    overrides: { accounts: Object.fromEntries(Object.entries(SERVICE_ACCOUNTS).map(([name, password]) => [name, { password, pool_size: 1 }])) },
  });
  for (const u of ['alice', 'bob']) tokens[`${u}@example.com`] = (await loginAs(stack.idp.provider, u)).accessToken;
  tokens['ci-bot'] = (await ciToken(stack.idp.provider)).accessToken; // pg_reader: the same account as bob
});

afterAll(async () => {
  await Promise.all(open.map((c) => c.end().catch(() => {})));
  await stack?.stop();
});

async function connectAs(user: string): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user, password: tokens[user], database: 'mydb', ssl: stack.ssl });
  await c.connect();
  open.push(c);
  return c;
}

async function session(c: pg.Client): Promise<{ pid: number; context: string }> {
  const r = await c.query(`select pg_backend_pid() as pid, current_setting('gprxy.context') as context`);
  return r.rows[0];
}

async function who(c: pg.Client): Promise<{ user: string | null; tenants: string[] }> {
  const user = (await c.query('select gprxy.user_id() as u')).rows[0].u as string | null;
  const tenants = (await c.query('select distinct tenant_id from public.posts order by 1')).rows.map((r) => r.tenant_id as string);
  return { user, tenants };
}

describe('a database without gprxy.begin_session (db init not run, or not re-run)', () => {
  it('sessions still work, and the proxy warns once per pool that contexts are not bound to the checkout', async () => {
    const pids: number[] = [];
    for (let i = 0; i < 2; i++) {
      const c = await connectAs('alice@example.com');
      const pid = (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
      pids.push(pid);
      await c.end();
      // The next session gets a new backend, so the check runs again.
      await stack.cluster.query('select pg_terminate_backend($1)', [pid]);
      await stack.logs.waitFor((l) => l.event === 'backend_close' && l.pid === pid);
    }
    expect(pids[1]).not.toBe(pids[0]);
    const warnings = stack.logs.events('context_not_checkout_bound');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ pool: 'mydb/app_writer', reason: 'no_begin_session', level: 'warn' });
    expect(String(warnings[0]!.msg)).toContain('gprxy db init');
  });
});

describe('with db init: a context is bound to its checkout', () => {
  beforeAll(async () => {
    await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: () => {} });
    await stack.cluster.query(MULTITENANT_EXAMPLE_SQL, [], 'mydb');
    // Backends opened before db init keep working unbound; new pools see the function.
    await stack.startProxy();
  });

  it('alice: her context saved in session 1 gives nothing in session 2 on the same backend', async () => {
    const first = await connectAs('alice@example.com');
    const saved = await session(first);
    expect(await who(first)).toEqual({ user: 'auth0|alice0001', tenants: ['tenant-a'] });
    await first.end();

    const second = await connectAs('alice@example.com');
    const now = await session(second);
    expect(now.pid).toBe(saved.pid); // the same pooled backend: same pid and start time
    expect(payloadOf(now.context).bst).toBe(payloadOf(saved.context).bst);
    expect(Number(payloadOf(now.context).epoch)).toBeGreaterThan(Number(payloadOf(saved.context).epoch));
    expect(await who(second)).toEqual({ user: 'auth0|alice0001', tenants: ['tenant-a'] });

    await second.query(`select set_config('gprxy.context', $1, false)`, [saved.context]);
    expect(await who(second)).toEqual({ user: null, tenants: [] });
    expect((await second.query('select gprxy.claims() as c')).rows[0].c).toBeNull();
    await second.query(`set gprxy.context = '${saved.context}'`);
    expect(await who(second)).toEqual({ user: null, tenants: [] });

    // Nor can the session move the recorded epoch back to the saved one.
    await expect(second.query('select gprxy.begin_session($1)', [payloadOf(saved.context).epoch])).rejects.toMatchObject({ code: 'XG001' });
    await second.query(`select set_config('gprxy.context', $1, false)`, [now.context]);
    expect(await who(second)).toEqual({ user: 'auth0|alice0001', tenants: ['tenant-a'] }); // its own still verifies
    await second.end();
  });

  it("bob's saved context gives nothing to the next user of the same account (ci-bot) on the same backend", async () => {
    const bob = await connectAs('bob@example.com');
    const saved = await session(bob);
    expect(await who(bob)).toEqual({ user: 'auth0|bob00002', tenants: ['tenant-b'] });
    await bob.end();

    const bot = await connectAs('ci-bot');
    const own = await session(bot);
    expect(own.pid).toBe(saved.pid);
    expect(await who(bot)).toEqual({ user: 'ci-bot', tenants: [] }); // no tenant claim: no rows
    await bot.query(`select set_config('gprxy.context', $1, false)`, [saved.context]);
    expect(await who(bot)).toEqual({ user: null, tenants: [] });
    await bot.end();
  });

  it('a client that pushes the epoch forward only loses its backend: the next client connects on a new one', async () => {
    const first = await connectAs('alice@example.com');
    const { pid } = await session(first);
    await first.query('select gprxy.begin_session($1)', [9e15]);
    expect(await who(first)).toEqual({ user: null, tenants: [] }); // its own checkout is over
    await first.end();

    const next = await connectAs('alice@example.com');
    const now = await session(next);
    expect(now.pid).not.toBe(pid);
    expect(await who(next)).toEqual({ user: 'auth0|alice0001', tenants: ['tenant-a'] });
    expect(stack.logs.events('backend_epoch_refused')).toEqual([expect.objectContaining({ backend_pid: pid, attempt: 1 })]);
    expect(stack.logs.events('backend_close')).toContainEqual(expect.objectContaining({ pid, reason: 'not reusable' }));
    await next.end();
  });

  it('when gprxy cannot verify backends at all, the client gets 55000 naming the cause, not an epoch refusal to retry', async () => {
    const before = stack.logs.events('backend_epoch_refused').length;
    // Without pg_read_all_stats the owner cannot read the backend's start time: no fresh backend would help.
    await stack.cluster.query('revoke pg_read_all_stats from gprxy_owner');
    try {
      await expect(connectAs('alice@example.com')).rejects.toMatchObject({ code: '55000', message: expect.stringContaining("cannot read this backend's start time") });
      expect(stack.logs.events('backend_epoch_refused').slice(before)).toEqual([]);
    } finally {
      await stack.cluster.query('grant pg_read_all_stats to gprxy_owner');
    }
    const c = await connectAs('alice@example.com');
    expect(await who(c)).toEqual({ user: 'auth0|alice0001', tenants: ['tenant-a'] });
    await c.end();
  });
});
