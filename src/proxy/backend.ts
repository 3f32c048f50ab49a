/**
 * One authenticated connection to a PostgreSQL server under a service account: dial (TCP, optional TLS per
 * sslmode), StartupMessage, SCRAM-SHA-256 / md5 / cleartext authentication, then the server's
 * ParameterStatus and BackendKeyData. While the connection is ours (setup, reset, idle in the pool) we read
 * whole messages; while a client uses it the relay owns the socket and parses headers only.
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import {
  parseAuthentication,
  parseBackendKeyData,
  parseErrorFields,
  parseDataRow,
  parseParameterStatus,
  type BackendErrorFields,
} from '../protocol/backend-messages.js';
import { passwordMessage, saslInitialResponse, saslResponse, sslRequest, startupMessage, terminate } from '../protocol/client-messages.js';
import { BackendCode, EncryptionAnswer, ReadyStatus } from '../protocol/codes.js';
import { FrameReader } from '../protocol/frame-reader.js';
import { SqlState } from '../protocol/sqlstate.js';
import { md5PasswordResponse, ScramClient } from './scram.js';
import type { SslMode } from '../config/proxy-config.js';
import { GprxyError } from '../shared/errors.js';
import { startTls, type StartTlsError } from '../net/start-tls.js';

export interface BackendTarget {
  readonly host: string;
  readonly port: number;
  readonly dbname: string;
  readonly sslmode: SslMode;
  readonly ca?: string;
  readonly user: string;
  /** Absent for an account that authenticates with its client certificate only. */
  readonly password?: string;
  /** PEM client certificate and key presented in the TLS handshake (PostgreSQL `cert` authentication). */
  readonly sslcert?: string;
  readonly sslkey?: string;
}

/** Opens the raw TCP connection; a seam so tests can inject faults. */
export type Dialer = (host: string, port: number) => Socket;
export const defaultDialer: Dialer = (host, port) => netConnect({ host, port, noDelay: true });

export type BackendErrorCode = 'backend_unavailable' | 'backend_auth_failed' | 'backend_error' | 'backend_closed' | 'backend_tampered';

