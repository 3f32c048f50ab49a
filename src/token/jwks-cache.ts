/**
 * One provider's signing keys (DESIGN.md 3, src/token). Modelled on jose's createRemoteJWKSet (one fetch in
 * flight, unknown-kid refetch limited by a cooldown) but with what a long-running proxy needs on top:
 * - a TTL, with a background refresh at 80 % of it, so a connection never waits for a routine refresh;
 * - exponential backoff with jitter while the provider fails, during which the last-known-good keys stay in use;
 * - the last good JWKS persisted to disk (tmp file + rename), so a restart during a provider outage still serves.
 * Keys are selected by kid and algorithm here and imported with jose; no crypto is done by hand.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { importJWK, type CryptoKey, type JWK } from 'jose';
import type { Logger } from 'pino';
import { TokenError, quote } from './errors.js';
import { setLongTimeout, type LongTimer } from '../shared/long-timer.js';

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
  /** Completed fetch attempts (successful or not). */
  readonly fetches: number;
}

/** What getKey needs from a JWS protected header. */
export interface KeyHeader {
  readonly kid?: string;
  readonly alg: string;
}

const DEFAULT_COOLDOWN_MS = 30_000;
const DEFAULT_BACKOFF = { initialMs: 1_000, maxMs: 300_000 } as const;
const DEFAULT_FETCH_TIMEOUT_MS = 10_000;
const MAX_RESPONSE_BYTES = 1024 * 1024;
/** Guards a zero or tiny TTL from turning the refresh timer into a busy loop. */
const MIN_REFRESH_DELAY_MS = 100;

/** The key type (and curve) each asymmetric JWS algorithm needs. HS* and none are absent on purpose. */
const KEY_TYPE_FOR_ALG: Readonly<Record<string, { kty: string; crv?: readonly string[] }>> = {
  RS256: { kty: 'RSA' },
  RS384: { kty: 'RSA' },
  RS512: { kty: 'RSA' },
  PS256: { kty: 'RSA' },
  PS384: { kty: 'RSA' },
  PS512: { kty: 'RSA' },
  ES256: { kty: 'EC', crv: ['P-256'] },
  ES384: { kty: 'EC', crv: ['P-384'] },
  ES512: { kty: 'EC', crv: ['P-521'] },
  EdDSA: { kty: 'OKP', crv: ['Ed25519', 'Ed448'] },
  Ed25519: { kty: 'OKP', crv: ['Ed25519'] },
};

/** The persisted file's name: a short hash of the issuer, so any issuer URL maps to a safe file name. */
export function jwksCacheFileName(issuer: string): string {
  return `${createHash('sha256').update(issuer).digest('hex').slice(0, 16)}.json`;
}

/** OIDC discovery URL; an issuer with a trailing slash (Auth0's do) does not get a second one. */
export function discoveryUrl(issuer: string): string {
  return `${issuer.endsWith('/') ? issuer : `${issuer}/`}.well-known/openid-configuration`;
}

/** Keys that may verify signatures: public asymmetric keys whose `use` is absent or "sig". */
function usableKeys(document: unknown): JWK[] {
  if (!document || typeof document !== 'object' || !Array.isArray((document as { keys?: unknown }).keys)) {
    throw new Error('the response is not a JSON Web Key Set (no "keys" array)');
  }
  return ((document as { keys: unknown[] }).keys).filter((k): k is JWK => {
    if (!k || typeof k !== 'object') return false;
    const jwk = k as JWK;
    if (jwk.kty !== 'RSA' && jwk.kty !== 'EC' && jwk.kty !== 'OKP') return false;
    if (jwk.use !== undefined && jwk.use !== 'sig') return false;
    if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) return false;
    // Private material in a JWKS is a provider mistake; never verify with such an entry.
    if ('d' in jwk) return false;
    return jwk.kid === undefined || typeof jwk.kid === 'string';
  });
}

