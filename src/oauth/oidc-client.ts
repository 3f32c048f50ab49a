/**
 * The OAuth/OIDC flows of the CLI, on openid-client 6: discovery, device authorization (RFC 8628),
 * authorization code + PKCE on a loopback redirect, client credentials, refresh and revocation (RFC 7009).
 * Every failure comes out as one of ./errors.js with a next step; tokens never appear in messages.
 *
 * The API is named twice on purpose: `audience` (what Auth0 requires) and `resource` (RFC 8707, when the
 * audience is a URI), so one profile works against Auth0 and standards-based providers alike.
 */
import * as oidc from 'openid-client';
import type { JWTPayload } from 'jose';
import {
  AccessDeniedError,
  ClockSkewError,
  DeviceCodeExpiredError,
  DiscoveryFailedError,
  InvalidAudienceError,
  LoginAbortedError,
  LoginRequiredError,
  LoginTimeoutError,
  OAuthError,
  ProviderError,
  ProviderUnreachableError,
  UnknownClientError,
} from './errors.js';
import { decodeClaims } from './identity.js';
import { startLoopbackReceiver } from './loopback.js';

export interface TokenResult {
  readonly accessToken: string;
  readonly refreshToken: string | undefined;
  readonly idToken: string | undefined;
  readonly scope: string | undefined;
  /** Epoch ms on this machine's clock; expiresAt comes from expires_in, so a skewed clock cannot break refresh timing. */
  readonly issuedAt: number;
  readonly expiresAt: number;
  /** The access token's payload (decoded, not verified: the proxy verifies). {} for opaque tokens. */
  readonly claims: JWTPayload;
  /** The ID token's claims, when one came back. */
  readonly idClaims: Record<string, unknown>;
}

export interface DeviceAuthorization {
  readonly userCode: string;
  readonly verificationUri: string;
  readonly verificationUriComplete: string | undefined;
  readonly expiresIn: number;
  /** Seconds between polls the provider asked for (5 when it said nothing, as RFC 8628 prescribes). */
  readonly interval: number;
  /** @internal the provider's response, needed to poll. */
  readonly response: oidc.DeviceAuthorizationResponse;
}

export interface OidcClientOptions {
  readonly issuer: string;
  readonly clientId: string;
  /** Only for the client credentials grant (CI). */
  readonly clientSecret?: string;
  readonly audience?: string;
  readonly scopes: string;
  /** e.g. fetchWithCa(profile CA). */
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
  /** Per HTTP request. */
  readonly timeoutSeconds?: number;
  /** A token issued further than this from our clock is a clock problem; default 300 s. */
  readonly maxClockSkewSeconds?: number;
  /** What to tell the person to fix a bad client id / secret (differs between profile and CI variables). */
  readonly clientHint?: string;
}

const NETWORK_CODES = /^(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EPIPE|UND_ERR_\w+)$/;
const TLS_CODES = /^(CERT_\w+|UNABLE_TO_\w+|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|ERR_TLS_CERT_ALTNAME_INVALID|ERR_SSL_\w+)$/;

/** The first `code` found along an error's cause chain (e.g. ECONNREFUSED under "fetch failed"). */
function causeCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (NETWORK_CODES.test(code) || TLS_CODES.test(code))) return code;
  }
  return undefined;
}

function isAbort(err: unknown): boolean {
  const name = (err as { name?: string })?.name;
  return name === 'AbortError' || name === 'TimeoutError';
}

function short(text: unknown): string {
  return String(text ?? '').replace(/\s+/g, ' ').slice(0, 200);
}

export class OidcClient {
  readonly #config: oidc.Configuration;
  readonly #opts: OidcClientOptions;
  readonly #now: () => number;

