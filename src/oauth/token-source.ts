/**
 * Hands out a valid access token for one profile, refreshing it before it runs out. `gprxy token` and the
 * tunnel both draw from it. Three modes (DESIGN.md 2.1): tokens kept in a TokenStore from `gprxy login`,
 * the client credentials grant (CI, memory only), or a token given as is (GPRXY_TOKEN).
 *
 * Refresh happens when refresh-policy.ts says so, once at a time however many callers ask (single-flight
 * in this process), and across processes under the profile's lock (profile-lock.ts): the store is read
 * again under the lock, so a token another process just refreshed is used instead of refreshing the
 * same rotating refresh token twice (which a provider with reuse detection answers by revoking the
 * login). A rotated refresh token replaces the old one in the store.
 */
import type { JWTPayload } from 'jose';
import { LoginRequiredError, ProviderUnreachableError } from './errors.js';
import { decodeClaims } from './identity.js';
import type { OidcClient, TokenResult } from './oidc-client.js';
import { NO_LOCK, type ProfileLock } from './profile-lock.js';
import { needsRefresh, refreshAt } from '../shared/refresh-policy.js';
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
  /** Epoch ms at which the refresh policy renews it (Infinity: never); schedulers use this, not their own rule. */
  readonly refreshAt: number;
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
  /** Serialises refreshes of the profile across processes (default: this process only). */
  readonly lock?: ProfileLock;
}

interface Current {
  readonly accessToken: string;
  readonly issuedAt: number | undefined;
  readonly expiresAt: number;
}

/** `run gprxy login [--profile X]`: the profile is named when it is not the default. */
function runLogin(profile: string): string {
  return `run gprxy login${profile === 'default' ? '' : ` --profile ${profile}`}`;
}

function loginRequired(profile: string): LoginRequiredError {
  return new LoginRequiredError(`not logged in${profile === 'default' ? '' : ` (profile ${profile})`}: ${runLogin(profile)}`);
}

function currentOf(data: StoredTokens): Current | undefined {
  return data.accessToken && data.accessTokenExpiresAt ? { accessToken: data.accessToken, issuedAt: data.accessTokenIssuedAt, expiresAt: data.accessTokenExpiresAt } : undefined;
}

export class TokenSource {
  readonly #opts: TokenSourceOptions;
  readonly #now: () => number;
  readonly #lock: ProfileLock;
  #client: Promise<OidcClient> | undefined;
  #inflight: Promise<AccessToken> | undefined;
  /** The provider was unreachable and that was said: said again only after a refresh worked in between. */
  #unreachableSaid = false;
  /** Client credentials only: those tokens are never stored. */
  #memory: Current | undefined;

  constructor(opts: TokenSourceOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#lock = opts.lock ?? NO_LOCK;
  }

  get mode(): TokenSourceMode['kind'] {
    return this.#opts.mode.kind;
  }

  /** True when `token` should be replaced now (refresh-policy.ts). */
  needsRefresh(token: { issuedAt?: number; expiresAt?: number } | undefined): boolean {
    return needsRefresh(token, this.#now());
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
        const expiresAt = typeof claims.exp === 'number' ? claims.exp * 1000 : Number.POSITIVE_INFINITY;
        // Nothing can renew a given token: no refresh time.
        return { accessToken: mode.token, expiresAt, refreshAt: Number.POSITIVE_INFINITY, claims };
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
    return { accessToken: current.accessToken, expiresAt: current.expiresAt, refreshAt: refreshAt(current), claims: decodeClaims(current.accessToken) };
  }

  /** The stored record, checked against the profile; throws login_required when there is none. */
  async #load(store: TokenStore): Promise<StoredTokens> {
    const { profile, expected } = this.#opts;
    const data = await store.load(profile);
    if (!data) throw loginRequired(profile);
    if (expected && (data.issuer !== expected.issuer || data.clientId !== expected.clientId)) {
      throw new LoginRequiredError(`the stored login is for ${data.issuer} (client ${data.clientId}) but the profile now says ${expected.issuer} (client ${expected.clientId}): ${runLogin(profile)}`);
    }
    return data;
  }

  async #fromStore(store: TokenStore): Promise<AccessToken> {
    // The common case needs no lock: the stored token is still fresh.
    const first = await this.#load(store);
    const current = currentOf(first);
    if (current && !this.needsRefresh(current)) return this.#answer(current);
    if (!first.refreshToken) return this.#withoutRefreshToken(current);
    return this.#lock.withLock(this.#opts.profile, () => this.#refreshLocked(store));
  }

  #withoutRefreshToken(current: Current | undefined): AccessToken {
    if (current && current.expiresAt > this.#now()) return this.#answer(current);
    throw new LoginRequiredError(`the access token expired and there is no refresh token to renew it: ${runLogin(this.#opts.profile)}`);
  }

  /** Under the profile's lock: read again (another process may have refreshed or logged out), then refresh. */
  async #refreshLocked(store: TokenStore): Promise<AccessToken> {
    const { profile } = this.#opts;
    const data = await this.#load(store);
    const current = currentOf(data);
    if (current && !this.needsRefresh(current)) return this.#answer(current);
    if (!data.refreshToken) return this.#withoutRefreshToken(current);
    const stillValid = current !== undefined && current.expiresAt > this.#now();

    let result: TokenResult;
    try {
      result = await (await this.#oidc()).refresh(data.refreshToken);
    } catch (err) {
      // invalid_grant: if a process that does not take the lock (an older gprxy) refreshed meanwhile,
      // the store holds its newer token: use that rather than tell the person to log in again.
      if (err instanceof LoginRequiredError) {
        const again = await store.load(profile);
        const newer = again && again.refreshToken !== data.refreshToken ? currentOf(again) : undefined;
        if (newer && newer.expiresAt > this.#now()) return this.#answer(newer);
        // The OIDC client does not know the profile: name it in the one line the person acts on.
        throw new LoginRequiredError(`the stored login${profile === 'default' ? '' : ` (profile ${profile})`} has expired or was revoked: ${runLogin(profile)}`, { cause: err });
      }
      // An unreachable provider does not end a session whose token still works: use it, say so.
      if (err instanceof ProviderUnreachableError && current && stillValid) {
        // Once per outage: every retry (the tunnel retries with backoff, each new connection asks) would repeat it.
        if (!this.#unreachableSaid) this.#opts.logger?.warn(`could not refresh the access token (${err.message}); using the current one until it expires`);
        this.#unreachableSaid = true;
        return this.#answer(current);
      }
      throw err;
    }
    this.#unreachableSaid = false;
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
    return { accessToken: result.accessToken, expiresAt, refreshAt: refreshAt({ issuedAt, expiresAt }), claims: result.claims };
  }
}
