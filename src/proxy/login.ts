/**
 * The login half of a client connection: negotiate (SSLRequest → TLS, GSSENCRequest → N, CancelRequest →
 * route) until a StartupMessage, then authenticate (cleartext password request → the token → verify → map
 * to a service account → a pooled backend). It ends in a `LoginResult` or throws a `Refusal` (or a coded
 * error the disconnect table knows); it never writes a FATAL itself. Reads are bounded: nothing a client
 * sends before authenticating is kept beyond one message.
 */
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { DatabaseConfig, ProxyConfig } from '../config/proxy-config.js';
import { MessageTooLargeError } from '../protocol/errors.js';
import { FrameReader } from '../protocol/frame-reader.js';
import { parsePasswordMessage } from '../protocol/client-messages.js';
import { authenticationCleartextPassword, negotiateProtocolVersion, sslResponse } from '../protocol/server-messages.js';
import { SqlState } from '../protocol/sqlstate.js';
import { NEWEST_PROTOCOL_MINOR, needsNegotiation, parseStartupPacket, type StartupMessagePacket } from '../protocol/startup.js';
import { TokenError, quote } from '../token/errors.js';
import { resolveIdentity, type Identity } from '../token/identity.js';
import { MAX_TOKEN_BYTES, type TokenVerifier, type VerifiedToken } from '../token/verifier.js';
import { discoveryUrlForIssuer } from '../protocol/oauthbearer.js';
import { oauthBearerLogin } from './oauthbearer-login.js';
import { BackendError, type Backend } from './backend.js';
import type { CancelRegistry } from './cancel-registry.js';
import { Refusal } from './disconnect.js';
import { identityKey, type IdentityLimit, type IdentityRelease } from './identity-sessions.js';
import { PoolClosedError, PoolTimeoutError, type BackendPool } from './pool.js';
import type { PoolManager } from './pools.js';
import type { AdminAccess } from './admin/admin-access.js';
import type { TrackedSession } from './session-registry.js';
import { FrontendCode } from '../protocol/codes.js';
import { knownGreeting } from './txpool/greeting-cache.js';
import type { PerUserRoles } from './per-user/per-user-login.js';

/**
 * The largest message accepted before authentication: a password or SASL message carrying an access token
 * (at most MAX_TOKEN_BYTES, refused beyond by the verifier anyway) plus its envelope. A client without a
 * credential can pin no more than this (and the next header) per connection until login_timeout.
 */
export const MAX_PREAUTH_MESSAGE = MAX_TOKEN_BYTES + 512;
/** All a client may have sent and not yet been read, before authenticating: one such message and a header. */
export const MAX_PREAUTH_BUFFERED = MAX_PREAUTH_MESSAGE + 5;
/** The ALPN protocol name PostgreSQL 17+ registers and requires for direct TLS. */
export const PG_ALPN = 'postgresql';
const TLS_HANDSHAKE_RECORD = 0x16;

export interface LoginDeps {
  readonly config: Pick<ProxyConfig, 'databases' | 'accounts' | 'roleMapping' | 'allowPlaintextLoopback' | 'admin'>;
  readonly verifier: TokenVerifier;
  readonly pools: PoolManager;
  readonly cancels: CancelRegistry;
  readonly secureContext?: SecureContext | undefined;
  /** limits.max_sessions_per_identity; absent: no limit. */
  readonly identitySessions?: IdentityLimit | undefined;
  /** Provisioning of per-user roles; present when a database has identity: per_user. */
  readonly perUser?: PerUserRoles | undefined;
  /** The admin console's access rule, when `admin` is configured. */
  readonly adminAccess?: AdminAccess | undefined;
  /** This connection's entry in the session registry (SHOW SESSIONS). */
  readonly track?: TrackedSession | undefined;
  readonly now?: () => number;
}

