/**
 * Errors of the CLI's OAuth side. Each message is one line that says what happened and what to do next;
 * none ever contains a token or secret. Tests assert `code`.
 */
import { GprxyError } from '../shared/errors.js';

export type OAuthErrorCode =
  | 'provider_unreachable'
  | 'discovery_failed'
  | 'unknown_client'
  | 'access_denied'
  | 'device_code_expired'
  | 'login_timeout'
  | 'login_aborted'
  | 'login_required'
  | 'clock_skew'
  | 'invalid_audience'
  | 'keychain_unavailable'
  | 'token_store_failed'
  | 'oauth_error';

export abstract class OAuthError extends GprxyError<OAuthErrorCode> {}

export class ProviderUnreachableError extends OAuthError {
  readonly code = 'provider_unreachable' as const;
}

export class DiscoveryFailedError extends OAuthError {
  readonly code = 'discovery_failed' as const;
}

export class UnknownClientError extends OAuthError {
  readonly code = 'unknown_client' as const;
}

export class AccessDeniedError extends OAuthError {
  readonly code = 'access_denied' as const;
}

export class DeviceCodeExpiredError extends OAuthError {
  readonly code = 'device_code_expired' as const;
}

export class LoginTimeoutError extends OAuthError {
  readonly code = 'login_timeout' as const;
}

/** The person pressed Ctrl+C (or the caller's signal aborted). Commands exit 130 on it (src/cli/exit-codes.ts). */
export class LoginAbortedError extends OAuthError {
  readonly code = 'login_aborted' as const;
}

/** No usable refresh token: never logged in, logged out, or the provider refused it (expired/revoked). */
export class LoginRequiredError extends OAuthError {
  readonly code = 'login_required' as const;
}

export class ClockSkewError extends OAuthError {
  readonly code = 'clock_skew' as const;
}

export class InvalidAudienceError extends OAuthError {
  readonly code = 'invalid_audience' as const;
}

export class KeychainUnavailableError extends OAuthError {
  readonly code = 'keychain_unavailable' as const;
}

export class TokenStoreError extends OAuthError {
  readonly code = 'token_store_failed' as const;
}

/** Any other refusal by the provider, with its `error` code. */
export class ProviderError extends OAuthError {
  readonly code = 'oauth_error' as const;
  readonly providerError: string;
  constructor(providerError: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.providerError = providerError;
  }
}
