/**
 * SCRAM-SHA-256 password verifiers computed here, so `db init` sends PostgreSQL
 * `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` and the cleartext password never reaches the
 * server, its statement log or `pg_stat_activity` (PostgreSQL stores a pre-hashed verifier as is,
 * whatever password_encryption says). Same derivation as the server (RFC 5802, RFC 7677; PostgreSQL's
 * scram_build_secret), so libpq, node-postgres and the proxy log in with the cleartext from the config.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { saslprep } from '../protocol/saslprep.js';

export { saslprep };

/** PostgreSQL's default (scram_iterations, PG16+; fixed before). */
export const SCRAM_ITERATIONS = 4096;

function keys(password: string, salt: Buffer, iterations: number): { storedKey: Buffer; serverKey: Buffer } {
  const salted = pbkdf2Sync(saslprep(password), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  return {
    storedKey: createHash('sha256').update(clientKey).digest(),
    serverKey: createHmac('sha256', salted).update('Server Key').digest(),
  };
}

/** A verifier for `ALTER ROLE ... PASSWORD '<verifier>'`; a fresh random 16-byte salt unless given. */
export function scramVerifier(password: string, options: { salt?: Buffer; iterations?: number } = {}): string {
  const salt = options.salt ?? randomBytes(16);
  const iterations = options.iterations ?? SCRAM_ITERATIONS;
  const { storedKey, serverKey } = keys(password, salt, iterations);
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

const VERIFIER = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/;

export function isScramVerifier(text: string): boolean {
  return VERIFIER.test(text);
}

/**
 * Whether `password` is the one behind a stored verifier (pg_authid.rolpassword). Lets `db init` leave a
 * correct password alone, so a re-run changes nothing. MD5 or unknown formats answer false (re-set as SCRAM).
 */
export function scramVerifierMatches(stored: string | null | undefined, password: string): boolean {
  const m = stored ? VERIFIER.exec(stored) : null;
  if (!m) return false;
  const iterations = Number(m[1]);
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > 10_000_000) return false;
  const expected = Buffer.concat([Buffer.from(m[3]!, 'base64'), Buffer.from(m[4]!, 'base64')]);
  const { storedKey, serverKey } = keys(password, Buffer.from(m[2]!, 'base64'), iterations);
  const actual = Buffer.concat([storedKey, serverKey]);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}
