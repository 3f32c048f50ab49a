/**
 * The system under test for the chaos scenarios: real PostgreSQL (embedded 18, or GPRXY_TEST_PG_BIN) with the
 * service accounts and `notes` of test/support/postgres.ts, the dev OIDC provider over HTTPS
 * (test/support/oidc.ts), and `gprxy serve` in its own process (bench/proxy-child.ts: a config file, a log
 * file, IPC for memory, handles and pool counts), so the proxy's memory is its own and a crash is visible.
 * The config is test/support/proxy-stack.ts's proxyDocument with real files.
 */
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { onCleanup, startNodeChild, trackDir, type NodeChild } from '../../bench/processes.js';
import type { PemPair } from '../../src/demo/certificates.js';
import type { ClusterOptions } from '../../src/demo/postgres-cluster.js';
import { startTestProvider, type TestProvider } from '../../test/support/oidc.js';
import { createAppDatabase, startTestPostgres, type Cluster } from '../../test/support/postgres.js';
import { proxyDocument } from '../../test/support/proxy-stack.js';
import { appendRunLog, SECRET_PATTERNS } from '../../test/support/run-log.js';
import { loginAs } from '../../test/support/tokens.js';

export interface ProxyStats {
  memory: NodeJS.MemoryUsage;
  sessions: number;
  pools: Record<string, { size: number; total: number; idle: number; active: number; waiting: number; draining: number }>;
  handles: Record<string, number>;
}

export interface ChaosStackOptions {
  readonly cluster?: Omit<ClusterOptions, 'binDir'>;
  readonly accessTokenTtlSeconds?: number;
  /** Overrides of the proxy config document (top-level keys replace proxyDocument's); a function gets the cluster. */
  readonly proxy?: Record<string, unknown> | ((cluster: Cluster) => Record<string, unknown>);
  /** Node flags for the proxy process (e.g. --expose-gc). */
  readonly proxyExecArgv?: string[];
}

export interface ChaosStack {
  readonly dir: string;
  readonly cluster: Cluster;
  readonly idp: TestProvider;
  readonly leaf: PemPair;
  readonly proxy: { readonly port: number; readonly pid: number; readonly handle: NodeChild<{ port: number; pid: number }> };
  /** An access token of a dev user (alice: pg_writer, bob: pg_reader, sathwick: pg_admin), cached per user. */
  token(user?: string): Promise<string>;
  /** (Re)starts the proxy with the given overrides of the config document. */
  startProxy(overrides?: Record<string, unknown>): Promise<void>;
  stats(gc?: boolean): Promise<ProxyStats>;
  /** The proxy's log lines so far (parsed), also appended to the test run's log for its token scan. */
  logLines(): Record<string, unknown>[];
  /** Log lines holding anything token-shaped (must be none). */
  leakedTokens(): number;
  /** node-postgres client options through the proxy as `user` (TLS, trusting the test CA). */
  clientConfig(token: string, user?: string, database?: string): pg.ClientConfig;
  stop(): Promise<void>;
}

export const EMAIL: Record<string, string> = { alice: 'alice@example.com', bob: 'bob@example.com', sathwick: 'sathwick@example.com' };

