/**
 * One provider's signing keys (DESIGN.md 3, src/token). Modelled on jose's createRemoteJWKSet (one fetch in
 * flight, unknown-kid refetch limited by a cooldown) but with what a long-running proxy needs on top:
 * - a TTL, with a background refresh at 80 % of it, so a connection never waits for a routine refresh;
 * - exponential backoff with jitter while the provider fails, during which the last-known-good keys stay in use;
 * - the last good JWKS persisted to disk (tmp file + rename), so a restart during a provider outage still serves.
 * Keys are selected by kid and algorithm (jwks-keys.ts), fetched (jwks-fetch.ts), persisted (jwks-store.ts)
 * and imported with jose; this file holds the state and the schedule. No crypto is done by hand.
 */
import { importJWK, type CryptoKey, type JWK } from 'jose';
import type { Logger } from 'pino';
import { TokenError, quote } from './errors.js';
import { setLongTimeout, type LongTimer } from '../shared/long-timer.js';
import { candidateKeys, keysForAlgorithm, keySpecFor, usableKeys, type KeyHeader } from './jwks-keys.js';
import { describe, discoverJwksUri, getJson, JwksFetchError, type GetJsonOptions } from './jwks-fetch.js';
import { errorCode } from '../shared/errors.js';
import { loadPersistedJwks, persistJwks, type PersistedJwks } from './jwks-store.js';

export type { KeyHeader } from './jwks-keys.js';
export { discoveryUrl } from './jwks-fetch.js';
export { jwksCacheFileName } from './jwks-store.js';

export interface JwksCacheOptions {
  readonly issuer: string;
  /** Else OIDC discovery at the issuer's /.well-known/openid-configuration. */
  readonly jwksUri?: string;
  readonly ttlMs: number;
  /** Directory for the last-known-good JWKS (created 0700, files 0600). */
  readonly cacheDir?: string;
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
  readonly logger?: Logger;
  /** An unknown kid refetches at most once per this long (default 30 s, as jose). */
  readonly unknownKidCooldownMs?: number;
  /** Retry delays after a failed fetch (default 1 s doubling to 5 min, with jitter). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Timeout of each discovery or JWKS request (default 10 s). */
  readonly fetchTimeoutMs?: number;
  /** Jitter source in [0, 1); a seam for tests. */
  readonly random?: () => number;
}

export interface JwksStats {
  /** Usable signing keys held now. */
  readonly keys: number;
  /** When the keys in use were fetched (ms epoch); from the persisted file after a restart. */
  readonly fetchedAt?: number;
  /** The last fetch failure, cleared by a success. */
  readonly lastError?: string;
  /** The last failure's JwksFetchError code (`http_status`, `timeout`, ...), for alerts and the admin view. */
  readonly lastErrorCode?: string;
  /** Completed fetch attempts (successful or not). */
  readonly fetches: number;
  /** Fetch failures in a row since the last success (0 when the last fetch worked). */
  readonly failures: number;
  /** When the next scheduled fetch runs (ms epoch): the refresh at 80% of the TTL, or the retry after a failure. */
  readonly nextRefreshAt?: number;
  /** Key ids held now, for the operator's view (SHOW PROVIDERS). */
  readonly kids: readonly string[];
}

const DEFAULT_COOLDOWN_MS = 30_000;
const DEFAULT_BACKOFF = { initialMs: 1_000, maxMs: 300_000 } as const;
const DEFAULT_FETCH_TIMEOUT_MS = 10_000;
/** Guards a zero or tiny TTL from turning the refresh timer into a busy loop. */
const MIN_REFRESH_DELAY_MS = 100;

export class JwksCache {
  readonly issuer: string;
  private readonly configuredJwksUri: string | undefined;
  private discoveredJwksUri: string | undefined;
  private readonly ttlMs: number;
  private readonly cacheDir: string | undefined;
  private readonly fetchImpl: typeof fetch;
  private readonly now: () => number;
  private readonly logger: Logger | undefined;
  private readonly cooldownMs: number;
  private readonly backoff: { readonly initialMs: number; readonly maxMs: number };
  private readonly fetchTimeoutMs: number;
  private readonly random: () => number;

  private keys: JWK[] = [];
  /** Imported keys per JWK object and algorithm; a new key set brings new objects, so old entries fall away. */
  private imported = new WeakMap<JWK, Map<string, Promise<CryptoKey>>>();
  private fetchedAt: number | undefined;
  private lastError: string | undefined;
  private lastErrorCode: string | undefined;
  private fetches = 0;
  private failures = 0;
  private lastAttemptAt = Number.NEGATIVE_INFINITY;
  private nextRetryAt = Number.NEGATIVE_INFINITY;
  private inflight: Promise<void> | undefined;
  private timer: LongTimer | undefined;
  private nextRefreshAt: number | undefined;
  private closed = false;
  private readonly closing = new AbortController();

