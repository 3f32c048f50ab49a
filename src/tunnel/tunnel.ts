/**
 * `gprxy connect`: a local listener (127.0.0.1 only, or a Unix socket in a 0700 directory) per database.
 * Each local connection is answered like a PostgreSQL server that needs no password (or, in exec mode
 * and with --local-password, a one-time local password): SSLRequest and GSSENCRequest get "N"
 * (loopback), CancelRequests are forwarded to the proxy, and a StartupMessage opens a verified TLS
 * connection to the central proxy as the token's identity, injects a fresh access token as the
 * password, and then relays bytes both ways without parsing anything. A startup that asks for another
 * user, or a database this tunnel does not serve, is refused, never silently rewritten.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { FrameReader } from '../protocol/frame-reader.js';
import { authenticationCleartextPassword, errorResponse, sslResponse } from '../protocol/server-messages.js';
import { SqlState } from '../protocol/sqlstate.js';
import { cancelRequest, parsePasswordMessage } from '../protocol/client-messages.js';
import { sendAndClose } from '../net/send-and-close.js';
import { parseStartupPacket, type StartupMessagePacket } from '../protocol/startup.js';
import { authenticateUpstream, connectTls, UpstreamError, type ProxyAddress, type TunnelDialer } from './upstream.js';
import { errorCode, GprxyError } from '../shared/errors.js';
import { DEFAULT_USERNAME_CLAIMS } from '../config/username-claims.js';
import { firstStringClaim } from '../shared/claims.js';

/** Where the tunnel gets access tokens (the oauth TokenSource, or a fixed CI token). */
export interface TunnelTokenSource {
  getAccessToken(): Promise<{ accessToken: string; expiresAt: number; claims: Record<string, unknown> }>;
}

/** The claims whose value names the user, the proxy's default order (one list: src/config/username-claims.ts). */
export { DEFAULT_USERNAME_CLAIMS };

export interface TunnelEvents {
  /** A local client connected and was authenticated upstream. */
  onSession?(info: { database: string; user: string }): void;
  /** Getting a token failed; `loginRequired` when only `gprxy login` can fix it. */
  onTokenError?(error: Error & { code?: string }, loginRequired: boolean): void;
  /** Any other failure of a local connection (proxy unreachable, TLS, refused). */
  onConnectionError?(error: Error, database: string): void;
  /** A local connection refused by the tunnel itself: wrong local password, another user or database. */
  onLocalRefused?(info: { reason: 'local_password' | 'other_user' | 'other_database'; database: string }): void;
}

export interface TunnelOptions {
  readonly databases: readonly string[];
  readonly proxy: ProxyAddress;
  readonly tokens: TunnelTokenSource;
  /** First local port; each further database gets the next one. 0 = any free port. */
  readonly port: number;
  /** Probe upward from `port` when it is taken (the default 5432 is often a local PostgreSQL). */
  readonly findFreePort?: boolean;
  readonly unixSocketDir?: string;
  readonly usernameClaims?: readonly string[];
  readonly dialer?: TunnelDialer;
  readonly events?: TunnelEvents;
  /**
   * When set, every local client must give this password first (cleartext over loopback or the Unix
   * socket): exec mode passes a random one to its command as PGPASSWORD, so other local processes
   * cannot use the engineer's identity through the tunnel.
   */
  readonly localPassword?: string;
  /** The operating-system user name libpq sends when none is given (default: this process's user). */
  readonly localUser?: string;
}

export type TunnelErrorCode = 'port_in_use' | 'unsafe_socket_dir' | 'listen_failed' | 'local_tls_unsupported';