/** OpenSSL's verification failures that a trusted CA (providers[].ca) would fix. */
const UNTRUSTED_CERT_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
]);

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error) {
    // undici says only "fetch failed"; the cause has the reason (ECONNREFUSED, a TLS verification error...).
    const code = (cause as NodeJS.ErrnoException).code;
    // A private provider's certificate: say which setting fixes it.
    const hint = code && UNTRUSTED_CERT_CODES.has(code) ? "; the provider's certificate is not trusted: set providers[].ca to the PEM file of its CA" : '';
    return `${error.message} (${code && !cause.message.includes(code) ? `${code}: ` : ''}${cause.message})${hint}`;
  }
  return error.message;
}

async function readCapped(response: Response, maxBytes: number): Promise<string> {
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel();
    throw new Error(`the response is ${declared} bytes, more than ${maxBytes}`);
  }
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw new Error(`the response is more than ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

interface PersistedJwks {
  readonly issuer: string;
  readonly jwksUri?: string;
  readonly fetchedAt: number;
  readonly jwks: unknown;
}

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
  private fetches = 0;
  private failures = 0;
  private lastAttemptAt = Number.NEGATIVE_INFINITY;
  private nextRetryAt = Number.NEGATIVE_INFINITY;
  private inflight: Promise<void> | undefined;
  private timer: LongTimer | undefined;
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
        this.logger?.warn({ err: describe(error), fetchedAt: this.fetchedAt && new Date(this.fetchedAt).toISOString() }, 'JWKS fetch failed at start; serving the persisted keys'),
      );
      return;
    }
    try {
      await this.refresh();
    } catch (error) {
      if (this.keys.length === 0) throw this.unavailable();
      this.logger?.warn(
        { err: describe(error), fetchedAt: this.fetchedAt && new Date(this.fetchedAt).toISOString() },
        'JWKS fetch failed at start; serving the persisted keys',
      );
    }
  }

  /** The public key for a token's header: refetches once per cooldown for an unknown kid. */
  async getKey(header: KeyHeader): Promise<CryptoKey> {
    if (this.closed) throw new TokenError('jwks_unavailable', `the key cache of ${this.issuer} is closed`);
    const spec = Object.hasOwn(KEY_TYPE_FOR_ALG, header.alg) ? KEY_TYPE_FOR_ALG[header.alg] : undefined;
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

    const byAlg = candidates.filter((jwk) => jwk.kty === spec.kty && (!spec.crv || spec.crv.includes(jwk.crv ?? '')) && (jwk.alg === undefined || jwk.alg === header.alg));
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
    if (this.closed) return Promise.reject(new Error('closed'));
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
      fetches: this.fetches,
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
    if (header.kid !== undefined) return this.keys.filter((jwk) => jwk.kid === header.kid);
    const spec = Object.hasOwn(KEY_TYPE_FOR_ALG, header.alg) ? KEY_TYPE_FOR_ALG[header.alg] : undefined;
    return this.keys.filter((jwk) => jwk.kty === spec?.kty);
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
      url ??= this.discoveredJwksUri = await this.discover();
      const document = await this.getJson(url, 'JWKS');
      const keys = usableKeys(document);
      if (keys.length === 0) throw new Error(`JWKS at ${url} has no usable signing key`);
      if (this.closed) return;
      this.keys = keys;
      this.imported = new WeakMap();
      this.fetchedAt = this.now();
      this.lastError = undefined;
      this.failures = 0;
      this.nextRetryAt = Number.NEGATIVE_INFINITY;
      this.fetches++;
      this.schedule(Math.max(MIN_REFRESH_DELAY_MS, this.ttlMs * 0.8));
      this.logger?.debug({ url, keys: keys.length, kids: keys.map((k) => k.kid) }, 'JWKS fetched');
      await this.persist({ issuer: this.issuer, jwksUri: url, fetchedAt: this.fetchedAt, jwks: document });
    } catch (error) {
      if (this.closed) throw error;
      // Rediscover next time: the provider may have moved its jwks_uri.
      this.discoveredJwksUri = undefined;
      this.fetches++;
      this.failures++;
      // getJson's errors already carry their cause's reason.
      this.lastError = error instanceof Error ? error.message : String(error);
      const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(this.failures - 1, 30));
      const delay = Math.round(base / 2 + (this.random() * base) / 2);
      this.nextRetryAt = this.now() + delay;
      this.schedule(delay);
      this.logger?.warn({ url, err: this.lastError, failures: this.failures, retryInMs: delay, keysInUse: this.keys.length }, 'JWKS fetch failed');
      throw error;
    }
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    this.timer?.clear();
    // A pending refresh must not keep the process alive (setLongTimeout's timers are unref'd).
    this.timer = setLongTimeout(() => {
      this.timer = undefined;
      this.refresh().catch(() => undefined);
    }, delayMs);
  }

  private async discover(): Promise<string> {
    const url = discoveryUrl(this.issuer);
    const document = (await this.getJson(url, 'OIDC discovery')) as { issuer?: unknown; jwks_uri?: unknown } | null;
    if (!document || typeof document !== 'object') throw new Error(`OIDC discovery at ${url} is not a JSON object`);
    if (document.issuer !== this.issuer) {
      throw new Error(`OIDC discovery at ${url} names issuer ${quote(document.issuer)}, not ${quote(this.issuer)}; set the provider's issuer exactly as the provider spells it`);
    }
    if (typeof document.jwks_uri !== 'string' || !URL.canParse(document.jwks_uri)) {
      throw new Error(`OIDC discovery at ${url} has no valid jwks_uri; set jwks_uri in the provider config`);
    }
    return document.jwks_uri;
  }

  private async getJson(url: string, what: string): Promise<unknown> {
    const timeout = AbortSignal.timeout(this.fetchTimeoutMs);
    const signal = AbortSignal.any([timeout, this.closing.signal]);
    try {
      const response = await this.fetchImpl(url, { signal, headers: { accept: 'application/json, application/jwk-set+json' } });
      if (response.status !== 200) {
        await response.body?.cancel().catch(() => undefined);
        throw new Error(`${what} at ${url} answered HTTP ${response.status}`);
      }
      const text = await readCapped(response, MAX_RESPONSE_BYTES);
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw new Error(`${what} at ${url} is not JSON`);
      }
    } catch (error) {
      if (timeout.aborted) throw new Error(`${what} request to ${url} timed out after ${this.fetchTimeoutMs} ms`, { cause: error });
      if (error instanceof Error && error.message.startsWith(what)) throw error;
      throw new Error(`${what} request to ${url} failed: ${describe(error)}`, { cause: error });
    }
  }

  private filePath(): string | undefined {
    return this.cacheDir ? join(this.cacheDir, jwksCacheFileName(this.issuer)) : undefined;
  }

  private async loadPersisted(): Promise<void> {
    const file = this.filePath();
    if (!file) return;
    let data: PersistedJwks;
    try {
      data = JSON.parse(await readFile(file, 'utf8')) as PersistedJwks;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.logger?.warn({ file, err: describe(error) }, 'ignoring unreadable persisted JWKS');
      return;
    }
    try {
      if (data.issuer !== this.issuer) throw new Error(`it belongs to issuer ${quote(data.issuer)}`);
      if (typeof data.fetchedAt !== 'number') throw new Error('it has no fetchedAt');
      const keys = usableKeys(data.jwks);
      if (keys.length === 0) throw new Error('it has no usable signing key');
      this.keys = keys;
      this.imported = new WeakMap();
      this.fetchedAt = data.fetchedAt;
      this.logger?.info({ file, keys: keys.length, fetchedAt: new Date(data.fetchedAt).toISOString() }, 'loaded persisted JWKS');
    } catch (error) {
      this.logger?.warn({ file, err: describe(error) }, 'ignoring persisted JWKS');
    }
  }

  /** Atomic: readers (another replica, the next start) see the old file or the new one, never half. */
  private async persist(data: PersistedJwks): Promise<void> {
    const file = this.filePath();
    if (!this.cacheDir || !file) return;
    const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await mkdir(this.cacheDir, { recursive: true, mode: 0o700 });
      await writeFile(tmp, `${JSON.stringify(data)}\n`, { mode: 0o600, flag: 'wx' });
      await rename(tmp, file);
    } catch (error) {
      await unlink(tmp).catch(() => undefined);
      this.logger?.warn({ file, err: describe(error) }, 'could not persist the JWKS; a restart during a provider outage will not have these keys');
    }
  }
}
