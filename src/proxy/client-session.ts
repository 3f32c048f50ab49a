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
import type { IdentitySessions } from './identity-sessions.js';
import type { ProxyMetrics } from './metrics.js';
import { PoolClosedError, PoolTimeoutError } from './pool.js';
import type { PoolManager } from './pools.js';
import { relayPassthrough } from './passthrough.js';
import { Session } from './session.js';
import type { PerUserRoles } from './per-user/per-user-login.js';

export interface SessionDeps {
  readonly config: Pick<ProxyConfig, 'databases' | 'accounts' | 'roleMapping' | 'allowPlaintextLoopback' | 'limits' | 'context'>;
  readonly verifier: TokenVerifier;
  readonly pools: PoolManager;
  readonly cancels: CancelRegistry;
  readonly logger: Logger;
  readonly secureContext?: SecureContext;
  readonly now: () => number;
  readonly sessionId: number;
  readonly metrics?: ProxyMetrics;
  /** limits.max_sessions_per_identity; absent: no limit. */
  readonly identitySessions?: IdentitySessions;
  /** identity: per_user databases (src/proxy/per-user/). */
  readonly perUser?: PerUserRoles;
}

export class ClientSession {
  private readonly startedAt: number;
  private readonly log: Logger;
  private readonly login: Login;
  private readonly session: Session;

  constructor(
    socket: Socket,
    private readonly deps: SessionDeps,
  ) {
    this.startedAt = deps.now();
    const client = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.log = deps.logger.child({ session: deps.sessionId, client });
    this.login = new Login(socket, deps, this.log);
    this.session = new Session(deps, this.log, this.startedAt);
  }

  /** Asks the session to end (server shutdown): at the next message boundary the client gets 57P01. */
  shutdown(): void {
    if (this.session.relaying) this.session.stop('server_shutdown');
    else this.login.abort();
  }

  async run(): Promise<void> {
    const loginTimer = setLongTimeout(() => {
      this.login.fail(new Refusal('login_timeout', `login not completed within ${this.deps.config.limits.loginTimeoutMs / 1000} s`));
    }, this.deps.config.limits.loginTimeoutMs);
    try {
      const login = await this.login.run();
      if (login.kind === 'cancel') return;
      if (login.kind === 'passthrough') {
        loginTimer.clear();
        await this.passthrough(login.database, login.startup);
        return;
      }
      await this.session.run(this.login, login, loginTimer);
    } catch (e) {
      loginTimer.clear();
      await disconnect(this.connection(), this.refusal(e));
    } finally {
      this.login.releaseIdentity();
    }
  }

  private connection(): Connection {
    return { socket: this.login.socket, log: this.log, metrics: this.deps.metrics, startedAt: this.startedAt, now: this.deps.now };
  }

  /** Any error that ended a login, as the disconnect table's reason. */
  private refusal(e: unknown): End {
    const { user, database, identity, authMethod } = this.login;
    const fields = {
      user,
      database: database?.name,
      ...(authMethod ? { auth_method: authMethod } : {}),
      ...(identity ? { email: identity.email, roles: identity.roles, account: identity.account } : {}),
    };
    const base = { phase: 'login' as const, canSpeak: this.login.canSpeak, fields };
    if (e instanceof Refusal) return { ...base, reason: e.code, detail: { text: e.message, ...(database ? { database: database.name } : {}) }, ...(e.sqlstate ? { sqlstate: e.sqlstate } : {}) };
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
    // relayPassthrough closed both sockets already.
    await disconnect(conn, { phase: 'session', reason: result.reason === 'stopped' ? 'server_shutdown' : result.reason, user, fields: { ...fields, bytes_in: result.bytesFromClient, bytes_out: result.bytesFromBackend } });
  }
}
