/**
 * Transaction pooling (issue 17): identity per transaction. Alice (tenant-a) and bob (tenant-b) share one
 * service account and a pool of 2 backends; 20 clients run transactions of every shape (implicit, explicit,
 * READ ONLY, SET TRANSACTION ISOLATION LEVEL, extended protocol) and each must only ever see its own
 * identity through gprxy.user_id()/tenant_id() and the plain settings.
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

function txDatabase(size: number): Record<string, unknown> {
  return { databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool: { mode: 'transaction', size } } } };
}

beforeAll(async () => {
  stack = await startProxyStack();
  await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: () => {} });
  for (const u of ['alice', 'bob']) tokens[u] = await loginAs(stack.idp.provider, u);
});

afterAll(async () => {
  await stack?.stop();
});

function connectAs(username: 'alice' | 'bob'): Promise<pg.Client> {
  return connectClient(stack, `${username}@example.com`, tokens[username]!.accessToken);
}

const WHO = `select gprxy.user_id() as sub, gprxy.tenant_id() as tenant, pg_catalog.current_setting('app.user_id') as uid, pg_catalog.pg_backend_pid() as pid`;
const EXPECTED = {
  alice: { sub: 'auth0|alice0001', tenant: 'tenant-a', uid: 'auth0|alice0001' },
  bob: { sub: 'auth0|bob00002', tenant: 'tenant-b', uid: 'auth0|bob00002' },
};

describe('transaction pooling: identity per transaction', () => {
  it('20 clients of two tenants on 2 backends never see another identity', { timeout: 600_000 }, async () => {
    await stack.startProxy({ ...TX_ON_WRITER, ...txDatabase(2) });
    const clients = await Promise.all(Array.from({ length: 20 }, (_, i) => connectAs(i % 2 ? 'bob' : 'alice').then((c) => ({ c, who: i % 2 ? ('bob' as const) : ('alice' as const) }))));
    const pids = new Set<number>();
    let checked = 0;
    const wrong: unknown[] = [];
    // GPRXY_TXPOOL_ROUNDS=1000 for the long version (20,000 transactions); npm test runs 1,200.
    const ROUNDS = Number(process.env.GPRXY_TXPOOL_ROUNDS ?? 60);
    await Promise.all(
      clients.map(async ({ c, who }, n) => {
        for (let round = 0; round < ROUNDS; round++) {
          const shape = (round + n) % 4;
          let row: Record<string, unknown>;
          if (shape === 0) row = (await c.query(WHO)).rows[0];
          else if (shape === 1) row = (await c.query({ text: `${WHO} where $1::int = 1`, values: [1] })).rows[0];
          else if (shape === 2) {
            await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
            row = (await c.query(WHO)).rows[0];
            const iso = (await c.query(`select current_setting('transaction_isolation') as i`)).rows[0].i;
            if (iso !== 'repeatable read') wrong.push({ iso });
            await c.query('COMMIT');
          } else {
            await c.query('BEGIN');
            await c.query('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE');
            row = (await c.query(WHO)).rows[0];
            const iso = (await c.query(`select current_setting('transaction_isolation') as i`)).rows[0].i;
            if (iso !== 'serializable') wrong.push({ iso });
            await c.query('COMMIT');
          }
          pids.add(row.pid as number);
          const { pid: _pid, ...seen } = row;
          if (JSON.stringify(seen) !== JSON.stringify(EXPECTED[who])) wrong.push({ who, seen });
          checked++;
        }
      }),
    );
    await Promise.all(clients.map(({ c }) => c.end()));
    expect(wrong).toEqual([]);
    expect(checked).toBe(20 * ROUNDS);
    expect(pids.size).toBe(2);
  });
});