export class BackendError extends GprxyError<BackendErrorCode> {
  constructor(
    readonly code: BackendErrorCode,
    message: string,
    // The database refusing the proxy's own login is not "unavailable, try again": it needs an operator.
    readonly sqlstate: string = code === 'backend_auth_failed' ? SqlState.SERVER_REJECTED_CONNECTION : SqlState.CANNOT_CONNECT_NOW,
    readonly fields?: BackendErrorFields,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * An exchange's own deadline passed. Its own class so that connect() knows a timeout by what it is, not
 * by comparing clocks: a timer may fire a millisecond before Date.now() says the time is up.
 */
class ExchangeTimeout extends BackendError {}

type MessageHandler = (type: number, body: Buffer) => void;

const MAX_BACKEND_MESSAGE = 16 * 1024 * 1024;

export class Backend {
  readonly parameters = new Map<string, string>();
  processId = 0;
  secretKey: Buffer = Buffer.alloc(0);
  /** When the connection was opened and last handed back, on the clock of whoever opened it (the pool's). */
  readonly createdAt: number;
  lastUsedAt: number;
  /** Set when the socket closed or errored, or a protocol problem was seen. */
  broken = false;
  /** Cancel requests sent for this backend whose connection has not closed yet. */
  cancelsInFlight = 0;
  /** Opaque per-backend data for the layers above (e.g. the backend's start time for identity context). */
  readonly attributes = new Map<string, unknown>();

  private reader = new FrameReader({ maxMessageLength: MAX_BACKEND_MESSAGE });
  private handler: MessageHandler | undefined;
  private failWith: ((e: Error) => void) | undefined;
  private readonly onData = (chunk: Buffer) => this.deliver(chunk);

  private constructor(
    public socket: Socket | TLSSocket,
    readonly target: BackendTarget,
    now: number,
  ) {
    this.createdAt = now;
    this.lastUsedAt = now;
    this.watch();
  }

  private watch(): void {
    this.socket.on('data', this.onData);
    this.socket.on('error', (e) => this.fail(new BackendError('backend_closed', `connection to ${this.describe()} failed: ${e.message}`)));
    this.socket.on('close', () => this.fail(new BackendError('backend_closed', `${this.describe()} closed the connection`)));
  }

  describe(): string {
    return `${this.target.host}:${this.target.port}/${this.target.dbname} as ${this.target.user}`;
  }

  private fail(error: Error): void {
    this.broken = true;
    const f = this.failWith;
    this.failWith = undefined;
    this.handler = undefined;
    f?.(error);
  }

  private deliver(chunk: Buffer): void {
    try {
      this.reader.push(chunk);
      let msg;
      while ((msg = this.reader.nextMessage())) {
        if (this.handler) this.handler(msg.type, msg.body);
        else this.unexpected(msg.type, msg.body);
      }
    } catch (e) {
      this.fail(e as Error);
      this.socket.destroy();
    }
  }

  /** Something arrived while nobody asked: an idle backend is told it is shutting down, or is broken. */
  private unexpected(type: number, body: Buffer): void {
    if (type === BackendCode.ERROR_RESPONSE) {
      const f = parseErrorFields(body);
      this.fail(new BackendError('backend_closed', `${this.describe()}: ${f.message}`));
      this.socket.destroy();
    }
    // NoticeResponse / ParameterStatus (e.g. after a configuration reload) while idle are harmless.
    if (type === BackendCode.PARAMETER_STATUS) {
      const p = parseParameterStatus(body);
      this.parameters.set(p.name, p.value);
    }
  }

  /**
   * Writes `bytes` and feeds each reply to `onMessage` until it returns true (done). Rejects on socket
   * failure or when onMessage throws.
   */
  exchange(bytes: Buffer | null, onMessage: (type: number, body: Buffer) => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    if (this.broken) return Promise.reject(new BackendError('backend_closed', `${this.describe()} is closed`));
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let queue = Promise.resolve();
      const timer = setTimeout(() => finish(new ExchangeTimeout('backend_unavailable', `${this.describe()} did not answer within ${timeoutMs} ms`)), timeoutMs);
      const finish = (error?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.handler = undefined;
        this.failWith = undefined;
        if (error) reject(error);
        else resolve();
      };
      this.failWith = finish;
      // Messages are handled in order even when a handler is async (SCRAM's key derivation).
      this.handler = (type, body) => {
        queue = queue
          .then(async () => {
            if (settled) return;
            if (await onMessage(type, body)) finish();
          })
          .catch((e: Error) => {
            finish(e);
          });
      };
      if (bytes) this.socket.write(bytes);
    });
  }

  /**
   * Runs simple or extended queries that end in `readyCount` ReadyForQuery messages (one per simple Query
   * message or Sync) and resolves with the first ErrorResponse (if any), the data rows as text and the last status.
   */
  async run(bytes: Buffer, timeoutMs?: number, readyCount = 1): Promise<{ error?: BackendErrorFields; rows: (string | null)[][]; status: string }> {
    const rows: (string | null)[][] = [];
    let error: BackendErrorFields | undefined;
    let status = 'I';
    let ready = 0;
    await this.exchange(
      bytes,
      (type, body) => {
        switch (type) {
          case BackendCode.DATA_ROW:
            rows.push(parseDataRow(body));
            return false;
          case BackendCode.ERROR_RESPONSE:
            error ??= parseErrorFields(body);
            return false;
          case BackendCode.PARAMETER_STATUS: {
            const p = parseParameterStatus(body);
            this.parameters.set(p.name, p.value);
            return false;
          }
          case BackendCode.READY_FOR_QUERY:
            status = String.fromCharCode(body[0] ?? ReadyStatus.IDLE);
            return ++ready >= readyCount;
          default:
            return false;
        }
      },
      timeoutMs,
    );
    return { ...(error ? { error } : {}), rows, status };
  }

