/**
 * The statement audit through the real proxy: node-postgres (simple and extended protocol, named
 * statements), psql (multi-statement queries, COPY both ways) and pgbench, against real PostgreSQL.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { flushStatementAuditFiles, tapStats } from '../../src/proxy/statement-audit/index.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs, type TokenSet } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';

const run = promisify(execFile);
let stack: ProxyStack;
const tokens: Record<string, TokenSet> = {};
let dir: string;

type Line = Record<string, unknown>;

// Session ids restart with each proxy: only the lines logged since the test began count.
let mark = 0;
const recent = (): Line[] => stack.logs.lines.slice(mark);
async function waitForLine(match: (l: Line) => boolean): Promise<Line> {
  let found: Line | undefined;
  await waitUntil(() => (found = recent().find(match)) !== undefined);
  return found!;
}

async function withAudit(audit: Record<string, unknown> | undefined): Promise<void> {
  const c = stack.cluster;
  await stack.startProxy({ databases: { mydb: { host: c.host, port: c.port, dbname: 'mydb', pool: { size: 5 }, ...(audit ? { audit } : {}) } } });
}

async function connectAs(username: string, extra: Partial<pg.ClientConfig> = {}): Promise<{ client: pg.Client; session: number; pid: number }> {
  const client = new pg.Client({ host: '127.0.0.1', port: stack.port, user: `${username}@example.com`, password: tokens[username]!.accessToken, database: 'mydb', ssl: stack.ssl, ...extra });
  // A proxy restarted between tests ends the sessions a failed test left open: not an error here.
  client.on('error', () => {});
  await client.connect();
  // The pid is read through the relay too: that statement is audited like any other.
  const pid = (await client.query('select pg_backend_pid() as pid')).rows[0].pid as number;
  const success = await waitForLine((l) => l.event === 'auth_success' && l.backend_pid === pid);
  return { client, session: success.session as number, pid };
}

const statementsOf = (session: number): Line[] => recent().filter((l) => l.event === 'statement' && l.session === session);

/** Waits for the session's end (all its events are written by then) and returns its statement events. */
async function endAndCollect(client: pg.Client, session: number): Promise<Line[]> {
  await client.end();
  await waitForLine((l) => l.event === 'session_end' && l.session === session);
  return statementsOf(session);
}

function psqlEnv(username: string): NodeJS.ProcessEnv {
  return { ...process.env, PGPASSWORD: tokens[username]!.accessToken, PGSSLMODE: 'verify-full', PGSSLROOTCERT: join(dir, 'root.crt'), PGHOST: 'localhost', PGPORT: String(stack.port), PGDATABASE: 'mydb', PGUSER: `${username}@example.com` };
}

