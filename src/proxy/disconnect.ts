/**
 * Every end of a client connection, in one place (PgBouncer's `disconnect_client(client, notify, reason)`):
 * the `END_REASONS` table maps each reason to what the client is told (SQLSTATE and message), which audit
 * event records it, and in which phase it can happen; `disconnect()` is the one function that tells the
 * client, closes its socket, counts the metric and writes the log line. Adding a reason is one entry here.
 *
 * Phases: `login` covers everything before the greeting (AuthenticationOk … ReadyForQuery) — such ends are
 * logged as `connection_refused` (the client never got as far as authenticating) or `auth_failure`; once the
 * session has started every end is a `session_end`. A reason may exist in both phases (a token can be
 * expired at login or expire during the session) with different words for the client.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { errorResponse } from '../protocol/server-messages.js';
import { SqlState } from '../protocol/sqlstate.js';
import type { TokenErrorCode } from '../token/errors.js';
import type { BackendErrorCode } from './backend.js';
import type { ProxyMetrics } from './metrics.js';
import { GprxyError } from '../shared/errors.js';

/** What the table's message functions may use; `text` is the message of the error behind the end. */
export interface EndDetail {
  readonly text?: string;
  readonly database?: string;
  readonly tokenExpiresAt?: number;
}

type Message = (d: EndDetail) => string;

export interface LoginRule {
  /** `connection_refused`: ended before authentication started; `auth_failure`: the login itself failed. */
  readonly event: 'connection_refused' | 'auth_failure';
  /** SQLSTATE of the FATAL sent; absent: nothing can be said (the client left or never finished TLS). */
  readonly sqlstate?: string;
  /** The client's text; absent: the error's own message (`detail.text`), which is written to be shown. */
  readonly message?: Message;
}

export interface SessionRule {
  /** SQLSTATE of the FATAL injected at a message boundary; absent: the client left, the socket is closed. */
  readonly sqlstate?: string;
  readonly message?: Message;
}

export interface EndRule {
  readonly login?: LoginRule;
  readonly session?: SessionRule;
}

const refused = (sqlstate?: string, message?: Message): { login: LoginRule } => ({
  login: { event: 'connection_refused', ...(sqlstate ? { sqlstate } : {}), ...(message ? { message } : {}) },
});
const authFailed = (sqlstate: string, message?: Message): { login: LoginRule } => ({ login: { event: 'auth_failure', sqlstate, ...(message ? { message } : {}) } });
const ended = (sqlstate?: string, message?: Message): { session: SessionRule } => ({ session: { ...(sqlstate ? { sqlstate } : {}), ...(message ? { message } : {}) } });

// Host names, ports and account names are for the operator's log, not for every client.
const unavailable: Message = (d) => `database ${d.database ?? ''} is unavailable right now; try again shortly (the proxy log has details)`;
const connectionLost: Message = (d) => `the database connection was lost (${d.text ?? 'closed by the server'}); reconnect to continue`;
const shuttingDown: Message = () => 'the proxy is shutting down; reconnect to another replica or try again shortly';
const token = { ...authFailed(SqlState.INVALID_AUTHORIZATION) };
const notAToken = { ...authFailed(SqlState.INVALID_PASSWORD) };