  /** Hands the socket to the relay: our message reader stops; the relay reads headers only. */
  detach(): Socket | TLSSocket {
    this.socket.pause();
    this.socket.off('data', this.onData);
    if (this.reader.buffered > 0) throw new BackendError('backend_error', `${this.describe()} sent unexpected data before the session started`);
    return this.socket;
  }

  /** Takes the socket back from the relay (it must be at a message boundary). Idempotent: one data listener at most. */
  attach(): void {
    this.reader = new FrameReader({ maxMessageLength: MAX_BACKEND_MESSAGE });
    this.socket.off('data', this.onData);
    this.socket.on('data', this.onData);
    this.socket.resume();
  }

  close(): void {
    if (!this.socket.destroyed) {
      this.socket.end(terminate());
      this.socket.destroySoon?.();
    }
    this.broken = true;
  }

  /** `settings` go into the startup packet: they override the role's own settings for this connection. */
  static async connect(
    target: BackendTarget,
    options: { dialer?: Dialer; timeoutMs?: number; applicationName?: string; settings?: Readonly<Record<string, string>>; now?: () => number } = {},
  ): Promise<Backend> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    // One deadline for the whole connect (TCP, TLS, authentication, up to ReadyForQuery), not one per phase.
    const started = Date.now();
    const where = `${target.host}:${target.port}`;
    const raw = (options.dialer ?? defaultDialer)(target.host, target.port);
    raw.setKeepAlive(true, 30_000);
    const socket = await withTimeout(negotiateTls(raw, target), timeoutMs, () => raw.destroy(), `connecting to ${where}`);
    const backend = new Backend(socket, target, (options.now ?? Date.now)());
    const params: Record<string, string> = { ...options.settings, user: target.user, database: target.dbname };
    if (options.applicationName) params.application_name = options.applicationName;
    let scram: ScramClient | undefined;
    let scramVerified = false;
    try {
      await backend.exchange(
        startupMessage(params),
        async (type, body) => {
          switch (type) {
            case BackendCode.AUTHENTICATION: {
              const auth = parseAuthentication(body);
              const password = (): string => {
                if (target.password === undefined) {
                  throw new BackendError('backend_auth_failed', `${where} asked ${target.user} for a password, but the account has only a client certificate (check pg_hba.conf: the account's line must say cert)`);
                }
                return target.password;
              };
              switch (auth.kind) {
                case 'ok':
                  // A server that started SCRAM must prove it knows the password before we accept it.
                  if (scram && !scramVerified) {
                    throw new BackendError('backend_auth_failed', `${where} ended SCRAM authentication without proving it knows the password (possible impostor)`);
                  }
                  return false;
                case 'cleartext':
                  if (!(socket as TLSSocket).encrypted && target.host !== '127.0.0.1' && target.host !== 'localhost' && target.host !== '::1') {
                    throw new BackendError('backend_auth_failed', `${where} asked for a cleartext password over an unencrypted connection; use sslmode require or verify-full`);
                  }
                  socket.write(passwordMessage(password()));
                  return false;
                case 'md5':
                  socket.write(passwordMessage(md5PasswordResponse(target.user, password(), auth.salt)));
                  return false;
                case 'sasl':
                  if (!auth.mechanisms.includes('SCRAM-SHA-256')) {
                    throw new BackendError('backend_auth_failed', `${where} offers SASL mechanisms ${auth.mechanisms.join(', ')}; gprxy supports SCRAM-SHA-256`);
                  }
                  scram = new ScramClient(password());
                  socket.write(saslInitialResponse(scram.mechanism, scram.clientFirst()));
                  return false;
                case 'sasl-continue':
                  if (!scram) throw new BackendError('backend_auth_failed', `${where} sent SASL data before SASL started`);
                  socket.write(saslResponse(await scram.clientFinal(auth.data)));
                  return false;
                case 'sasl-final':
                  if (!scram) throw new BackendError('backend_auth_failed', `${where} sent SASL data before SASL started`);
                  scram.verifyServerFinal(auth.data);
                  scramVerified = true;
                  return false;
                default:
                  throw new BackendError('backend_auth_failed', `${where} asked for an unsupported authentication method (${auth.method})`);
              }
            }
            case BackendCode.ERROR_RESPONSE: {
              const f = parseErrorFields(body);
              const authFailure = f.code.startsWith('28');
              throw new BackendError(
                authFailure ? 'backend_auth_failed' : 'backend_unavailable',
                `${where} refused ${target.user}: ${f.message}${authFailure ? ' (check the account password in the proxy config)' : ''}`,
                authFailure ? SqlState.SERVER_REJECTED_CONNECTION : (f.code as string),
                f,
              );
            }
            case BackendCode.PARAMETER_STATUS: {
              const p = parseParameterStatus(body);
              backend.parameters.set(p.name, p.value);
              return false;
            }
            case BackendCode.BACKEND_KEY_DATA: {
              const k = parseBackendKeyData(body);
              backend.processId = k.processId;
              backend.secretKey = k.secretKey;
              return false;
            }
            case BackendCode.READY_FOR_QUERY:
              return true;
            default:
              return false; // NoticeResponse, NegotiateProtocolVersion
          }
        },
        Math.max(1, timeoutMs - (Date.now() - started)),
      );
    } catch (e) {
      socket.destroy();
      if (e instanceof ExchangeTimeout) {
        throw new BackendError('backend_unavailable', `connecting to ${where} timed out after ${timeoutMs} ms (no answer to the login; limits.backend_connect_timeout)`, undefined, undefined, { cause: e });
      }
      if (e instanceof BackendError) throw e;
      throw new BackendError('backend_unavailable', `cannot start a session on ${where}: ${(e as Error).message}`);
    }
    return backend;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => void, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout();
      reject(new BackendError('backend_unavailable', `${what} timed out after ${ms} ms (limits.backend_connect_timeout)`));
    }, ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** Waits for the TCP connection and, unless sslmode is disable, upgrades it to TLS via SSLRequest. */