/** psql reading `input` on stdin; resolves with its stdout once it exits 0. */
async function psql(username: string, args: string[], input = ''): Promise<string> {
  const child = spawn('psql', ['-X', '-v', 'ON_ERROR_STOP=1', ...args], { env: psqlEnv(username), stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin.end(input);
  const [code] = (await once(child, 'close')) as [number]; // not 'exit': the output may not all be read by then
  if (code !== 0) throw new Error(`psql exited ${code}: ${err}`);
  return out;
}

/** The session a psql run (the only client of the test) had. */
async function psqlSession(): Promise<number> {
  const end = await waitForLine((l) => l.event === 'session_end' && l.user === 'alice@example.com');
  return end.session as number;
}

beforeAll(async () => {
  stack = await startProxyStack();
  dir = mkdtempSync(join(tmpdir(), 'gprxy-audit-'));
  writeFileSync(join(dir, 'root.crt'), stack.ssl.ca);
  for (const u of ['alice', 'bob', 'sathwick']) tokens[u] = await loginAs(stack.idp.provider, u);
  const c = stack.cluster;
  await run('pgbench', ['-i', '-q', '-s', '1', '-h', c.host, '-p', String(c.port), '-U', c.superuser, 'mydb'], { env: { ...process.env, PGPASSWORD: c.superuserPassword, PGSSLMODE: 'disable' } });
  await c.query('grant select on pgbench_accounts, pgbench_branches to app_writer; grant create on schema public to app_admin; create table items (id int primary key, name text)', [], 'mydb');
  await c.query('grant select, insert, update, delete on items to app_writer', [], 'mydb');
});

beforeEach(() => {
  mark = stack.logs.lines.length;
});

afterAll(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('audit.statements: all', () => {
  beforeAll(() => withAudit({ statements: 'all' }));

  it('writes one event per simple Query with identity, tag, row count and duration', async () => {
    const { client, session, pid } = await connectAs('alice', { application_name: 'report-tool' });
    await client.query("insert into notes (body) values ('one'), ('two')");
    const events = await endAndCollect(client, session);
    expect(events.map((e) => e.statement)).toEqual(['select pg_backend_pid() as pid', "insert into notes (body) values ('one'), ('two')"]);
    const insert = events[1]!;
    expect(insert).toMatchObject({
      event: 'statement',
      protocol: 'simple',
      statement_index: 0,
      issuer: stack.idp.provider.issuer,
      user: 'alice@example.com',
      email: 'alice@example.com',
      tenant: 'tenant-a',
      account: 'app_writer',
      database: 'mydb',
      backend_pid: pid,
      application: 'alice@example.com via report-tool',
      tag: 'INSERT 0 2',
      rows: 2,
      class: 'write',
    });
    expect(insert.client).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(typeof insert.duration_ms).toBe('number');
    expect(insert.duration_ms as number).toBeGreaterThanOrEqual(0);
  });

  it('gives each statement of a multi-statement Query its own event, text and index; the failing one carries its SQLSTATE', async () => {
    const { client, session } = await connectAs('alice');
    await expect(client.query("select 1; update notes set body = 'x' where false; select 1/0; select 3")).rejects.toMatchObject({ code: '22012' });
    const events = (await endAndCollect(client, session)).slice(1);
    expect(events.map((e) => [e.statement_index, e.statement, e.tag, e.sqlstate])).toEqual([
      [0, 'select 1', 'SELECT 1', undefined],
      [1, "update notes set body = 'x' where false", 'UPDATE 0', undefined],
      [2, 'select 1/0', undefined, '22012'],
    ]);
  });

  it('extended protocol: one event per Execute, attributed to its (named) prepared statement; bind values are not logged', async () => {
    const { client, session } = await connectAs('alice');
    const named = { name: 'add-note', text: 'insert into notes (body) values ($1) returning id' };
    await client.query({ ...named, values: ['bind-secret-1'] });
    await client.query({ ...named, values: ['bind-secret-2'] });
    await client.query('select body from notes where body = $1', ['bind-secret-1']);
    await expect(client.query('insert into missing_table values ($1)', [1])).rejects.toMatchObject({ code: '42P01' });
    await expect(client.query({ ...named, values: [null] })).rejects.toMatchObject({ code: '23502' });
    const events = (await endAndCollect(client, session)).slice(1);
    expect(events.map((e) => [e.protocol, e.statement_name, e.statement, e.tag, e.rows, e.sqlstate])).toEqual([
      ['extended', 'add-note', named.text, 'INSERT 0 1', 1, undefined],
      ['extended', 'add-note', named.text, 'INSERT 0 1', 1, undefined],
      ['extended', '', 'select body from notes where body = $1', 'SELECT 1', 1, undefined],
      ['extended', '', 'insert into missing_table values ($1)', undefined, undefined, '42P01'],
      ['extended', 'add-note', named.text, undefined, undefined, '23502'],
    ]);
    expect(events.every((e) => !('params' in e))).toBe(true);
    expect(stack.logs.raw).not.toContain('bind-secret');
  });

  it('a statement the account may not run carries 42501', async () => {
    const { client, session } = await connectAs('bob');
    await expect(client.query("delete from notes where body = 'one'")).rejects.toMatchObject({ code: '42501' });
    const events = (await endAndCollect(client, session)).slice(1);
    expect(events).toEqual([expect.objectContaining({ user: 'bob@example.com', account: 'app_reader', statement: "delete from notes where body = 'one'", sqlstate: '42501', class: 'write' })]);
  });

  it('psql: COPY in both directions records direction and row count, not the data; \\; batches get indexes', async () => {
    await psql('alice', ['-f', '-'], 'copy items (id, name) from stdin;\n1\tcopy-secret-a\n2\tcopy-secret-b\n3\tcopy-secret-c\n\\.\nselect 1 \\; select 2;\ncopy items to stdout;\n');
    const session = await psqlSession();
    const events = statementsOf(session);
    const copies = events.filter((e) => (e.tag as string).startsWith('COPY'));
    expect(copies.map((e) => [e.copy, e.rows, e.class])).toEqual([
      ['in', 3, 'write'],
      ['out', 3, 'read'],
    ]);
    const batch = events.filter((e) => e.statement === 'select 1' || e.statement === 'select 2');
    expect(batch.map((e) => e.statement_index)).toEqual([0, 1]);
    expect(JSON.stringify(events)).not.toContain('copy-secret');
    expect(stack.logs.raw).not.toContain('copy-secret');
  });

  it('pgbench -M prepared: every transaction appears exactly once with its tag and row count', async () => {
    await run('pgbench', ['-n', '-S', '-M', 'prepared', '-c', '2', '-t', '25', '-h', 'localhost', '-p', String(stack.port), '-U', 'alice@example.com', 'mydb'], { env: psqlEnv('alice') });
    // pgbench's own connection (its partition check) and the two clients.
    await waitUntil(() => recent().filter((l) => l.event === 'session_end' && l.user === 'alice@example.com').length >= 3);
    const selects = recent().filter((l) => l.event === 'statement' && l.statement === 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;');
    expect(selects).toHaveLength(50);
    expect(selects.every((e) => e.tag === 'SELECT 1' && e.rows === 1 && e.protocol === 'extended' && e.statement_name === 'P_0')).toBe(true);
    expect(new Set(selects.map((e) => e.session)).size).toBe(2);
  });

  it('a tapped session still returns its backend to the pool clean and idle', async () => {
    const { client, session } = await connectAs('alice');
    await client.query('select 1');
    await client.end();
    const end = await waitForLine((l) => l.event === 'session_end' && l.session === session);
    expect(end.backend_reused).toBe(true);
  });
});

describe('audit.statements: ddl and write classify by the command tag', () => {
  it('ddl keeps CREATE/ALTER/DROP (also CREATE TABLE AS, tagged SELECT) and failed DDL; not reads or writes', async () => {
    await withAudit({ statements: 'ddl' });
    const { client, session } = await connectAs('sathwick');
    await client.query('create table t_ddl (a int)');
    await client.query('insert into t_ddl values (1)');
    await client.query('alter table t_ddl add column b text');
    await client.query('create table t_ctas as select * from t_ddl');
    await client.query('select * from t_ddl');
    await expect(client.query('create table t_ddl (a int)')).rejects.toMatchObject({ code: '42P07' });
    await client.query('drop table t_ddl, t_ctas');
    const events = await endAndCollect(client, session);
    expect(events.map((e) => [e.tag ?? e.sqlstate, e.class])).toEqual([
      ['CREATE TABLE', 'ddl'],
      ['ALTER TABLE', 'ddl'],
      ['SELECT 1', 'ddl'],
      ['42P07', 'ddl'],
      ['DROP TABLE', 'ddl'],
    ]);
  });

  it('write keeps INSERT/UPDATE/DELETE, COPY FROM and DDL; not SELECT or COPY TO', async () => {
    await withAudit({ statements: 'write' });
    await psql('alice', ['-f', '-'], "select 1;\ninsert into items values (10, 'w');\nupdate items set name = 'v' where id = 10;\ncopy items from stdin;\n11\tz\n\\.\ncopy items to stdout;\ndelete from items where id >= 10;\n");
    const events = statementsOf(await psqlSession());
    expect(events.map((e) => e.tag)).toEqual(['INSERT 0 1', 'UPDATE 1', 'COPY 1', 'DELETE 2']);
  });
});

describe('audit options', () => {
  it('redact_literals replaces every constant with $n; no literal reaches the log, not even in error messages', async () => {
    await withAudit({ statements: 'all', redact_literals: true });
    const { client, session } = await connectAs('alice');
    await client.query("insert into notes (body) values ('redact-me-1' || E'\\\\redact-me-2' || $$redact-me-3$$), ('x' || 424242)");
    await expect(client.query("select 'redact-me-4'::int")).rejects.toMatchObject({ code: '22P02' });
    const events = (await endAndCollect(client, session)).slice(1);
    expect(events.map((e) => e.statement)).toEqual(['insert into notes (body) values ($1 || $2 || $3), ($4 || $5)', 'select $1::int']);
    expect(events[1]).toMatchObject({ sqlstate: '22P02' });
    expect(events[1]).not.toHaveProperty('error');
    expect(stack.logs.raw).not.toMatch(/redact-me|424242/);
  });

  it('bind_values: true logs the parameters of each Execute', async () => {
    await withAudit({ statements: 'all', bind_values: true });
    const { client, session } = await connectAs('alice');
    await client.query('select $1::text as a, $2::int as b, $3::text as c', ['shown', 7, null]);
    const events = (await endAndCollect(client, session)).slice(1);
    expect(events[0]).toMatchObject({ protocol: 'extended', params: ['shown', '7', null] });
  });

  it('cuts statements over max_statement_length, recording the length and a SHA-256 of the whole text', async () => {
    await withAudit({ statements: 'all', max_statement_length: 64 });
    const { client, session } = await connectAs('alice');
    const text = `select '${'x'.repeat(200)}' as long_one`;
    await client.query(text);
    const [event] = (await endAndCollect(client, session)).slice(1);
    expect(event).toMatchObject({ statement: text.slice(0, 64), statement_truncated: true, statement_length: text.length, statement_sha256: createHash('sha256').update(text).digest('hex') });
  });

  it('audit.file sends statement events to their own file, not the proxy log', async () => {
    const file = join(dir, 'statements.log');
    await withAudit({ statements: 'all', file });
    const { client, session } = await connectAs('alice');
    await client.query('select 42 as in_the_file');
    await client.end();
    await waitForLine((l) => l.event === 'session_end' && l.session === session);
    expect(statementsOf(session)).toEqual([]);
    // Whole lines only: the file may be read while the writer is half-way through its last line.
    let lines: Line[] = [];
    await waitUntil(() => {
      flushStatementAuditFiles();
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        return false;
      }
      lines = text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
      return lines.some((l) => l.statement === 'select 42 as in_the_file');
    });
    expect(lines.find((l) => l.statement === 'select 42 as in_the_file')).toMatchObject({ event: 'statement', session, user: 'alice@example.com', tag: 'SELECT 1' });
  });

  it('statements: none writes no event and reads no message body (the relay stays header-only)', async () => {
    await withAudit(undefined);
    const bodiesBefore = tapStats.bodies;
    const { client, session } = await connectAs('alice');
    await client.query("insert into notes (body) values ('not audited')");
    await client.query({ name: 'n1', text: 'select $1::int', values: [1] });
    const events = await endAndCollect(client, session);
    expect(events).toEqual([]);
    expect(tapStats.bodies).toBe(bodiesBefore);
    // The counter does count when auditing is on (so the assertion above can fail).
    await withAudit({ statements: 'ddl' });
    const audited = await connectAs('alice');
    await audited.client.end();
    expect(tapStats.bodies).toBeGreaterThan(bodiesBefore);
  });
});