  constructor(opts: JwksCacheOptions) {
    this.issuer = opts.issuer;
    this.configuredJwksUri = opts.jwksUri;
    this.ttlMs = opts.ttlMs;
    this.cacheDir = opts.cacheDir;
    this.fetchImpl = opts.fetch ?? globalThis.fetch;
    this.now = opts.now ?? Date.now;
    this.logger = opts.logger?.child({ issuer: opts.issuer });
    this.cooldownMs = opts.unknownKidCooldownMs ?? DEFAULT_COOLDOWN_MS;
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.fetchTimeoutMs = opts.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
    this.random = opts.random ?? Math.random;
  }

  /**
   * Loads the persisted keys (if any), then fetches. A failed fetch is only logged when persisted keys
   * exist; otherwise it rejects with jwks_unavailable (and keeps retrying in the background).
   */
  async start(): Promise<void> {
    await this.loadPersisted();
    if (this.keys.length > 0) {
      // Persisted keys serve at once; a provider that is down must not delay (re)starts by its timeout.
      this.refresh().catch((error: unknown) =>
        this.logger?.warn({ event: 'jwks_fetch_failed', err: describe(error), serving: 'persisted', fetched_at: this.fetchedAt && new Date(this.fetchedAt).toISOString() }, 'JWKS fetch failed at start; serving the persisted keys'),
      );
      return;
    }
    try {
      await this.refresh();
    } catch (error) {
      if (this.keys.length === 0) throw this.unavailable();
      this.logger?.warn(
        { event: 'jwks_fetch_failed', err: describe(error), serving: 'persisted', fetched_at: this.fetchedAt && new Date(this.fetchedAt).toISOString() },
        'JWKS fetch failed at start; serving the persisted keys',
      );
    }
  }

  /** The public key for a token's header: refetches once per cooldown for an unknown kid. */
  async getKey(header: KeyHeader): Promise<CryptoKey> {
    if (this.closed) throw new TokenError('jwks_unavailable', `the key cache of ${this.issuer} is closed`);
    const spec = keySpecFor(header.alg);
    if (!spec) throw new TokenError('token_algorithm', `algorithm ${quote(header.alg)} cannot be verified with a provider's public key`);

    if (this.keys.length === 0) {
      // Nothing ever loaded: try now, unless a recent attempt failed (backoff protects a provider that is down).
      if (this.inflight || this.now() >= this.nextRetryAt) await this.refresh().catch(() => undefined);
      if (this.keys.length === 0) throw this.unavailable();
    } else if (this.fetchedAt !== undefined && this.now() - this.fetchedAt >= this.ttlMs && !this.inflight && this.now() >= this.nextRetryAt) {
      // Past the TTL (the timer was late, or the clock seam moved): refresh in the background, keep serving.
      this.refresh().catch(() => undefined);
    }

    let candidates = this.select(header);
    if (candidates.length === 0) {
      if (this.inflight) await this.inflight.catch(() => undefined);
      else if (this.now() - this.lastAttemptAt >= this.cooldownMs) await this.refresh().catch(() => undefined);
      candidates = this.select(header);
    }
    if (candidates.length === 0) throw this.noKey(header);

    const byAlg = keysForAlgorithm(candidates, spec, header.alg);
    if (byAlg.length === 0) {
      const jwk = candidates[0]!;
      throw new TokenError(
        'token_algorithm',
        `key id ${quote(header.kid)} of ${this.issuer} is ${jwk.alg ? `a ${jwk.alg} key` : `a ${jwk.kty} key`}; it cannot verify a ${header.alg} signature`,
      );
    }
    if (byAlg.length > 1 && header.kid === undefined) {
      throw new TokenError(
        'token_unknown_kid',
        `the token names no key id (kid) and ${this.issuer} publishes ${byAlg.length} ${header.alg} keys; the provider must set kid`,
      );
    }
    return this.importKey(byAlg[0]!, header.alg);
  }