export async function startChaosStack(o: ChaosStackOptions = {}): Promise<ChaosStack> {
  const dir = trackDir(mkdtempSync(join(tmpdir(), 'gprxy-chaos-')));
  const cluster = await startTestPostgres(o.cluster ?? {});
  let clusterStopped = false;
  const stopCluster = async () => {
    if (clusterStopped) return;
    clusterStopped = true;
    await cluster.stop();
  };
  onCleanup('postgres', stopCluster);
  await createAppDatabase(cluster);
  const idp = await startTestProvider(o.accessTokenTtlSeconds ? { accessTokenTtlSeconds: o.accessTokenTtlSeconds } : {});
  let idpClosed = false;
  const closeIdp = async () => {
    if (idpClosed) return;
    idpClosed = true;
    await idp.close();
  };
  onCleanup('oidc provider', closeIdp);
  const leaf = await idp.ca.issue(['localhost', '127.0.0.1']);
  const files = { cert: join(dir, 'proxy.crt'), key: join(dir, 'proxy.key'), ca: join(dir, 'provider-ca.crt'), config: join(dir, 'gprxy.json'), log: join(dir, 'gprxy.log') };
  writeFileSync(files.cert, leaf.cert, { mode: 0o600 });
  writeFileSync(files.key, leaf.key, { mode: 0o600 });
  writeFileSync(files.ca, idp.provider.caCert, { mode: 0o600 });

  const tokens = new Map<string, string>();
  let proxy: ChaosStack['proxy'] | undefined;
  let logOffset = 0;
  const lines: Record<string, unknown>[] = [];
  let leaks = 0;
  const readLog = () => {
    if (!existsSync(files.log)) return;
    const text = readFileSync(files.log, 'utf8');
    const fresh = text.slice(logOffset);
    const end = fresh.lastIndexOf('\n') + 1;
    if (end === 0) return;
    logOffset += end;
    const complete = fresh.slice(0, end);
    appendRunLog(complete);
    for (const line of complete.split('\n')) {
      if (!line.trim()) continue;
      if (SECRET_PATTERNS.some((p) => p.test(line))) leaks++;
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ unparsed: line.slice(0, 200) });
      }
      if (lines.length > 200_000) lines.splice(0, 100_000); // long runs: keep the recent half
    }
  };

  const stack: ChaosStack = {
    dir,
    cluster,
    idp,
    leaf,
    get proxy() {
      return proxy!;
    },
    async token(user = 'alice') {
      let t = tokens.get(user);
      if (!t) {
        t = (await loginAs(idp.provider, user)).accessToken;
        tokens.set(user, t);
      }
      return t;
    },
    async startProxy(overrides = {}) {
      await proxy?.handle.stop();
      const base = proxyDocument(cluster, idp, leaf, { ...(typeof o.proxy === 'function' ? o.proxy(cluster) : o.proxy), ...overrides });
      const doc = {
        ...base,
        // The load comes from a few identities: no per-identity limit unless a scenario sets one.
        limits: { max_sessions_per_identity: 0, ...(base.limits as Record<string, unknown>) },
        tls: { cert: files.cert, key: files.key, allow_plaintext_loopback: true },
        providers: [{ issuer: idp.provider.issuer, audience: 'https://gprxy.io', algorithms: ['RS256'], ca: files.ca }],
        log: { level: 'info', file: files.log },
      };
      writeFileSync(files.config, JSON.stringify(doc, null, 2), { mode: 0o600 });
      const handle = await startNodeChild<{ port: number; pid: number }>(join(import.meta.dirname, '..', '..', 'bench', 'proxy-child.ts'), { configPath: files.config }, { execArgv: ['--expose-gc', ...(o.proxyExecArgv ?? [])] });
      onCleanup('gprxy', () => handle.stop());
      proxy = { port: handle.ready.port, pid: handle.ready.pid, handle };
    },
    async stats(gc = false) {
      return proxy!.handle.request<ProxyStats>({ type: gc ? 'gc' : 'stats' });
    },
    logLines() {
      readLog();
      return lines;
    },
    leakedTokens() {
      readLog();
      return leaks;
    },
    clientConfig(token, user = 'alice', database = 'mydb') {
      return { host: '127.0.0.1', port: proxy!.port, user: EMAIL[user] ?? user, password: token, database, ssl: { ca: idp.ca.cert, servername: 'localhost' }, connectionTimeoutMillis: 15_000 };
    },
    async stop() {
      await proxy?.handle.stop();
      readLog();
      await closeIdp();
      await stopCluster();
    },
  };
  await stack.startProxy();
  return stack;
}

/** Connections of the service accounts PostgreSQL has open (pool backends), by account. */
export async function serviceBackends(cluster: Cluster): Promise<Record<string, number>> {
  const r = await cluster.query<{ usename: string; n: string }>("select usename, count(*) as n from pg_stat_activity where usename like 'app_%' group by usename");
  return Object.fromEntries(r.rows.map((x) => [x.usename, Number(x.n)]));
}
