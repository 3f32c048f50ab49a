/**
 * One client connection to the central proxy, from the first byte to the close:
 *   startup (SSLRequest → TLS, GSSENCRequest → N, CancelRequest → route) → StartupMessage →
 *   cleartext password request (the token) → verify → map to a service account → pooled backend →
 *   per-session setup (settings, application_name, signed context) → AuthenticationOk … ReadyForQuery →
 *   header-only relay → release (reset) or close the backend.
 * Every refusal is a FATAL ErrorResponse with the contract's SQLSTATE and a next step; every end is logged
 * with its reason, duration and byte counts. Tokens never reach a log line: only a short hash or jti.
 */
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { DatabaseConfig, ProxyConfig } from '../config/proxy-config.js';
import { ProtocolError } from '../protocol/errors.js';
import { FrameReader } from '../protocol/frame-reader.js';
import { parsePasswordMessage } from '../protocol/client-messages.js';
import {
  authenticationCleartextPassword,
  authenticationOk,
  backendKeyData,
  errorResponse,
  negotiateProtocolVersion,
  parameterStatus,
  readyForQuery,
  sslResponse,
} from '../protocol/server-messages.js';
import { SqlState } from '../protocol/sqlstate.js';
import { needsNegotiation, parseStartupPacket, type StartupMessagePacket } from '../protocol/startup.js';
import { setLongTimeout, type LongTimer } from '../shared/long-timer.js';
import { TokenError, quote } from '../token/errors.js';
import { resolveIdentity, type Identity } from '../token/identity.js';
import type { TokenVerifier, VerifiedToken } from '../token/verifier.js';
import { discoveryUrlForIssuer } from '../protocol/oauthbearer.js';
import { OAuthBearerDiscoveryEnd, oauthBearerLogin } from './oauthbearer-login.js';
import { BackendError, type Backend } from './backend.js';
import type { BackendPool } from './pool.js';
import type { CancelRegistry } from './cancel-registry.js';
import { buildContextPayload, EPOCH_REFUSED_SQLSTATE, signContext } from './identity-context.js';
import type { ProxyMetrics } from './metrics.js';
import { BACKEND_START, BINDS_CHECKOUT, type PoolManager } from './pools.js';
import { Relay, type RelayResult } from './relay.js';
import { buildSetup } from './session-setup.js';
import { relayPassthrough } from './passthrough.js';

const PASSWORD_MESSAGE = 0x70; // 'p'
/** How long an ending session may wait for a message boundary before its connection is cut. */
const STOP_GRACE_MS = 5_000;
/** Context lifetime when the operator lets sessions outlive tokens and sets no session_max_lifetime. */
const SESSION_WITHOUT_END_MS = 365 * 86_400_000;
const MAX_PREAUTH_MESSAGE = 64 * 1024;

export interface SessionDeps {
  readonly config: ProxyConfig;
  readonly verifier: TokenVerifier;
  readonly pools: PoolManager;
  readonly cancels: CancelRegistry;
  readonly logger: Logger;
  readonly secureContext?: SecureContext;
  readonly now: () => number;
  readonly sessionId: number;
  readonly metrics?: ProxyMetrics;
}

