/**
 * What row-level security through the gprxy functions costs per query (not a timed test: it prints).
 *
 *   node --import tsx bench/rls-cost.ts [--rows 100000] [--runs 15]
 *   GPRXY_TEST_PG_BIN=/usr/lib/postgresql/15/bin node --import tsx bench/rls-cost.ts
 *
 * One throwaway cluster (track_functions = all, so pg_stat_get_xact_function_calls counts how often
 * gprxy.claims() verifies), `db init`, and four copies of a table with half its rows in each tenant:
 * no policy; a policy on a plain setting (forgeable, the baseline); `tenant = (SELECT gprxy.tenant_id())`
 * (the documented form); `tenant = gprxy.tenant_id()` (no sub-select: once per row, on a smaller table).
 * Queried as the writer service account with a valid context for its own backend.
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { buildProxyConfig } from '../src/config/proxy-config.js';
import { startCluster } from '../src/demo/postgres-cluster.js';
import { BACKEND_START_SQL, buildContextPayload, EpochSource, signContext } from '../src/proxy/identity-context.js';
import { runDbInit } from '../src/sql/db-init.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const ROWS = arg('rows', 100_000);
const RUNS = arg('runs', 15);
const PER_ROW_ROWS = Math.min(ROWS, 10_000);
const SECRET = 'bench-context-secret-0123456789abcdef';
const PASSWORD = 'bench-writer-password-0123';

const binDir = process.env.GPRXY_TEST_PG_BIN || undefined;
const cluster = await startCluster({ ...(binDir ? { binDir } : {}), settings: { track_functions: 'all' } });
try {
  await cluster.createDatabase('bench');
  const config = buildProxyConfig(
    {
      tls: { allow_plaintext_loopback: true },
      providers: [{ issuer: 'https://idp.example/', audience: 'bench' }],
      role_mapping: [{ role: 'pg_writer', account: 'app_writer' }],
      accounts: { app_writer: { password: PASSWORD } },
      databases: { bench: { host: cluster.host, port: cluster.port } },
      context: { secret: SECRET },
    },
    {},
    '/',
  );
  await runDbInit(config, { adminUrl: cluster.url(), out: () => {} });
  const table = (name: string, rows: number, policy?: string) => `
    create table ${name} (id int primary key, tenant text not null, payload text not null);
    insert into ${name} select i, case when i % 2 = 0 then 'tenant-a' else 'tenant-b' end, md5(i::text) from generate_series(1, ${rows}) i;
    ${policy ? `alter table ${name} enable row level security; create policy p on ${name} for select using (${policy});` : ''}
    grant select on ${name} to gprxy_writer;
    analyze ${name};`;
  await cluster.query(
    [
      table('t_none', ROWS),
      table('t_setting', ROWS, `tenant = current_setting('app.tenant_id', true)`),
      table('t_gprxy', ROWS, `tenant = (select gprxy.tenant_id())`),
      table('t_gprxy_per_row', PER_ROW_ROWS, `tenant = gprxy.tenant_id()`),
    ].join('\n'),
    [],
    'bench',
  );

  const client = new pg.Client({ connectionString: cluster.url('bench', 'app_writer', PASSWORD) });
  await client.connect();
  const pid = (await client.query('select pg_backend_pid() as pid')).rows[0].pid as number;
  const startMicros = (await client.query({ text: BACKEND_START_SQL, rowMode: 'array' })).rows[0]![0] as string;
  const identity = { user: 'alice', subject: 'auth0|alice0001', email: 'alice@example.com', roles: ['pg_writer'], account: 'app_writer', tenantId: 'tenant-a', claims: {} };
  // What the proxy does at checkout: record an epoch for this backend, and sign the context with it.
  const epoch = new EpochSource().next();
  await client.query('select gprxy.begin_session($1)', [epoch]);
  const context = signContext(SECRET, buildContextPayload(identity, 'tenant-a', Date.now() + 3_600_000, { pid, startMicros, epoch }, Date.now()));
  await client.query(`select set_config('gprxy.context', $1, false), set_config('app.tenant_id', 'tenant-a', false)`, [context]);

  const claimsCalls = async () => (await client.query(`select coalesce(pg_stat_get_xact_function_calls('gprxy.claims()'::regprocedure), 0)::int as n`)).rows[0].n as number;
  const measure = async (sql: string, runs: number): Promise<{ ms: number; visible: number; calls: number }> => {
    await client.query(sql); // warm caches and plans
    const times: number[] = [];
    let visible = 0;
    let calls = 0;
    for (let i = 0; i < runs; i++) {
      await client.query('begin');
      const before = await claimsCalls();
      const t0 = performance.now();
      visible = Number((await client.query(sql)).rows[0].n);
      times.push(performance.now() - t0);
      calls = (await claimsCalls()) - before;
      await client.query('commit');
    }
    times.sort((a, b) => a - b);
    return { ms: times[Math.floor(times.length / 2)]!, visible, calls };
  };

  const cases: { policy: string; table: string; where: string; scanned: number; runs: number }[] = [
    { policy: 'none', table: 't_none', where: '', scanned: ROWS, runs: RUNS },
    { policy: "none, where tenant = 'tenant-a'", table: 't_none', where: "where tenant = 'tenant-a'", scanned: ROWS, runs: RUNS },
    { policy: "current_setting('app.tenant_id')", table: 't_setting', where: '', scanned: ROWS, runs: RUNS },
    { policy: '(select gprxy.tenant_id())', table: 't_gprxy', where: '', scanned: ROWS, runs: RUNS },
    { policy: 'none', table: 't_none', where: 'where id = 2', scanned: 1, runs: RUNS * 4 },
    { policy: "current_setting('app.tenant_id')", table: 't_setting', where: 'where id = 2', scanned: 1, runs: RUNS * 4 },
    { policy: '(select gprxy.tenant_id())', table: 't_gprxy', where: 'where id = 2', scanned: 1, runs: RUNS * 4 },
    { policy: 'gprxy.tenant_id()  [per row]', table: 't_gprxy_per_row', where: '', scanned: PER_ROW_ROWS, runs: 3 },
  ];
  const results: { policy: string; 'rows scanned': number; 'rows visible': number; 'ms/query (median)': string; 'claims() calls/query': number }[] = [];
  for (const c of cases) {
    const r = await measure(`select count(*) as n from ${c.table} ${c.where}`, c.runs);
    results.push({ policy: c.policy, 'rows scanned': c.scanned, 'rows visible': r.visible, 'ms/query (median)': r.ms.toFixed(3), 'claims() calls/query': r.calls });
  }
  // Verifications in bulk, server side (2000 in one statement): the per-call work without the per-query part.
  const t0 = performance.now();
  await client.query('select count(gprxy.claims()) from generate_series(1, 2000)');
  const perCall = ((performance.now() - t0) * 1000) / 2000;
  await client.end();

  const version = (await cluster.query('show server_version')).rows[0]!.server_version as string;
  console.log(`PostgreSQL ${version}, ${ROWS} rows (${PER_ROW_ROWS} for the per-row case), median of ${RUNS} runs (1-row cases: ${RUNS * 4})`);
  console.table(results);
  const ms = (policy: string, scanned: number) => Number(results.find((r) => r.policy === policy && r['rows scanned'] === scanned)!['ms/query (median)']);
  const gprxy = '(select gprxy.tenant_id())';
  console.log(`claims() runs once per query with ${gprxy} (see the calls column), once per row without the sub-select.`);
  console.log(
    `added per query by the policy: ${(ms(gprxy, 1) - ms('none', 1)).toFixed(3)} ms on a 1-row lookup; ` +
      `full scan ×${(ms(gprxy, ROWS) / ms("none, where tenant = 'tenant-a'", ROWS)).toFixed(2)} of the same filter without a policy ` +
      `(current_setting policy: ×${(ms("current_setting('app.tenant_id')", ROWS) / ms("none, where tenant = 'tenant-a'", ROWS)).toFixed(2)}).`,
  );
  console.log(`a verification repeated within one statement: ~${perCall.toFixed(1)} µs each (the first in a transaction also reads pg_stat_activity's snapshot).`);
} finally {
  await cluster.stop();
}
