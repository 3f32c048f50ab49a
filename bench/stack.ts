/**
 * Everything the benchmark measures against, on loopback: PostgreSQL (TLS on, SCRAM), the pgbench tables,
 * the dev OIDC provider and alice's access token, PgBouncer, and gprxy in a child process. Every piece is
 * registered for cleanup as soon as it exists.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCertificateAuthority, type CertificateAuthority, type PemPair } from '../src/demo/certificates.js';
import { startDevProvider, type DevProvider } from '../src/demo/oidc-provider.js';
import { startCluster, type Cluster } from '../src/demo/postgres-cluster.js';
import { loginAs } from '../test/support/tokens.js';
import { startPgBouncer, type PgBouncer } from './pgbouncer.js';
import type { Endpoint } from './pgbench.js';
import { onCleanup, startNodeChild, trackDir, type NodeChild } from './processes.js';

export const DATABASE = 'mydb';
export const ACCOUNT = 'app_writer';
const ACCOUNT_PASSWORD = 'writer-secret-0123456789';
const CONTEXT_SECRET = 'bench-context-secret-0123456789abcdef';

export interface ProxyChild {
  readonly port: number;
  readonly pid: number;
  readonly handle: NodeChild<{ port: number; pid: number }>;
}

export interface Stack {
  readonly dir: string;
  readonly ca: CertificateAuthority;
  readonly leaf: PemPair;
  readonly cluster: Cluster;
  readonly provider: DevProvider;
  readonly token: string;
  readonly email: string;
  readonly direct: Endpoint;
  pgbouncer: PgBouncer;
  proxy: ProxyChild;
  /** The bare Node.js relay in front of PostgreSQL, once started. */
  pipe: { port: number; pid: number } | undefined;
  endpoints(): { direct: Endpoint; pgbouncer: Endpoint; gprxy: Endpoint; pipe?: Endpoint };
  /** gprxy with databases.<name>.audit.statements set to `mode` (same PostgreSQL database). */
  auditEndpoint(mode: 'none' | 'ddl' | 'all' | 'all-file'): Endpoint;
  startPipe(): Promise<void>;
  startPgBouncer(poolMode?: 'session' | 'transaction'): Promise<PgBouncer>;
  /** gprxy's transaction-pooling database (pool.mode: transaction, same PostgreSQL database). */
  txEndpoint(): Endpoint;
  startProxy(opts?: { execArgv?: string[] }): Promise<ProxyChild>;
  versions: Record<string, string>;
}

export interface StackOptions {
  readonly pool: number;
  readonly scale: number;
  readonly pgBin: string | undefined;
  readonly maxClients: number;
  readonly proxyExecArgv?: string[];
  readonly log: (line: string) => void;
}

function firstLine(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args).toString().split('\n')[0]!.trim();
  } catch {
    return 'unavailable';
  }
}

