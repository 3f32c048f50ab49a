/**
 * When an access token is renewed: the one policy of the CLI. `gprxy token`, the token source and the
 * tunnel's keeper all ask `refreshAt()`, so the keeper's timer fires exactly when the source agrees to
 * refresh (two policies that disagreed made the keeper re-read the keychain every 250 ms for minutes).
 *
 * Imports nothing of ours, so the token source (oauth) and the tunnel's keeper share it.
 *
 * Renew at 80 % of the lifetime, or 60 s before expiry when that comes first (a one-hour token: at
 * 48 min), but never before half the lifetime, so very short tokens (tests, strict providers) are not
 * renewed in a tight loop (a 6 s token: at 3 s).
 */

export const REFRESH_AT_FRACTION = 0.8;
export const REFRESH_BEFORE_EXPIRY_MS = 60_000;
export const REFRESH_NOT_BEFORE_FRACTION = 0.5;

export interface TokenTimes {
  /** Epoch ms on this machine's clock; unknown for tokens that came without it. */
  readonly issuedAt?: number;
  readonly expiresAt?: number;
}

/** Epoch ms at which the token should be replaced; Infinity for a token without expiry. */
export function refreshAt(token: TokenTimes): number {
  const { issuedAt, expiresAt } = token;
  if (expiresAt === undefined) return Number.NEGATIVE_INFINITY;
  if (!Number.isFinite(expiresAt)) return Number.POSITIVE_INFINITY;
  if (issuedAt === undefined || issuedAt >= expiresAt) return expiresAt - REFRESH_BEFORE_EXPIRY_MS;
  const lifetime = expiresAt - issuedAt;
  return Math.max(issuedAt + lifetime * REFRESH_NOT_BEFORE_FRACTION, Math.min(issuedAt + lifetime * REFRESH_AT_FRACTION, expiresAt - REFRESH_BEFORE_EXPIRY_MS));
}

/** True when `token` should be replaced at `now` (always for a token we know nothing about). */
export function needsRefresh(token: TokenTimes | undefined, now: number): boolean {
  if (!token?.expiresAt) return true;
  return now >= refreshAt(token);
}
