/**
 * The tunnel's connection to the central proxy: TCP, SSLRequest, TLS with full verification (the
 * profile's CA or the system store, and the proxy's host name), then a StartupMessage as the token's
 * identity. The proxy's password request is answered with the access token; everything after that is
 * relayed untouched.
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { parseAuthentication, parseErrorFields, type BackendErrorFields } from '../protocol/backend-messages.js';
import { passwordMessage, sslRequest, startupMessage } from '../protocol/client-messages.js';
import { FrameReader } from '../protocol/frame-reader.js';
import { BackendCode, EncryptionAnswer } from '../protocol/codes.js';
import { UpstreamOAuthBearer } from './upstream-oauthbearer.js';
import { GprxyError } from '../shared/errors.js';
import { startTls, type StartTlsError } from '../net/start-tls.js';

/** A backend message rebuilt from its type and body, to relay it as it came. */
function tagged(type: number, body: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header[0] = type;
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

export interface ProxyAddress {
  readonly host: string;
  readonly port: number;
  /** PEM of the CA to trust for the proxy's certificate; the system store when absent. */
  readonly ca?: string;
  /** Next steps for messages, naming where the address and the CA were set (default: the profile's). */
  readonly hints?: { readonly address: string; readonly ca: string };
}

export type TunnelDialer = (host: string, port: number) => Socket;
const defaultDialer: TunnelDialer = (host, port) => netConnect({ host, port, noDelay: true });

export type UpstreamErrorCode = 'proxy_unreachable' | 'proxy_tls_failed' | 'proxy_refused';

export class UpstreamError extends GprxyError<UpstreamErrorCode> {
  constructor(
    readonly code: UpstreamErrorCode,
    message: string,
    /** The proxy's own ErrorResponse, relayed to the local client as is. */
    readonly fields?: BackendErrorFields,
    readonly raw?: Buffer,
  ) {
    super(message);
  }
}

/** Opens a verified TLS connection to the proxy. */
export function connectTls(proxy: ProxyAddress, dialer: TunnelDialer = defaultDialer, timeoutMs = 10_000): Promise<TLSSocket> {
  const where = `${proxy.host}:${proxy.port}`;
  return new Promise((resolve, reject) => {
    const raw = dialer(proxy.host, proxy.port);
    const timer = setTimeout(() => fail(new UpstreamError('proxy_unreachable', `gprxy proxy ${where} did not answer within ${timeoutMs / 1000} s`)), timeoutMs);
    const fail = (e: UpstreamError) => {
      clearTimeout(timer);
      raw.destroy();
      reject(e);
    };
    raw.once('error', (e) => fail(new UpstreamError('proxy_unreachable', `cannot reach the gprxy proxy at ${where}: ${e.message}; ${proxy.hints?.address ?? "check the profile's proxy address (gprxy configure --proxy)"}`)));
    raw.once('connect', () => {
      startTls(raw, sslRequest(), EncryptionAnswer.ACCEPT, { host: proxy.host, ...(proxy.ca ? { ca: proxy.ca } : {}), rejectUnauthorized: true }).then(
        (secure) => {
          clearTimeout(timer);
          // From here the session owns errors; until it attaches its own, a reset just ends the socket.
          secure.removeAllListeners('error');
          raw.removeAllListeners('error');
          secure.on('error', () => secure.destroy());
          resolve(secure);
        },
        (e: StartTlsError) =>
          fail(
            e.code === 'tls_refused'
              ? new UpstreamError('proxy_tls_failed', `${where} did not accept TLS; is it a gprxy proxy with tls configured?`)
              : new UpstreamError('proxy_tls_failed', `TLS verification of the gprxy proxy ${where} failed: ${e.message}; ${proxy.hints?.ca ?? "check the profile's CA (gprxy configure --ca)"}`),
          ),
      );
    });
  });
}

/**
 * Sends the startup as `user` to `database` and answers the cleartext password request with `token`.
 * Resolves once the token is sent: what follows (AuthenticationOk ... ReadyForQuery, or the proxy's
 * FATAL) is for the local client. Bytes received past the password request are returned for relaying.
 */
export async function authenticateUpstream(socket: TLSSocket, parameters: Record<string, string>, token: string, timeoutMs = 10_000): Promise<Buffer> {
  const reader = new FrameReader({ maxMessageLength: 1024 * 1024 });
  let oauth: UpstreamOAuthBearer | undefined;
  socket.write(startupMessage(parameters));
  return new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => done(new UpstreamError('proxy_unreachable', `the gprxy proxy did not answer the startup within ${timeoutMs / 1000} s`)), timeoutMs);
    const done = (error?: Error, rest?: Buffer) => {
      clearTimeout(timer);
      socket.pause();
      socket.off('data', onData);
      socket.off('close', onClose);
      if (error) reject(error);
      else resolve(rest ?? Buffer.alloc(0));
    };
    const onClose = () => done(new UpstreamError('proxy_unreachable', 'the gprxy proxy closed the connection during startup'));
    const onData = (chunk: Buffer) => {
      try {
        reader.push(chunk);
        for (let msg = reader.nextMessage(); msg; msg = reader.nextMessage()) {
        if (msg.type === BackendCode.AUTHENTICATION) {
          const auth = parseAuthentication(msg.body);
          if (auth.kind === 'cleartext' && !oauth) {
            socket.write(passwordMessage(token));
            done(undefined, reader.takeRemaining());
            return;
          }
          // SASL OAUTHBEARER (PostgreSQL 18 native OAuth, or gprxy serve asking for it): upstream-oauthbearer.ts.
          if (UpstreamOAuthBearer.handles(auth) || (oauth && auth.kind === 'ok')) {
            oauth ??= new UpstreamOAuthBearer(token);
            const step = oauth.next(auth);
            if (step.kind === 'unsupported') return done(new UpstreamError('proxy_refused', step.message));
            if (step.kind === 'authenticated') return done(undefined, Buffer.concat([tagged(BackendCode.AUTHENTICATION, msg.body), reader.takeRemaining()]));
            if (step.send) socket.write(step.send);
            continue;
          }
          done(new UpstreamError('proxy_refused', `the server asked for ${auth.kind} authentication; gprxy connect answers with an access token only (a password request or OAUTHBEARER)`));
          return;
        }
        if (msg.type === BackendCode.ERROR_RESPONSE) {
          const fields = parseErrorFields(msg.body);
          const header = Buffer.alloc(5);
          header[0] = BackendCode.ERROR_RESPONSE;
          header.writeInt32BE(msg.body.length + 4, 1);
          done(new UpstreamError('proxy_refused', fields.message, fields, Buffer.concat([header, msg.body])));
          return;
        }
        // NegotiateProtocolVersion or a notice before the password request: keep reading.
        }
      } catch (e) {
        done(e as Error);
      }
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.resume();
  });
}