/** A refusal that ends the connection: sent to the client as FATAL, logged with `reason`. */
class Refusal extends Error {
  constructor(
    readonly sqlstate: string,
    message: string,
    readonly reason: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

function isLoopback(address: string | undefined): boolean {
  return !!address && (address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.'));
}

export class ClientSession {
  private socket: Socket;
  private readonly reader = new FrameReader({ maxStartupLength: 10240, maxMessageLength: MAX_PREAUTH_MESSAGE });
  private wake: (() => void) | undefined;
  private closed = false;
  private readonly startedAt: number;
  private readonly client: string;
  private log: Logger;
  private tls = false;
  private relay: Relay | undefined;
  private stopRequested = false;
  /** How the client presented its token (audit events); set once the database is known. */
  private authMethod: 'password' | 'oauthbearer' | undefined;

  constructor(
    socket: Socket,
    private readonly deps: SessionDeps,
  ) {
    this.socket = socket;
    this.startedAt = deps.now();
    this.client = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.log = deps.logger.child({ session: deps.sessionId, client: this.client });
    this.listen(socket);
  }

  private readonly onData = (chunk: Buffer) => {
    try {
      this.reader.push(chunk);
      // Before authentication a client has no reason to send ahead more than one message.
      if (this.reader.buffered > 2 * MAX_PREAUTH_MESSAGE) throw new ProtocolError(`client sent more than ${2 * MAX_PREAUTH_MESSAGE} bytes before authenticating`);
    } catch (e) {
      this.readError = e as Error;
      // Stop reading at once: nothing more this client sends before authenticating is kept.
      this.socket.pause();
    }
    this.wake?.();
  };
  private readError: Error | undefined;
  private readonly onGone = () => {
    this.closed = true;
    this.wake?.();
  };

  private listen(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('end', this.onGone);
    socket.on('close', this.onGone);
    socket.on('error', this.onGone);
  }

  private unlisten(socket: Socket): void {
    socket.pause();
    socket.off('data', this.onData);
    socket.off('end', this.onGone);
    socket.off('close', this.onGone);
    socket.off('error', this.onGone);
  }

  /** Waits for the next complete frame; throws when the client hangs up or sends something malformed. */
  private async next<T>(take: () => T | null): Promise<T> {
    for (;;) {
      if (this.readError) throw this.readError;
      const frame = take();
      if (frame) return frame;
      if (this.closed) throw new Refusal(SqlState.CONNECTION_FAILURE, 'client closed the connection', 'client_closed_during_login');
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  /** Asks the session to end (server shutdown): at the next message boundary the client gets 57P01. */
  shutdown(): void {
    if (!this.relay) {
      this.stopRequested = true;
      this.socket.destroy();
    } else this.stopAtBoundary('server_shutdown');
  }

  async run(): Promise<void> {
    const loginTimer = setLongTimeout(() => {
      this.readError = new Refusal(SqlState.PROTOCOL_VIOLATION, `login not completed within ${this.deps.config.limits.loginTimeoutMs / 1000} s`, 'login_timeout');
      this.wake?.();
    }, this.deps.config.limits.loginTimeoutMs);
    let identity: Identity | undefined;
    let database: DatabaseConfig | undefined;
    let user: string | undefined;
    try {
      const startup = await this.negotiateStartup();
      if (!startup) return; // a CancelRequest, already handled
      user = startup.parameters.user;
      const dbName = startup.parameters.database ?? user!;
      // Own keys only: `constructor` or `__proto__` must not find Object.prototype's members.
      database = Object.hasOwn(this.deps.config.databases, dbName) ? this.deps.config.databases[dbName] : undefined;
      if (!database) {
        const known = Object.keys(this.deps.config.databases).join(', ');
        throw new Refusal(SqlState.INVALID_CATALOG, `database ${quote(dbName, 63)} is not served by this proxy (available: ${known})`, 'unknown_database');
      }
      if (database.mode === 'passthrough') {
        loginTimer.clear();
        await this.passthrough(database, startup);
        return;
      }
      let verified: VerifiedToken;
      if (database.clientAuth === 'oauthbearer') {
        this.authMethod = 'oauthbearer';
        ({ verified, identity } = await this.oauthBearer(database, user!));
      } else {
        this.authMethod ??= 'password';
      this.socket.write(authenticationCleartextPassword());
        verified = await this.deps.verifier.verify(await this.readPassword());
        identity = resolveIdentity(verified, user!, this.deps.config.roleMapping);
      }
      const account = this.deps.config.accounts[identity.account]!;
      const pool = this.deps.pools.get(database, account);
      const backend = await this.acquire(pool);
      await this.startSession(backend, pool, identity, verified.expiresAt, startup, database, loginTimer, verified.tokenId);
    } catch (e) {
      loginTimer.clear();
      this.refuse(e, { user, database: database?.name, identity });
    }
  }

  private async acquire(pool: BackendPool): Promise<Backend> {
    let backend: Backend;
    try {
      backend = await pool.acquire();
    } catch (e) {
      if (e instanceof BackendError) throw e;
      const err = e as Error & { sqlstate?: string; code?: string };
      throw new Refusal(err.sqlstate ?? SqlState.CANNOT_CONNECT_NOW, err.message, err.code ?? 'backend_unavailable');
    }
    if (this.closed) {
      // The client left while it waited: a relay on its closed socket would hold the backend forever.
      await pool.release(backend, true);
      throw new Refusal(SqlState.CONNECTION_FAILURE, 'client closed the connection', 'client_closed_during_login');
    }
    return backend;
  }

  /**
   * The password message's text (the token). A method of its own so that nothing of the read buffer
   * stays reachable from run() while a login waits, possibly long, for a backend (4 KiB per login).
   */
  private async readPassword(): Promise<string> {
    const message = await this.next(() => this.reader.nextMessage()).catch((e: unknown) => {
      // An oversized password is a wrong password, not a protocol attack: say so with 28P01.
      if (e instanceof ProtocolError && /^message 'p' length \d+ exceeds/.test(e.message)) {
        throw new TokenError('token_too_large', `the password is larger than ${MAX_PREAUTH_MESSAGE} bytes, too large to be an access token; use gprxy token or gprxy connect`);
      }
      throw e;
    });
    if (message.type !== PASSWORD_MESSAGE) {
      throw new Refusal(SqlState.PROTOCOL_VIOLATION, `expected a password message, got message type "${String.fromCharCode(message.type)}"`, 'protocol_violation');
    }
    const token = parsePasswordMessage(message.body);
    if (this.reader.buffered === 0) this.reader.takeRemaining();
    return token;
  }

  /** SASL OAUTHBEARER instead of a password request (client_auth: oauthbearer): same verifier, same identity. */
  private async oauthBearer(database: DatabaseConfig, user: string): Promise<{ verified: VerifiedToken; identity: Identity }> {
    const oauth = database.oauth!;
    const result = await oauthBearerLogin(
      { send: (m) => this.socket.write(m), receive: () => this.next(() => this.reader.nextMessage()) },
      {
        discoveryUrl: discoveryUrlForIssuer(oauth.issuer),
        scope: oauth.scope,
        maxMessageBytes: MAX_PREAUTH_MESSAGE,
        verify: async (token) => {
          const verified = await this.deps.verifier.verify(token);
          return { verified, identity: resolveIdentity(verified, user, this.deps.config.roleMapping) };
        },
      },
    );
    if (this.reader.buffered === 0) this.reader.takeRemaining();
    return result;
  }

  /** SSLRequest / GSSENCRequest / CancelRequest handling until a StartupMessage arrives. */
  private async negotiateStartup(): Promise<StartupMessagePacket | undefined> {
    for (let round = 0; round < 3; round++) {
      const packet = parseStartupPacket(await this.next(() => this.reader.nextStartupFrame()));
      switch (packet.kind) {
        case 'ssl': {
          if (this.tls || !this.deps.secureContext) {
            this.socket.write(sslResponse(false));
            continue;
          }
          if (this.reader.buffered > 0) {
            throw new Refusal(SqlState.PROTOCOL_VIOLATION, 'received unencrypted data after SSL request', 'protocol_violation');
          }
          await this.upgradeToTls();
          continue;
        }
        case 'gssenc':
          this.socket.write(sslResponse(false));
          continue;
        case 'cancel': {
          const matched = this.deps.cancels.cancel(packet.processId, packet.secretKey);
          this.log.info({ event: 'cancel_request', matched }, matched ? 'cancel forwarded' : 'cancel request matched no session');
          this.closed = true;
          this.socket.destroy();
          return undefined;
        }
        case 'startup': {
          if (!this.tls && !(this.deps.config.allowPlaintextLoopback && isLoopback(this.socket.remoteAddress))) {
            throw new Refusal(
              SqlState.INVALID_AUTHORIZATION,
              'this proxy requires TLS: connect with sslmode=require (or verify-full), or use gprxy connect',
              'tls_required',
            );
          }
          if (needsNegotiation(packet)) this.socket.write(negotiateProtocolVersion(0, packet.unsupportedOptions));
          if (!packet.parameters.user) throw new Refusal(SqlState.INVALID_AUTHORIZATION, 'no user name in the startup packet', 'protocol_violation');
          return packet;
        }
      }
    }
    throw new Refusal(SqlState.PROTOCOL_VIOLATION, 'too many negotiation requests before the startup packet', 'protocol_violation');
  }

  private async upgradeToTls(): Promise<void> {
    const raw = this.socket;
    this.unlisten(raw);
    raw.write(sslResponse(true));
    const secure = new TLSSocket(raw, { isServer: true, secureContext: this.deps.secureContext! });
    this.socket = secure;
    this.listen(secure);
    secure.on('secure', () => {
      this.tls = true;
      this.wake?.();
    });
    while (!this.tls) {
      if (this.readError) throw this.readError;
      if (this.closed) throw new Refusal(SqlState.CONNECTION_FAILURE, 'TLS handshake failed', 'tls_handshake_failed');
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private async startSession(
    backend: Backend,
    pool: BackendPool,
    identity: Identity,
    expiresAt: number,
    startup: StartupMessagePacket,
    database: DatabaseConfig,
    loginTimer: LongTimer,
    tokenId: string,
  ): Promise<void> {
    const { config, now } = this.deps;
    this.tokenExpiresAt = expiresAt;
    const tenant = identity.tenantId ?? null;
    // When the session must end (operator's choice, DESIGN.md 2.4); the identity context expires with it.
    const limits = config.limits;
    const endsAt = Math.min(
      limits.sessionMaxLifetimeMs > 0 ? now() + limits.sessionMaxLifetimeMs : Infinity,
      limits.endSessionAtTokenExpiry ? expiresAt : Infinity,
    );
    const contextExpiry = Number.isFinite(endsAt) ? endsAt : now() + SESSION_WITHOUT_END_MS;
    backend = await this.setUp(backend, pool, identity, tenant, contextExpiry, startup);
    if (this.closed) {
      await pool.release(backend, true);
      throw new Refusal(SqlState.CONNECTION_FAILURE, 'client closed the connection', 'client_closed_during_login');
    }
    let backendSocket;
    try {
      backendSocket = backend.detach();
    } catch (e) {
      await pool.release(backend, false);
      throw new Refusal(SqlState.CANNOT_CONNECT_NOW, `backend sent unexpected data during session setup: ${(e as Error).message}`, 'backend_setup_failed');
    }
    const key = this.deps.cancels.register({ cancel: () => this.deps.pools.cancel(backend) });
    loginTimer.clear();
    const greeting: Buffer[] = [authenticationOk()];
    for (const [name, value] of backend.parameters) greeting.push(parameterStatus(name, value));
    greeting.push(backendKeyData(key.processId, key.secretKey), readyForQuery('I'));
    this.socket.write(Buffer.concat(greeting));
    const loginMs = now() - this.startedAt;
    this.deps.metrics?.authSucceeded();
    this.log = this.log.child({ user: identity.user, account: identity.account, database: database.name });
    this.log.info(
      {
        event: 'auth_success',
        auth_method: this.authMethod ?? 'password',
        email: identity.email,
        sub: identity.subject,
        roles: identity.roles,
        tenant,
        token: tokenId,
        backend_pid: backend.processId,
        duration_ms: loginMs,
      },
      `${identity.user} connected to ${database.name} as ${identity.account}`,
    );

    this.unlisten(this.socket);
    const relay = new Relay(this.socket, backendSocket);
    this.relay = relay;
    let lifetimeTimer: LongTimer | undefined;
    if (Number.isFinite(endsAt)) {
      const reason = limits.endSessionAtTokenExpiry && endsAt === expiresAt ? 'token_expired' : 'session_max_lifetime';
      // A 30-day token or session_max_lifetime is beyond setTimeout's range: setLongTimeout, never setTimeout.
      lifetimeTimer = setLongTimeout(() => this.stopAtBoundary(reason), endsAt - now());
    }
    relay.start(this.reader.takeRemaining());
    if (this.stopRequested) this.stopAtBoundary(this.endReason ?? 'server_shutdown');
    const result = await relay.done;
    this.relay = undefined;
    lifetimeTimer?.clear();
    clearTimeout(this.boundaryTimer);
    this.deps.cancels.unregister(key.processId);
    await this.endSession(result, backend, pool, identity);
  }

  /**
   * The per-session setup on the backend, one round trip. When gprxy.begin_session refuses the checkout
   * epoch (something other than the proxy moved it forward), that backend can never carry a valid context
   * again: it is closed and the checkout retried once on another. Returns the backend the session got.
   */
  private async setUp(backend: Backend, pool: BackendPool, identity: Identity, tenant: string | null, contextExpiry: number, startup: StartupMessagePacket): Promise<Backend> {
    const { config, now } = this.deps;
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
        throw new Refusal(SqlState.CANNOT_CONNECT_NOW, `backend failed during session setup: ${(e as Error).message}`, 'backend_setup_failed');
      }
      if (!setup.error) return backend;
      if (setup.error.code !== EPOCH_REFUSED_SQLSTATE) {
        await pool.release(backend, true);
        throw new Refusal(setup.error.code, setup.error.message, 'session_setup_rejected');
      }
      this.log.warn({ event: 'backend_epoch_refused', backend_pid: backend.processId, attempt, message: setup.error.message }, 'checkout epoch refused; closing that backend');
      await pool.release(backend, false);
      if (attempt === 2) {
        throw new Refusal(
          SqlState.CANNOT_CONNECT_NOW,
          'could not bind the identity context to a database connection (gprxy.begin_session refused the checkout twice); try again shortly',
          'backend_epoch_refused',
        );
      }
      backend = await this.acquire(pool);
    }
  }

  private endReason: string | undefined;
  private tokenExpiresAt = 0;
  private boundaryTimer: NodeJS.Timeout | undefined;

  private stopDeadline = 0;
  /** The relay was cut mid-message (the client stopped reading): no FATAL can be sent any more. */
  private forcedStop = false;

  /**
   * Ends the relay where a FATAL can be injected without splitting one of the server's messages. A client
   * that stops reading mid-result would postpone that forever, so after STOP_GRACE_MS the connection is cut.
   */
  private stopAtBoundary(reason: string): void {
    this.stopRequested = true;
    this.endReason ??= reason;
    const relay = this.relay;
    if (!relay) return;
    this.stopDeadline ||= this.deps.now() + STOP_GRACE_MS;
    if (relay.clientAtBoundary) relay.stop();
    else if (this.deps.now() >= this.stopDeadline) {
      this.forcedStop = true;
      relay.stop();
    } else this.boundaryTimer = setTimeout(() => this.stopAtBoundary(reason), 20);
  }

  private async endSession(result: RelayResult, backend: Backend, pool: { release(b: Backend, reusable: boolean): Promise<void> }, identity: Identity): Promise<void> {
    const reason = this.endReason ?? (result.reason === 'stopped' ? 'server_shutdown' : result.reason);
    if (result.reason === 'stopped' || result.reason.startsWith('backend') || result.reason === 'protocol_error') {
      const message =
        reason === 'token_expired'
          ? `the access token this session was opened with expired at ${new Date(this.tokenExpiresAt).toISOString()}; reconnect with a fresh token (gprxy connect renews tokens automatically)`
          : reason === 'session_max_lifetime'
          ? 'session exceeded limits.session_max_lifetime; reconnect to continue'
          : reason === 'server_shutdown'
            ? 'the proxy is shutting down; reconnect to another replica or try again shortly'
            : result.reason === 'protocol_error'
              ? `protocol violation: ${result.error ?? 'malformed message'}`
              : `the database connection was lost (${result.error ?? 'closed by the server'}); reconnect to continue`;
      const code =
        result.reason === 'protocol_error'
          ? SqlState.PROTOCOL_VIOLATION
          : reason === 'token_expired'
            ? SqlState.INVALID_AUTHORIZATION
            : reason === 'session_max_lifetime' || reason === 'server_shutdown'
            ? SqlState.ADMIN_SHUTDOWN
            : SqlState.CONNECTION_FAILURE;
      if (this.forcedStop) this.socket.destroy();
      else if (!this.socket.destroyed) this.socket.end(errorResponse({ severity: 'FATAL', code, message }));
    } else {
      this.socket.destroy();
    }
    await pool.release(backend, result.backendIdle && result.reason !== 'protocol_error' && !this.forcedStop);
    this.deps.metrics?.sessionEnded(reason);
    this.log.info(
      {
        event: 'session_end',
        reason,
        duration_ms: this.deps.now() - this.startedAt,
        bytes_in: result.bytesFromClient,
        bytes_out: result.bytesFromBackend,
        backend_reused: result.backendIdle,
        ...(result.error ? { error: result.error } : {}),
      },
      `${identity.user} disconnected (${reason})`,
    );
  }

  private async passthrough(database: DatabaseConfig, startup: StartupMessagePacket): Promise<void> {
    this.unlisten(this.socket);
    const result = await relayPassthrough(this.socket, database, startup, this.reader.takeRemaining(), this.deps);
    const fields = { mode: 'passthrough', user: startup.parameters.user, database: database.name, duration_ms: this.deps.now() - this.startedAt };
    if (result.refused !== undefined) {
      this.log.info({ event: 'auth_failure', ...fields, reason: 'refused_by_database', message: result.refused }, `database refused ${startup.parameters.user}`);
      return;
    }
    this.log.info({ event: 'session_end', ...fields, reason: result.reason, bytes_in: result.bytesFromClient, bytes_out: result.bytesFromBackend }, `passthrough session ended (${result.reason})`);
  }

  private refuse(e: unknown, ctx: { user: string | undefined; database: string | undefined; identity: Identity | undefined }): void {
    let refusal: Refusal;
    if (e instanceof Refusal) refusal = e;
    else if (e instanceof TokenError) refusal = new Refusal(e.sqlstate, e.message, e.code);
    else if (e instanceof OAuthBearerDiscoveryEnd) refusal = new Refusal(e.sqlstate, e.message, e.code);
    else if (e instanceof ProtocolError) refusal = new Refusal(SqlState.PROTOCOL_VIOLATION, e.message, 'protocol_violation');
    else if (e instanceof BackendError) {
      // Host names, ports and account names are for the operator's log, not for every client.
      this.log.warn({ event: 'backend_unavailable', reason: e.code, message: e.message, database: ctx.database }, 'backend unavailable');
      refusal = new Refusal(e.sqlstate, `database ${ctx.database ?? ''} is unavailable right now; try again shortly (the proxy log has details)`, e.code);
    }
    else {
      this.log.error({ event: 'internal_error', err: e }, 'unexpected error in client session');
      refusal = new Refusal(SqlState.INTERNAL, 'internal proxy error; the proxy log has details', 'internal_error');
    }
    // Nothing can be said to a client that left, or whose TLS handshake never finished.
    const clientGone = refusal.reason === 'client_closed_during_login' || refusal.reason === 'tls_handshake_failed' || (this.socket instanceof TLSSocket && !this.tls);
    if (!clientGone && !this.socket.destroyed) {
      this.socket.end(errorResponse({ severity: 'FATAL', code: refusal.sqlstate, message: refusal.message, ...(refusal.hint ? { hint: refusal.hint } : {}) }));
      this.socket.destroySoon?.();
    } else {
      this.socket.destroy();
    }
    // An OAUTHBEARER discovery round is the normal first step of a libpq 18 login, not a failed one.
    const authPhase = !['client_closed_during_login', 'tls_handshake_failed', 'login_timeout', 'protocol_violation', 'tls_required', 'oauth_discovery'].includes(refusal.reason);
    if (authPhase) this.deps.metrics?.authFailed(refusal.reason);
    else this.deps.metrics?.sessionEnded(refusal.reason);
    this.log.info(
      {
        event: authPhase ? 'auth_failure' : 'connection_refused',
        reason: refusal.reason,
        sqlstate: refusal.sqlstate,
        message: refusal.message,
        user: ctx.user,
        database: ctx.database,
        ...(this.authMethod ? { auth_method: this.authMethod } : {}),
        ...(ctx.identity ? { email: ctx.identity.email, roles: ctx.identity.roles, account: ctx.identity.account } : {}),
        duration_ms: this.deps.now() - this.startedAt,
      },
      `connection refused: ${refusal.reason}`,
    );
  }
}