export function negotiateTls(raw: Socket, target: BackendTarget): Promise<Socket | TLSSocket> {
  const where = `${target.host}:${target.port}`;
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => reject(new BackendError('backend_unavailable', `cannot connect to ${where}: ${e.message}`));
    raw.once('error', onError);
    raw.once('connect', () => {
      if (target.sslmode === 'disable') {
        raw.off('error', onError);
        resolve(raw);
        return;
      }
      // verify-full checks the chain and the host name; require with a CA checks the chain (libpq's
      // verify-ca behaviour when a root certificate is given); require alone only encrypts.
      const verifyChain = target.sslmode === 'verify-full' || !!target.ca;
      startTls(raw, sslRequest(), EncryptionAnswer.ACCEPT, {
        host: target.host, // the name checked against the certificate (verify-full)
        rejectUnauthorized: verifyChain,
        ...(target.sslmode === 'verify-full' ? {} : { checkServerIdentity: () => undefined }),
        ...(target.ca ? { ca: target.ca } : {}),
        ...(target.sslcert && target.sslkey ? { cert: target.sslcert, key: target.sslkey } : {}),
      }).then(
        (secure) => {
          raw.off('error', onError);
          resolve(secure);
        },
        (e: StartTlsError) =>
          reject(
            new BackendError(
              'backend_unavailable',
              e.code === 'tls_refused' ? `${where} does not accept TLS but sslmode is ${target.sslmode}` : `TLS to ${where} failed: ${e.message}`,
            ),
          ),
      );
    });
  });
}