export type LoginResult =
  | { readonly kind: 'cancel' }
  | { readonly kind: 'admin'; readonly startup: StartupMessagePacket; readonly identity: Identity; readonly expiresAt: number; readonly tokenId: string }
  | { readonly kind: 'passthrough'; readonly startup: StartupMessagePacket; readonly database: DatabaseConfig }
  | {
      /** pool.mode: transaction; `backend` only when the greeting's parameters must be read from one. */
      readonly kind: 'transaction';
      readonly startup: StartupMessagePacket;
      readonly database: DatabaseConfig;
      readonly identity: Identity;
      readonly expiresAt: number;
      readonly tokenId: string;
      readonly pool: BackendPool;
      readonly backend?: Backend;
    }
  | {
      readonly kind: 'authenticated';
      readonly startup: StartupMessagePacket;
      readonly database: DatabaseConfig;
      readonly identity: Identity;
      readonly expiresAt: number;
      readonly tokenId: string;
      readonly pool: BackendPool;
      readonly backend: Backend;
    };

function isLoopback(address: string | undefined): boolean {
  return !!address && (address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.'));
}

/**
 * How far a login got: logged with a login_timeout, so an operator can tell a client stuck in its TLS
 * handshake (slow or gone) from one that never sent its token, and from a login waiting for a backend.
 */
export type LoginStep = 'startup' | 'tls_handshake' | 'authentication' | 'backend';

export class Login {
  private currentSocket: Socket;
  /** Where the login is now (see LoginStep). */
  step: LoginStep = 'startup';
  private readonly reader = new FrameReader({ maxStartupLength: 10240, maxMessageLength: MAX_PREAUTH_MESSAGE, maxBuffered: MAX_PREAUTH_BUFFERED });
  private wake: (() => void) | undefined;
  private readError: Error | undefined;
  private tls = false;
  private shuttingDown = false;
  /** The client hung up (or was cut by a shutdown). */
  closed = false;
  /** What is known so far, for the log line of a refusal. */
  user: string | undefined;
  database: DatabaseConfig | undefined;
  identity: Identity | undefined;
  /** The admin console's database name, when that is what the client asked for. */
  adminDatabase: string | undefined;
  /** How the client presented its token (audit events); set once the database is known. */
  authMethod: 'password' | 'oauthbearer' | undefined;

  constructor(
    socket: Socket,
    private readonly deps: LoginDeps,
    private readonly log: Logger,
  ) {
    this.currentSocket = socket;
    this.listen(socket);
  }

  /** The client's socket: the TLS socket once the upgrade happened. */
  get socket(): Socket {
    return this.currentSocket;
  }

  /** False while a TLS handshake is unfinished: the client cannot read a FATAL then. */
  get canSpeak(): boolean {
    return !(this.currentSocket instanceof TLSSocket && !this.tls);
  }

  /** Why the connection is gone when the client socket closed under the login. */
  goneReason(): 'server_shutdown' | 'client_closed_during_login' {
    return this.shuttingDown ? 'server_shutdown' : 'client_closed_during_login';
  }

  /** Makes the pending (or next) read fail with `e` (the login timer). */
  fail(e: Error): void {
    this.readError = e;
    this.wake?.();
  }

  /** Server shutdown during login: the socket is cut, and the end is logged as a shutdown. */
  abort(): void {
    this.shuttingDown = true;
    this.currentSocket.destroy();
  }

  /** Hands the socket over (to a relay): stops listening and returns what the client sent ahead. */
  detach(): { socket: Socket; pending: Buffer } {
    this.unlisten(this.currentSocket);
    return { socket: this.currentSocket, pending: this.reader.takeRemaining() };
  }

  private readonly onData = (chunk: Buffer) => {
    try {
      // Before authentication a client has no reason to send ahead more than one message: the reader
      // holds at most MAX_PREAUTH_BUFFERED bytes and throws beyond.
      this.reader.push(chunk);
    } catch (e) {
      this.readError = e as Error;
      // Stop reading at once: nothing more this client sends before authenticating is kept.
      this.currentSocket.pause();
    }
    this.wake?.();
  };

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
      // The frame first: an oversized length at the cursor is reported as such (an oversized password is
      // 28P01), even when the bytes behind it already overflowed the buffer.
      const frame = take();
      if (frame) return frame;
      if (this.readError) throw this.readError;
      if (this.closed) throw new Refusal(this.goneReason(), 'client closed the connection');
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  /** Negotiate, then authenticate: a cancel, a passthrough database, or an authenticated client with a backend. */
  async run(): Promise<LoginResult> {
    const startup = await this.negotiate();
    if (!startup) return { kind: 'cancel' };
    this.step = 'authentication';
    const { config } = this.deps;
    this.user = startup.parameters.user!;
    const dbName = startup.parameters.database ?? this.user;
    const admin = this.deps.adminAccess;
    if (admin && dbName === admin.database) return this.adminLogin(startup, admin);
    // Own keys only: `constructor` or `__proto__` must not find Object.prototype's members.
    const database = Object.hasOwn(config.databases, dbName) ? config.databases[dbName] : undefined;
    if (!database) {
      const known = Object.keys(config.databases).join(', ');
      throw new Refusal('unknown_database', `database ${quote(dbName, 63)} is not served by this proxy (available: ${known})`);
    }
    this.database = database;
    // Protocol 3.2 (PostgreSQL 18: longer cancel keys, nothing else) is ours to offer for proxied databases,
    // whose cancel keys the proxy issues; a passthrough database's server gets a 3.0 startup, so its client too.
    const newestMinor = database.mode === 'passthrough' ? 0 : NEWEST_PROTOCOL_MINOR;
    if (needsNegotiation(startup, newestMinor)) this.currentSocket.write(negotiateProtocolVersion(newestMinor, startup.unsupportedOptions));
    if (database.mode === 'passthrough') return { kind: 'passthrough', startup, database };
    let verified: VerifiedToken;
    let identity: Identity;
    if (database.clientAuth === 'oauthbearer') {
      this.authMethod = 'oauthbearer';
      ({ verified, identity } = await this.oauthBearer(database, this.user));
    } else {
      this.authMethod ??= 'password';
      this.currentSocket.write(authenticationCleartextPassword());
      verified = await this.deps.verifier.verify(await this.readPassword());
      identity = resolveIdentity(verified, this.user, config.roleMapping);
    }
    this.identity = identity;
    const counted = this.countIdentity(identity);
    if (counted) await counted;
    const track = this.deps.track;
    if (track) track.identity = identity;
    if (database.identity === 'per_user') {
      if (!this.deps.perUser) throw new Refusal('provisioning_failed', `database ${database.name} is per_user but the proxy has no provisioning`);
      const asRole = await this.deps.perUser.login(database, identity, this.deps.pools, (p) => this.acquire(p));
      this.identity = asRole.identity;
      if (track) track.identity = asRole.identity; // SHOW SESSIONS names the user's own role as the account
      return { kind: 'authenticated', startup, database, identity: asRole.identity, expiresAt: verified.expiresAt, tokenId: verified.tokenId, pool: asRole.pool, backend: asRole.backend };
    }
    const account = config.accounts[identity.account]!;
    const pool = this.deps.pools.get(database, account);
    if (database.pool.mode === 'transaction') {
      // A client holds no backend between transactions (src/proxy/txpool): its greeting needs one only
      // when this pool has not greeted these startup parameters yet.
      const backend = knownGreeting(pool, startup.parameters) ? undefined : await this.acquire(pool);
      return { kind: 'transaction', startup, database, identity, expiresAt: verified.expiresAt, tokenId: verified.tokenId, pool, ...(backend ? { backend } : {}) };
    }
    const backend = await this.acquire(pool);
    return { kind: 'authenticated', startup, database, identity, expiresAt: verified.expiresAt, tokenId: verified.tokenId, pool, backend };
  }

  /**
   * The admin console's login (src/proxy/admin/admin-access.ts): the address first (28000, before any
   * token is read), then the token as a password like any login, then the admin role (42501 without it).
   */
  private async adminLogin(startup: StartupMessagePacket, admin: AdminAccess): Promise<LoginResult> {
    this.authMethod = 'password';
    this.adminDatabase = admin.database;
    const address = this.currentSocket.remoteAddress;
    if (!admin.allowsAddress(address)) throw admin.networkRefusal(address);
    this.currentSocket.write(authenticationCleartextPassword());
    const verified = await this.deps.verifier.verify(await this.readPassword());
    const identity = admin.identify(verified, this.user!);
    this.identity = identity;
    return { kind: 'admin', startup, identity, expiresAt: verified.expiresAt, tokenId: verified.tokenId };
  }

  private identitySlot: IdentityRelease | undefined;

  /**
   * Counts this connection against limits.max_sessions_per_identity from now (waiting for a backend
   * included) until releaseIdentity(); refuses it when the identity is at its limit. In one process the
   * count is synchronous; with --workers the primary counts (a bounded wait: cluster/identity-slots.ts).
   */
  private countIdentity(identity: Identity): Promise<void> | undefined {
    const sessions = this.deps.identitySessions;
    if (!sessions) return undefined;
    const pending = sessions.tryAcquire(identityKey(identity));
    if (!(pending instanceof Promise)) {
      this.holdIdentity(pending, sessions.limit, identity);
      return undefined;
    }
    return pending.then(
      (release) => this.holdIdentity(release, sessions.limit, identity),
      (e: unknown) => {
        throw new Refusal('identity_limit_unavailable', (e as Error).message, undefined, { cause: e });
      },
    );
  }

  private holdIdentity(release: IdentityRelease | undefined, limit: number, identity: Identity): void {
    if (!release) {
      throw new Refusal(
        'too_many_sessions_per_identity',
        `too many sessions for user ${quote(identity.user, 63)}: limits.max_sessions_per_identity is ${limit}; close one of your other sessions (or ask the operator to raise the limit)`,
      );
    }
    this.identitySlot = release;
  }

  /** Gives the identity's session slot back (the connection ended). Safe to call more than once. */
  releaseIdentity(): void {
    this.identitySlot?.();
    this.identitySlot = undefined;
  }

  /** A backend from the pool; refused when the client left while it waited. */
  async acquire(pool: BackendPool, fresh = false): Promise<Backend> {
    let backend: Backend;
    this.step = 'backend';
    const track = this.deps.track;
    if (track) {
      track.state = 'waiting';
      track.waitingSince = (this.deps.now ?? Date.now)();
      // SHOW SESSIONS names the database a login waits for (and says `paused` while it is PAUSEd).
      if (this.database) track.database = this.database.name;
    }
    try {
      backend = await (fresh ? pool.acquireFresh() : pool.acquire());
    } catch (e) {
      if (e instanceof BackendError || e instanceof PoolTimeoutError || e instanceof PoolClosedError) throw e;
      throw new Refusal('backend_unavailable', (e as Error).message, undefined, { cause: e });
    } finally {
      if (track) {
        track.state = 'login';
        delete track.waitingSince;
      }
    }
    if (this.readError instanceof Refusal && this.readError.code === 'killed_by_admin') {
      // KILL while it waited: the backend goes back untouched.
      await pool.release(backend, true);
      throw this.readError;
    }
    if (this.closed) {
      // The client left while it waited: a relay on its closed socket would hold the backend forever.
      await pool.release(backend, true);
      throw new Refusal(this.goneReason(), 'client closed the connection');
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
      if (e instanceof MessageTooLargeError && e.messageType === FrontendCode.PASSWORD) {
        throw new TokenError('token_too_large', `the password is larger than ${MAX_PREAUTH_MESSAGE} bytes, too large to be an access token; use gprxy token or gprxy connect`);
      }
      throw e;
    });
    if (message.type !== FrontendCode.PASSWORD) {
      throw new Refusal('protocol_violation', `expected a password message, got message type "${String.fromCharCode(message.type)}"`);
    }
    const token = parsePasswordMessage(message.body);
    if (this.reader.buffered === 0) this.reader.takeRemaining();
    return token;
  }

  /** SASL OAUTHBEARER instead of a password request (client_auth: oauthbearer): same verifier, same identity. */
  private async oauthBearer(database: DatabaseConfig, user: string): Promise<{ verified: VerifiedToken; identity: Identity }> {
    const oauth = database.oauth!;
    const result = await oauthBearerLogin(
      { send: (m) => this.currentSocket.write(m), receive: () => this.next(() => this.reader.nextMessage()) },
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
  private async negotiate(): Promise<StartupMessagePacket | undefined> {
    // PostgreSQL 17+ clients with sslnegotiation=direct start the TLS handshake at once, no SSLRequest.
    if (await this.startsWithTlsHandshake()) {
      if (!this.deps.secureContext) throw new Refusal('protocol_violation', 'direct TLS connection (sslnegotiation=direct), but this proxy has no TLS configured');
      await this.upgradeToTls(this.deps.secureContext, true);
    }
    for (let round = 0; round < 3; round++) {
      const packet = parseStartupPacket(await this.next(() => this.reader.nextStartupFrame()));
      switch (packet.kind) {
        case 'ssl': {
          if (this.tls || !this.deps.secureContext) {
            this.currentSocket.write(sslResponse(false));
            continue;
          }
          if (this.reader.buffered > 0) throw new Refusal('protocol_violation', 'received unencrypted data after SSL request');
          await this.upgradeToTls(this.deps.secureContext);
          continue;
        }
        case 'gssenc':
          this.currentSocket.write(sslResponse(false));
          continue;
        case 'cancel': {
          const route = this.deps.cancels.route(packet.processId, packet.secretKey);
          if (route.outcome === 'cancelled') {
            const { user, database } = route.target;
            this.log.info({ event: 'cancel_request', matched: true, outcome: 'cancelled', ...(user ? { user } : {}), ...(database ? { database } : {}) }, `cancel for ${user ?? 'a session'} forwarded to its backend`);
          } else if (route.outcome === 'forwarded') {
            this.log.debug({ event: 'cancel_request_forwarded', owner: route.owner }, 'cancel request passed on to the process that issued its key');
          } else this.log.info({ event: 'cancel_request', matched: false, outcome: 'no_match' }, 'cancel request matched no session');
          this.closed = true;
          this.currentSocket.destroy();
          return undefined;
        }
        case 'startup': {
          if (!this.tls && !(this.deps.config.allowPlaintextLoopback && isLoopback(this.currentSocket.remoteAddress))) {
            throw new Refusal('tls_required', 'this proxy requires TLS: connect with sslmode=require (or verify-full), or use gprxy connect');
          }
          if (!packet.parameters.user) throw new Refusal('protocol_violation', 'no user name in the startup packet', SqlState.INVALID_AUTHORIZATION);
          return packet;
        }
      }
    }
    throw new Refusal('protocol_violation', 'too many negotiation requests before the startup packet');
  }

  /**
   * Whether the first byte is a TLS handshake record (22): a length-prefixed startup packet cannot start with
   * it, as its first byte would mean a packet of over 350 MB. The byte stays in the reader either way.
   */
  private async startsWithTlsHandshake(): Promise<boolean> {
    await this.next(() => (this.reader.buffered > 0 ? true : null));
    const ahead = Buffer.from(this.reader.takeRemaining());
    this.reader.push(ahead);
    return ahead[0] === TLS_HANDSHAKE_RECORD;
  }

  /**
   * TLS on the client socket, after an SSLRequest ('S' answered) or directly (the ClientHello already read is
   * handed back to the TLS layer). ALPN as PostgreSQL 17+ does: "postgresql" is the only protocol offered, a
   * client offering others only gets a fatal alert, and a direct connection must have negotiated it.
   */
  private async upgradeToTls(secureContext: SecureContext, direct = false): Promise<void> {
    const raw = this.currentSocket;
    this.unlisten(raw);
    if (direct) raw.unshift(this.reader.takeRemaining()); // TLSSocket reads what the socket holds first
    else raw.write(sslResponse(true));
    const secure = new TLSSocket(raw, { isServer: true, secureContext, ALPNProtocols: [PG_ALPN] });
    this.currentSocket = secure;
    this.step = 'tls_handshake';
    this.listen(secure);
    secure.on('secure', () => {
      this.tls = true;
      this.wake?.();
    });
    while (!this.tls) {
      if (this.readError) throw this.readError;
      if (this.closed) throw new Refusal(this.shuttingDown ? 'server_shutdown' : 'tls_handshake_failed', 'TLS handshake failed');
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    this.step = 'startup';
    if (direct && secure.alpnProtocol !== PG_ALPN) {
      throw new Refusal('protocol_violation', 'received direct TLS connection request without ALPN protocol negotiation extension "postgresql"');
    }
  }
}