/** reason → phase(s) → {SQLSTATE, client message, audit event}. The logged `reason` is the key. */
export const END_REASONS = {
  // Before authentication: the connection is refused.
  client_closed_during_login: refused(),
  tls_handshake_failed: refused(),
  tls_required: refused(SqlState.INVALID_AUTHORIZATION),
  protocol_violation: refused(SqlState.PROTOCOL_VIOLATION),
  login_timeout: refused(SqlState.PROTOCOL_VIOLATION),
  too_many_connections: refused(SqlState.TOO_MANY_CONNECTIONS),
  // An OAUTHBEARER discovery round is the normal first step of a libpq 18 login, not a failed one.
  oauth_discovery: refused(SqlState.INVALID_AUTHORIZATION),
  // Authentication: the token, the database name, the backend.
  unknown_database: authFailed(SqlState.INVALID_CATALOG),
  token_malformed: notAToken,
  token_too_large: notAToken,
  token_expired: {
    ...token,
    ...ended(SqlState.INVALID_AUTHORIZATION, (d) => `the access token this session was opened with expired at ${new Date(d.tokenExpiresAt ?? 0).toISOString()}; reconnect with a fresh token (gprxy connect renews tokens automatically)`),
  },
  token_not_yet_valid: token,
  token_issuer: token,
  token_audience: token,
  token_algorithm: token,
  token_signature: token,
  token_unknown_kid: token,
  token_scope: token,
  token_user_mismatch: token,
  token_no_role: token,
  // A CI job token no provider rule admits (src/token/ci-rules.ts); the audit line carries the explanation.
  token_rule_refused: token,
  token_no_user_id: token,
  token_email_unverified: token,
  // limits.max_sessions_per_identity: the message names the limit and the user.
  too_many_sessions_per_identity: authFailed(SqlState.TOO_MANY_CONNECTIONS),
  // With --workers the primary counts those sessions; it did not answer in time (src/proxy/cluster/identity-slots.ts).
  identity_limit_unavailable: authFailed(SqlState.CANNOT_CONNECT_NOW),
  jwks_unavailable: token,
  backend_unavailable: authFailed(SqlState.CANNOT_CONNECT_NOW, unavailable),
  // PostgreSQL refused the service account itself (e.g. one of its users changed its password): not the
  // client's token, and not something a retry fixes (issue 11 item 3).
  backend_auth_failed: authFailed(
    SqlState.SERVER_REJECTED_CONNECTION,
    (d) =>
      `database ${d.database ?? ''} refused the service account the proxy uses for your role (its credentials no longer work); ` +
      'this is not a problem with your token and retrying will not help: an operator must fix the account (audit event service_account_login_failed)',
  ),
  // New backends keep arriving with role settings nobody should have set (src/proxy/backend-guard.ts).
  backend_tampered: authFailed(
    SqlState.CANNOT_CONNECT_NOW,
    (d) =>
      `the service account the proxy uses for your role on database ${d.database ?? ''} keeps getting tampered settings; the proxy repairs them ` +
      'and refused to use it meanwhile: try again shortly, and tell an operator (audit event service_account_tampered)',
  ),
  backend_error: { ...authFailed(SqlState.CANNOT_CONNECT_NOW, unavailable), ...ended(SqlState.CONNECTION_FAILURE, connectionLost) },
  backend_closed: { ...authFailed(SqlState.CANNOT_CONNECT_NOW, unavailable), ...ended(SqlState.CONNECTION_FAILURE, connectionLost) },
  pool_timeout: authFailed(SqlState.TOO_MANY_CONNECTIONS),
  pool_closed: authFailed(SqlState.CANNOT_CONNECT_NOW),
  backend_setup_failed: authFailed(SqlState.CANNOT_CONNECT_NOW),
  session_setup_rejected: authFailed(SqlState.CANNOT_CONNECT_NOW),
  backend_epoch_refused: authFailed(SqlState.CANNOT_CONNECT_NOW),
  // identity: per_user (src/proxy/per-user/provisioner.ts): a role of the user's name the proxy did not make,
  // or provisioning itself failed (admin connection, a missing group, db init not run).
  user_role_refused: authFailed(SqlState.INVALID_AUTHORIZATION),
  provisioning_failed: authFailed(SqlState.CANNOT_CONNECT_NOW, (d) => `database ${d.database ?? ''} cannot set up your database role right now; try again shortly, and tell an operator if it persists (the proxy log has details)`),
  internal_error: authFailed(SqlState.INTERNAL, () => 'internal proxy error; the proxy log has details'),
  // The admin console (src/proxy/admin/admin-access.ts): an address outside admin.networks is refused before
  // any token is read (28000, as PostgreSQL's pg_hba); a valid login without an admin role gets 42501.
  admin_network_refused: refused(SqlState.INVALID_AUTHORIZATION),
  admin_role_missing: authFailed(SqlState.INSUFFICIENT_PRIVILEGE),
  // KILL SESSION / KILL USER in the admin console: 57P01 as PostgreSQL's pg_terminate_backend says.
  killed_by_admin: {
    ...refused(SqlState.ADMIN_SHUTDOWN, () => 'terminating connection due to administrator command (gprxy admin console: KILL)'),
    ...ended(SqlState.ADMIN_SHUTDOWN, () => 'terminating connection due to administrator command (gprxy admin console: KILL); reconnect if you still may'),
  },
  // Passthrough: PostgreSQL refused the login and already told the client.
  refused_by_database: { login: { event: 'auth_failure' } },
  // During the session.
  server_shutdown: { ...refused(), ...ended(SqlState.ADMIN_SHUTDOWN, shuttingDown) },
  session_max_lifetime: ended(SqlState.ADMIN_SHUTDOWN, () => 'session exceeded limits.session_max_lifetime; reconnect to continue'),
  // A CI rule's max_session (issue 19): independent of the job token's expiry.
  ci_max_session: ended(SqlState.ADMIN_SHUTDOWN, () => "session reached the max_session of the CI rule that admitted this job; reconnect with a fresh job token to continue"),
  protocol_error: ended(SqlState.PROTOCOL_VIOLATION, (d) => `protocol violation: ${d.text ?? 'malformed message'}`),
  client_terminate: ended(),
  client_closed: ended(),
  client_error: ended(),
} as const satisfies Record<string, EndRule>;

export type EndReason = keyof typeof END_REASONS;
export type LoginEndReason = { [R in EndReason]: (typeof END_REASONS)[R] extends { login: LoginRule } ? R : never }[EndReason];
export type SessionEndReason = { [R in EndReason]: (typeof END_REASONS)[R] extends { session: SessionRule } ? R : never }[EndReason];

type Covered<T extends LoginEndReason> = T;
/** Every coded error a login can meet has its row: a new code without one fails to compile here. */
export type CodedLoginError = Covered<TokenErrorCode | BackendErrorCode | 'pool_timeout' | 'pool_closed'>;

