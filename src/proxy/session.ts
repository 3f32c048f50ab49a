/**
 * The session half of a client connection, after a successful login: the per-session setup on the backend
 * (settings, application_name, signed identity context, checkout epoch), the greeting (AuthenticationOk …
 * ReadyForQuery), the header-only relay, and its end — at a message boundary when the proxy stops it
 * (shutdown, token expiry, session_max_lifetime) — with the backend released (reset) or closed.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { ProxyConfig } from '../config/proxy-config.js';
import { authenticationOk, backendKeyData, parameterStatus, readyForQuery } from '../protocol/server-messages.js';
import { setLongTimeout, type LongTimer } from '../shared/long-timer.js';
import type { Identity } from '../token/identity.js';
import type { Backend } from './backend.js';
import { SECRET_BYTES_3_0, SECRET_BYTES_3_2 } from './cancel-key.js';
import type { CancelRegistry } from './cancel-registry.js';
import { disconnect, Refusal, type Connection, type SessionEndReason } from './disconnect.js';
import { buildContextPayload, EPOCH_REFUSED_SQLSTATE, signContext } from './identity-context.js';
import type { LoginResult } from './login.js';
import type { ProxyMetrics } from './metrics.js';
import type { BackendPool } from './pool.js';
import { BACKEND_START, BINDS_CHECKOUT, type PoolManager } from './pools.js';
import { Relay, type RelayResult } from './relay.js';
import type { RelayProbe, TrackedSession } from './session-registry.js';
import { buildSetup } from './session-setup.js';
import { statementAuditFor } from './statement-audit/index.js';
import { ciLogFields, sessionEnd } from './session-end.js';
import { BoundaryStop } from './boundary-stop.js';

/** How long an ending session may wait for a message boundary before its connection is cut. */
/** Context lifetime when the operator lets sessions outlive tokens and sets no session_max_lifetime. */
const SESSION_WITHOUT_END_MS = 365 * 86_400_000;

export interface SessionDeps {
  readonly config: Pick<ProxyConfig, 'limits' | 'context'>;
  readonly pools: PoolManager;
  readonly cancels: CancelRegistry;
  readonly now: () => number;
  readonly metrics?: ProxyMetrics | undefined;
  /** The proxy's root logger and this connection's id, for the statement audit's events. */
  readonly logger: Logger;
  readonly sessionId: number;
  /** This connection's entry in the session registry: application_name changes are kept there. */
  readonly track?: TrackedSession | undefined;
}

/** What the session needs of the login: another backend (a retried checkout), and whether the client is gone. */
export interface SessionClient {
  readonly closed: boolean;
  readonly authMethod: 'password' | 'oauthbearer' | undefined;
  goneReason(): 'server_shutdown' | 'client_closed_during_login';
  /** `fresh`: a newly opened backend, never one another user had (see BackendPool.acquireFresh). */
  acquire(pool: BackendPool, fresh?: boolean): Promise<Backend>;
  detach(): { socket: Socket; pending: Buffer };
}

export type Authenticated = Extract<LoginResult, { kind: 'authenticated' }>;

/** The reasons a running session is stopped by the proxy (rather than ended by a side). */
export type StopReason = Extract<SessionEndReason, 'server_shutdown' | 'token_expired' | 'session_max_lifetime' | 'ci_max_session' | 'killed_by_admin'>;

export class Session {
  private relay: Relay | undefined;
  private readonly stopper = new BoundaryStop<StopReason>(() => this.deps.now());

  constructor(
    private readonly deps: SessionDeps,
    private log: Logger,
    private readonly startedAt: number,
  ) {}

  /** Bytes and activity of the relay (SHOW SESSIONS); the final counts once it ended. */
  probe(): RelayProbe | undefined {
    return this.relay?.probe() ?? this.lastProbe;
  }

  private lastProbe: RelayProbe | undefined;

  /** True once the relay runs: a stop then waits for a message boundary. */
  get relaying(): boolean {
    return this.relay !== undefined;
  }