  /** Fetches now (single flight: concurrent callers share one request). Rejects with the fetch error. */
  refresh(): Promise<void> {
    if (this.closed) return Promise.reject(new JwksFetchError('closed', `the key cache of ${this.issuer} is closed`));
    this.inflight ??= this.fetchOnce().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  stats(): JwksStats {
    return {
      keys: this.keys.length,
      ...(this.fetchedAt !== undefined ? { fetchedAt: this.fetchedAt } : {}),
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      ...(this.lastErrorCode !== undefined ? { lastErrorCode: this.lastErrorCode } : {}),
      fetches: this.fetches,
      failures: this.failures,
      ...(this.nextRefreshAt !== undefined ? { nextRefreshAt: this.nextRefreshAt } : {}),
      kids: this.keys.map((k) => k.kid ?? '(no kid)'),
    };
  }

  /** Stops timers and aborts a fetch in flight. */
  close(): void {
    this.closed = true;
    this.timer?.clear();
    this.timer = undefined;
    this.closing.abort();
  }

  private select(header: KeyHeader): JWK[] {
    return candidateKeys(this.keys, header);
  }

  private noKey(header: KeyHeader): TokenError {
    if (header.kid === undefined) {
      return new TokenError('token_unknown_kid', `the token names no key id (kid) and ${this.issuer} publishes no ${header.alg} key`);
    }
    return new TokenError(
      'token_unknown_kid',
      `token was signed by key id ${quote(header.kid)} which the provider ${this.issuer} does not publish; ` +
        'if the provider just rotated its keys, retry in a minute',
    );
  }

  private unavailable(): TokenError {
    const retry = Number.isFinite(this.nextRetryAt) ? `; retrying in ${Math.max(0, Math.ceil((this.nextRetryAt - this.now()) / 1000))} s` : '';
    return new TokenError(
      'jwks_unavailable',
      `the signing keys of ${this.issuer} could not be fetched (${this.lastError ?? 'no attempt yet'})${retry}; try again shortly`,
    );
  }

  private importKey(jwk: JWK, alg: string): Promise<CryptoKey> {
    let byAlg = this.imported.get(jwk);
    if (!byAlg) this.imported.set(jwk, (byAlg = new Map()));
    let pending = byAlg.get(alg);
    if (!pending) {
      pending = (importJWK(jwk, alg) as Promise<CryptoKey>).then((key) => {
        if (key.type !== 'public') throw new Error('not a public key');
        return key;
      });
      const entry = pending.catch((error: unknown) => {
        byAlg.delete(alg);
        throw new TokenError('jwks_unavailable', `key id ${quote(jwk.kid)} of ${this.issuer} could not be imported: ${describe(error)}`, { cause: error });
      });
      byAlg.set(alg, entry);
      return entry;
    }
    return pending;
  }

  private async fetchOnce(): Promise<void> {
    this.lastAttemptAt = this.now();
    let url = this.configuredJwksUri ?? this.discoveredJwksUri;
    try {
      url ??= this.discoveredJwksUri = await discoverJwksUri(this.issuer, this.fetchOptions());
      const document = await getJson(url, 'JWKS', this.fetchOptions());
      const keys = usableKeys(document);
      if (keys.length === 0) throw new JwksFetchError('no_usable_key', `JWKS at ${url} has no usable signing key`);
      if (this.closed) return;
      this.keys = keys;
      this.imported = new WeakMap();
      this.fetchedAt = this.now();
      this.lastError = undefined;
      this.lastErrorCode = undefined;
      this.failures = 0;
      this.nextRetryAt = Number.NEGATIVE_INFINITY;
      this.fetches++;
      this.schedule(Math.max(MIN_REFRESH_DELAY_MS, this.ttlMs * 0.8));
      this.logger?.debug({ event: 'jwks_fetched', url, keys: keys.length, kids: keys.map((k) => k.kid) }, 'JWKS fetched');
      await this.persist({ issuer: this.issuer, jwksUri: url, fetchedAt: this.fetchedAt, jwks: document });
    } catch (error) {
      if (this.closed) throw error;
      // Rediscover next time: the provider may have moved its jwks_uri.
      this.discoveredJwksUri = undefined;
      this.fetches++;
      this.failures++;
      // getJson's errors already carry their cause's reason.
      this.lastError = error instanceof Error ? error.message : String(error);
      this.lastErrorCode = errorCode(error) ?? 'request_failed';
      const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(this.failures - 1, 30));
      const delay = Math.round(base / 2 + (this.random() * base) / 2);
      this.nextRetryAt = this.now() + delay;
      this.schedule(delay);
      this.logger?.warn({ event: 'jwks_fetch_failed', url, err: this.lastError, code: this.lastErrorCode, failures: this.failures, retry_in_ms: delay, keys_in_use: this.keys.length }, 'JWKS fetch failed');
      throw error;
    }
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    this.timer?.clear();
    this.nextRefreshAt = this.now() + delayMs;
    // A pending refresh must not keep the process alive (setLongTimeout's timers are unref'd).
    this.timer = setLongTimeout(() => {
      this.timer = undefined;
      this.nextRefreshAt = undefined;
      this.refresh().catch(() => undefined);
    }, delayMs);
  }

  private fetchOptions(): GetJsonOptions {
    return { fetch: this.fetchImpl, timeoutMs: this.fetchTimeoutMs, signal: this.closing.signal };
  }

  private async loadPersisted(): Promise<void> {
    if (!this.cacheDir) return;
    const loaded = await loadPersistedJwks(this.cacheDir, this.issuer, this.logger);
    if (!loaded) return;
    this.keys = loaded.keys;
    this.imported = new WeakMap();
    this.fetchedAt = loaded.fetchedAt;
  }

  private async persist(data: PersistedJwks): Promise<void> {
    if (this.cacheDir) await persistJwks(this.cacheDir, data, this.logger);
  }
}
