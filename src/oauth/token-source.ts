/**
 * Hands out a valid access token for one profile, refreshing it before it runs out. `gprxy token` and the
 * tunnel both draw from it. Three modes (DESIGN.md 2.1): tokens kept in a TokenStore from `gprxy login`,
 * the client credentials grant (CI, memory only), or a token given as is (GPRXY_TOKEN).
 *
 * Refresh happens when under 60 s or under 10 % of the token's lifetime remains, once at a time however
 * many callers ask (single-flight), and a rotated refresh token replaces the old one in the store.
 */
import type { JWTPayload } from 'jose';
import { LoginRequiredError, ProviderUnreachableError } from './errors.js';
import { decodeClaims } from './identity.js';
import type { OidcClient, TokenResult } from './oidc-client.js';
import type { StoredTokens, TokenStore } from './token-store.js';

/** The ID-token claims worth keeping for `gprxy status` (identity, not secrets). */
export function pickIdClaims(claims: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of ['sub', 'email', 'name', 'nickname', 'org_id']) if (claims[key] !== undefined) out[key] = claims[key];
  return out;
}

export interface AccessToken {
  readonly accessToken: string;
  /** Epoch ms; Infinity for a GPRXY_TOKEN that is not a JWT (its lifetime is unknown). */
  readonly expiresAt: number;
  readonly claims: JWTPayload;
}

export type TokenSourceMode =
  | { readonly kind: 'stored'; readonly store: TokenStore }
  | { readonly kind: 'client_credentials' }
  | { readonly kind: 'static'; readonly token: string };

export interface TokenSourceOptions {
  readonly profile: string;
  readonly mode: TokenSourceMode;
  /** Creates the OIDC client on first need: a fresh stored token costs no discovery round trip. */
  readonly client?: () => Promise<OidcClient>;
  /** Stored tokens from another issuer or client (the profile was reconfigured) are not used. */
  readonly expected?: { readonly issuer: string; readonly clientId: string };
  readonly now?: () => number;
  readonly logger?: { warn(message: string): void };
  /** Refresh when less than this remains (default 60 s)... */
  readonly minRemainingMs?: number;
  /** ...or less than this fraction of the lifetime (default 0.1). */
  readonly minRemainingFraction?: number;
}

interface Current {
  readonly accessToken: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
}

export class TokenSource {
  readonly #opts: TokenSourceOptions;
  readonly #now: () => number;
  #client: Promise<OidcClient> | undefined;
  #inflight: Promise<AccessToken> | undefined;
  /** Client credentials only: those tokens are never stored. */
  #memory: Current | undefined;

  constructor(opts: TokenSourceOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  get mode(): TokenSourceMode['kind'] {
    return this.#opts.mode.kind;
  }

  /** True when `token` should be replaced now. */
  needsRefresh(token: { issuedAt?: number; expiresAt?: number } | undefined): boolean {
    if (!token?.expiresAt) return true;
    const remaining = token.expiresAt - this.#now();
    const lifetime = token.issuedAt !== undefined ? token.expiresAt - token.issuedAt : 0;
    const margin = Math.max(this.#opts.minRemainingMs ?? 60_000, lifetime * (this.#opts.minRemainingFraction ?? 0.1));
    return remaining < margin;
  }

  /** A valid access token, refreshed if needed. Concurrent callers share one refresh. */
  getAccessToken(): Promise<AccessToken> {
    this.#inflight ??= this.#get().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  #oidc(): Promise<OidcClient> {
    if (!this.#opts.client) throw new Error('TokenSource needs a `client` factory for this mode');
    this.#client ??= this.#opts.client().catch((err: unknown) => {
      this.#client = undefined; // a failed discovery is retried on the next call
      throw err;
    });
    return this.#client;
  }

  async #get(): Promise<AccessToken> {
    const mode = this.#opts.mode;
    switch (mode.kind) {
      case 'static': {
        const claims = decodeClaims(mode.token);
        return { accessToken: mode.token, expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : Number.POSITIVE_INFINITY, claims };
      }
      case 'client_credentials': {
        if (!this.#memory || this.needsRefresh(this.#memory)) {
          const result = await (await this.#oidc()).clientCredentials();
          const issuedAt = this.#now();
          this.#memory = { accessToken: result.accessToken, issuedAt, expiresAt: issuedAt + (result.expiresAt - result.issuedAt) };
        }
        return this.#answer(this.#memory);
      }
      case 'stored':
        return this.#fromStore(mode.store);
    }
  }

  #answer(current: Current): AccessToken {
    return { accessToken: current.accessToken, expiresAt: current.expiresAt, claims: decodeClaims(current.accessToken) };
  }

  async #fromStore(store: TokenStore): Promise<AccessToken> {
    const { profile, expected } = this.#opts;
    const data = await store.load(profile);
    if (!data) throw new LoginRequiredError(`not logged in${profile === 'default' ? '' : ` (profile ${profile})`}: run gprxy login${profile === 'default' ? '' : ` --profile ${profile}`}`);
    if (expected && (data.issuer !== expected.issuer || data.clientId !== expected.clientId)) {
      throw new LoginRequiredError(`the stored login is for ${data.issuer} (client ${data.clientId}) but the profile now says ${expected.issuer} (client ${expected.clientId}): run gprxy login`);
    }
    const current = data.accessToken && data.accessTokenExpiresAt
      ? { accessToken: data.accessToken, issuedAt: data.accessTokenIssuedAt ?? data.accessTokenExpiresAt, expiresAt: data.accessTokenExpiresAt }
      : undefined;
    if (current && !this.needsRefresh(current)) return this.#answer(current);
    const stillValid = current !== undefined && current.expiresAt > this.#now();
    if (!data.refreshToken) {
      if (current && stillValid) return this.#answer(current);
      throw new LoginRequiredError('the access token expired and there is no refresh token to renew it: run gprxy login');
    }

    let result: TokenResult;
    try {
      result = await (await this.#oidc()).refresh(data.refreshToken);
    } catch (err) {
      // An unreachable provider does not end a session whose token still works: use it, say so.
      if (err instanceof ProviderUnreachableError && current && stillValid) {
        this.#opts.logger?.warn(`could not refresh the access token (${err.message.split(':')[0]}); using the current one until it expires`);
        return this.#answer(current);
      }
      throw err;
    }
    // Times on this source's clock (the `now` seam), which is what needsRefresh() compares against.
    const issuedAt = this.#now();
    const expiresAt = issuedAt + (result.expiresAt - result.issuedAt);
    const updated: StoredTokens = {
      ...data,
      refreshToken: result.refreshToken,
      accessToken: result.accessToken,
      accessTokenIssuedAt: issuedAt,
      accessTokenExpiresAt: expiresAt,
      scope: result.scope ?? data.scope,
      idClaims: Object.keys(result.idClaims).length ? pickIdClaims(result.idClaims) : data.idClaims,
    };
    await store.save(profile, updated);
    return { accessToken: result.accessToken, expiresAt, claims: result.claims };
  }
}
