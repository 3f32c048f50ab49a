/**
 * The central proxy: a TCP listener (TLS negotiated per connection via SSLRequest, as PostgreSQL does),
 * the token verifier, the backend pools and cancel routing. `close()` stops accepting, lets sessions
 * finish for a grace period, then ends the rest with 57P01 and closes the pools. `reload()` switches new
 * logins to a new config (reload.ts); each session keeps the config, verifier and TLS context it began with.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { ProxyConfig } from '../config/proxy-config.js';
import { TokenVerifier } from '../token/verifier.js';
import { GprxyError } from '../shared/errors.js';
import type { Dialer } from './backend.js';
import { shareOf } from '../config/workers.js';
import type { KeyOwner, RandomPool } from './cancel-key.js';
import { CancelRegistry } from './cancel-registry.js';
import { ClientSession } from './client-session.js';
import { IdentitySessions, type IdentityLimit } from './identity-sessions.js';
import { ClusterIdentitySessions, type IdentitySlotChannel } from './cluster/identity-slots.js';
import { disconnect } from './disconnect.js';
import { ProxyMetrics } from './metrics.js';
import { PoolManager } from './pools.js';
import { Readiness } from './readiness.js';
import { describeChanges, ReloadRefusedError, summarizeChanges, type ConfigReloader, type ReloadChanges } from './reload.js';
import { ValidatorEndpoint } from './validator-endpoint.js';
import { perUserRoles } from './per-user/setup.js';
import type { PerUserRoles } from './per-user/per-user-login.js';
import { AdminAccess } from './admin/admin-access.js';
import type { AdminCluster, AdminContext } from './admin/commands.js';
import { localStatus, statusRoute, type StatusPageDeps, type StatusSnapshot } from './admin/status-page.js';
import { SessionRegistry } from './session-registry.js';

export interface ProxyServerDeps {
  readonly logger: Logger;
  readonly verifier?: TokenVerifier;
  readonly fetch?: typeof fetch;
  readonly dialer?: Dialer;
  readonly now?: () => number;
  /** How soon after a JWKS fetch an unknown kid may trigger another (default 30 s). */
  readonly unknownKidCooldownMs?: number;
  /** Where this process sits in a scaled-out proxy (src/proxy/cluster/): absent for a lone process. */
  readonly cluster?: ClusterRole;
  /** Random bytes of cancel keys (default: a pool refilled 4 KiB at a time; the benchmark compares). */
  readonly cancelRandom?: RandomPool;
}

/** A worker of `gprxy serve --workers`, and/or a replica with peers. */
export interface ClusterRole {
  /** Who issues this process's cancel keys. */
  readonly owner: KeyOwner;
  /** Workers of this replica, and this one's slot: pool sizes and max_client_connections are divided. */
  readonly workers: number;
  /** Sends a CancelRequest that matched nothing here to its owner (false: nowhere to send it). */
  readonly forwardCancel?: (owner: KeyOwner, processId: number, secretKey: Buffer) => boolean;
  /** The primary serves metrics.listen (aggregating the workers): a worker must not bind it. */
  readonly metricsElsewhere?: boolean;
  /** The admin console's view of every worker of this replica (SHOW SESSIONS, KILL) over IPC. */
  readonly admin?: AdminCluster;
  /** limits.max_sessions_per_identity counted by the primary for every worker of this replica. */
  readonly identitySlots?: IdentitySlotChannel;
  /**
   * A worker of `gprxy serve --workers`: the replica's `listening` line is the primary's, written once every
   * worker listens; a worker logs its own start as `worker_started`, so nothing that waits for `listening`
   * (a test, a script, bench/scale.ts) starts while a worker is still starting.
   */
  readonly primaryAnnounces?: boolean;
  /** The status page's data for the whole replica (every worker's part, merged by the primary). */
  readonly statusSnapshot?: () => Promise<StatusSnapshot>;
}

/** `listen` is taken: one line naming the fix (the CLI prints the message alone). */
export class ListenAddressInUseError extends GprxyError<'listen_address_in_use'> {
  readonly code = 'listen_address_in_use' as const;
  constructor(listen: { host: string; port: number }) {
    super(`${listen.host}:${listen.port} is already in use (another gprxy serve?): stop what listens there, or set another port in the config's listen`);
  }
}

/** What a new login reads; a reload replaces it as a whole, open sessions keep the one they started with. */
interface Generation {
  readonly config: ProxyConfig;
  readonly verifier: TokenVerifier;
  readonly secureContext: SecureContext | undefined;
  /** Provisioning of per-user roles (identity: per_user databases). */
  readonly perUser: PerUserRoles | undefined;
}

