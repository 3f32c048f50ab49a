// The upgrade path: a database prepared by the db init of before issue 11 (its --print output, kept in
// fixtures/, applied with psql), then used the way a hostile user of a shared account would, then today's
// db init. It must succeed, repair what it owns, and a second run must change nothing.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDbInit } from '../../src/sql/db-init.js';
import { startTestPostgres, type Cluster } from '../support/postgres.js';
import { ALICE, beginSession, catalogDump, connect, contextFor, PASSWORDS, SECRET_1, testConfig } from './support.js';

const psql = ['/usr/lib/postgresql/15/bin/psql', '/usr/bin/psql'].find((p) => existsSync(p));
const FIXTURE = fileURLToPath(new URL('./fixtures/db-init-before-issue-11.sql', import.meta.url));
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startTestPostgres();
  await cluster.createDatabase('upgraded');
});

afterAll(async () => {
  await cluster?.stop();
});

describe.skipIf(!psql)('upgrade from an install made by the db init of before issue 11', () => {
  it('today\'s db init repairs an old, attacked install and is idempotent afterwards', async () => {
    await cluster.query('grant create on schema public to public', [], 'upgraded'); // PostgreSQL 13/14 defaults
    execFileSync(psql!, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-v', `gprxy_context_secret=${SECRET_1}`, '-f', FIXTURE, cluster.url('upgraded')], { stdio: ['ignore', 'pipe', 'pipe'] });

    // What a user of app_writer could do to the others on the old install.
    const attacker = await connect(cluster, 'app_writer', PASSWORDS.app_writer, 'upgraded');
    await attacker.query(`alter role current_user set default_transaction_read_only = on`);
    await attacker.query(`create function public.planted() returns int language sql as $$ select 1 $$`);
    expect((await attacker.query(`select count(*)::int as n from pg_stat_activity`)).rows[0].n).toBeGreaterThan(0);
    await attacker.end();

    const config = testConfig(cluster, { databases: { upgraded: { host: cluster.host, port: cluster.port } } });
    let output = '';
    const [result] = await runDbInit(config, { adminUrl: cluster.url(), out: (t) => (output += `${t}\n`) });
    expect(result!.changed).toEqual(expect.arrayContaining(['roleSettings', 'peerFunctions', 'publicSchema', 'routines']));
    expect(output).toContain('removed role setting default_transaction_read_only=on of app_writer');
    expect(output).toContain('revoked CREATE on schema public from PUBLIC');
    expect(output).toContain('revoked EXECUTE on pg_stat_get_activity(integer)');

    const user = await connect(cluster, 'app_writer', PASSWORDS.app_writer, 'upgraded');
    try {
      expect((await user.query(`select current_setting('default_transaction_read_only') as v`)).rows[0].v).toBe('off');
      await expect(user.query('select query from pg_stat_activity')).rejects.toMatchObject({ code: '42501' });
      await expect(user.query(`create function public.again() returns int language sql as $$ select 1 $$`)).rejects.toMatchObject({ code: '42501' });
      await user.query(`select set_config('gprxy.context', $1, false)`, [contextFor(SECRET_1, ALICE, await beginSession(user))]);
      expect((await user.query('select gprxy.tenant_id() as t')).rows[0].t).toBe('tenant-a');
      await expect(user.query('select gprxy.begin_session(null)')).rejects.toMatchObject({ code: '22004' }); // the new function body
    } finally {
      await user.end();
    }

    const before = await catalogDump(cluster, 'upgraded');
    const [again] = await runDbInit(config, { adminUrl: cluster.url(), out: () => {} });
    expect(again!.changed).toEqual([]);
    expect(await catalogDump(cluster, 'upgraded')).toEqual(before);
  });
});