  /**
   * Sets the session up, greets the client and relays until the end. Throws a `Refusal` (the login
   * failed after all) before the greeting; after it, every end goes through `disconnect`.
   */
  async run(client: SessionClient, login: Authenticated, loginTimer: LongTimer): Promise<void> {
    const { config, now } = this.deps;
    const { identity, expiresAt, pool, database } = login;
    const tenant = identity.tenantId ?? null;
    // When the session must end (operator's choice, DESIGN.md 2.4); the identity context expires with it.
    const limits = config.limits;
    // A CI rule's max_session replaces the token's expiry as the end (job tokens live minutes, a job longer).
    const end = sessionEnd(limits, identity, expiresAt, now());
    const endsAt = end.at;
    const contextExpiry = Number.isFinite(endsAt) ? endsAt : now() + SESSION_WITHOUT_END_MS;
    const backend = await this.setUp(client, login, tenant, contextExpiry);
    if (client.closed) {
      await pool.release(backend, true);
      throw new Refusal(client.goneReason(), 'client closed the connection');
    }
    let backendSocket;
    try {
      backendSocket = backend.detach();
    } catch (e) {
      await pool.release(backend, false);
      throw new Refusal('backend_setup_failed', `backend sent unexpected data during session setup: ${(e as Error).message}`, undefined, { cause: e });
    }
    const key = this.deps.cancels.register(
      { cancel: () => this.deps.pools.cancel(backend), user: identity.user, database: database.name },
      login.startup.minorVersion >= 2 ? SECRET_BYTES_3_2 : SECRET_BYTES_3_0,
    );
    loginTimer.clear();
    const { socket, pending } = client.detach();
    const greeting: Buffer[] = [authenticationOk()];
    for (const [name, value] of backend.parameters) greeting.push(parameterStatus(name, value));
    greeting.push(backendKeyData(key.processId, key.secretKey), readyForQuery('I'));
    socket.write(Buffer.concat(greeting));
    this.deps.metrics?.authSucceeded();
    // A CI job's run (GitHub run_id/run_attempt, GitLab pipeline_id/job_id) is on every line of its session.
    this.log = this.log.child({ user: identity.user, account: identity.account, database: database.name, ...ciLogFields(identity) });
    this.log.info(
      {
        event: 'auth_success',
        auth_method: client.authMethod ?? 'password',
        email: identity.email,
        sub: identity.subject,
        issuer: identity.issuer,
        roles: identity.roles,
        tenant,
        token: login.tokenId,
        backend_pid: backend.processId,
        duration_ms: now() - this.startedAt,
      },
      `${identity.user} connected to ${database.name} as ${identity.account}`,
    );

    const audit = statementAuditFor(database, { session: this.deps.sessionId, client: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`, issuer: String(identity.claims.iss ?? ''), user: identity.user, email: identity.email, tenant, account: identity.account, database: database.name, backendPid: backend.processId }, backend.parameters, this.deps.logger);
    // application_name is what a DBA sees in pg_stat_activity; a user may SET it to anything (another
    // user's name): the audit log records every change with the real identity (issue 11 item 13).
    const relay = new Relay(socket, backendSocket, audit, {
      onParameterStatus: (name, value) => {
        if (name !== 'application_name') return;
        if (this.deps.track) this.deps.track.application = value;
        this.log.warn(
          { event: 'application_name_changed', email: identity.email, sub: identity.subject, backend_pid: backend.processId, application_name: value },
          `${identity.user} set application_name to "${value}"`,
        );
      },
    });
    this.relay = relay;
    let lifetimeTimer: LongTimer | undefined;
    if (Number.isFinite(endsAt)) {
      const reason = end.reason;
      // A 30-day token or session_max_lifetime is beyond setTimeout's range: setLongTimeout, never setTimeout.
      lifetimeTimer = setLongTimeout(() => this.stop(reason), endsAt - now());
    }
    relay.start(pending);
    if (this.stopper.requested) this.stop(this.stopper.reason ?? 'server_shutdown');
    const result = await relay.done;
    this.lastProbe = relay.probe();
    this.relay = undefined;
    lifetimeTimer?.clear();
    this.stopper.clear();
    this.deps.cancels.unregister(key.processId);
    await this.end(socket, result, backend, pool, identity, expiresAt);
  }

  /**
   * The per-session setup on the backend, one round trip. When gprxy.begin_session refuses the checkout
   * epoch (something other than the proxy moved it forward), that backend can never carry a valid context
   * again: it is closed and the checkout retried on newly opened backends. Returns the backend the session got.
   */
  private async setUp(client: SessionClient, login: Authenticated, tenant: string | null, contextExpiry: number): Promise<Backend> {
    const { config, now } = this.deps;
    const { identity, pool, startup } = login;
    let backend = login.backend;
    for (let attempt = 1; ; attempt++) {
      let context: string | undefined;
      let epoch: number | undefined;
      if (config.context.secret) {
        if (backend.attributes.get(BINDS_CHECKOUT) === true) epoch = this.deps.pools.nextEpoch();
        const bound = { pid: backend.processId, startMicros: String(backend.attributes.get(BACKEND_START) ?? ''), ...(epoch !== undefined ? { epoch } : {}) };
        context = signContext(config.context.secret, buildContextPayload(identity, tenant, contextExpiry, bound, now()));
      }
      let setup;
      try {
        setup = await backend.run(
          buildSetup({ identity, clientParameters: startup.parameters, settings: config.context.settings, ...(context ? { context } : {}), ...(epoch !== undefined ? { epoch } : {}) }),
        );
      } catch (e) {
        await pool.release(backend, false);
        throw new Refusal('backend_setup_failed', `backend failed during session setup: ${(e as Error).message}`, undefined, { cause: e });
      }
      if (!setup.error) return backend;
      if (setup.error.code !== EPOCH_REFUSED_SQLSTATE) {
        await pool.release(backend, true);
        throw new Refusal('session_setup_rejected', setup.error.message, setup.error.code);
      }
      this.log.warn({ event: 'backend_epoch_refused', backend_pid: backend.processId, attempt, message: setup.error.message }, 'checkout epoch refused; closing that backend');
      await pool.release(backend, false);
      // A previous user may have pushed the epochs of several pooled backends forward: the retry takes a
      // newly opened backend, which has no epoch recorded, so no user can make another's login fail.
      if (attempt === 3) {
        throw new Refusal(
          'backend_epoch_refused',
          'could not bind the identity context to a database connection (gprxy.begin_session refused the checkout, also on new connections); the proxy log has details',
        );
      }
      backend = await client.acquire(pool, true);
    }
  }

  /**
   * Ends the relay where a FATAL can be injected without splitting one of the server's messages. A client
   * that stops reading mid-result would postpone that forever: BoundaryStop cuts it after its grace period.
   */
  stop(reason: StopReason): void {
    this.stopper.request(reason, this.relay);
  }

  private async end(socket: Socket, result: RelayResult, backend: Backend, pool: BackendPool, identity: Identity, tokenExpiresAt: number): Promise<void> {
    const reason = this.stopper.reason ?? (result.reason === 'stopped' ? 'server_shutdown' : result.reason);
    // The client hears the stop the proxy asked for, or the relay's own end (backend lost, protocol error).
    const say = result.reason === 'stopped' ? reason : result.reason;
    const conn: Connection = { socket, log: this.log, metrics: this.deps.metrics, startedAt: this.startedAt, now: this.deps.now };
    await disconnect(conn, {
      phase: 'session',
      reason,
      say,
      detail: { ...(result.error ? { text: result.error } : {}), tokenExpiresAt },
      forced: this.stopper.forced,
      user: identity.user,
      release: () => pool.release(backend, result.backendIdle && result.reason !== 'protocol_error' && !this.stopper.forced, !result.backendIdle),
      fields: {
        bytes_in: result.bytesFromClient,
        bytes_out: result.bytesFromBackend,
        backend_reused: result.backendIdle,
        ...(result.error ? { error: result.error } : {}),
      },
    });
  }
}
