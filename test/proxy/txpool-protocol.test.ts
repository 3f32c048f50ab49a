/**
 * Transaction pooling (issue 17) on the wire: raw protocol through the real proxy for the pipelined cases
 * (several transactions in one write, a refusal in the middle of a pipeline, every byte sent alone, Sync
 * and Flush between transactions), the FIFO wait with limits.pool_wait_timeout, and pgbench (simple and
 * extended, TPC-B-like explicit transactions) on a pool smaller than its clients.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDbInit } from '../../src/sql/db-init.js';
import { B, E, H, P, Q, S } from '../support/pg-messages.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { waitUntil } from '../support/wait.js';
import { rawClient, type RawClient } from '../support/raw-client.js';
import { loginAs, type TokenSet } from '../support/tokens.js';

const exec = promisify(execFile);
let stack: ProxyStack;
let dir: string;
const tokens: Record<string, TokenSet> = {};

beforeAll(async () => {
  stack = await startProxyStack();
  dir = mkdtempSync(join(tmpdir(), 'gprxy-txpool-'));
  writeFileSync(join(dir, 'root.crt'), stack.ssl.ca);
  await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: () => {} });
  for (const u of ['alice', 'bob']) tokens[u] = await loginAs(stack.idp.provider, u);
  const c = stack.cluster;
  await exec('pgbench', ['-i', '-q', '-s', '1', '-h', c.host, '-p', String(c.port), '-U', c.superuser, 'mydb'], { env: { ...process.env, PGPASSWORD: c.superuserPassword, PGSSLMODE: 'disable' } });
  await c.query('grant select, update, insert on pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history to app_writer', [], 'mydb');
  await txProxy('1s');
});

afterAll(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The proxy on plaintext loopback, one transaction-mode pool of 2 backends, with this pool_wait_timeout. */
async function txProxy(poolWaitTimeout: string): Promise<void> {
  const c = stack.cluster;
  await stack.startProxy({
    tls: { cert: 'inline-cert', key: 'inline-key', allow_plaintext_loopback: true },
    role_mapping: [
      { role: 'pg_writer', account: 'app_writer' },
      { role: 'pg_reader', account: 'app_writer' },
    ],
    limits: { login_timeout: '5s', pool_wait_timeout: poolWaitTimeout, max_sessions_per_identity: 0 },
    metrics: { listen: '127.0.0.1:0' },
    databases: { mydb: { host: c.host, port: c.port, dbname: 'mydb', pool: { mode: 'transaction', size: 2 } } },
  });
}

/** A raw client on plaintext loopback, logged in (test/support/raw-client.ts). */
function raw(user: 'alice' | 'bob'): Promise<RawClient> {
  return rawClient(stack.port, `${user}@example.com`, tokens[user]!.accessToken);
}

const WHO = `select gprxy.user_id()`;

