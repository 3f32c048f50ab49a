/**
 * Verifies OAuth access tokens (JWTs) presented as passwords. Order matters for cost and safety:
 * cheap shape checks first (size, three base64url parts), then the unverified issuer picks the provider and
 * its algorithm allow-list (none and HS* never: an HMAC "verified" with a public key is the classic
 * confusion attack), then jose's jwtVerify does the signature and claim checks. A verified token is cached
 * by its hash until it expires, so a connection storm costs one signature check per token, not per connection.
 */
import { createHash } from 'node:crypto';
import {
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type ProtectedHeaderParameters,
} from 'jose';
import type { Logger } from 'pino';
import type { ProviderConfig } from '../config/proxy-config.js';
import { fetchWithCa } from '../net/ca-fetch.js';
import { TokenError, quote } from './errors.js';
import { JwksCache, type JwksStats } from './jwks-cache.js';
import { deepFreeze } from '../shared/freeze.js';

export interface VerifiedToken {
  readonly claims: JWTPayload & Record<string, unknown>;
  readonly issuer: string;
  readonly provider: ProviderConfig;
  /** exp in ms since the epoch. */
  readonly expiresAt: number;
  /** 12 hex characters of sha256(token): identifies the token in logs without revealing it. */
  readonly tokenId: string;
  readonly jti?: string;
}

export interface TokenVerifierOptions {
  readonly providers: readonly ProviderConfig[];
  readonly jwks: { readonly cacheTtlMs: number; readonly cacheDir?: string };
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
  readonly logger?: Logger;
  /** Bound of the verified-token cache (default 10,000). */
  readonly cacheMaxEntries?: number;
  /** Passed to each JwksCache; seams for tests. */
  readonly unknownKidCooldownMs?: number;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  readonly fetchTimeoutMs?: number;
}

export interface TokenVerifierStats {
  readonly cacheHits: number;
  readonly cacheMisses: number;
  /** Signature verifications actually performed. */
  readonly verifications: number;
  readonly cacheEntries: number;
}

/** An access token is a few KB; anything larger is a password or an attack, refused before any parsing. */
export const MAX_TOKEN_BYTES = 16 * 1024;
/** Clock skew allowed on exp and nbf, for verification and for cache hits alike. */
export const CLOCK_TOLERANCE_MS = 30_000;
const DEFAULT_CACHE_MAX_ENTRIES = 10_000;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const FRESH_TOKEN_HINT = 'run gprxy login (or gprxy token) for a fresh one';

function iso(seconds: unknown): string {
  return typeof seconds === 'number' && Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString().replace('.000Z', 'Z') : quote(seconds);
}

function malformed(message: string, cause?: unknown): TokenError {
  return new TokenError('token_malformed', message, cause === undefined ? undefined : { cause });
}

/** Scopes from `scope` (space separated, RFC 8693/9068) or `scp` (an array, or a string as Azure AD sends). */
export function tokenScopes(claims: Record<string, unknown>): string[] {
  const scopes: string[] = [];
  for (const value of [claims.scope, claims.scp]) {
    if (typeof value === 'string') scopes.push(...value.split(' ').filter(Boolean));
    else if (Array.isArray(value)) scopes.push(...value.filter((s): s is string => typeof s === 'string'));
  }
  return scopes;
}

export class TokenVerifier {
  private readonly providers: readonly ProviderConfig[];
  private readonly byIssuer = new Map<string, { provider: ProviderConfig; jwks: JwksCache }>();
  private readonly now: () => number;
  private readonly logger: Logger | undefined;
  private readonly maxEntries: number;
  /** Insertion-ordered: a hit re-inserts, eviction takes the first (least recently used) entry. */
  private readonly cache = new Map<string, VerifiedToken>();
  /** Concurrent verifications of one token share the work. */
  private readonly pending = new Map<string, Promise<VerifiedToken>>();
  private cacheHits = 0;
  private cacheMisses = 0;
  private verifications = 0;

