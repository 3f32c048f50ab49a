/**
 * The whole central half for a suite: real PostgreSQL with the service accounts, the dev OIDC provider
 * over HTTPS, and `ProxyServer` with TLS on a certificate from the same test CA. Every log line is kept
 * in memory so tests can assert audit events and grep for leaked tokens.
 */
import { Writable } from 'node:stream';
import { appendRunLog } from './run-log.js';
import { buildProxyConfig, type ProxyConfig } from '../../src/config/proxy-config.js';
import { createLogger } from '../../src/proxy/logger.js';
import { ProxyServer, type ProxyServerDeps } from '../../src/proxy/server.js';
import { startTestProvider, type TestProvider } from './oidc.js';
import { createAppDatabase, SERVICE_ACCOUNTS, startTestPostgres, type Cluster } from './postgres.js';

export const CONTEXT_SECRET = 'test-context-secret-0123456789abcdef';

export class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  raw = '';
  private waiters: { match: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];

  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    const text = chunk.toString();
    this.raw += text;
    appendRunLog(text);
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      const parsed = JSON.parse(line) as Record<string, unknown>;
      this.lines.push(parsed);
      this.waiters = this.waiters.filter((w) => (w.match(parsed) ? (w.resolve(parsed), false) : true));
    }
    cb();
  }

  /** Resolves with the first line (already logged or future) that matches. */
  waitFor(match: (l: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const found = this.lines.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('log line did not appear')), timeoutMs);
      this.waiters.push({ match, resolve: (l) => (clearTimeout(timer), resolve(l)) });
    });
  }

  events(name: string): Record<string, unknown>[] {
    return this.lines.filter((l) => l.event === name);
  }
}

export interface ProxyStack {
  readonly cluster: Cluster;
  readonly idp: TestProvider;
  readonly proxy: ProxyServer;
  readonly config: ProxyConfig;
  readonly logs: LogCapture;
  readonly port: number;
  /** TLS options for node-postgres trusting the test CA. */
  readonly ssl: { ca: string; servername: string };
  startProxy(overrides?: Record<string, unknown>, deps?: Partial<ProxyServerDeps>): Promise<ProxyServer>;
  stop(): Promise<void>;
}

export function proxyDocument(cluster: Cluster, idp: TestProvider, tls: { cert: string; key: string }, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listen: '127.0.0.1:0',
    tls: { cert: 'inline-cert', key: 'inline-key' },
    providers: [{ issuer: idp.provider.issuer, audience: 'https://gprxy.io', algorithms: ['RS256'], ca: 'inline-ca' }],
    role_mapping: [
      { role: 'pg_admin', account: 'app_admin' },
      { role: 'pg_writer', account: 'app_writer' },
      { role: 'pg_reader', account: 'app_reader' },
    ],
    accounts: Object.fromEntries(Object.entries(SERVICE_ACCOUNTS).map(([name, password]) => [name, { password }])),
    databases: { mydb: { host: cluster.host, port: cluster.port, dbname: 'mydb', pool: { size: 5 } } },
    context: {
      secret: CONTEXT_SECRET,
      settings: { 'app.user_id': 'https://gprxy.io/user_id', 'app.tenant_id': 'https://gprxy.io/org_id', 'app.roles': 'https://gprxy.io/roles', 'app.email': 'https://gprxy.io/email' },
    },
    limits: { login_timeout: '5s', pool_wait_timeout: '5s' },
    log: { level: 'debug' },
    ...overrides,
  };
}

export async function startProxyStack(
  options: { overrides?: Record<string, unknown>; provider?: Parameters<typeof startTestProvider>[0]; postgres?: Parameters<typeof startTestPostgres>[0] } = {},
): Promise<ProxyStack> {
  const cluster = await startTestPostgres(options.postgres);
  await createAppDatabase(cluster);
  const idp = await startTestProvider(options.provider);
  const leaf = await idp.ca.issue(['localhost', '127.0.0.1']);
  const logs = new LogCapture();
  const files: Record<string, string> = { 'inline-cert': leaf.cert, 'inline-key': leaf.key, 'inline-ca': idp.provider.caCert };
  const readFile = (p: string) => {
    const name = p.split('/').pop()!;
    if (!(name in files)) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    return files[name]!;
  };
  let proxy: ProxyServer | undefined;
  let config!: ProxyConfig;
  const stack: ProxyStack = {
    cluster,
    idp,
    logs,
    get proxy() {
      return proxy!;
    },
    get config() {
      return config;
    },
    get port() {
      return proxy!.address.port;
    },
    ssl: { ca: idp.ca.cert, servername: 'localhost' },
    async startProxy(overrides = {}, deps = {}) {
      await proxy?.close();
      config = buildProxyConfig(proxyDocument(cluster, idp, leaf, { ...options.overrides, ...overrides }), {}, '/inline', readFile);
      proxy = new ProxyServer(config, { logger: createLogger({ level: 'debug', destination: logs }), ...deps });
      await proxy.start();
      return proxy;
    },
    async stop() {
      await proxy?.close();
      await idp.close();
      await cluster.stop();
    },
  };
  await stack.startProxy();
  return stack;
}