export async function startStack(o: StackOptions): Promise<Stack> {
  const dir = trackDir(mkdtempSync(join(tmpdir(), 'gprxy-bench-')));
  // PgBouncer runs as postgres in a subdirectory: it may pass through, not list or read.
  chmodSync(dir, 0o711);
  const ca = await createCertificateAuthority('gprxy bench CA');
  const leaf = await ca.issue(['localhost', '127.0.0.1']);

  o.log(`starting PostgreSQL (${o.pgBin ?? 'embedded'})`);
  const cluster = await startCluster({
    ...(o.pgBin ? { binDir: o.pgBin } : {}),
    tls: leaf,
    settings: { max_connections: String(Math.max(300, o.pool * 3 + 60)), log_min_messages: 'warning' },
  });
  onCleanup('postgres', () => cluster.stop());
  await cluster.createDatabase(DATABASE);
  await cluster.createRole(ACCOUNT, ACCOUNT_PASSWORD);
  o.log(`pgbench -i -s ${o.scale}`);
  execFileSync('pgbench', ['-i', '-q', '-s', String(o.scale), '-h', cluster.host, '-p', String(cluster.port), '-U', cluster.superuser, DATABASE], {
    env: { PATH: process.env.PATH, PGPASSWORD: cluster.superuserPassword, PGSSLMODE: 'disable' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await cluster.query(`grant select on all tables in schema public to ${ACCOUNT}`, [], DATABASE);
  const verifier = (await cluster.query<{ rolpassword: string }>('select rolpassword from pg_authid where rolname = $1', [ACCOUNT])).rows[0]!.rolpassword;

  o.log('starting the dev OIDC provider and logging in as alice');
  const provider = await startDevProvider({ ca, accessTokenTtlSeconds: 6 * 3600 });
  onCleanup('oidc provider', () => provider.close());
  const token = (await loginAs(provider, 'alice')).accessToken;
  const email = 'alice@example.com';

  const files = {
    cert: join(dir, 'proxy.crt'),
    key: join(dir, 'proxy.key'),
    providerCa: join(dir, 'provider-ca.crt'),
    config: join(dir, 'gprxy.json'),
    log: join(dir, 'gprxy.log'),
  };
  writeFileSync(files.cert, leaf.cert, { mode: 0o600 });
  writeFileSync(files.key, leaf.key, { mode: 0o600 });
  writeFileSync(files.providerCa, provider.caCert, { mode: 0o600 });
  // The proxy as an operator would configure it (DESIGN.md 2.2), with PgBouncer's pool size.
  const config = {
    listen: '127.0.0.1:0',
    tls: { cert: files.cert, key: files.key, allow_plaintext_loopback: true },
    providers: [{ issuer: provider.issuer, audience: 'https://gprxy.io', algorithms: ['RS256'], ca: files.providerCa }],
    role_mapping: [{ role: 'pg_writer', account: ACCOUNT }],
    accounts: { [ACCOUNT]: { password: ACCOUNT_PASSWORD } },
    // The same database four times for the statement-audit section: audit off (the default), ddl, all
    // (events in the proxy log), all with audit.file.
    databases: {
      [DATABASE]: { host: cluster.host, port: cluster.port, dbname: DATABASE, pool: { size: o.pool } },
      [`${DATABASE}_audit_ddl`]: { host: cluster.host, port: cluster.port, dbname: DATABASE, pool: { size: o.pool }, audit: { statements: 'ddl' } },
      [`${DATABASE}_audit_all`]: { host: cluster.host, port: cluster.port, dbname: DATABASE, pool: { size: o.pool }, audit: { statements: 'all' } },
      // Transaction pooling (issue 17; bench/txpool.ts).
      [`${DATABASE}_tx`]: { host: cluster.host, port: cluster.port, dbname: DATABASE, pool: { mode: 'transaction', size: o.pool } },
      [`${DATABASE}_audit_all_file`]: { host: cluster.host, port: cluster.port, dbname: DATABASE, pool: { size: o.pool }, audit: { statements: 'all', file: join(dir, 'statements.log') } },
    },
    context: {
      secret: CONTEXT_SECRET,
      settings: { 'app.user_id': 'https://gprxy.io/user_id', 'app.tenant_id': 'https://gprxy.io/org_id', 'app.roles': 'https://gprxy.io/roles', 'app.email': 'https://gprxy.io/email' },
    },
    // Thousands of idle clients wait for a backend in the memory measurement, as PgBouncer's do.
    // One identity (alice) opens every benchmark connection: no per-identity limit here.
    limits: { max_client_connections: 20_000, login_timeout: '10m', pool_wait_timeout: '10m', max_sessions_per_identity: 0 },
    log: { level: 'info', file: files.log },
  };
  writeFileSync(files.config, JSON.stringify(config, null, 2), { mode: 0o600 });

  const direct: Endpoint = { name: 'direct', host: cluster.host, port: cluster.port, user: ACCOUNT, password: ACCOUNT_PASSWORD, database: DATABASE };

  let pgbouncerRuns = 0;
  const stack: Stack = {
    dir,
    ca,
    leaf,
    cluster,
    provider,
    token,
    email,
    direct,
    pgbouncer: undefined as unknown as PgBouncer,
    proxy: undefined as unknown as ProxyChild,
    pipe: undefined,
    endpoints() {
      return {
        ...(stack.pipe ? { pipe: { ...direct, name: 'pipe', host: '127.0.0.1', port: stack.pipe.port } } : {}),
        direct,
        pgbouncer: { name: 'pgbouncer', host: '127.0.0.1', port: stack.pgbouncer.port, user: ACCOUNT, password: ACCOUNT_PASSWORD, database: DATABASE },
        gprxy: { name: 'gprxy', host: '127.0.0.1', port: stack.proxy.port, user: email, password: token, database: DATABASE },
      };
    },
    auditEndpoint(mode) {
      return { name: `gprxy-audit-${mode}`, host: '127.0.0.1', port: stack.proxy.port, user: email, password: token, database: mode === 'none' ? DATABASE : `${DATABASE}_audit_${mode.replace('-', '_')}` };
    },
    txEndpoint() {
      return { name: 'gprxy-tx', host: '127.0.0.1', port: stack.proxy.port, user: email, password: token, database: `${DATABASE}_tx` };
    },
    async startPgBouncer(poolMode = 'session') {
      await stack.pgbouncer?.stop();
      const pgb = await startPgBouncer({
        dir: join(dir, `pgbouncer-${pgbouncerRuns++}`),
        server: { host: cluster.host, port: cluster.port, dbname: DATABASE },
        users: { [ACCOUNT]: verifier },
        poolSize: o.pool,
        poolMode,
        maxClientConnections: Math.max(o.maxClients + 100, 1000),
        tls: leaf,
      });
      onCleanup('pgbouncer', () => pgb.stop());
      stack.pgbouncer = pgb;
      return pgb;
    },
    async startPipe() {
      const handle = await startNodeChild<{ port: number; pid: number }>(join(import.meta.dirname, 'pipe-child.ts'), { target: { host: cluster.host, port: cluster.port } });
      onCleanup('node pipe', () => handle.stop());
      stack.pipe = { port: handle.ready.port, pid: handle.ready.pid };
    },
    async startProxy(opts = {}) {
      await stack.proxy?.handle.stop();
      const handle = await startNodeChild<{ port: number; pid: number }>(join(import.meta.dirname, 'proxy-child.ts'), { configPath: files.config }, { execArgv: [...(o.proxyExecArgv ?? []), ...(opts.execArgv ?? [])] });
      onCleanup('gprxy', () => handle.stop());
      stack.proxy = { port: handle.ready.port, pid: handle.ready.pid, handle };
      return stack.proxy;
    },
    versions: {
      node: process.version,
      openssl: process.versions.openssl,
      postgres: firstLine(join(cluster.binDir, 'postgres'), ['--version']),
      pgbench: firstLine('pgbench', ['--version']),
      pgbouncer: firstLine('pgbouncer', ['--version']),
      gprxy: (JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { version: string }).version,
    },
  };
  o.log('starting PgBouncer and gprxy');
  await stack.startPgBouncer();
  await stack.startProxy();
  return stack;
}
