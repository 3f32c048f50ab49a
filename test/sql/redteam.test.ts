// Red-team table (issue 11 review): what a user of a shared service account tries after `gprxy db init` to
// reach the secret, the identity functions, the other accounts, the account's own definition or the server,
// and the SQLSTATE that stops each attempt. One backend per account, as the proxy opens them; every row is
// an attack that holds today (the ones that did not hold got their own tests where they were fixed).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDbInit } from '../../src/sql/db-init.js';
import { startTestPostgres, type Cluster } from '../support/postgres.js';
import { connect, PASSWORDS, testConfig } from './support.js';

let cluster: Cluster;
let reader: pg.Client;
let writer: pg.Client;

beforeAll(async () => {
  cluster = await startTestPostgres();
  await cluster.createDatabase('mydb');
  await runDbInit(testConfig(cluster), { adminUrl: cluster.url(), out: () => {} });
  reader = await connect(cluster, 'app_reader', PASSWORDS.app_reader);
  writer = await connect(cluster, 'app_writer', PASSWORDS.app_writer);
});

afterAll(async () => {
  await reader?.end().catch(() => {});
  await writer?.end().catch(() => {});
  await cluster?.stop();
});

/** [what the attacker wants, the statement, the SQLSTATE that refuses it] */
const ATTACKS: readonly [string, string, string][] = [
  ['read the context secret', 'select secret from gprxy.context_secret', '42501'],
  ['sign a context with the secret through the HMAC wrapper', `select gprxy.hmac_sha256('x'::bytea, 'y'::bytea)`, '42501'],
  ["move other backends' checkout epochs", 'update gprxy.backend_epoch set epoch = 0', '42501'],
  ['replace an identity function', `create or replace function gprxy.user_id() returns text language sql as $$ select 'alice' $$`, '42501'],
  ['plant a look-alike in the gprxy schema', `create function gprxy.claims(text) returns jsonb language sql as $$ select null::jsonb $$`, '42501'],
  ['plant a function where the default search_path finds it', `create function public.lower(varchar) returns text language sql as $$ select 'x' $$`, '42501'],
  ['create a schema of its own', 'create schema mine', '42501'],
  ['become the owner of the identity functions', 'set role gprxy_owner', '42501'],
  ['become another account', 'set role app_admin', '42501'],
  ['become another account (session authorization)', 'set session authorization app_admin', '42501'],
  ['poison a custom setting for every later backend (15+)', `alter role current_user set "app.tenant_id" = 'tenant-a'`, '42501'],
  ['forge the context for every later backend', `alter role current_user set gprxy.context = 'x'`, '42501'],
  ['load a library into every later backend', `alter role current_user set session_preload_libraries = 'auto_explain'`, '42501'],
  ['lock the account out by expiry', `alter role current_user valid until '2000-01-01'`, '42501'],
  ['lock the account out by connection limit', 'alter role current_user connection limit 0', '42501'],
  ['lock the account out by NOLOGIN', 'alter role current_user nologin', '42501'],
  ['change every role in the database', `alter role all in database mydb set statement_timeout = '1ms'`, '42501'],
  ["change the database's defaults", `alter database mydb set default_transaction_read_only = on`, '42501'],
  ['run a program on the server', `copy (select 1) to program 'id'`, '42501'],
  ['read a server file', `select pg_catalog.pg_read_file('postgresql.conf')`, '42501'],
  ['load a library into this backend (left for the next user)', `load 'auto_explain'`, '42501'],
  ['install an extension', 'create extension if not exists dblink', '42501'],
  ['read peers’ query text', 'select query from pg_catalog.pg_stat_activity', '42501'],
  ['signal a peer', 'select pg_catalog.pg_cancel_backend(pg_catalog.pg_backend_pid())', '42501'],
  ['create a large object', 'select pg_catalog.lo_creat(-1)', '42501'],
  ['change server configuration', `alter system set log_statement = 'none'`, '42501'],
  ['reload the configuration', 'select pg_catalog.pg_reload_conf()', '42501'],
  ['reset statistics used for monitoring', 'select pg_catalog.pg_stat_reset()', '42501'],
];

describe('a user of a shared account after db init', () => {
  it.each(ATTACKS)('cannot %s', async (_, sql, code) => {
    for (const c of [reader, writer]) {
      await expect(c.query(sql)).rejects.toMatchObject({ code });
    }
  });

  it('cannot hold locks past its session with a prepared transaction (max_prepared_transactions is 0)', async () => {
    await writer.query('begin');
    await writer.query('select pg_catalog.pg_advisory_xact_lock(42)');
    await expect(writer.query(`prepare transaction 'held'`)).rejects.toMatchObject({ code: '55000' });
    await writer.query('rollback');
    expect((await reader.query('select count(*)::int as n from pg_catalog.pg_prepared_xacts')).rows[0].n).toBe(0);
  });
});