  constructor(opts: TokenVerifierOptions) {
    this.providers = opts.providers;
    this.now = opts.now ?? Date.now;
    this.logger = opts.logger;
    this.maxEntries = Math.max(1, opts.cacheMaxEntries ?? DEFAULT_CACHE_MAX_ENTRIES);
    for (const provider of opts.providers) {
      if (this.byIssuer.has(provider.issuer)) continue;
      const fetchImpl = opts.fetch ?? (provider.ca ? fetchWithCa(provider.ca) : undefined);
      const jwks = new JwksCache({
        issuer: provider.issuer,
        ...(provider.jwksUri ? { jwksUri: provider.jwksUri } : {}),
        ttlMs: opts.jwks.cacheTtlMs,
        ...(opts.jwks.cacheDir ? { cacheDir: opts.jwks.cacheDir } : {}),
        ...(fetchImpl ? { fetch: fetchImpl } : {}),
        now: this.now,
        ...(opts.logger ? { logger: opts.logger } : {}),
        ...(opts.unknownKidCooldownMs !== undefined ? { unknownKidCooldownMs: opts.unknownKidCooldownMs } : {}),
        ...(opts.backoff ? { backoff: opts.backoff } : {}),
        ...(opts.fetchTimeoutMs !== undefined ? { fetchTimeoutMs: opts.fetchTimeoutMs } : {}),
      });
      this.byIssuer.set(provider.issuer, { provider, jwks });
    }
  }

  /**
   * Loads every provider's keys. Rejects with jwks_unavailable when some provider has none (neither fetched
   * nor persisted); its cache keeps retrying in the background, so a caller may log that and carry on.
   */
  async start(): Promise<void> {
    const entries = [...this.byIssuer.values()];
    const results = await Promise.allSettled(entries.map((e) => e.jwks.start()));
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new TokenError('jwks_unavailable', failures.map((f) => f.message).join('\n'));
  }

  async verify(token: string): Promise<VerifiedToken> {
    if (typeof token !== 'string' || token.length === 0) {
      throw malformed(`the password is empty, not an access token; ${FRESH_TOKEN_HINT}`);
    }
    // String length never exceeds UTF-8 byte length, so the cheap check first.
    if (token.length > MAX_TOKEN_BYTES || Buffer.byteLength(token) > MAX_TOKEN_BYTES) {
      throw new TokenError(
        'token_too_large',
        `the password is ${Buffer.byteLength(token)} bytes, more than an access token's ${MAX_TOKEN_BYTES}; connect with an access token (gprxy token)`,
      );
    }
    // The verified-token cache first: only tokens that passed every check below are in it, and a
    // connection storm with the same token then costs one hash and one map lookup.
    const hash = createHash('sha256').update(token).digest('hex');
    const cached = this.cache.get(hash);
    if (cached) {
      this.cache.delete(hash);
      if (this.now() < cached.expiresAt + CLOCK_TOLERANCE_MS) {
        this.cache.set(hash, cached);
        this.cacheHits++;
        return cached;
      }
      throw new TokenError('token_expired', `token expired at ${iso(cached.expiresAt / 1000)}; ${FRESH_TOKEN_HINT}`);
    }
    this.cacheMisses++;

    const parts = token.split('.');
    if (parts.length === 5) {
      throw malformed('the password is an encrypted token (JWE); the proxy needs a signed JWT access token (configure the API to issue signed tokens)');
    }
    if (parts.length !== 3) {
      throw malformed(`the password is not an access token (a JWT has three base64url parts separated by dots); ${FRESH_TOKEN_HINT}`);
    }
    // The signature may be empty here only so that an unsigned ("alg":"none") token is named as such below.
    if (!BASE64URL.test(parts[0]!) || !BASE64URL.test(parts[1]!) || !(parts[2] === '' || BASE64URL.test(parts[2]!))) {
      throw malformed('the password is not an access token (a JWT part is empty or not base64url); use the token exactly as gprxy token prints it');
    }

    const inflight = this.pending.get(hash);
    if (inflight) return inflight;
    const verification = this.verifyUncached(token, hash).finally(() => this.pending.delete(hash));
    this.pending.set(hash, verification);
    return verification;
  }

