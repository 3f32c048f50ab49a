/**
 * Prepared statements across backends through the real proxy in transaction mode (issue 17, PgBouncer ≥ 1.21's
 * model), each case from a public pooler bug: node-postgres named statements with more clients than backends,
 * pgbench -M prepared, Prisma's DEALLOCATE ALL, a pipelined DEALLOCATE ALL that must not wipe a later mapping
 * (pgbouncer#1535), PHP PDO / Rails SQL-level DEALLOCATE of a protocol-level name (pgbouncer#991), pgx's
 * describe-then-execute in two round trips, a Parse that fails, LRU eviction, and the metrics.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { passwordMessage, startupMessage } from '../../src/protocol/client-messages.js';
import { runDbInit } from '../../src/sql/db-init.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs, type TokenSet } from '../support/tokens.js';
import { B, C, countReady, D, E, P, Q, S, trace } from '../support/pg-messages.js';
import { TX_ON_WRITER } from '../support/all-on-writer.js';

const run = promisify(execFile);
let stack: ProxyStack;
const tokens: Record<string, TokenSet> = {};

const ON_WRITER = {
  ...TX_ON_WRITER,
  tls: { cert: 'inline-cert', key: 'inline-key', allow_plaintext_loopback: true },
  metrics: { listen: '127.0.0.1:0' },
};

async function txProxy(size: number, preparedStatements?: number): Promise<void> {
  const pool = { mode: 'transaction', size, ...(preparedStatements === undefined ? {} : { prepared_statements: preparedStatements }) };
  await stack.startProxy({ ...ON_WRITER, databases: { mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool } } });
}

beforeAll(async () => {
  stack = await startProxyStack();
  await runDbInit(stack.config, { adminUrl: stack.cluster.url(), out: () => {} });
  for (const u of ['alice', 'bob']) tokens[u] = await loginAs(stack.idp.provider, u);
  const c = stack.cluster;
  await run('pgbench', ['-i', '-q', '-s', '1', '-h', c.host, '-p', String(c.port), '-U', c.superuser, 'mydb'], { env: { ...process.env, PGPASSWORD: c.superuserPassword, PGSSLMODE: 'disable' } });
  await c.query('grant select, update on pgbench_accounts, pgbench_branches, pgbench_tellers to app_writer; grant insert on pgbench_history to app_writer', [], 'mydb');
  // These tests look at a backend's statements through the proxy; db init revokes the view from PUBLIC
  // (other clients' statement text on a shared backend, src/sql/peer-isolation.ts).
  await c.query('grant execute on function pg_catalog.pg_prepared_statement() to app_writer', [], 'mydb');
});

afterAll(async () => {
  await stack?.stop();
});

async function pgClient(user: 'alice' | 'bob' = 'alice'): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: `${user}@example.com`, password: tokens[user]!.accessToken, database: 'mydb' });
  c.on('error', () => {});
  await c.connect();
  return c;
}

/** A client speaking raw protocol through the proxy (plaintext on loopback). */
class Raw {
  private got = Buffer.alloc(0);
  private want: { n: number; resolve: () => void } | undefined;
  private constructor(private readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.got = Buffer.concat([this.got, d]);
      if (this.want && countReady(this.got) >= this.want.n) this.want.resolve();
    });
  }

  static async open(user: 'alice' | 'bob' = 'alice'): Promise<Raw> {
    const sock = connect(stack.port, '127.0.0.1');
    await once(sock, 'connect');
    const raw = new Raw(sock);
    sock.write(startupMessage({ user: `${user}@example.com`, database: 'mydb' }));
    await raw.until((b) => b.length >= 9 && b[0] === 0x52);
    raw.got = Buffer.alloc(0);
    sock.write(passwordMessage(tokens[user]!.accessToken));
    await raw.send(Buffer.alloc(0), 1);
    return raw;
  }

  private until(test: (b: Buffer) => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (!test(this.got)) return;
        this.sock.off('data', check);
        resolve();
      };
      this.sock.on('data', check);
      check();
    });
  }

  /** Writes `bytes`, resolves with the trace of the answers once `ready` ReadyForQuery arrived. */
  async send(bytes: Buffer, ready: number): Promise<string[]> {
    this.got = Buffer.alloc(0);
    const done = new Promise<void>((resolve) => (this.want = { n: ready, resolve }));
    if (bytes.length) this.sock.write(bytes);
    if (countReady(this.got) < ready) await done;
    this.want = undefined;
    return trace(this.got);
  }

  /** Resolves when the proxy closed the connection, with the SQLSTATE of the last error it sent. */
  get closed(): Promise<{ sqlstate: string | undefined }> {
    const result = () => ({ sqlstate: trace(this.got).filter((m) => m.startsWith('E:')).pop()?.slice(2) });
    if (this.sock.readableEnded || this.sock.destroyed) return Promise.resolve(result());
    return once(this.sock, 'close').then(result);
  }

  close(): void {
    this.sock.end();
  }
}

