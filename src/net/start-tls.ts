/**
 * The PostgreSQL way into TLS, written once for both halves (proxy → database in proxy/backend.ts,
 * tunnel → proxy in tunnel/upstream.ts): send the SSLRequest on a connected socket, read the one-byte
 * answer, and run the TLS handshake over the same socket. The callers keep what differs (when to give up,
 * how strictly to verify, their own error codes and next-step messages).
 *
 * Lives in src/net (imports nothing of ours but the error base): the request bytes and the accepting byte come from the
 * caller (protocol/client-messages.ts sslRequest, protocol/codes.ts EncryptionAnswer.ACCEPT).
 */
import type { Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { GprxyError } from '../shared/errors.js';

/**
 * The names for a TLS connection to `host`: `host` is what the certificate is checked against; SNI
 * (servername) is sent only for a DNS name, since RFC 6066 forbids an IP address there.
 */
export function tlsHostOptions(host: string): { host: string; servername?: string } {
  return /^[\d.]+$|:/.test(host) ? { host } : { host, servername: host };
}

export type StartTlsErrorCode = 'tls_refused' | 'tls_handshake_failed';

/** Why startTls gave no TLS socket: the server answered no, or the handshake failed (its error is `cause`). */
export class StartTlsError extends GprxyError<StartTlsErrorCode> {
  constructor(
    readonly code: StartTlsErrorCode,
    cause?: Error,
  ) {
    super(code === 'tls_refused' ? 'server does not accept TLS' : (cause?.message ?? 'TLS handshake failed'), { cause });
  }
}

/**
 * On a connected `raw` socket: writes `request`, expects exactly the byte `accept` back, then upgrades.
 * Resolves once the handshake is done, with no error listener of ours left on the TLS socket. On failure
 * `raw` is destroyed. The error listener on `raw` stays the caller's.
 */
export function startTls(raw: Socket, request: Buffer, accept: number, tls: Omit<ConnectionOptions, 'socket' | 'host' | 'servername'> & { host: string }): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    raw.write(request);
    raw.once('data', (answer: Buffer) => {
      if (answer.length !== 1 || answer[0] !== accept) {
        raw.destroy();
        reject(new StartTlsError('tls_refused'));
        return;
      }
      const { host, ...rest } = tls;
      const secure = tlsConnect({ socket: raw, ...tlsHostOptions(host), ...rest });
      const onTlsError = (e: Error) => {
        raw.destroy();
        reject(new StartTlsError('tls_handshake_failed', e));
      };
      secure.once('error', onTlsError);
      secure.once('secureConnect', () => {
        secure.off('error', onTlsError);
        resolve(secure);
      });
    });
  });
}
