/**
 * One client connection to the central proxy, from the first byte to the close:
 *   login (login.ts: negotiate → StartupMessage → token → verify → service account → pooled backend) →
 *   session (session.ts: setup, greeting, header-only relay, end) — or the passthrough relay.
 * Every end, refusal or not, goes through `disconnect` (disconnect.ts): one table says what the client is
 * told and how the end is logged. Tokens never reach a log line: only a short hash or jti.
 */
import type { Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { DatabaseConfig, ProxyConfig } from '../config/proxy-config.js';
import { ProtocolError } from '../protocol/errors.js';
import type { StartupMessagePacket } from '../protocol/startup.js';
import { setLongTimeout } from '../shared/long-timer.js';
import { TokenError } from '../token/errors.js';
import type { TokenVerifier } from '../token/verifier.js';
import { BackendError } from './backend.js';
import type { CancelRegistry } from './cancel-registry.js';
import { disconnect, Refusal, type Connection, type End } from './disconnect.js';
import { Login } from './login.js';
import { OAuthBearerDiscoveryEnd } from './oauthbearer-login.js';
import type { IdentityLimit } from './identity-sessions.js';
import type { ProxyMetrics } from './metrics.js';
import { PoolClosedError, PoolTimeoutError } from './pool.js';
import type { PoolManager } from './pools.js';
import { relayPassthrough } from './passthrough.js';
import { Session } from './session.js';
import type { PerUserRoles } from './per-user/per-user-login.js';
import type { AdminAccess } from './admin/admin-access.js';
import type { AdminContext } from './admin/commands.js';
import { AdminConsole } from './admin/console.js';
import type { LoginResult } from './login.js';
import type { KillReason, SessionRegistry, TrackedSession } from './session-registry.js';
import { TxSession } from './txpool/tx-session.js';

export interface SessionDeps {
  readonly config: Pick<ProxyConfig, 'databases' | 'accounts' | 'roleMapping' | 'allowPlaintextLoopback' | 'limits' | 'context' | 'admin'>;
  readonly verifier: TokenVerifier;
  readonly pools: PoolManager;
  readonly cancels: CancelRegistry;
  readonly logger: Logger;
  readonly secureContext?: SecureContext;
  readonly now: () => number;
  readonly sessionId: number;
  readonly metrics?: ProxyMetrics;
  /** limits.max_sessions_per_identity; absent: no limit. */
  readonly identitySessions?: IdentityLimit;
  /** identity: per_user databases (src/proxy/per-user/). */
  readonly perUser?: PerUserRoles;
  /** Where this connection is listed for SHOW SESSIONS and KILL. */
  readonly registry?: SessionRegistry;
  /** The admin console (config `admin`): who may enter, and what it reads and acts on. */
  readonly admin?: { readonly access: AdminAccess; readonly context: AdminContext };
}

export class ClientSession {
  private readonly startedAt: number;
  private readonly log: Logger;
  private readonly login: Login;
  private session: Session | TxSession;
  /** What the session half gets: the deps with this connection's registry entry. */
  private readonly inner: SessionDeps & { track: TrackedSession };
  /** This connection in the session registry (SHOW SESSIONS, KILL). */
  readonly track: TrackedSession;
  private loggedIn = false;
  private killRequested = false;
  private console: AdminConsole | undefined;

  constructor(
    socket: Socket,
    private readonly deps: SessionDeps,
  ) {
    this.startedAt = deps.now();
    const client = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.log = deps.logger.child({ session: deps.sessionId, client });
    this.track = { id: deps.sessionId, client, clientAddress: socket.remoteAddress ?? '', since: this.startedAt, state: 'login', kill: (reason) => this.kill(reason) };
    this.track.relay = () => this.session.probe();
    const inner = { ...deps, track: this.track, adminAccess: deps.admin?.access };
    this.inner = inner;
    this.login = new Login(socket, inner, this.log);
    this.session = new Session(inner, this.log, this.startedAt);
    deps.registry?.add(this.track);
  }

  /** Asks the session to end (server shutdown): at the next message boundary the client gets 57P01. */
  shutdown(): void {
    if (this.console) this.console.stop('server_shutdown');
    else if (this.session.relaying) this.session.stop('server_shutdown');
    else this.login.abort();
  }

  /** KILL SESSION / KILL USER: 57P01 at the next message boundary (during login: as soon as the login can be interrupted). */
  kill(reason: KillReason): void {
    this.killRequested = true;
    if (this.console) this.console.stop(reason);
    else if (this.loggedIn) this.session.stop(reason);
    else this.login.fail(new Refusal(reason, 'terminated by an operator (admin console KILL)'));
  }

  async run(): Promise<void> {
    const loginTimer = setLongTimeout(() => {
      this.login.fail(new Refusal('login_timeout', `login not completed within ${this.deps.config.limits.loginTimeoutMs / 1000} s`));
    }, this.deps.config.limits.loginTimeoutMs);
    try {
      const login = await this.login.run();
      this.loggedIn = true;
      if (login.kind === 'cancel') return;
      const track = this.track;
      track.application = login.startup.parameters.application_name ?? '';
      if (login.kind === 'admin') {
        loginTimer.clear();
        await this.adminConsole(login);
        return;
      }
      track.database = login.database.name;
      if (login.kind === 'passthrough') {
        track.mode = 'passthrough';
        track.identity = { user: login.startup.parameters.user ?? '' };
        track.state = 'active';
        loginTimer.clear();
        await this.passthrough(login.database, login.startup);
        return;
      }
      track.mode = 'oauth';
      if (login.kind === 'transaction') {
        // pool.mode: transaction gets a backend per transaction (src/proxy/txpool).
        const session = new TxSession(this.inner, this.log, this.startedAt);
        this.session = session;
        if (this.killRequested) session.stop('killed_by_admin');
        await session.run(this.login, login, loginTimer);
      } else {
        const session = this.session as Session;
        if (this.killRequested) session.stop('killed_by_admin');
        await session.run(this.login, login, loginTimer);
      }
      track.established = true;
    } catch (e) {
      loginTimer.clear();
      await disconnect(this.connection(), this.refusal(e));
    } finally {
      this.login.releaseIdentity();
      this.deps.registry?.retire(this.track);
    }
  }

  /** The admin console (src/proxy/admin/console.ts) on this connection, until it ends. */
  private async adminConsole(login: Extract<LoginResult, { kind: 'admin' }>): Promise<void> {
    const admin = this.deps.admin!;
    const { identity, expiresAt } = login;
    const track = this.track;
    track.mode = 'admin';
    // No service account: the console answers itself.
    track.identity = { user: identity.user, subject: identity.subject, ...(identity.issuer ? { issuer: identity.issuer } : {}), roles: identity.roles };
    track.database = admin.access.database;
    track.state = 'admin';
    const { socket, pending } = this.login.detach();
    const cancelKey = this.deps.cancels.register({ cancel: () => undefined });
    const log = this.log.child({ user: identity.user, database: admin.access.database });
    const consoleSession = new AdminConsole(socket, {
      ctx: admin.context,
      log,
      identity,
      sessionId: this.deps.sessionId,
      ...(track.application ? { applicationName: track.application } : {}),
      cancelKey,
    });
    this.console = consoleSession;
    this.deps.metrics?.authSucceeded();
    log.info(
      { event: 'auth_success', auth_method: 'password', admin: true, sub: identity.subject, issuer: identity.issuer, roles: identity.roles, token: login.tokenId, duration_ms: this.deps.now() - this.startedAt },
      `${identity.user} opened the admin console`,
    );
    // An admin session ends with its token like any other (limits.end_session_at_token_expiry).
    const expiry = this.deps.config.limits.endSessionAtTokenExpiry ? setLongTimeout(() => consoleSession.stop('token_expired'), Math.max(0, expiresAt - this.deps.now())) : undefined;
    consoleSession.start(pending);
    if (this.killRequested) consoleSession.stop('killed_by_admin');
    const end = await consoleSession.done;
    expiry?.clear();
    this.deps.cancels.unregister(cancelKey.processId);
    await disconnect(
      { ...this.connection(), socket, log },
      { phase: 'session', reason: end.reason, say: end.reason, detail: { ...(end.error ? { text: end.error } : {}), tokenExpiresAt: expiresAt }, user: identity.user, fields: { admin: true, ...(end.error ? { error: end.error } : {}) } },
    );
  }

  private connection(): Connection {
    return { socket: this.login.socket, log: this.log, metrics: this.deps.metrics, startedAt: this.startedAt, now: this.deps.now };
  }

  /** Any error that ended a login, as the disconnect table's reason. */
  private refusal(e: unknown): End {
    const { user, database, identity, authMethod } = this.login;
    const fields = {
      user,
      database: database?.name ?? this.login.adminDatabase,
      ...(authMethod ? { auth_method: authMethod } : {}),
      ...(identity ? { email: identity.email, roles: identity.roles, account: identity.account } : {}),
    };
    const base = { phase: 'login' as const, canSpeak: this.login.canSpeak, fields };
    if (e instanceof Refusal) {
      // A timeout names the step it hit (a TLS handshake that never finished is not a token that never came).
      const stepFields = e.code === 'login_timeout' ? { fields: { ...fields, phase: this.login.step } } : {};
      return { ...base, ...stepFields, reason: e.code, detail: { text: e.message, ...(database ? { database: database.name } : {}) }, ...(e.sqlstate ? { sqlstate: e.sqlstate } : {}) };
    }
    if (e instanceof TokenError) return { ...base, reason: e.code, detail: { text: e.message }, ...(e.explanation ? { fields: { ...fields, explanation: e.explanation } } : {}) };
    if (e instanceof OAuthBearerDiscoveryEnd) return { ...base, reason: e.code, detail: { text: e.message } };
    if (e instanceof ProtocolError) return { ...base, reason: 'protocol_violation', detail: { text: e.message } };
    if (e instanceof PoolTimeoutError || e instanceof PoolClosedError) return { ...base, reason: e.code, detail: { text: e.message } };
    if (e instanceof BackendError) {
      this.log.warn({ event: 'backend_unavailable', reason: e.code, message: e.message, database: database?.name }, 'backend unavailable');
      return { ...base, reason: e.code, sqlstate: e.sqlstate, detail: { text: e.message, database: database?.name ?? '' } };
    }
    this.log.error({ event: 'internal_error', err: e }, 'unexpected error in client session');
    return { ...base, reason: 'internal_error' };
  }

  private async passthrough(database: DatabaseConfig, startup: StartupMessagePacket): Promise<void> {
    const { socket, pending } = this.login.detach();
    const result = await relayPassthrough(socket, database, startup, pending, this.deps);
    const user = startup.parameters.user;
    const fields = { mode: 'passthrough', user, database: database.name };
    // No metrics here: passthrough logins and sessions are PostgreSQL's, not counted as the proxy's own.
    const conn: Connection = { ...this.connection(), socket, metrics: undefined };
    if (result.refused !== undefined) {
      await disconnect(conn, { phase: 'login', reason: 'refused_by_database', socketDone: true, detail: { text: result.refused }, fields });
      return;
    }
    this.track.established = true;
    // relayPassthrough closed both sockets already.
    await disconnect(conn, { phase: 'session', reason: result.reason === 'stopped' ? 'server_shutdown' : result.reason, user, fields: { ...fields, bytes_in: result.bytesFromClient, bytes_out: result.bytesFromBackend } });
  }
}
