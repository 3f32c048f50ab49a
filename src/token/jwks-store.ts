/**
 * Disk persistence of a provider's last good JWKS, so a restart during a provider outage still serves:
 * one file per issuer (a hash of it as the name), 0600 in a 0700 directory, written atomically (tmp file +
 * rename) so another replica or the next start reads the old file or the new one, never half.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JWK } from 'jose';
import type { Logger } from 'pino';
import { quote } from './errors.js';
import { describe } from './jwks-fetch.js';
import { usableKeys } from './jwks-keys.js';

export interface PersistedJwks {
  readonly issuer: string;
  readonly jwksUri?: string;
  readonly fetchedAt: number;
  readonly jwks: unknown;
}

/** The persisted file's name: a short hash of the issuer, so any issuer URL maps to a safe file name. */
export function jwksCacheFileName(issuer: string): string {
  return `${createHash('sha256').update(issuer).digest('hex').slice(0, 16)}.json`;
}

/** The persisted keys of `issuer`, or undefined (no file, or one that is unreadable or not this issuer's: logged). */
export async function loadPersistedJwks(cacheDir: string, issuer: string, logger: Logger | undefined): Promise<{ keys: JWK[]; fetchedAt: number } | undefined> {
  const file = join(cacheDir, jwksCacheFileName(issuer));
  let data: PersistedJwks;
  try {
    data = JSON.parse(await readFile(file, 'utf8')) as PersistedJwks;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') logger?.warn({ event: 'jwks_persisted_ignored', file, err: describe(error) }, 'ignoring unreadable persisted JWKS');
    return undefined;
  }
  try {
    if (data.issuer !== issuer) throw new Error(`it belongs to issuer ${quote(data.issuer)}`);
    if (typeof data.fetchedAt !== 'number') throw new Error('it has no fetchedAt');
    const keys = usableKeys(data.jwks);
    if (keys.length === 0) throw new Error('it has no usable signing key');
    logger?.info({ event: 'jwks_persisted_loaded', file, keys: keys.length, fetched_at: new Date(data.fetchedAt).toISOString() }, 'loaded persisted JWKS');
    return { keys, fetchedAt: data.fetchedAt };
  } catch (error) {
    logger?.warn({ event: 'jwks_persisted_ignored', file, err: describe(error) }, 'ignoring persisted JWKS');
    return undefined;
  }
}

/** Saves atomically; a failure is logged (the keys in memory stay in use), never thrown. */
export async function persistJwks(cacheDir: string, data: PersistedJwks, logger: Logger | undefined): Promise<void> {
  const file = join(cacheDir, jwksCacheFileName(data.issuer));
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await mkdir(cacheDir, { recursive: true, mode: 0o700 });
    await writeFile(tmp, `${JSON.stringify(data)}\n`, { mode: 0o600, flag: 'wx' });
    await rename(tmp, file);
  } catch (error) {
    await unlink(tmp).catch(() => undefined);
    logger?.warn({ event: 'jwks_persist_failed', file, err: describe(error) }, 'could not persist the JWKS; a restart during a provider outage will not have these keys');
  }
}