describe('transaction pooling on the wire', () => {
  it('several transactions pipelined in one write each run with the identity, simple and extended', async () => {
    const bob = await raw('bob');
    bob.send(Buffer.concat([Q(WHO), Q(`begin read only; ${WHO}; commit`), Q(WHO)]));
    expect(await bob.until(3)).toEqual(['T', 'D:auth0|bob00002', 'C:SELECT 1', 'Z:I', 'C:BEGIN', 'T', 'D:auth0|bob00002', 'C:SELECT 1', 'C:COMMIT', 'Z:I', 'T', 'D:auth0|bob00002', 'C:SELECT 1', 'Z:I']);
    bob.send(Buffer.concat([P('', 'begin isolation level serializable'), B(''), E(), S(), P('', WHO), B(''), E(), S(), P('', 'commit'), B(''), E(), S(), P('', `select $1::int + 1`, [23]), B('', ['41']), E(), S()]));
    expect(await bob.until(4)).toEqual(['1', '2', 'C:BEGIN', 'Z:T', '1', '2', 'D:auth0|bob00002', 'C:SELECT 1', 'Z:T', '1', '2', 'C:COMMIT', 'Z:I', '1', '2', 'D:42', 'C:SELECT 1', 'Z:I']);
    bob.socket.destroy();
  });

  it('a refusal in the middle of a pipeline answers like PostgreSQL: the unit fails, the next ones run', async () => {
    const bob = await raw('bob');
    bob.send(Buffer.concat([P('', 'select 1'), B(''), E(), S(), P('', 'listen chan'), B(''), E(), S(), P('', 'select 2'), B(''), E(), S()]));
    expect(await bob.until(3)).toEqual(['1', '2', 'D:1', 'C:SELECT 1', 'Z:I', 'E:0A000', 'Z:I', '1', '2', 'D:2', 'C:SELECT 1', 'Z:I']);
    bob.send(Buffer.concat([Q('begin'), Q('select pg_advisory_lock(1)'), Q('select 1'), Q('rollback'), Q(WHO)]));
    expect(await bob.until(5)).toEqual(['C:BEGIN', 'Z:T', 'E:0A000', 'Z:E', 'E:25P02', 'Z:E', 'C:ROLLBACK', 'Z:I', 'T', 'D:auth0|bob00002', 'C:SELECT 1', 'Z:I']);
    // Detached: refused without a backend, skipping to Sync as PostgreSQL does.
    bob.send(Buffer.concat([P('', 'declare c cursor with hold for select 1'), B(''), E(), S()]));
    expect(await bob.until(1)).toEqual(['E:0A000', 'Z:I']);
    bob.socket.destroy();
  });

  it('every byte sent alone; Sync and Flush between transactions', async () => {
    const bob = await raw('bob');
    const bytes = Buffer.concat([S(), H(), Q(WHO), P('', 'select $1::text'), B('', ['x']), E(), H(), S()]);
    for (const byte of bytes) {
      bob.send(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    expect(await bob.until(3)).toEqual(['Z:I', 'T', 'D:auth0|bob00002', 'C:SELECT 1', 'Z:I', '1', '2', 'D:x', 'C:SELECT 1', 'Z:I']);
    bob.socket.destroy();
  });

  it('clients beyond the pool wait; after pool_wait_timeout the statement gets 53300 and the client stays connected', async () => {
    const holders = await Promise.all([raw('alice'), raw('alice')]);
    for (const h of holders) {
      h.send(Q('begin'));
      expect(await h.until(1)).toEqual(['C:BEGIN', 'Z:T']);
    }
    const bob = await raw('bob');
    const started = Date.now();
    bob.send(Q(WHO));
    expect(await bob.until(1)).toEqual(['E:53300', 'Z:I']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    // A waiter is served as soon as a transaction ends.
    bob.send(Q(WHO));
    holders[0]!.send(Q('commit'));
    expect(await holders[0]!.until(1)).toEqual(['C:COMMIT', 'Z:I']);
    expect(await bob.until(1)).toEqual(['T', 'D:auth0|bob00002', 'C:SELECT 1', 'Z:I']);
    holders[1]!.send(Q('commit'));
    await holders[1]!.until(1);
    for (const c of [...holders, bob]) c.socket.destroy();
    // The metrics: clients waiting now, and the averages behind the waits and transactions.
    const text = await (await fetch(`http://127.0.0.1:${stack.proxy.metricsAddress!.port}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name}\\{pool="mydb/app_writer"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    // Two waits: the one that timed out after 1 s counts too (the served one can take under a millisecond).
    expect(value('gprxy_pool_waits')).toBeGreaterThanOrEqual(2);
    expect(value('gprxy_pool_wait_seconds_avg')).toBeGreaterThanOrEqual(0.4);
    expect(value('gprxy_pool_transactions')).toBeGreaterThanOrEqual(4);
    expect(value('gprxy_pool_transaction_seconds_avg')).toBeGreaterThan(0);
    expect(text).toMatch(/gprxy_pool_connections\{pool="mydb\/app_writer",state="waiting_clients"\} 0/);
  });

  it('pgbench (TPC-B-like and select-only, simple and extended) through 2 backends with 8 clients', async () => {
    // TPC-B at scale 1 serialises on one branch row: on a loaded machine a wait can pass 1 s.
    await txProxy('30s');
    // The previous test's proxy closed its backends; on a loaded machine they may still be exiting, and the
    // pool-size check below counts app_writer backends on the server.
    const writers = async () => (await stack.cluster.query(`select count(*)::int as n from pg_stat_activity where usename = 'app_writer'`)).rows[0]!.n as number;
    await waitUntil(async () => (await writers()) === 0);
    const env = { ...process.env, PGPASSWORD: tokens.alice!.accessToken, PGSSLMODE: 'verify-full', PGSSLROOTCERT: join(dir, 'root.crt') };
    for (const args of [['-M', 'simple'], ['-M', 'extended'], ['-S', '-M', 'extended']]) {
      const { stdout } = await exec('pgbench', ['-n', ...args, '-c', '8', '-j', '2', '-t', '40', '-h', 'localhost', '-p', String(stack.port), '-U', 'alice@example.com', 'mydb'], { env });
      expect(stdout).toContain('number of transactions actually processed: 320/320');
    }
    const history = await stack.cluster.query('select count(*)::int as n from pgbench_history', [], 'mydb');
    expect(history.rows[0]!.n).toBe(640);
    // The pool never grew past its size.
    const c = new pg.Client({ host: 'localhost', port: stack.port, user: 'alice@example.com', password: tokens.alice!.accessToken, database: 'mydb', ssl: stack.ssl });
    await c.connect();
    await c.end();
    expect(await writers()).toBeLessThanOrEqual(2);
  });
});
