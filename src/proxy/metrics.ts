/**
 * Prometheus metrics (prom-client) and health endpoints for `gprxy serve` when `metrics.listen` is set:
 * GET /metrics, GET /healthz (the process is up), GET /readyz (readiness.ts: not draining, every provider has
 * keys, every database server reachable; a 503 lists what is missing, one line each).
 * Gauges are read from the live objects at scrape time, so the hot path pays nothing for them.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { TokenVerifier } from '../token/verifier.js';
import type { PoolManager } from './pools.js';
import type { ReadinessReport } from './readiness.js';
import { RefusalHistory } from './refusal-history.js';

/** An extra route on the metrics listener (the admin status page); returns false to fall through to 404. */
export type HttpRoute = (req: IncomingMessage, res: ServerResponse, path: string) => boolean;

export class ProxyMetrics {
  readonly registry = new Registry();
  private readonly auth: Counter<'result' | 'reason'>;
  private readonly sessionsEnded: Counter<'reason'>;
  private readonly serviceAccount: Counter<'pool' | 'event'>;
  private server: Server | undefined;
  /** Refused logins per minute over the last hour (the status page's chart). */
  readonly refusals = new RefusalHistory();
  /** Set before listen(): the admin status page. */
  route: HttpRoute | undefined;

  constructor(sources: { sessions: () => number; pools: PoolManager; verifier: () => TokenVerifier }) {
    collectDefaultMetrics({ register: this.registry, prefix: 'gprxy_process_' });
    this.auth = new Counter({ name: 'gprxy_auth_total', help: 'Client logins by result and reason', labelNames: ['result', 'reason'], registers: [this.registry] });
    this.sessionsEnded = new Counter({ name: 'gprxy_sessions_ended_total', help: 'Client sessions ended, by reason', labelNames: ['reason'], registers: [this.registry] });
    this.serviceAccount = new Counter({
      name: 'gprxy_service_account_events_total',
      help: 'Service account problems per pool: tampered (role settings the proxy did not set, repaired), login_failed (PostgreSQL refused its credentials)',
      labelNames: ['pool', 'event'],
      registers: [this.registry],
    });
    new Gauge({
      name: 'gprxy_client_sessions',
      help: 'Client connections open now (logging in or relaying)',
      registers: [this.registry],
      collect() {
        this.set(sources.sessions());
      },
    });
    new Gauge({
      name: 'gprxy_pool_connections',
      help: 'Backend connections per pool (database/account) and state',
      labelNames: ['pool', 'state'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [pool, s] of Object.entries(sources.pools.stats())) {
          this.set({ pool, state: 'idle' }, s.idle);
          this.set({ pool, state: 'active' }, s.active);
          this.set({ pool, state: 'draining' }, s.draining);
          this.set({ pool, state: 'waiting_clients' }, s.waiting);
          this.set({ pool, state: 'max' }, s.size);
        }
      },
    });
    new Gauge({
      name: 'gprxy_pool_wait_seconds_avg',
      help: 'Average time a client waited for a backend of a full pool, per pool (since start)',
      labelNames: ['pool'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [pool, s] of Object.entries(sources.pools.stats())) this.set({ pool }, s.waits ? s.waitMs / s.waits / 1000 : 0);
      },
    });
    new Gauge({
      name: 'gprxy_pool_waits',
      help: 'Checkouts that had to wait for a backend, per pool (since start)',
      labelNames: ['pool'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [pool, s] of Object.entries(sources.pools.stats())) this.set({ pool }, s.waits);
      },
    });
    new Gauge({
      name: 'gprxy_pool_transaction_seconds_avg',
      help: 'Transaction pooling: average time a backend was attached to a client for one transaction, per pool (since start)',
      labelNames: ['pool'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [pool, s] of Object.entries(sources.pools.stats())) this.set({ pool }, s.transactions ? s.transactionMs / s.transactions / 1000 : 0);
      },
    });
    new Gauge({
      name: 'gprxy_pool_transactions',
      help: 'Transaction pooling: transactions served per pool (since start)',
      labelNames: ['pool'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [pool, s] of Object.entries(sources.pools.stats())) this.set({ pool }, s.transactions);
      },
    });
    new Gauge({
      name: 'gprxy_prepared_statements',
      help: 'Transaction pooling, prepared statements across backends, per pool (since start): hit (a Parse answered from a backend that held the statement), miss (prepared on a backend), eviction (Closed to stay within pool.prepared_statements)',
      labelNames: ['pool', 'event'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [pool, s] of Object.entries(sources.pools.stats())) {
          this.set({ pool, event: 'hit' }, s.preparedHits);
          this.set({ pool, event: 'miss' }, s.preparedMisses);
          this.set({ pool, event: 'eviction' }, s.preparedEvictions);
        }
      },
    });
    new Gauge({
      name: 'gprxy_token_verifications',
      help: 'Token checks since start: verified with crypto, served from the verified-token cache',
      labelNames: ['kind'],
      registers: [this.registry],
      collect() {
        const s = sources.verifier().stats();
        this.set({ kind: 'verified' }, s.verifications);
        this.set({ kind: 'cache_hit' }, s.cacheHits);
      },
    });
    new Gauge({
      name: 'gprxy_jwks_keys',
      help: 'Signing keys known per issuer (0 means tokens from it cannot be verified)',
      labelNames: ['issuer'],
      registers: [this.registry],
      collect() {
        // reset: a provider removed by a reload leaves the gauge.
        this.reset();
        for (const [issuer, s] of Object.entries(sources.verifier().jwksStats())) this.set({ issuer }, s.keys);
      },
    });
  }

  authSucceeded(): void {
    this.auth.inc({ result: 'success', reason: 'ok' });
  }

  authFailed(reason: string): void {
    this.auth.inc({ result: 'failure', reason });
  }

  serviceAccountTampered(pool: string): void {
    this.serviceAccount.inc({ pool, event: 'tampered' });
  }

  serviceAccountLoginFailed(pool: string): void {
    this.serviceAccount.inc({ pool, event: 'login_failed' });
  }

  /** A login refused with a FATAL the client saw (not a client that just left). */
  loginRefused(reason: string): void {
    this.refusals.record(reason);
  }

  sessionEnded(reason: string): void {
    this.sessionsEnded.inc({ reason });
  }

  async listen(host: string, port: number, ready: () => Promise<ReadinessReport>): Promise<{ host: string; port: number }> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics') {
        this.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
          (e: Error) => res.writeHead(500).end(e.message),
        );
      } else if (path === '/healthz') res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      else if (path === '/readyz') {
        ready().then(
          (r) => res.writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' }).end(r.ready ? 'ready\n' : `not ready\n${r.problems.join('\n')}\n`),
          (e: Error) => res.writeHead(503, { 'content-type': 'text/plain' }).end(`not ready\n${e.message}\n`),
        );
      } else if (!this.route?.(req, res, path ?? '/')) res.writeHead(404).end();
    });
    this.server = server;
    server.on('clientError', (_e, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    // After listen, an accept error (e.g. EMFILE) must not crash the proxy.
    server.on('error', () => undefined);
    const a = server.address() as { address: string; port: number };
    return { host: a.address, port: a.port };
  }

  async close(): Promise<void> {
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
