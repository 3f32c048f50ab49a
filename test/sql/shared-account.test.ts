// Issue 11, the db init side: a user of a shared service account is hostile to its other users. Every test
// logs in as the account with its password (what the proxy does for each backend), does the attack, and
// shows what the next user of the account (the victim, on a new backend) gets after `gprxy db init`.
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNT_SETTINGS, accountSettingsFor, isExpectedAccountSetting, settingEntry } from '../../src/sql/account-settings.js';
import { runDbInit, type DbInitResult, type RunDbInitOptions } from '../../src/sql/db-init.js';
import { startTestPostgres, type Cluster } from '../support/postgres.js';
import { catalogDump, connect, PASSWORDS, testConfig } from './support.js';

let cluster: Cluster;
const open: pg.Client[] = [];

beforeAll(async () => {
  cluster = await startTestPostgres();
  await cluster.createDatabase('mydb');
});

afterAll(async () => {
  await Promise.all(open.map((c) => c.end().catch(() => {})));
  await cluster?.stop();
});

async function init(options: Partial<RunDbInitOptions> = {}): Promise<{ results: DbInitResult[]; output: string }> {
  let output = '';
  const results = await runDbInit(testConfig(cluster), { adminUrl: cluster.url(), out: (t) => (output += `${t}\n`), ...options });
  return { results, output };
}

/** A backend of the account, as the proxy opens one. */
async function as(account: keyof typeof PASSWORDS): Promise<pg.Client> {
  const c = await connect(cluster, account, PASSWORDS[account]);
  c.on('error', () => {});
  open.push(c);
  return c;
}

const setting = async (c: pg.Client, name: string) => (await c.query('select pg_catalog.current_setting($1, true) as v', [name])).rows[0].v as string | null;

describe('item 2: account defaults poisoned by one user', () => {
  it('db init removes every role and role-in-database setting a user gave the account, says what it removed, keeps its own', async () => {
    await init();
    const attacker = await as('app_writer');
    await attacker.query(`alter role current_user set default_transaction_read_only = on`);
    await attacker.query(`alter role current_user set search_path = public, pg_catalog`);
    await attacker.query(`alter role current_user set row_security = off`);
    await attacker.query(`alter role current_user in database mydb set statement_timeout = '1ms'`);
    await attacker.query(`alter role current_user reset client_connection_check_interval`);

    const poisoned = await as('app_writer');
    expect(await setting(poisoned, 'default_transaction_read_only')).toBe('on'); // what every later user got
    expect(await setting(poisoned, 'statement_timeout')).toBe('1ms');

    const { results, output } = await init();
    expect(results[0]!.changed).toContain('roleSettings');
    for (const removed of ['default_transaction_read_only=on', 'search_path=public, pg_catalog', 'row_security=off', 'statement_timeout=1ms']) {
      expect(output).toContain(`removed role setting ${removed} of app_writer`);
    }

    const victim = await as('app_writer');
    expect(await setting(victim, 'default_transaction_read_only')).toBe('off');
    expect(await setting(victim, 'statement_timeout')).toBe('0');
    expect(await setting(victim, 'search_path')).toBe('"$user", public');
    expect(await setting(victim, 'row_security')).toBe('on');
    const entries = (await cluster.query(`select setdatabase, setconfig from pg_db_role_setting where setrole = 'app_writer'::regrole`)).rows;
    expect(entries).toEqual([{ setdatabase: 0, setconfig: accountSettingsFor(cluster.majorVersion * 10000).map(settingEntry) }]);
    expect(entries[0]!.setconfig.every((e: string) => isExpectedAccountSetting(e))).toBe(true);
    expect(isExpectedAccountSetting('default_transaction_read_only=on')).toBe(false);
    expect(isExpectedAccountSetting(settingEntry(ACCOUNT_SETTINGS[0]!), 16384)).toBe(false);

    const before = await catalogDump(cluster);
    expect((await init()).results[0]!.changed).toEqual([]);
    expect(await catalogDump(cluster)).toEqual(before);
  });
});

describe('items 5 and 15: what db init sets for the accounts on purpose', () => {
  it('every backend of an account keeps bind values out of the log and checks for a vanished client (14+)', async () => {
    await init();
    for (const account of Object.keys(PASSWORDS) as (keyof typeof PASSWORDS)[]) {
      const c = await as(account);
      expect(await setting(c, 'log_parameter_max_length')).toBe('0');
      expect(await setting(c, 'log_parameter_max_length_on_error')).toBe('0');
      if (cluster.majorVersion >= 14) expect(await setting(c, 'client_connection_check_interval')).toBe('10s');
      // A user cannot turn the log setting back on for the account: it needs a superuser.
      await expect(c.query('alter role current_user set log_parameter_max_length = -1')).rejects.toMatchObject({ code: '42501' });
      await expect(c.query('set log_parameter_max_length = -1')).rejects.toMatchObject({ code: '42501' });
    }
  });

  it('a non-superuser admin cannot set log_parameter_max_length: db init says so instead of failing', async () => {
    await cluster.query(`create role limited_admin login createrole password 'limited-admin-pw-0123'`);
    await cluster.query(`grant all on database mydb to limited_admin`);
    await cluster.query(`alter role app_reader reset log_parameter_max_length`);
    try {
      const { planDbInit } = await import('../../src/sql/db-init.js');
      const { inspectDatabase } = await import('../../src/sql/db-init.js');
      const c = await connect(cluster, 'limited_admin', 'limited-admin-pw-0123');
      try {
        const state = await inspectDatabase(c, testConfig(cluster));
        expect(state.privileged).toBe(false);
        const plan = planDbInit(testConfig(cluster), testConfig(cluster).databases.mydb!, {}, state);
        expect(plan.notes).toContainEqual(expect.stringContaining('log_parameter_max_length not set for the accounts: it needs a superuser'));
      } finally {
        await c.end();
      }
    } finally {
      await cluster.query(`drop owned by limited_admin; drop role limited_admin`, [], 'mydb');
      await init();
    }
  });
});