export function isEndReason(code: unknown): code is EndReason {
  return typeof code === 'string' && Object.hasOwn(END_REASONS, code);
}

/** A login step's way to end the connection: thrown, caught once, handed to `disconnect`. */
export class Refusal extends GprxyError<LoginEndReason> {
  constructor(
    /** The reason, a key of END_REASONS. */
    readonly code: LoginEndReason,
    message?: string,
    /** A SQLSTATE the database itself chose (a rejected setup statement), sent instead of the table's. */
    readonly sqlstate?: string,
    options?: { cause?: unknown },
  ) {
    super(message ?? code, options);
  }
}

export interface Connection {
  readonly socket: Socket;
  readonly log: Logger;
  readonly metrics?: ProxyMetrics | undefined;
  readonly startedAt: number;
  readonly now: () => number;
}

export type End =
  | {
      readonly phase: 'login';
      readonly reason: LoginEndReason;
      readonly detail?: EndDetail;
      /** SQLSTATE that replaces the table's (the database's own code). */
      readonly sqlstate?: string;
      /** False when the client cannot read a FATAL any more (TLS handshake unfinished). */
      readonly canSpeak?: boolean;
      readonly fields?: Record<string, unknown>;
      readonly level?: 'info' | 'warn';
      /** The socket was already ended by whoever relayed the database's own refusal: leave it alone. */
      readonly socketDone?: boolean;
    }
  | {
      readonly phase: 'session';
      readonly reason: SessionEndReason | LoginEndReason;
      /** Which row speaks to the client: the relay's own end, or the stop that was requested. */
      readonly say?: SessionEndReason;
      readonly detail?: EndDetail;
      /** The relay was cut mid-message: no FATAL can be injected any more. */
      readonly forced?: boolean;
      readonly fields?: Record<string, unknown>;
      readonly user?: string;
      /** Runs after the client is told and before the log line (the backend's release). */
      readonly release?: () => Promise<void>;
    };

/** How long a client may take to read the session's FATAL before its connection is cut. */
const GOODBYE_MS = 5000;

/**
 * After a session's FATAL, close like PostgreSQL's backend, which exits: the relay stopped reading the client,
 * so whatever it still sent (a query, its Terminate) would stay unread and its end never be seen, leaving the
 * socket open for ever. Discard it, close once the FATAL is written, and cut a client that does not read it.
 */
function closeAfterGoodbye(socket: Socket): void {
  socket.resume();
  socket.destroySoon?.();
  const cut = setTimeout(() => socket.destroy(), GOODBYE_MS);
  cut.unref();
  socket.once('close', () => clearTimeout(cut));
}

/** Tells the client (when it can still hear), closes its socket, counts the end and logs it with its reason. */
export async function disconnect(conn: Connection, end: End): Promise<void> {
  const { socket } = conn;
  if (end.phase === 'login') {
    const rule: LoginRule = END_REASONS[end.reason].login;
    // While the TLS handshake is unfinished nothing can be said: the log line then has no sqlstate either
    // (a login_timeout mid-handshake is not the 08P01 a client that finished it is told).
    const sqlstate = end.canSpeak === false ? undefined : (end.sqlstate ?? rule.sqlstate);
    const message = rule.message ? rule.message(end.detail ?? {}) : (end.detail?.text ?? end.reason);
    if (end.socketDone) {
      // nothing to send, nothing to close
    } else if (rule.sqlstate && sqlstate && !socket.destroyed) {
      socket.end(errorResponse({ severity: 'FATAL', code: sqlstate, message }));
      socket.destroySoon?.();
    } else socket.destroy();
    if (rule.event === 'auth_failure') conn.metrics?.authFailed(end.reason);
    else conn.metrics?.sessionEnded(end.reason);
    // The status page's chart: refusals a client was told about (an OAUTHBEARER discovery round is a normal first step).
    if (rule.sqlstate && end.reason !== 'oauth_discovery') conn.metrics?.loginRefused(end.reason);
    conn.log[end.level ?? 'info'](
      {
        event: rule.event,
        reason: end.reason,
        ...(sqlstate ? { sqlstate } : {}),
        message,
        ...end.fields,
        duration_ms: conn.now() - conn.startedAt,
      },
      `connection refused: ${end.reason}`,
    );
    return;
  }
  const rule: SessionRule | undefined = end.say ? END_REASONS[end.say].session : undefined;
  if (end.forced || !rule?.sqlstate) socket.destroy();
  else if (!socket.destroyed) {
    socket.end(errorResponse({ severity: 'FATAL', code: rule.sqlstate, message: rule.message?.(end.detail ?? {}) ?? end.reason }));
    closeAfterGoodbye(socket);
  }
  await end.release?.();
  conn.metrics?.sessionEnded(end.reason);
  conn.log.info(
    { event: 'session_end', reason: end.reason, ...end.fields, duration_ms: conn.now() - conn.startedAt },
    `${end.user ?? 'client'} disconnected (${end.reason})`,
  );
}