export class TunnelError extends GprxyError<TunnelErrorCode> {
  constructor(
    readonly code: TunnelErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface Listener {
  readonly database: string;
  readonly host: string;
  readonly port: number;
  readonly socketPath?: string;
}

/** The user the tunnel connects as: the first username claim, by the proxy's own default list. */
export function usernameFromClaims(claims: Record<string, unknown>, names: readonly string[] = DEFAULT_USERNAME_CLAIMS): string | undefined {
  return firstStringClaim(claims, names);
}

/**
 * The local listener has no TLS: it is on loopback (or a 0700 Unix socket) and the hop that leaves the
 * machine, to the proxy, is TLS. A client that insists on TLS would otherwise fail with libpq's terse
 * "server does not support SSL" or a dropped handshake; the tunnel says which setting to change.
 */
const LOCAL_TLS_FIX = "the tunnel's local listener has no TLS (it is loopback-only; the connection to the proxy is TLS): connect with sslmode=prefer or disable";
const DIRECT_TLS_REFUSED = `a local client started TLS directly (sslnegotiation=direct); ${LOCAL_TLS_FIX}, without sslnegotiation=direct`;
const TLS_REQUIRED_LEFT = `a local client asked for TLS and left when the tunnel said it has none (sslmode=require or verify-*); ${LOCAL_TLS_FIX}`;
/** The first byte of a TLS record carrying a handshake (a ClientHello sent without an SSLRequest). */
const TLS_HANDSHAKE_RECORD = 0x16;

export class Tunnel {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  readonly listeners: Listener[] = [];
  private readonly localUser: string | undefined;

  constructor(private readonly options: TunnelOptions) {
    this.localUser = options.localUser ?? safeUserName();
  }

  async start(): Promise<readonly Listener[]> {
    let port = this.options.port;
    for (const database of this.options.databases) {
      const server = createServer({ noDelay: true }, (socket) => this.accept(socket, database));
      if (this.options.unixSocketDir) {
        const dir = this.options.unixSocketDir;
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        chmodSync(dir, 0o700);
        const mode = statSync(dir).mode & 0o777;
        if (mode !== 0o700) throw new TunnelError('unsafe_socket_dir', `${dir} must be mode 0700 so other local users cannot use your identity (it is ${mode.toString(8)})`);
        const lport = port || 5432;
        const path = join(dir, `.s.PGSQL.${lport}`);
        await listen(server, { path });
        this.listeners.push({ database, host: dir, port: lport, socketPath: path });
        port = lport + 1;
      } else {
        const bound = await this.listenTcp(server, port);
        this.listeners.push({ database, host: '127.0.0.1', port: bound });
        port = port === 0 ? 0 : bound + 1;
      }
      this.servers.push(server);
    }
    return this.listeners;
  }

  private async listenTcp(server: Server, port: number): Promise<number> {
    for (let candidate = port, tries = 0; ; candidate++, tries++) {
      try {
        await listen(server, { host: '127.0.0.1', port: candidate });
        return (server.address() as { port: number }).port;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EADDRINUSE' && this.options.findFreePort && port !== 0 && tries < 100) continue;
        if (code === 'EADDRINUSE') throw new TunnelError('port_in_use', `port ${candidate} on 127.0.0.1 is already in use; choose another with --port`);
        throw new TunnelError('listen_failed', `cannot listen on 127.0.0.1:${candidate}: ${(e as Error).message}`);
      }
    }
  }

  /** Stops listening and ends every session (a server's close waits for its connections to end). */
  async close(): Promise<void> {
    const closed = Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private accept(local: Socket, database: string): void {
    this.sockets.add(local);
    local.once('close', () => this.sockets.delete(local));
    local.on('error', () => local.destroy());
    void this.serve(local, database).catch((e: Error) => {
      this.options.events?.onConnectionError?.(e, database);
      local.destroy();
    });
  }

  private async serve(local: Socket, listenerDatabase: string): Promise<void> {
    const reader = new FrameReader();
    let wake: (() => void) | undefined;
    let gone = false;
    let failure: Error | undefined;
    // Frames are taken from the reader on demand: after the startup the client's next bytes are tagged
    // messages (the password), not startup frames.
    let firstChunk = true;
    const onData = (chunk: Buffer) => {
      if (firstChunk) {
        firstChunk = false;
        if (chunk[0] === TLS_HANDSHAKE_RECORD) {
          failure = new TunnelError('local_tls_unsupported', DIRECT_TLS_REFUSED);
          wake?.();
          return;
        }
      }
      try {
        reader.push(chunk);
      } catch (e) {
        failure = e as Error;
      }
      wake?.();
    };
    const onGone = () => {
      gone = true;
      wake?.();
    };
    local.on('data', onData);
    local.on('close', onGone);
    const next = async <T>(take: () => T | null): Promise<T | undefined> => {
      for (;;) {
        if (failure) throw failure;
        const f = take();
        if (f) return f;
        if (gone) return undefined;
        await new Promise<void>((r) => (wake = r));
      }
    };
    const refuse = (code: string, message: string) => {
      local.end(errorResponse({ severity: 'FATAL', code, message }));
    };

    let startup: StartupMessagePacket | undefined;
    let askedForTls = false;
    while (!startup) {
      const frame = await next(() => reader.nextStartupFrame());
      if (!frame) {
        if (askedForTls) throw new TunnelError('local_tls_unsupported', TLS_REQUIRED_LEFT);
        return;
      }
      const packet = parseStartupPacket(frame);
      if (packet.kind === 'ssl' || packet.kind === 'gssenc') {
        askedForTls = packet.kind === 'ssl';
        local.write(sslResponse(false));
      }
      else if (packet.kind === 'cancel') {
        // The client holds the key the central proxy issued: forward the request verbatim.
        local.destroy();
        const upstream = await connectTls(this.options.proxy, this.options.dialer);
        void sendAndClose(upstream, cancelRequest(packet.processId, packet.secretKey));
        return;
      } else startup = packet;
    }

    // Exec mode / --local-password: the local client proves it was given the one-time password
    // before anything is done with the engineer's identity.
    if (this.options.localPassword !== undefined) {
      local.write(authenticationCleartextPassword());
      const msg = await next(() => reader.nextMessage());
      if (!msg) return;
      const given = msg.type === 0x70 /* p */ ? parsePasswordMessage(msg.body) : '';
      if (!sameSecret(given, this.options.localPassword)) {
        this.options.events?.onLocalRefused?.({ reason: 'local_password', database: listenerDatabase });
        refuse(SqlState.INVALID_PASSWORD, 'gprxy: password authentication failed: this tunnel only serves the command gprxy connect started (it has PGPASSWORD), or whoever has the password --local-password printed');
        return;
      }
    }

    local.pause();
    local.off('data', onData);
    // If the local client leaves while we fetch a token or log in upstream, drop the upstream too: an
    // authenticated session nobody reads would hold a pooled backend at the proxy.
    let upstreamSocket: Socket | undefined;
    local.once('close', () => upstreamSocket?.destroy());
    const abandoned = () => gone || local.destroyed;

    let token;
    try {
      token = await this.options.tokens.getAccessToken();
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      // The token source's LoginRequiredError (oauth/errors.ts): only gprxy login can help.
      const loginRequired = errorCode(e) === 'login_required';
      this.options.events?.onTokenError?.(err, loginRequired);
      // Its message names the fix, with --profile when the tunnel's profile is not the default.
      const message = loginRequired ? `gprxy: ${err.message}${err.message.includes('gprxy login') ? '' : '; run gprxy login'}` : `gprxy: cannot get an access token: ${err.message}`;
      refuse(SqlState.INVALID_AUTHORIZATION, message);
      return;
    }
    const user = usernameFromClaims(token.claims, this.options.usernameClaims);
    if (!user) {
      refuse(SqlState.INVALID_AUTHORIZATION, 'gprxy: the access token names no user (no email or sub claim)');
      return;
    }
    // The tunnel never silently swaps who or where: a user or database the client asked for is served
    // as asked, or refused with what to do.
    const decision = decideTarget(startup.parameters, { tokenUser: user, listenerDatabase, databases: this.options.databases, localUser: this.localUser });
    if (decision.kind === 'refuse') {
      this.options.events?.onLocalRefused?.({ reason: decision.reason, database: listenerDatabase });
      refuse(decision.code, decision.message);
      return;
    }
    const database = decision.database;
    const parameters: Record<string, string> = { ...startup.parameters, user, database };
    if (abandoned()) return;
    let upstream;
    try {
      upstream = await connectTls(this.options.proxy, this.options.dialer);
      upstreamSocket = upstream;
    } catch (e) {
      this.options.events?.onConnectionError?.(e as Error, database);
      refuse(SqlState.CANNOT_CONNECT_NOW, `gprxy: ${(e as Error).message}`);
      return;
    }
    let rest: Buffer;
    try {
      rest = await authenticateUpstream(upstream, parameters, token.accessToken);
    } catch (e) {
      upstream.destroy();
      if (e instanceof UpstreamError && e.raw) local.end(e.raw);
      else refuse(SqlState.CANNOT_CONNECT_NOW, `gprxy: ${(e as Error).message}`);
      return;
    }
    if (abandoned()) {
      upstream.destroy();
      return;
    }
    this.options.events?.onSession?.({ database, user });
    this.sockets.add(upstream);
    upstream.once('close', () => {
      this.sockets.delete(upstream);
      local.destroy();
    });
    local.once('close', () => upstream.destroy());
    upstream.on('error', () => local.destroy());
    if (rest.length) local.write(rest);
    const pending = reader.takeRemaining();
    if (pending.length) upstream.write(pending);
    // After authentication nothing is parsed: plain pipes with their built-in backpressure.
    upstream.pipe(local);
    local.pipe(upstream);
    local.resume();
    upstream.resume();
  }
}

/** Constant-time comparison of the local one-time password. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b) && given.length === expected.length;
}

export type TargetDecision =
  | { readonly kind: 'serve'; readonly database: string }
  | { readonly kind: 'refuse'; readonly code: string; readonly reason: 'other_user' | 'other_database'; readonly message: string };

/**
 * Which database a local startup gets, or why it is refused. A `user` other than the token's identity
 * is refused (the tunnel cannot connect as someone else); libpq's defaults are not choices: a missing
 * user, or the local operating-system user name libpq sends when none is given, mean "whoever is
 * logged in". A `database` the tunnel serves is served (on any of its listeners); a missing one, or
 * libpq's default (= the user name), means the listener's; any other is refused, never swapped.
 */
export function decideTarget(
  parameters: Readonly<Record<string, string>>,
  ctx: { tokenUser: string; listenerDatabase: string; databases: readonly string[]; localUser: string | undefined },
): TargetDecision {
  const asked = parameters.user ?? '';
  if (asked !== '' && asked !== ctx.tokenUser && asked !== ctx.localUser) {
    return {
      kind: 'refuse',
      code: SqlState.INVALID_AUTHORIZATION,
      reason: 'other_user',
      message: `gprxy: this tunnel is logged in as ${ctx.tokenUser} and cannot connect as ${asked}: leave user out (or use user=${ctx.tokenUser}), or run gprxy login as ${asked} and start another tunnel`,
    };
  }
  const db = parameters.database ?? '';
  if (db === '' || db === ctx.listenerDatabase || db === asked) return { kind: 'serve', database: ctx.listenerDatabase };
  if (ctx.databases.includes(db)) return { kind: 'serve', database: db };
  return {
    kind: 'refuse',
    code: SqlState.INVALID_CATALOG,
    reason: 'other_database',
    message: `gprxy: this tunnel serves ${ctx.databases.map((d) => `"${d}"`).join(', ')}, not "${db}": use dbname=${ctx.listenerDatabase}, or run gprxy connect ${db}`,
  };
}

function safeUserName(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined;
  }
}

function listen(server: Server, options: { host?: string; port?: number; path?: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
