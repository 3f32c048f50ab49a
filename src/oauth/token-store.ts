/**
 * Where a profile's tokens live between commands (DESIGN.md 2.5): the OS keychain by default, a 0600 file
 * only when the person asked for it (--insecure-storage, warned about at every use), memory for tests.
 * There is no silent fallback: an unusable keychain is an error that names the alternatives.
 */
import { chmod, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { AsyncEntry } from '@napi-rs/keyring';
import { KeychainUnavailableError, TokenStoreError } from './errors.js';

/** What is kept per profile. Times are epoch milliseconds of this machine's clock. */
export interface StoredTokens {
  readonly issuer: string;
  readonly clientId: string;
  readonly refreshToken?: string;
  readonly accessToken?: string;
  readonly accessTokenIssuedAt?: number;
  readonly accessTokenExpiresAt?: number;
  readonly scope?: string;
  /** Who logged in (from the ID token): sub, email, name. Not secret; shown by `gprxy status`. */
  readonly idClaims?: Readonly<Record<string, unknown>>;
}

export type TokenStoreKind = 'keychain' | 'file' | 'memory';

export interface TokenStore {
  readonly kind: TokenStoreKind;
  load(profile: string): Promise<StoredTokens | undefined>;
  save(profile: string, data: StoredTokens): Promise<void>;
  /** True when something was deleted. */
  delete(profile: string): Promise<boolean>;
}

export const KEYCHAIN_SERVICE = 'gprxy';

const UNAVAILABLE_HINT =
  'run gprxy login --insecure-storage to keep tokens in a 0600 file instead, or in CI set GPRXY_CLIENT_ID and GPRXY_CLIENT_SECRET (client credentials) or GPRXY_TOKEN';

function parse(text: string, where: string): StoredTokens {
  try {
    const data = JSON.parse(text) as StoredTokens;
    if (typeof data !== 'object' || data === null || typeof data.issuer !== 'string') throw new Error('not a token record');
    return data;
  } catch {
    throw new TokenStoreError(`the stored tokens in ${where} are unreadable: run gprxy logout, then gprxy login`);
  }
}

/** Minimal view of @napi-rs/keyring's AsyncEntry, so tests can substitute a broken keychain. */
export interface KeychainEntry {
  getPassword(): Promise<string | null | undefined>;
  setPassword(password: string): Promise<void>;
  deleteCredential(): Promise<boolean>;
}

export interface KeychainStoreOptions {
  readonly service?: string;
  readonly entry?: (service: string, account: string) => KeychainEntry;
}

/** The OS keychain through @napi-rs/keyring (Secret Service on Linux): service "gprxy", account = profile. */
export class KeychainStore implements TokenStore {
  readonly kind = 'keychain' as const;
  readonly #service: string;
  readonly #entry: (service: string, account: string) => KeychainEntry;

  constructor(opts: KeychainStoreOptions = {}) {
    this.#service = opts.service ?? KEYCHAIN_SERVICE;
    this.#entry = opts.entry ?? ((service, account) => new AsyncEntry(service, account));
  }

  #unavailable(err: unknown): KeychainUnavailableError {
    const reason = (err as Error)?.message?.split('\n')[0] ?? String(err);
    return new KeychainUnavailableError(`no usable OS keychain (${reason}): ${UNAVAILABLE_HINT}`, { cause: err });
  }

  /**
   * Reading cannot tell "no keychain" from "nothing stored" (libsecret answers both with nothing), so
   * login calls this before it starts a flow: it writes and deletes a probe entry.
   */
  async assertAvailable(): Promise<void> {
    const probe = this.#entry(this.#service, '.gprxy-probe');
    try {
      await probe.setPassword('probe');
      await probe.deleteCredential();
    } catch (err) {
      throw this.#unavailable(err);
    }
  }

  async load(profile: string): Promise<StoredTokens | undefined> {
    let text: string | null | undefined;
    try {
      text = await this.#entry(this.#service, profile).getPassword();
    } catch (err) {
      throw this.#unavailable(err);
    }
    return text ? parse(text, `the keychain entry ${this.#service}/${profile}`) : undefined;
  }

  async save(profile: string, data: StoredTokens): Promise<void> {
    try {
      await this.#entry(this.#service, profile).setPassword(JSON.stringify(data));
    } catch (err) {
      throw this.#unavailable(err);
    }
  }

  async delete(profile: string): Promise<boolean> {
    try {
      return await this.#entry(this.#service, profile).deleteCredential();
    } catch (err) {
      throw this.#unavailable(err);
    }
  }
}

export interface FileStoreOptions {
  /** Directory for the token files; created 0700. */
  readonly dir: string;
  /** Called at the first use of a profile's file by this store: it holds a plaintext refresh token. */
  readonly warn: (message: string) => void;
}

/**
 * The explicit --insecure-storage choice: one JSON file per profile, mode 0600, in a 0700 directory.
 * The warning comes once per store (the CLI keeps one per process), not at every read: a tunnel reads
 * the file at every refresh.
 */
export class FileStore implements TokenStore {
  readonly kind = 'file' as const;
  readonly #dir: string;
  readonly #warn: (message: string) => void;
  readonly #warned = new Set<string>();

  constructor(opts: FileStoreOptions) {
    this.#dir = opts.dir;
    this.#warn = opts.warn;
  }

  fileFor(profile: string): string {
    // Profile names are validated by the config; this keeps a bad one from escaping the directory.
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(profile)) throw new TokenStoreError(`invalid profile name "${profile}"`);
    return path.join(this.#dir, `${profile}.json`);
  }

  #warnUse(profile: string): void {
    if (this.#warned.has(profile)) return;
    this.#warned.add(profile);
    this.#warn(`tokens for profile "${profile}" are stored unencrypted in ${this.fileFor(profile)} (--insecure-storage); anyone who can read it can act as you`);
  }

  async load(profile: string): Promise<StoredTokens | undefined> {
    const file = this.fileFor(profile);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new TokenStoreError(`cannot read ${file} (${(err as Error).message}): check its permissions or run gprxy login again`);
    }
    this.#warnUse(profile);
    const mode = (await stat(file)).mode & 0o777;
    if (mode & 0o077) {
      throw new TokenStoreError(`${file} is readable by others (mode ${mode.toString(8)}): run chmod 600 ${file}, or gprxy logout and log in again`);
    }
    return parse(text, file);
  }

  async save(profile: string, data: StoredTokens): Promise<void> {
    this.#warnUse(profile);
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    await chmod(this.#dir, 0o700);
    const file = this.fileFor(profile);
    // Written under a temporary name created 0600, then renamed: the token is never in a wider-mode file.
    const tmp = `${file}.${process.pid}.tmp`;
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(JSON.stringify(data));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await chmod(tmp, 0o600);
    await rename(tmp, file);
  }

  async delete(profile: string): Promise<boolean> {
    const file = this.fileFor(profile);
    try {
      await stat(file);
    } catch {
      return false;
    }
    await rm(file, { force: true });
    return true;
  }
}

/** Process-lifetime storage: tests, and library users that keep tokens themselves. */
export class MemoryTokenStore implements TokenStore {
  readonly kind = 'memory' as const;
  readonly #data = new Map<string, StoredTokens>();

  async load(profile: string): Promise<StoredTokens | undefined> {
    return this.#data.get(profile);
  }

  async save(profile: string, data: StoredTokens): Promise<void> {
    this.#data.set(profile, { ...data });
  }

  async delete(profile: string): Promise<boolean> {
    return this.#data.delete(profile);
  }
}