  stats(): TokenVerifierStats {
    return { cacheHits: this.cacheHits, cacheMisses: this.cacheMisses, verifications: this.verifications, cacheEntries: this.cache.size };
  }

  /** Per-issuer JWKS cache state, for metrics. */
  jwksStats(): Record<string, JwksStats> {
    return Object.fromEntries([...this.byIssuer].map(([issuer, e]) => [issuer, e.jwks.stats()]));
  }

  close(): void {
    for (const { jwks } of this.byIssuer.values()) jwks.close();
    this.cache.clear();
  }

  private async verifyUncached(token: string, hash: string): Promise<VerifiedToken> {
    let header: ProtectedHeaderParameters;
    let unverified: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
    } catch (error) {
      throw malformed('the token header is not base64url-encoded JSON; this is not an access token', error);
    }
    try {
      unverified = decodeJwt(token);
    } catch (error) {
      throw malformed('the token payload is not a base64url-encoded JSON object; this is not an access token', error);
    }

    const alg = header.alg;
    if (typeof alg !== 'string' || alg === '') throw malformed('the token header names no algorithm (alg); this is not a signed access token');
    if (alg.toLowerCase() === 'none') throw new TokenError('token_algorithm', 'algorithm none (an unsigned token) is never accepted');
    if (token.endsWith('.')) throw malformed('the token has no signature; the proxy accepts only signed access tokens');
    if (header.kid !== undefined && typeof header.kid !== 'string') throw malformed('the token header has a non-string key id (kid)');

    const iss = unverified.iss;
    if (typeof iss !== 'string') throw new TokenError('token_issuer', `the token has no issuer (iss claim); ${this.configuredIssuers()}`);
    const entry = this.byIssuer.get(iss);
    if (!entry) {
      const near = this.providers.find((p) => p.issuer.replace(/\/$/, '') === iss.replace(/\/$/, ''));
      const hint = near ? `; it differs from ${quote(near.issuer)} only by a trailing slash: set the issuer exactly as the token has it` : '';
      throw new TokenError('token_issuer', `token issuer ${quote(iss)} is not a configured provider (${this.configuredIssuers()})${hint}`);
    }
    const { provider, jwks } = entry;
    // HS* is refused even if misconfigured into the allow-list: the "secret" would be the public key.
    if (/^HS/i.test(alg) || !provider.algorithms.includes(alg)) {
      throw new TokenError('token_algorithm', `algorithm ${quote(alg)} is not allowed (allowed: ${provider.algorithms.filter((a) => !/^HS/i.test(a)).join(', ')})`);
    }

