/**
 * Login cost of identity: per_user next to shared_account (issue 12): one PostgreSQL cluster with two
 * databases (`shared`: the mapped service account; `peruser`: a role per person), one ProxyServer in this
 * process (TLS, dev OIDC provider, db init applied), N dev users with real access tokens.
 * Measured per login (TLS connect to the proxy, token check, backend, setup, `select 1`, close):
 *   first: each user's first login (per_user: the role is created, a new backend logs in as it);
 *   warm:  the same users again (per_user: the provisioning transaction still runs; an idle backend of the
 *          user's pool is reused).
 * And the login rate with C clients looping over the users (warm). The relay after login is the same code in
 * both modes, so per-query latency does not differ; this is about logins.
 *
 *   npm run bench:per-user [-- --users 40 --concurrency 8 --rounds 200]
 *   GPRXY_TEST_PG_BIN=/usr/lib/postgresql/15/bin npm run bench:per-user   # Debian's PostgreSQL 15
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import pino from 'pino';
import { buildProxyConfig } from '../src/config/proxy-config.js';
import { createCertificateAuthority } from '../src/demo/certificates.js';
import { startDevProvider, type DevUser } from '../src/demo/oidc-provider.js';
import { startCluster } from '../src/demo/postgres-cluster.js';
import { ProxyServer } from '../src/proxy/server.js';
import { runDbInit } from '../src/sql/db-init.js';
import { loginAs } from '../test/support/tokens.js';

const { values } = parseArgs({ options: { users: { type: 'string', default: '40' }, concurrency: { type: 'string', default: '8' }, rounds: { type: 'string', default: '200' } } });
const USERS = Number(values.users);
const CONCURRENCY = Number(values.concurrency);
const ROUNDS = Number(values.rounds);

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

async function main(): Promise<void> {
  const ca = await createCertificateAuthority('gprxy bench CA');
  const leaf = await ca.issue(['localhost', '127.0.0.1']);
  const binDir = process.env.GPRXY_TEST_PG_BIN || undefined;
  const cluster = await startCluster({ ...(binDir ? { binDir } : {}) });
  const users: DevUser[] = Array.from({ length: USERS }, (_, i) => ({
    username: `user${i}`,
    password: 'pw',
    sub: `auth0|user${i}`,
    email: `user${i}@example.com`,
    name: `User ${i}`,
    roles: ['pg_writer'],
    orgId: 'tenant-a',
  }));
  const provider = await startDevProvider({ ca, users, accessTokenTtlSeconds: 3600 });
  let proxy: ProxyServer | undefined;
  try {
    await cluster.createRole('app_writer', 'writer-secret-0123456789');
    for (const db of ['shared', 'peruser']) await cluster.createDatabase(db);
    const files: Record<string, string> = { cert: leaf.cert, key: leaf.key, ca: provider.caCert };
    const config = buildProxyConfig(
      {
        listen: '127.0.0.1:0',
        tls: { cert: 'cert', key: 'key' },
        providers: [{ issuer: provider.issuer, audience: 'https://gprxy.io', ca: 'ca' }],
        role_mapping: [{ role: 'pg_writer', account: 'app_writer' }],
        accounts: { app_writer: { password: 'writer-secret-0123456789', pool_size: 20 } },
        databases: {
          shared: { host: cluster.host, port: cluster.port, pool: { size: 20 } },
          peruser: { host: cluster.host, port: cluster.port, identity: 'per_user', pool: { size: 2 } },
        },
        provisioning: { admin_url: cluster.url(), secret: 'bench-provisioning-secret-0123456789abcdef' },
        context: { secret: 'bench-context-secret-0123456789abcdef' },
        limits: { max_sessions_per_identity: 0 },
        log: { level: 'warn' },
      },
      {},
      '/',
      (p) => files[p.split('/').pop()!]!,
    );
    await runDbInit(config, { adminUrl: cluster.url(), out: () => {} });
    proxy = new ProxyServer(config, { logger: pino({ level: 'warn' }) });
    await proxy.start();
    const port = proxy.address.port;
    const tokens: string[] = [];
    for (const u of users) tokens.push((await loginAs(provider, u.username)).accessToken);

    const login = async (i: number, database: string): Promise<number> => {
      const t0 = performance.now();
      const c = new pg.Client({ host: '127.0.0.1', port, user: users[i]!.email, password: tokens[i]!, database, ssl: { ca: ca.cert, servername: 'localhost' } });
      await c.connect();
      await c.query('select 1');
      await c.end();
      return performance.now() - t0;
    };
    const sequential = async (database: string): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < USERS; i++) out.push(await login(i, database));
      return out;
    };
    const rate = async (database: string): Promise<number> => {
      let next = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          for (let n = next++; n < ROUNDS; n = next++) await login(n % USERS, database);
        }),
      );
      return ROUNDS / ((performance.now() - t0) / 1000);
    };

    const rows: [string, number[]][] = [];
    rows.push(['shared_account, first login of each user', await sequential('shared')]);
    rows.push(['per_user, first login of each user (role created)', await sequential('peruser')]);
    rows.push(['shared_account, warm', await sequential('shared')]);
    rows.push(['per_user, warm (role exists, pooled backend)', await sequential('peruser')]);
    const rates = [
      ['shared_account', await rate('shared')],
      ['per_user', await rate('peruser')],
      ['shared_account (again)', await rate('shared')],
      ['per_user (again)', await rate('peruser')],
    ] as const;

    const version = (await cluster.query<{ v: string }>(`select current_setting('server_version') as v`)).rows[0]!.v.split(' ')[0];
    console.log(`PostgreSQL ${version}, ${USERS} users, Node ${process.version}`);
    console.log('| login (TLS connect, token, backend, setup, select 1, close), sequential | median ms | p90 ms |');
    console.log('|---|--:|--:|');
    for (const [name, xs] of rows) console.log(`| ${name} | ${quantile(xs, 0.5).toFixed(1)} | ${quantile(xs, 0.9).toFixed(1)} |`);
    console.log('');
    console.log(`| login rate, ${CONCURRENCY} clients, ${ROUNDS} warm logins | logins/s |`);
    console.log('|---|--:|');
    for (const [name, r] of rates) console.log(`| ${name} | ${r.toFixed(0)} |`);
  } finally {
    await proxy?.close();
    await provider.close();
    await cluster.stop();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
