/**
 * Serialises load → refresh → save (and login's save, logout's delete) of one profile across gprxy
 * processes. With refresh-token rotation and reuse detection (Auth0, oidc-provider), two processes that
 * refresh with the same refresh token make the provider revoke the whole login; a lock per profile
 * makes the second one find the first one's fresh token instead.
 *
 * proper-lockfile: an mkdir-based lock whose mtime the holder touches every few seconds, so a holder
 * that crashed (or was killed with SIGKILL) leaves a lock that is taken over once stale; SIGINT/SIGTERM
 * release it on the way out. The lock directory holds no secret.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { TokenStoreError } from './errors.js';

export interface ProfileLock {
  /** Runs `fn` while holding the profile's lock. */
  withLock<T>(profile: string, fn: () => Promise<T>): Promise<T>;
}

/** In-process only: for memory stores and library users that keep tokens themselves. */
export const NO_LOCK: ProfileLock = { withLock: (_profile, fn) => fn() };

export interface FileProfileLockOptions {
  /** Directory of the lock files (created 0700). */
  readonly dir: string;
  /** A lock not touched for this long belongs to a dead process. Default 10 s (proper-lockfile's minimum is 2 s). */
  readonly staleMs?: number;
  /** How long to wait for another process's refresh before giving up. Default 60 s. */
  readonly waitMs?: number;
}

export class FileProfileLock implements ProfileLock {
  readonly #dir: string;
  readonly #staleMs: number;
  readonly #waitMs: number;

  constructor(opts: FileProfileLockOptions) {
    this.#dir = opts.dir;
    this.#staleMs = opts.staleMs ?? 10_000;
    this.#waitMs = opts.waitMs ?? 60_000;
  }

  lockPath(profile: string): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(profile)) throw new TokenStoreError(`invalid profile name "${profile}"`);
    return path.join(this.#dir, `${profile}.lock`);
  }

  async withLock<T>(profile: string, fn: () => Promise<T>): Promise<T> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const target = path.join(this.#dir, profile);
    const deadline = Date.now() + this.#waitMs;
    let compromised: Error | undefined;
    let release: () => Promise<void>;
    for (;;) {
      try {
        release = await lockfile.lock(target, {
          realpath: false,
          lockfilePath: this.lockPath(profile),
          stale: this.#staleMs,
          update: Math.max(1000, Math.floor(this.#staleMs / 4)),
          retries: 0,
          // Another process judged our lock stale (we were stalled for staleMs): finish, but say so.
          onCompromised: (err) => {
            compromised = err;
          },
        });
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') {
          throw new TokenStoreError(`cannot lock profile "${profile}" in ${this.#dir} (${(err as Error).message}): check that directory's permissions`, { cause: err });
        }
        if (Date.now() > deadline) {
          throw new TokenStoreError(`another gprxy process has held the lock of profile "${profile}" for over ${Math.round(this.#waitMs / 1000)} s: try again, or remove ${this.lockPath(profile)} if no gprxy is running`);
        }
        await new Promise((r) => setTimeout(r, 40 + Math.random() * 80));
      }
    }
    try {
      return await fn();
    } finally {
      if (!compromised) await release().catch(() => undefined);
    }
  }
}
