/**
 * Transaction pooling, attacker = another user of the same service account (DESIGN.md 2.4): what one client
 * leaves on a shared backend must not be readable by the next client of that backend.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDbInit } from '../../src/sql/db-init.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs, type TokenSet } from '../support/tokens.js';
import { TX_ON_WRITER } from '../support/all-on-writer.js';
import { connectClient } from '../support/proxy-clients.js';

let stack: ProxyStack;
const tokens: Record<string, TokenSet> = {};

beforeAll(async () => {
  stack = await startProxyStack();
  await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: () => {} });
  for (const u of ['alice', 'bob']) tokens[u] = await loginAs(stack.idp.provider, u);
  // One backend: every client lands on the same one.
  await stack.startProxy({ ...TX_ON_WRITER, databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool: { mode: 'transaction', size: 1 } } } });
});

afterAll(async () => {
  await stack?.stop();
});

function connectAs(user: 'alice' | 'bob'): Promise<pg.Client> {
  return connectClient(stack, `${user}@example.com`, tokens[user]!.accessToken);
}

describe('transaction pooling: nothing of one client is readable or breakable by the next on its backend', () => {
  it("another client's prepared statement text (literals included) is not readable in pg_prepared_statements", async () => {
    const alice = await connectAs('alice');
    const bob = await connectAs('bob');
    try {
      const secret = `alice-secret-${Date.now()}`;
      const pid = (await alice.query({ name: 'lookup', text: `select $1::text as k, '${secret}' as s, pg_catalog.pg_backend_pid() as pid`, values: ['x'] })).rows[0].pid as number;
      // Same backend (pool size 1, kept after alice's release reset): alice's statement is there under a proxy name.
      expect((await bob.query('select pg_catalog.pg_backend_pid() as pid')).rows[0].pid).toBe(pid);
      const seen = await bob.query(`select statement from pg_catalog.pg_prepared_statements`).then(
        (r) => r.rows.map((row: { statement: string }) => row.statement).join('\n'),
        (e: { code?: string }) => `error ${e.code}`,
      );
      expect(seen).not.toContain(secret);
      expect(seen).toBe('error 42501');
      // The backend stays usable for both, and alice's statement still works.
      expect((await alice.query({ name: 'lookup', text: `select $1::text as k, '${secret}' as s, pg_catalog.pg_backend_pid() as pid`, values: ['y'] })).rows[0]).toEqual({ k: 'y', s: secret, pid });
      expect((await bob.query('select 1 as one')).rows[0]).toEqual({ one: 1 });
    } finally {
      await Promise.all([alice.end(), bob.end()]);
    }
  });

  it('the release reset still finds a SQL PREPARE hidden in a DO block (through gprxy.prepared_statements_state) and closes that backend', async () => {
    const bob = await connectAs('bob');
    try {
      const pid = (await bob.query('select pg_catalog.pg_backend_pid() as pid')).rows[0].pid as number;
      await bob.query(`do $$ begin execute 'prepare hidden as select 1'; end $$`);
      await stack.logs.waitFor((l) => l.event === 'backend_dirty' && l.pid === pid && l.reason === 'SQL-level prepared statements');
      expect(stack.logs.lines.some((l) => l.event === 'backend_reset_failed')).toBe(false);
      const alice = await connectAs('alice');
      try {
        expect((await alice.query('select pg_catalog.pg_backend_pid() as pid')).rows[0].pid).not.toBe(pid);
      } finally {
        await alice.end();
      }
    } finally {
      await bob.end();
    }
  });

  it("a DEALLOCATE hidden in a DO block cannot break another client's prepared statements on the shared backend", async () => {
    const alice = await connectAs('alice');
    const bob = await connectAs('bob');
    try {
      const mine = { name: 'mine', text: 'select $1::int + 1 as n, pg_catalog.pg_backend_pid() as pid', values: [1] };
      const pid = (await alice.query(mine)).rows[0].pid as number;
      expect((await bob.query('select pg_catalog.pg_backend_pid() as pid')).rows[0].pid).toBe(pid);
      // Neither the lexer nor the router sees inside a DO block: the backend loses the statement the proxy prepared.
      await bob.query(`do $$ begin execute 'deallocate all'; end $$`);
      // alice's next Bind (pool size 1: after bob's release) lands on a backend whose statements the proxy knows:
      // no 26000 (before: "prepared statement gprxy_… does not exist", on every Bind, for the backend's life).
      for (let i = 2; i <= 3; i++) expect((await alice.query({ ...mine, values: [i] }).catch((e: { code?: string }) => ({ rows: [{ n: e.code }] }))).rows[0].n).toBe(i + 1);
      await stack.logs.waitFor((l) => l.event === 'backend_dirty' && l.pid === pid);
    } finally {
      await Promise.all([alice.end(), bob.end()]);
    }
  });

  it('no false alarm: named statements, a failing Parse and a visible DEALLOCATE ALL keep the backend (the check agrees with the proxy)', async () => {
    const alice = await connectAs('alice');
    const bob = await connectAs('bob');
    try {
      const before = stack.logs.lines.length;
      const pids = new Set<number>();
      for (let round = 0; round < 3; round++) {
        for (const [who, c] of [['a', alice], ['b', bob]] as const) {
          for (let k = 0; k < 3; k++) {
            const r = await c.query({ name: `${who}${k}`, text: `select $1::int * ${k + 2} as n, pg_catalog.pg_backend_pid() as pid`, values: [round] });
            expect(r.rows[0].n).toBe(round * (k + 2));
            pids.add(r.rows[0].pid as number);
          }
        }
        await alice.query({ name: `broken${round}`, text: 'select no_such_column', values: [] }).catch(() => undefined);
      }
      // bob's own DEALLOCATE ALL (visible to the proxy): alice's statements are prepared again where needed.
      await bob.query('deallocate all');
      const again = await alice.query({ name: 'a0', text: `select $1::int * 2 as n, pg_catalog.pg_backend_pid() as pid`, values: [21] });
      expect(again.rows[0].n).toBe(42);
      pids.add(again.rows[0].pid as number);
      expect(pids.size).toBe(1);
      expect(stack.logs.lines.slice(before).filter((l) => l.event === 'backend_dirty' || l.event === 'backend_reset_failed')).toEqual([]);
    } finally {
      await Promise.all([alice.end(), bob.end()]);
    }
  });
});