  private constructor(config: oidc.Configuration, opts: OidcClientOptions) {
    this.#config = config;
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** OIDC discovery (an Auth0 issuer https://DOMAIN/ works as is). */
  static async discover(opts: OidcClientOptions): Promise<OidcClient> {
    const now = opts.now ?? Date.now;
    const metadata: Partial<oidc.ClientMetadata> = {
      // Lets openid-client judge ID-token times by the same clock as we do (the `now` seam).
      [oidc.clockSkew]: Math.round((now() - Date.now()) / 1000),
    };
    const auth = opts.clientSecret ? oidc.ClientSecretPost(opts.clientSecret) : oidc.None();
    let issuerUrl: URL;
    try {
      issuerUrl = new URL(opts.issuer);
    } catch {
      throw new DiscoveryFailedError(`issuer "${opts.issuer}" is not a URL: fix it with gprxy configure --issuer`);
    }
    try {
      const config = await oidc.discovery(issuerUrl, opts.clientId, metadata, auth, {
        ...(opts.fetch ? { [oidc.customFetch]: opts.fetch as oidc.CustomFetch } : {}),
        timeout: opts.timeoutSeconds ?? 30,
      });
      return new OidcClient(config, opts);
    } catch (err) {
      const mapped = mapNetworkError(err, opts.issuer);
      if (mapped) throw mapped;
      throw new DiscoveryFailedError(
        `OIDC discovery at ${new URL('.well-known/openid-configuration', issuerUrl.href.endsWith('/') ? issuerUrl : `${issuerUrl.href}/`).href} failed (${short((err as Error).message)}): check the issuer with gprxy configure --issuer`,
        { cause: err },
      );
    }
  }

  get issuer(): string {
    return this.#config.serverMetadata().issuer;
  }

  get supportsRevocation(): boolean {
    return Boolean(this.#config.serverMetadata().revocation_endpoint);
  }

  get supportsDeviceFlow(): boolean {
    return Boolean(this.#config.serverMetadata().device_authorization_endpoint);
  }

  #audienceParams(): Record<string, string> {
    const audience = this.#opts.audience;
    if (!audience) return {};
    return URL.canParse(audience) ? { audience, resource: audience } : { audience };
  }

  #map(err: unknown, step: 'device' | 'poll' | 'browser' | 'client_credentials' | 'refresh' | 'revoke'): Error {
    if (err instanceof OAuthError) return err;
    const network = mapNetworkError(err, this.#opts.issuer);
    if (network) return network;
    const body = err as { error?: unknown; error_description?: unknown; code?: unknown; status?: unknown };
    const error = typeof body.error === 'string' ? body.error : undefined;
    const description = short(body.error_description);
    const hint = this.#opts.clientHint ?? 'check it with gprxy configure --client-id';
    switch (error) {
      case 'invalid_client':
      case 'unauthorized_client':
        return new UnknownClientError(`the provider refused client "${this.#opts.clientId}" (${error}${description ? `: ${description}` : ''}): ${hint}`, { cause: err });
      case 'access_denied':
        return new AccessDeniedError('the sign-in was denied at the provider: run gprxy login again and choose Allow, or ask your administrator for access', { cause: err });
      case 'expired_token':
        return new DeviceCodeExpiredError('the device code expired before it was approved: run gprxy login again and approve it sooner', { cause: err });
      case 'invalid_target':
        return new InvalidAudienceError(`the provider does not issue tokens for audience "${this.#opts.audience ?? '(none)'}": fix it with gprxy configure --audience`, { cause: err });
      case 'invalid_grant':
        if (step === 'refresh') return new LoginRequiredError('the stored login has expired or was revoked: run gprxy login', { cause: err });
        break;
      default:
        break;
    }
    if (body.code === 'OAUTH_JWT_TIMESTAMP_CHECK_FAILED') {
      return new ClockSkewError("the provider's tokens look expired or not yet valid by this computer's clock: fix the system clock (enable NTP, e.g. timedatectl set-ntp true), then try again", { cause: err });
    }
    if (error) return new ProviderError(error, `the provider refused the ${step.replace('_', ' ')} request (${error}${description ? `: ${description}` : ''}): run the command again with --debug for details`, { cause: err });
    return new ProviderError('unexpected_response', `unexpected answer from the provider during ${step.replace('_', ' ')} (${short((err as Error)?.message)}): run the command again with --debug for details`, { cause: err });
  }

  #result(tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers, previousRefreshToken?: string): TokenResult {
    const now = this.#now();
    const claims = decodeClaims(tokens.access_token);
    const idClaims = (tokens.id_token ? (tokens.claims() as Record<string, unknown> | undefined) : undefined) ?? {};
    const iat = typeof claims.iat === 'number' ? claims.iat : typeof idClaims.iat === 'number' ? idClaims.iat : undefined;
    const maxSkew = this.#opts.maxClockSkewSeconds ?? 300;
    if (iat !== undefined && Math.abs(iat * 1000 - now) > maxSkew * 1000) {
      const minutes = Math.round(Math.abs(iat * 1000 - now) / 60_000);
      throw new ClockSkewError(`this computer's clock is about ${minutes} minutes ${iat * 1000 > now ? 'behind' : 'ahead of'} the provider's: fix the system clock (enable NTP, e.g. timedatectl set-ntp true), then try again`);
    }
    const lifetime = typeof tokens.expires_in === 'number' ? tokens.expires_in : typeof claims.exp === 'number' && iat !== undefined ? claims.exp - iat : 300;
    return Object.freeze({
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token ?? previousRefreshToken,
      idToken: tokens.id_token,
      scope: tokens.scope,
      issuedAt: now,
      expiresAt: now + lifetime * 1000,
      claims,
      idClaims,
    });
  }

  async startDeviceAuthorization(): Promise<DeviceAuthorization> {
    if (!this.supportsDeviceFlow) {
      throw new ProviderError('unsupported_grant_type', 'this provider offers no device flow: run gprxy login --browser');
    }
    let response: oidc.DeviceAuthorizationResponse;
    try {
      response = await oidc.initiateDeviceAuthorization(this.#config, { scope: this.#opts.scopes, ...this.#audienceParams() });
    } catch (err) {
      throw this.#map(err, 'device');
    }
    return Object.freeze({
      userCode: response.user_code,
      verificationUri: response.verification_uri,
      verificationUriComplete: response.verification_uri_complete,
      expiresIn: response.expires_in,
      interval: response.interval ?? 5,
      response,
    });
  }

  /**
   * Polls until the person approves: honours the provider's interval and slow_down (openid-client adds
   * 5 s per slow_down), stops at expires_in, and at `signal` (Ctrl+C). `intervalSeconds` overrides the
   * provider's interval (tests: oidc-provider sends none, so the default would be 5 s).
   */
  async pollDeviceAuthorization(device: DeviceAuthorization, opts: { signal?: AbortSignal; intervalSeconds?: number } = {}): Promise<TokenResult> {
    const expiry = AbortSignal.timeout(device.expiresIn * 1000);
    const signal = opts.signal ? AbortSignal.any([opts.signal, expiry]) : expiry;
    try {
      const tokens = await oidc.pollDeviceAuthorizationGrant(
        this.#config,
        { ...device.response, interval: opts.intervalSeconds ?? device.interval },
        undefined,
        { signal },
      );
      return this.#result(tokens);
    } catch (err) {
      if (opts.signal?.aborted) throw new LoginAbortedError('login cancelled', { cause: err });
      if (expiry.aborted) {
        throw new DeviceCodeExpiredError(`the device code expired after ${Math.round(device.expiresIn / 60)} minutes without approval: run gprxy login again`, { cause: err });
      }
      throw this.#map(err, 'poll');
    }
  }

  /**
   * Authorization code + PKCE (S256) + state, redirected to a one-shot server on 127.0.0.1.
   * `open` shows the URL to the person (opens a browser, or prints it).
   */
  async authorizeWithBrowser(opts: { open: (url: string) => Promise<void> | void; signal?: AbortSignal; timeoutMs?: number }): Promise<TokenResult> {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const receiver = await startLoopbackReceiver({ expectedState: state });
    const timeoutMs = opts.timeoutMs ?? 5 * 60_000;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const url = oidc.buildAuthorizationUrl(this.#config, {
        redirect_uri: receiver.redirectUri,
        scope: this.#opts.scopes,
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        ...this.#audienceParams(),
      });
      await opts.open(url.href);
      const callbackUrl = await new Promise<URL>((resolve, reject) => {
        timer = setTimeout(() => reject(new LoginTimeoutError(`no answer from the browser within ${Math.round(timeoutMs / 60_000)} minutes: run gprxy login again, or use the device flow (gprxy login --device)`)), timeoutMs);
        onAbort = () => reject(new LoginAbortedError('login cancelled'));
        if (opts.signal?.aborted) onAbort();
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        receiver.callback.then(resolve, reject);
      });
      try {
        return this.#result(await oidc.authorizationCodeGrant(this.#config, callbackUrl, { pkceCodeVerifier: verifier, expectedState: state }));
      } catch (err) {
        throw this.#map(err, 'browser');
      }
    } finally {
      clearTimeout(timer);
      if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
      await receiver.close();
    }
  }

  async clientCredentials(): Promise<TokenResult> {
    try {
      return this.#result(await oidc.clientCredentialsGrant(this.#config, this.#audienceParams()));
    } catch (err) {
      throw this.#map(err, 'client_credentials');
    }
  }

  /** The new refresh token when the provider rotated it, else the one given. */
  async refresh(refreshToken: string): Promise<TokenResult> {
    try {
      return this.#result(await oidc.refreshTokenGrant(this.#config, refreshToken, this.#audienceParams()), refreshToken);
    } catch (err) {
      throw this.#map(err, 'refresh');
    }
  }

  /** RFC 7009. False when the provider has no revocation endpoint. */
  async revoke(token: string, hint: 'refresh_token' | 'access_token' = 'refresh_token'): Promise<boolean> {
    if (!this.supportsRevocation) return false;
    try {
      await oidc.tokenRevocation(this.#config, token, { token_type_hint: hint });
      return true;
    } catch (err) {
      throw this.#map(err, 'revoke');
    }
  }
}

function mapNetworkError(err: unknown, issuer: string): OAuthError | undefined {
  const code = causeCode(err);
  if (code && TLS_CODES.test(code)) {
    return new ProviderUnreachableError(`the TLS certificate of ${issuer} is not trusted (${code}): pass the issuing CA with gprxy configure --ca FILE or GPRXY_CA`, { cause: err });
  }
  if (code || (err instanceof TypeError && /fetch failed/i.test(err.message)) || isAbort(err)) {
    return new ProviderUnreachableError(`cannot reach the OIDC provider at ${issuer} (${code ?? (isAbort(err) ? 'timed out' : 'network error')}): check your network and the issuer URL (gprxy configure --issuer)`, { cause: err });
  }
  return undefined;
}