/** How long a stop waits for release resets and drains in flight at the least (even with no grace period). */
const SETTLE_FLOOR_MS = 2000;

export class ProxyServer {
  readonly pools: PoolManager;
  readonly metrics: ProxyMetrics;
  /** Where /metrics, /healthz and /readyz are served, when metrics.listen is configured. */
  metricsAddress: { host: string; port: number } | undefined;
  readonly cancels: CancelRegistry;
  /** limits.max_client_connections of this process (its share with --workers). */
  private maxClientConnections: number;
  /** With --workers: this worker's share of a configured total (src/config/workers.ts). */
  private readonly share: ((n: number) => number) | undefined;
  /** limits.max_sessions_per_identity, across all databases of this process (with --workers: of the replica). */
  readonly identitySessions: IdentityLimit;
  private readonly sessions = new Set<ClientSession>();
  /** Every client connection with who and what it is (admin console SHOW SESSIONS, KILL; the status page). */
  readonly registry = new SessionRegistry();
  /** The admin console: who may enter and what it acts on (config `admin`). */
  readonly admin: { readonly access: AdminAccess; readonly context: AdminContext } | undefined;
  private readonly startedAt: number;
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;
  private current: Generation;
  private draining = false;
  private reloading: Promise<unknown> = Promise.resolve();
  private readonly retiredParts = new Set<{ close(): unknown }>();
  private nextSessionId = 1;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly cluster: ClusterRole | undefined;
  private validator: ValidatorEndpoint | undefined;
  readonly readiness: Readiness;
  /** Set by gprxy serve: what the admin console's RELOAD runs (re-read the config file, then reload()). */
  reloader: Pick<ConfigReloader, 'reload'> | undefined;

  constructor(
    config: ProxyConfig,
    private readonly deps: ProxyServerDeps,
  ) {
    this.log = deps.logger;
    this.cluster = deps.cluster;
    this.now = deps.now ?? Date.now;
    const slots = deps.cluster?.identitySlots;
    this.identitySessions = slots ? new ClusterIdentitySessions(config.limits.maxSessionsPerIdentity, slots) : new IdentitySessions(config.limits.maxSessionsPerIdentity);
    const cluster = deps.cluster;
    const share = cluster && cluster.workers > 1 ? (n: number) => shareOf(n, cluster.workers, cluster.owner.worker) : undefined;
    this.share = share;
    this.maxClientConnections = share ? share(config.limits.maxClientConnections) : config.limits.maxClientConnections;
    this.cancels = new CancelRegistry({
      ...(cluster ? { owner: cluster.owner } : {}),
      ...(cluster?.forwardCancel ? { forward: cluster.forwardCancel } : {}),
      ...(deps.cancelRandom ? { random: deps.cancelRandom } : {}),
    });
    this.current = { config, verifier: deps.verifier ?? this.newVerifier(config), secureContext: ProxyServer.secureContext(config), perUser: perUserRoles(config, deps.logger) };
    this.pools = new PoolManager({
      waitTimeoutMs: config.limits.poolWaitTimeoutMs,
      connectTimeoutMs: config.limits.backendConnectTimeoutMs,
      logger: deps.logger,
      readBackendStart: !!config.context.secret,
      ...(share ? { sizeShare: share } : {}),
      // this.metrics is created below (it reads the pools); these run only later, on backend events.
      events: { serviceAccountTampered: (pool) => this.metrics.serviceAccountTampered(pool), serviceAccountLoginFailed: (pool) => this.metrics.serviceAccountLoginFailed(pool) },
      ...(deps.dialer ? { dialer: deps.dialer } : {}),
    });
    this.metrics = new ProxyMetrics({ sessions: () => this.sessions.size, pools: this.pools, verifier: () => this.verifier });
    this.startedAt = this.now();
    if (config.admin) {
      // eslint-disable-next-line @typescript-eslint/no-this-alias -- the admin context's getter reads the reloader attached later
      const self = this;
      this.admin = {
        access: new AdminAccess(config.admin),
        context: {
          config: () => this.config,
          registry: this.registry,
          pools: this.pools,
          jwks: () => this.verifier.jwksStats(),
          now: this.now,
          startedAt: this.startedAt,
          totals: () => this.registry.totals(),
          // RELOAD re-reads the config file when the process has one (gprxy serve attaches its reloader).
          get reload() {
            const reloader = self.reloader;
            if (!reloader) return undefined;
            return async () => {
              const outcome = await reloader.reload('admin');
              if (!outcome.ok) throw new ReloadRefusedError(outcome.error);
              return summarizeChanges(outcome.changes);
            };
          },
          ...(deps.cluster?.admin ? { cluster: deps.cluster.admin } : {}),
        },
      };
    }
    this.readiness = new Readiness({
      draining: () => this.draining,
      jwks: () => this.verifier.jwksStats(),
      databases: () => this.config.databases,
      ...(deps.dialer ? { dialer: deps.dialer } : {}),
    });
  }