    const key = await jwks.getKey({ ...(header.kid !== undefined ? { kid: header.kid } : {}), alg });
    const now = this.now();
    this.verifications++;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, key, {
        issuer: provider.issuer,
        audience: [...provider.audience],
        algorithms: [alg],
        clockTolerance: CLOCK_TOLERANCE_MS / 1000,
        currentDate: new Date(now),
        requiredClaims: ['exp'],
      }));
    } catch (error) {
      throw this.mapJoseError(error, unverified, provider, header.kid, now);
    }

    // jose does not check iat; a token issued in the future means one of the clocks is wrong.
    if (typeof payload.iat === 'number' && payload.iat * 1000 > now + CLOCK_TOLERANCE_MS) {
      throw new TokenError(
        'token_not_yet_valid',
        `token was issued at ${iso(payload.iat)}, in the future by the proxy's clock (${new Date(now).toISOString()}); check the clocks`,
      );
    }

    if (provider.requiredScopes.length > 0) {
      const scopes = tokenScopes(payload);
      const missing = provider.requiredScopes.filter((s) => !scopes.includes(s));
      if (missing.length > 0) {
        throw new TokenError(
          'token_scope',
          `token lacks the required scope${missing.length > 1 ? 's' : ''} ${missing.join(' ')} (token scopes: ${scopes.length ? scopes.map((s) => quote(s, 60)).join(' ') : 'none'}); request ${missing.length > 1 ? 'them' : 'it'} when logging in`,
        );
      }
    }

    // Cached and shared between connections: nobody may edit it. The provider is config, frozen there.
    const verified: VerifiedToken = Object.freeze({
      claims: deepFreeze(payload) as JWTPayload & Record<string, unknown>,
      issuer: provider.issuer,
      provider,
      expiresAt: (payload.exp as number) * 1000,
      tokenId: hash.slice(0, 12),
      ...(typeof payload.jti === 'string' ? { jti: payload.jti } : {}),
    });
    this.remember(hash, verified);
    this.logger?.debug({ event: 'token_verified', token: verified.tokenId, issuer: verified.issuer, exp: iso(payload.exp) }, 'token verified');
    return verified;
  }

  private remember(hash: string, verified: VerifiedToken): void {
    this.cache.set(hash, verified);
    while (this.cache.size > this.maxEntries) {
      const oldest = this.cache.keys().next().value as string;
      this.cache.delete(oldest);
    }
  }

  private configuredIssuers(): string {
    return `configured: ${this.providers.map((p) => p.issuer).join(', ')}`;
  }

  private mapJoseError(error: unknown, unverified: JWTPayload, provider: ProviderConfig, kid: string | undefined, now: number): TokenError {
    if (error instanceof TokenError) return error;
    if (error instanceof joseErrors.JWTExpired) {
      return new TokenError('token_expired', `token expired at ${iso(unverified.exp)}; ${FRESH_TOKEN_HINT}`, { cause: error });
    }
    if (error instanceof joseErrors.JWTClaimValidationFailed) {
      const claim = error.claim;
      if (claim === 'aud') {
        const aud = unverified.aud;
        const got = aud === undefined ? 'missing' : Array.isArray(aud) ? aud.map((a) => quote(a)).join(', ') : quote(aud);
        const expected = provider.audience.map((a) => quote(a)).join(' or ');
        return new TokenError('token_audience', `token audience is ${got}, expected ${expected}; request a token for the proxy's API audience`, { cause: error });
      }
      if (claim === 'iss') {
        return new TokenError('token_issuer', `token issuer ${quote(unverified.iss)} is not ${quote(provider.issuer)}`, { cause: error });
      }
      if (claim === 'nbf' && error.reason === 'check_failed') {
        return new TokenError(
          'token_not_yet_valid',
          `token is not valid before ${iso(unverified.nbf)} (the proxy's clock says ${new Date(now).toISOString()}); check the clocks or wait`,
          { cause: error },
        );
      }
      if (claim === 'exp' && error.reason === 'missing') {
        return malformed('the token has no expiry (exp claim); the proxy accepts only tokens that expire', error);
      }
      return malformed(`the token's ${quote(claim, 40)} claim is ${error.reason === 'missing' ? 'missing' : 'invalid'}`, error);
    }
    if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
      return new TokenError(
        'token_signature',
        `token signature does not verify with key id ${quote(kid)} of ${provider.issuer}: the token was altered or signed by someone else`,
        { cause: error },
      );
    }
    if (error instanceof joseErrors.JOSEAlgNotAllowed) {
      return new TokenError('token_algorithm', `algorithm is not allowed (allowed: ${provider.algorithms.join(', ')})`, { cause: error });
    }
    if (error instanceof joseErrors.JWSInvalid || error instanceof joseErrors.JWTInvalid || error instanceof joseErrors.JOSENotSupported) {
      return malformed(`the token is not a valid signed JWT: ${error.message}`, error);
    }
    // A key unusable for this token (e.g. an RSA key under 2048 bits) or an unexpected failure: refuse, and log it.
    this.logger?.warn({ event: 'token_verification_error', err: error instanceof Error ? error.message : String(error), issuer: provider.issuer, kid }, 'token verification failed unexpectedly');
    return new TokenError('token_signature', `the token could not be verified with key id ${quote(kid)} of ${provider.issuer}`, { cause: error });
  }
}
