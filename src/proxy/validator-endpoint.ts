/**
 * The verification endpoint for PostgreSQL 18's native OAuth (validator/gprxy_oauth_validator.c): a Unix
 * socket on which the validator module asks "may this Bearer token log in as this role?". The answer comes
 * from the proxy's own TokenVerifier (issuer, audience, algorithms, signature, expiry, scopes) plus the same
 * username rule as the proxy's logins (the role must be one of the token's username_claims), so PostgreSQL
 * and `gprxy serve` accept exactly the same tokens. Enabled by `validator.socket` in the proxy config.
 *
 * Wire format (validator/gprxy_oauth_validator.c): request "role\0token\0"; answer one status byte
 * ('Y' authorized, 'N' refused, 'E' endpoint error) and a NUL-terminated string (identity, or reason).
 */
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { TokenError } from '../token/errors.js';
import { matchesUsername } from '../token/identity.js';
import type { TokenVerifier, VerifiedToken } from '../token/verifier.js';
import { GprxyError } from '../shared/errors.js';

/** role (NAMEDATALEN-bounded in PostgreSQL, generous here) + token (the verifier refuses > 16 KiB) + NULs. */
const MAX_REQUEST_BYTES = 24 * 1024;
const REQUEST_TIMEOUT_MS = 10_000;

export interface ValidatorEndpointOptions {
  readonly path: string;
  /** File mode of the socket: who on this host may ask (the PostgreSQL server's user must). */
  readonly mode: number;
  /** The proxy's current verifier (a config reload replaces it). */
  readonly verifier: Pick<TokenVerifier, 'verify'>;
  readonly logger: Logger;
}

export class ValidatorEndpointError extends GprxyError<'validator_socket_failed'> {
  readonly code = 'validator_socket_failed' as const;
}

/**
 * The username rule of the proxy's logins: `role` must be the value of one of the provider's username claims
 * (an e-mail only when the provider verified it: src/token/identity.ts).
 */
export function roleMatchesToken(token: VerifiedToken, role: string): boolean {
  return matchesUsername(token, role);
}

export class ValidatorEndpoint {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly options: ValidatorEndpointOptions) {}

  async start(): Promise<void> {
    const { path, mode } = this.options;
    // A socket file left by a previous run would make listen fail; anything else at that path is not ours.
    try {
      if (lstatSync(path).isSocket()) unlinkSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new ValidatorEndpointError(`validator.socket ${path}: ${(e as Error).message}`);
    }
    const server = createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new ValidatorEndpointError(`cannot listen on validator.socket ${path}: ${e.message}`)));
      server.listen(path, () => resolve());
    });
    chmodSync(path, mode);
    server.on('error', (e) => this.options.logger.error({ event: 'validator_socket_error', reason: e.message }, 'validator socket error'));
    this.server = server;
    this.options.logger.info({ event: 'validator_listening', path }, `PostgreSQL OAuth validator endpoint on ${path}`);
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy());
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      const request = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const roleEnd = request.indexOf(0);
      const tokenEnd = roleEnd === -1 ? -1 : request.indexOf(0, roleEnd + 1);
      if (tokenEnd === -1) {
        if (size > MAX_REQUEST_BYTES) this.answer(socket, 'E', 'request too large');
        return;
      }
      socket.off('data', onData);
      if (tokenEnd !== request.length - 1) return this.answer(socket, 'E', 'unexpected bytes after the request');
      void this.check(socket, request.toString('utf8', 0, roleEnd), request.toString('latin1', roleEnd + 1, tokenEnd));
    };
    socket.on('data', onData);
  }

  private async check(socket: Socket, role: string, token: string): Promise<void> {
    const log = this.options.logger;
    try {
      const verified = await this.options.verifier.verify(token);
      if (!roleMatchesToken(verified, role)) {
        log.info({ event: 'validator_check', user: role, result: 'refused', reason: 'token_user_mismatch', token: verified.tokenId }, `native login as ${role} refused: the token belongs to someone else`);
        return this.answer(socket, 'N', 'token_user_mismatch');
      }
      log.info({ event: 'validator_check', user: role, result: 'authorized', token: verified.tokenId }, `native login as ${role} authorized`);
      this.answer(socket, 'Y', role);
    } catch (e) {
      if (e instanceof TokenError) {
        log.info({ event: 'validator_check', user: role, result: 'refused', reason: e.code, message: e.message }, `native login as ${role} refused (${e.code})`);
        return this.answer(socket, 'N', e.code);
      }
      log.error({ event: 'internal_error', err: e }, 'validator check failed');
      this.answer(socket, 'E', 'internal error');
    }
  }

  private answer(socket: Socket, status: 'Y' | 'N' | 'E', text: string): void {
    socket.end(Buffer.from(`${status}${text.replace(/\0/g, '')}\0`, 'utf8'));
  }
}