  /** The config new logins use (the latest reloaded one). */
  get config(): ProxyConfig {
    return this.current.config;
  }

  /** Provisioning of per-user roles for new logins (identity: per_user databases). */
  get perUser(): PerUserRoles | undefined {
    return this.current.perUser;
  }

  /** The verifier new logins use. */
  get verifier(): TokenVerifier {
    return this.current.verifier;
  }

  /** True from the moment close() is called: /readyz fails, nothing new is accepted. */
  get isDraining(): boolean {
    return this.draining;
  }

  private newVerifier(config: ProxyConfig): TokenVerifier {
    const deps = this.deps;
    return new TokenVerifier({
      providers: config.providers,
      jwks: config.jwks,
      logger: deps.logger,
      now: this.now,
      ...(deps.fetch ? { fetch: deps.fetch } : {}),
      ...(deps.unknownKidCooldownMs !== undefined ? { unknownKidCooldownMs: deps.unknownKidCooldownMs } : {}),
    });
  }

  private static secureContext(config: ProxyConfig): SecureContext | undefined {
    return config.tls ? createSecureContext({ cert: config.tls.cert, key: config.tls.key, minVersion: 'TLSv1.2' }) : undefined;
  }

  /**
   * Applies a validated config to new logins: providers and JWKS (a new verifier, keys fetched before
   * the switch), role mapping, accounts, databases, limits, context, TLS certificate (new handshakes).
   * Open sessions keep what they started with; a pool whose database or account changed is retired (its
   * backends close when their sessions release them). listen, metrics, validator and log need a restart
   * and keep their running values. Throws ReloadRefusedError, and changes nothing, when the new TLS
   * certificate and key do not make a usable TLS context.
   */
  reload(next: ProxyConfig): Promise<ReloadChanges> {
    const run = this.reloading.then(() => this.reloadNow(next));
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async reloadNow(next: ProxyConfig): Promise<ReloadChanges> {
    if (this.draining) throw new ReloadRefusedError('the proxy is shutting down; a reload has nothing left to apply to');
    const before = this.current;
    let secureContext: SecureContext | undefined;
    try {
      secureContext = ProxyServer.secureContext(next);
    } catch (e) {
      throw new ReloadRefusedError(`tls: the new certificate and key cannot be used (${(e as Error).message}); check that tls.key is the key of tls.cert`, { cause: e });
    }
    const changes = describeChanges(before.config, next);
    // Settings bound to what this process holds stay as they are (the log line says a restart is needed).
    const { listen: _listen, log: _log, metrics: _metrics, validator: _validator, admin: _admin, cluster: _cluster, ...rest } = next;
    const applied: ProxyConfig = Object.freeze({
      ...rest,
      listen: before.config.listen,
      log: before.config.log,
      ...(before.config.metrics ? { metrics: before.config.metrics } : {}),
      ...(before.config.validator ? { validator: before.config.validator } : {}),
      ...(before.config.admin ? { admin: before.config.admin } : {}),
      ...(before.config.cluster ? { cluster: before.config.cluster } : {}),
    });
    let verifier = before.verifier;
    const providersChanged = JSON.stringify([before.config.providers, before.config.jwks]) !== JSON.stringify([next.providers, next.jwks]);
    if (providersChanged && !this.deps.verifier) {
      verifier = this.newVerifier(next);
      // Keys first, so the switch does not refuse tokens the old verifier accepted; a provider that is down
      // is not a config error: its cache keeps retrying and /readyz says so.
      await verifier.start().catch((e: Error) => this.log.error({ event: 'jwks_unavailable', reason: e.message }, 'provider keys unavailable after reload'));
      if (this.draining) {
        verifier.close();
        throw new ReloadRefusedError('the proxy began shutting down during the reload');
      }
    }
    // Per-user provisioning reads the databases, role mapping and provisioning settings: rebuilt when they change.
    const perUserInputs = (c: ProxyConfig) => JSON.stringify([c.provisioning, c.databases, c.roleMapping]);
    const perUser = perUserInputs(before.config) === perUserInputs(next) ? before.perUser : perUserRoles(next, this.log);
    this.current = { config: applied, verifier, secureContext, perUser };
    this.identitySessions.setLimit(next.limits.maxSessionsPerIdentity);
    this.maxClientConnections = this.share ? this.share(next.limits.maxClientConnections) : next.limits.maxClientConnections;
    this.pools.reconfigure(next.databases, next.accounts, next.limits.poolWaitTimeoutMs, next.limits.backendConnectTimeoutMs);
    if (verifier !== before.verifier) this.retire(before.verifier, before.config.limits.loginTimeoutMs);
    if (before.perUser && perUser !== before.perUser) this.retire(before.perUser, before.config.limits.loginTimeoutMs);
    return changes;
  }

  /** A replaced verifier or provisioner may still serve logins accepted before the reload: closed once they timed out. */
  private retire(part: { close(): unknown }, afterMs: number): void {
    this.retiredParts.add(part);
    const timer = setTimeout(() => {
      this.retiredParts.delete(part);
      void part.close();
    }, afterMs);
    timer.unref();
  }

  /** The address actually bound (port 0 in the config picks a free one). */
  get address(): { host: string; port: number } {
    const a = this.server?.address();
    if (!a || typeof a === 'string') throw new Error('proxy is not listening');
    return { host: a.address, port: a.port };
  }

  get activeSessions(): number {
    return this.sessions.size;
  }

  async start(): Promise<void> {
    // A provider that is down at start is not fatal: its cache keeps retrying, and tokens are refused
    // with a clear jwks_unavailable until keys arrive (or persisted keys from jwks.cache_dir serve).
    await this.verifier.start().catch((e: Error) => this.log.error({ event: 'jwks_unavailable', reason: e.message }, 'provider keys unavailable at start'));
    const server = createServer({ noDelay: true, pauseOnConnect: false }, (socket) => this.accept(socket));
    server.on('error', (e) => this.log.error({ event: 'listener_error', err: e.message }, 'listener error'));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const failed = (e: NodeJS.ErrnoException) => reject(e.code === 'EADDRINUSE' ? new ListenAddressInUseError(this.config.listen) : e);
      server.once('error', failed);
      server.listen(this.config.listen.port, this.config.listen.host, () => {
        server.off('error', failed);
        resolve();
      });
    });
    if (this.config.metrics && !this.cluster?.metricsElsewhere) {
      const page = this.statusPageDeps();
      if (page) this.metrics.route = statusRoute(page);
      this.metricsAddress = await this.metrics.listen(this.config.metrics.host, this.config.metrics.port, () => this.readiness.check());
      this.log.info({ event: 'metrics_listening', ...this.metricsAddress }, `metrics on http://${this.metricsAddress.host}:${this.metricsAddress.port}/metrics`);
    }
    if (this.config.validator) {
      const verifier = { verify: (token: string) => this.verifier.verify(token) };
      this.validator = new ValidatorEndpoint({ path: this.config.validator.socket, mode: this.config.validator.socketMode, verifier, logger: this.log });
      await this.validator.start();
    }
    const { host, port } = this.address;
    const event = this.cluster?.primaryAnnounces ? 'worker_started' : 'listening';
    this.log.info({ event, host, port, tls: !!this.current.secureContext, databases: Object.keys(this.config.databases) }, `gprxy ${this.cluster?.primaryAnnounces ? 'worker ' : ''}listening on ${host}:${port}`);
  }

  /** This process's part of the status page (with --workers the primary asks every worker for it). */
  localStatus(): StatusSnapshot | undefined {
    if (!this.admin) return undefined;
    const ctx = this.admin.context;
    return localStatus({ now: ctx.now(), startedAt: ctx.startedAt, ctx, refusals: this.metrics.refusals });
  }

  /** The status page (admin.status_page): who may see it and what it shows (with --workers: the replica's). */
  statusPageDeps(): StatusPageDeps | undefined {
    const admin = this.admin;
    if (!admin || !this.config.admin?.statusPage) return undefined;
    return {
      access: admin.access,
      // The current verifier at each request: a config reload replaces it.
      verifier: { verify: (token) => this.verifier.verify(token) },
      snapshot: this.cluster?.statusSnapshot ?? (() => this.localStatus()!),
      log: this.log,
    };
  }

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    // Every accepted socket is tracked (refused ones too) so close() can end them all.
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const { config, verifier, secureContext, perUser } = this.current;
    if (this.sessions.size >= this.maxClientConnections) {
      const limit = config.limits.maxClientConnections;
      void disconnect(
        { socket, log: this.log, startedAt: this.now(), now: this.now },
        {
          phase: 'login',
          reason: 'too_many_connections',
          level: 'warn',
          detail: { text: `too many client connections (limits.max_client_connections = ${limit}); try again shortly` },
          fields: { client: `${socket.remoteAddress}:${socket.remotePort}` },
        },
      );
      return;
    }
    const session = new ClientSession(socket, {
      config,
      verifier,
      pools: this.pools,
      cancels: this.cancels,
      identitySessions: this.identitySessions,
      ...(perUser ? { perUser } : {}),
      logger: this.log,
      now: this.now,
      metrics: this.metrics,
      sessionId: this.takeSessionId(),
      registry: this.registry,
      ...(this.admin ? { admin: this.admin } : {}),
      ...(secureContext ? { secureContext } : {}),
    });
    this.sessions.add(session);
    session
      .run()
      .catch((e: unknown) => this.log.error({ event: 'internal_error', err: e }, 'session crashed'))
      .finally(() => this.sessions.delete(session));
  }

  /**
   * A CancelRequest another worker or replica received for a key this process issued: cancelled when it
   * matches a session here (a forged or stale key does nothing), with the audit line naming the user.
   */
  deliverCancel(processId: number, secretKey: Buffer, via: string): boolean {
    const target = this.cancels.lookup(processId, secretKey);
    target?.cancel();
    const fields = { event: 'cancel_request', outcome: target ? 'cancelled' : 'no_match', via, ...(target?.user ? { user: target.user } : {}), ...(target?.database ? { database: target.database } : {}) };
    if (target) this.log.info(fields, `cancel (via ${via}) for ${target.user ?? 'a session'} forwarded to its backend`);
    else this.log.info(fields, `cancel request via ${via} matched no session`);
    return !!target;
  }

  /**
   * Session ids are unique per replica: worker k of N numbers its connections k+1, k+1+N, ... so an id
   * from SHOW SESSIONS names one connection whichever worker holds it (KILL SESSION across workers).
   */
  private takeSessionId(): number {
    const step = this.cluster?.workers ?? 1;
    const id = (this.cluster?.owner.worker ?? 0) + 1 + (this.nextSessionId - 1) * step;
    this.nextSessionId++;
    return id;
  }

  private async settleBackends(timeoutMs: number): Promise<void> {
    const { pools, backends } = this.pools.unsettled();
    if (backends === 0) return;
    this.log.info({ event: 'backends_settling', pools, backends, timeout_ms: timeoutMs }, `waiting for ${backends} backend reset(s) or drain(s) to finish`);
    const cut = await this.pools.settle(timeoutMs);
    if (cut > 0) this.log.warn({ event: 'backends_cut', backends: cut, timeout_ms: timeoutMs }, `${cut} backend(s) still resetting or draining after ${timeoutMs} ms: connections cut`);
  }

  /**
   * Stops accepting; waits up to `graceMs` for sessions to end, then ends them with 57P01. Then waits for the
   * backend work sessions left behind (release resets, drains; until the grace period ends, and at least
   * SETTLE_FLOOR_MS) so backends close cleanly, not cut mid-reset by the process exiting.
   */
  async close(graceMs = 0): Promise<void> {
    const closeStarted = this.now();
    this.draining = true;
    const server = this.server;
    this.server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    if (graceMs > 0 && this.sessions.size > 0) {
      this.log.info({ event: 'draining', sessions: this.sessions.size, grace_ms: graceMs }, 'waiting for sessions to end');
      const deadline = this.now() + graceMs;
      while (this.sessions.size > 0 && this.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    }
    if (this.sessions.size > 0) this.log.info({ event: 'drain_ended', sessions: this.sessions.size, grace_ms: graceMs }, `ending ${this.sessions.size} session(s) with 57P01 (server_shutdown)`);
    for (const s of this.sessions) s.shutdown();
    const deadline = this.now() + 2000;
    while (this.sessions.size > 0 && this.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const socket of this.sockets) socket.destroy();
    await closed;
    await this.reloading;
    await this.validator?.close();
    await this.pools.close();
    await this.settleBackends(Math.max(closeStarted + graceMs - this.now(), SETTLE_FLOOR_MS));
    await this.perUser?.close();
    await this.metrics.close();
    this.verifier.close();
    for (const part of this.retiredParts) await part.close();
    this.log.info({ event: 'stopped' }, 'gprxy stopped');
  }
}