async function metric(name: string, event: string): Promise<number> {
  const text = await stack.proxy.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes('pool="mydb/app_writer"') && l.includes(`event="${event}"`));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('transaction pooling: prepared statements across backends', () => {
  it('node-postgres named statements: 8 clients on 2 backends, every answer right, backends hold only proxy names', async () => {
    await txProxy(2);
    const clients = await Promise.all(Array.from({ length: 8 }, (_, i) => pgClient(i % 2 ? 'bob' : 'alice')));
    const pids = new Set<number>();
    const wrong: unknown[] = [];
    await Promise.all(
      clients.map(async (c, n) => {
        for (let i = 0; i < 25; i++) {
          const r = await c.query({ name: 'add', text: 'select $1::int + 1 as n, pg_backend_pid() as pid', values: [n * 1000 + i] });
          if (r.rows[0].n !== n * 1000 + i + 1) wrong.push(r.rows[0]);
          pids.add(r.rows[0].pid);
          const who = await c.query({ name: `who${n % 3}`, text: 'select gprxy.user_id() as sub', values: [] });
          if (who.rows[0].sub !== (n % 2 ? 'auth0|bob00002' : 'auth0|alice0001')) wrong.push(who.rows[0]);
        }
      }),
    );
    expect(wrong).toEqual([]);
    expect(pids.size).toBe(2);
    const held = await clients[0]!.query(`select name, from_sql from pg_prepared_statements`);
    expect(held.rows.length).toBeGreaterThan(0);
    expect(held.rows.every((r) => /^gprxy_[0-9a-f]{32}$/.test(r.name) && r.from_sql === false)).toBe(true);
    expect(await metric('gprxy_prepared_statements', 'hit')).toBeGreaterThan(0);
    expect(await metric('gprxy_prepared_statements', 'miss')).toBeGreaterThan(0);
    await Promise.all(clients.map((c) => c.end()));
  });

  it('pgbench -M prepared through the proxy in transaction mode: 4 clients on 2 backends, no failed transaction', async () => {
    await txProxy(2);
    const { stdout } = await run('pgbench', ['-n', '-M', 'prepared', '-c', '4', '-j', '2', '-t', '50', '-h', '127.0.0.1', '-p', String(stack.port), '-U', 'alice@example.com', 'mydb'], {
      env: { ...process.env, PGPASSWORD: tokens.alice!.accessToken, PGSSLMODE: 'disable' },
    });
    expect(stdout).toMatch(/number of transactions actually processed: 200\/200/);
    expect(stdout).toMatch(/number of failed transactions: 0/);
  });

  it("Prisma's DEALLOCATE ALL, simple and pipelined: clears only what the client prepared before it (pgbouncer#974, #1535)", async () => {
    await txProxy(2);
    const a = await Raw.open();
    const other = await Raw.open('bob');
    expect(await other.send(Buffer.concat([P('keep', 'select 42'), S()]), 1)).toEqual(['1', 'Z:I']);
    expect(await a.send(Buffer.concat([Q('DEALLOCATE ALL'), P('s0', 'select 1'), P('s1', 'select 2'), S()]), 2)).toEqual(['C:DEALLOCATE ALL', 'Z:I', '1', '1', 'Z:I']);
    // pipelined: DEALLOCATE ALL between two Parses in one batch
    expect(await a.send(Buffer.concat([P('', 'DEALLOCATE ALL'), B(''), E(), P('s2', 'select 3'), B('s2'), E(), S()]), 1)).toEqual(['1', '2', 'C:DEALLOCATE ALL', '1', '2', 'D:3', 'C:SELECT 1', 'Z:I']);
    expect(await a.send(Buffer.concat([B('s0'), E(), S(), B('s2'), E(), S(), Q('DISCARD ALL'), B('s2'), E(), S()]), 4)).toEqual([
      'E:26000', 'Z:I', '2', 'D:3', 'C:SELECT 1', 'Z:I', 'C:DISCARD ALL', 'Z:I', 'E:26000', 'Z:I',
    ]);
    // Nobody else's statements went: bob's still binds, on whichever backend he lands.
    for (let i = 0; i < 3; i++) expect(await other.send(Buffer.concat([B('keep'), E(), S()]), 1)).toEqual(['2', 'D:42', 'C:SELECT 1', 'Z:I']);
    a.close();
    other.close();
  });

  it('PHP PDO / Rails: SQL-level DEALLOCATE of a protocol-level statement works; SQL PREPARE is refused with 0A000 (pgbouncer#991)', async () => {
    await txProxy(2);
    const a = await Raw.open();
    const t = await a.send(Buffer.concat([P('pdo_stmt_00000001', 'select $1::int * 2', [23]), B('pdo_stmt_00000001', ['21']), E(), S(), Q('DEALLOCATE pdo_stmt_00000001'), B('pdo_stmt_00000001', ['1']), E(), S()]), 3);
    expect(t).toEqual(['1', '2', 'D:42', 'C:SELECT 1', 'Z:I', 'C:DEALLOCATE', 'Z:I', 'E:26000', 'Z:I']);
    expect(await a.send(Q('DEALLOCATE a1'), 1)).toEqual(['E:26000', 'Z:I']);
    const refused = await a.send(Q('PREPARE x AS select 1'), 1);
    expect(refused).toEqual(['E:0A000', 'Z:I']);
    a.close();
  });

  it("pgx's describe-then-execute in two round trips, across backends, and a Parse that fails leaves no mapping", async () => {
    await txProxy(2);
    const a = await Raw.open();
    const holder = await pgClient('bob');
    for (let i = 0; i < 4; i++) {
      expect(await a.send(Buffer.concat([P('', 'select $1::text as v, pg_backend_pid()', [25]), D(''), S()]), 1)).toEqual(['1', 't', 'T', 'Z:I']);
      // Another client holds a backend in a transaction in between, so the second round trip may land elsewhere.
      if (i % 2) await holder.query('begin');
      const t = await a.send(Buffer.concat([B('', [`x${i}`]), E(), S()]), 1);
      expect(t[0]).toBe('2');
      expect(t[1]).toMatch(new RegExp(`^D:x${i},`));
      if (i % 2) await holder.query('commit');
    }
    expect(await a.send(Buffer.concat([P('bad', 'selec 1'), B('bad'), E(), S(), B('bad'), E(), S(), C('bad'), P('bad', 'select 5'), B('bad'), E(), S()]), 3)).toEqual([
      'E:42601', 'Z:I', 'E:26000', 'Z:I', '3', '1', '2', 'D:5', 'C:SELECT 1', 'Z:I',
    ]);
    await holder.end();
    a.close();
  });

  it('pool.prepared_statements: 0 refuses named statements with 0A000 naming the setting; unnamed ones still work', async () => {
    await txProxy(2, 0);
    const c = await pgClient();
    const e = await c.query({ name: 'n1', text: 'select 1' }).then(() => undefined, (err: { code: string; message: string }) => err);
    expect(e?.code).toBe('0A000');
    expect(e?.message).toMatch(/prepared_statements/);
    expect((await c.query('select $1::int as n', [3])).rows[0].n).toBe(3);
    await c.end();
  });

  it('a malformed Parse ends that one connection with 08P01; the proxy serves the next client', async () => {
    await txProxy(2);
    const a = await Raw.open();
    const bad = Buffer.concat([P('x', 'select 1').subarray(0, 5), Buffer.from('x\0select 1\0'), Buffer.from([0, 3, 0, 0, 0, 23])]);
    bad.writeInt32BE(bad.length - 1, 1);
    expect(await a.send(Buffer.concat([bad, S()]), 0).then(() => a.closed)).toMatchObject({ sqlstate: '08P01' });
    const b = await Raw.open();
    expect(await b.send(Buffer.concat([P('ok', 'select 1'), B('ok'), E(), S()]), 1)).toEqual(['1', '2', 'D:1', 'C:SELECT 1', 'Z:I']);
    b.close();
  });

  it('LRU: pool.prepared_statements bounds what a backend holds; evicted statements are re-prepared when used', async () => {
    await txProxy(1, 3);
    const a = await Raw.open();
    const batch = Buffer.concat([...[1, 2, 3, 4, 5, 6].flatMap((i) => [P(`q${i}`, `select ${i}`), B(`q${i}`), E()]), S()]);
    const t = await a.send(batch, 1);
    expect(t.filter((m) => m.startsWith('D:'))).toEqual(['D:1', 'D:2', 'D:3', 'D:4', 'D:5', 'D:6']);
    expect(await a.send(Buffer.concat([B('q1'), E(), B('q6'), E(), S()]), 1)).toEqual(['2', 'D:1', 'C:SELECT 1', '2', 'D:6', 'C:SELECT 1', 'Z:I']);
    const held = await a.send(Q(`select count(*) from pg_prepared_statements`), 1);
    expect(held).toContain('D:3');
    expect(await metric('gprxy_prepared_statements', 'eviction')).toBeGreaterThanOrEqual(3);
    a.close();
  });
});
