/**
 * Keeps an access token ready for the tunnel so a new local connection never waits on the provider:
 * the token is renewed in the background at 80 % of its lifetime or 60 s before expiry, whichever comes
 * first (but not before half its lifetime); failures are retried with exponential backoff while the current token is still valid. When the
 * source says only `gprxy login` can help (refresh token expired or revoked), every new connection gets
 * that error, and `onLoginRequired` fires once so the terminal can say it once; a new login (in another
 * terminal) is picked up by the next connection after a few seconds, without restarting the tunnel.
 */
import { setLongTimeout, type LongTimer } from '../shared/long-timer.js';
import type { TunnelTokenSource } from './tunnel.js';

export interface KeptToken {
  readonly accessToken: string;
  readonly expiresAt: number;
  readonly claims: Record<string, unknown>;
}

export interface TokenKeeperOptions {
  readonly source: TunnelTokenSource;
  readonly now?: () => number;
  readonly onRefreshed?: (token: KeptToken) => void;
  readonly onRefreshFailed?: (error: Error, retryInMs: number) => void;
  readonly onLoginRequired?: (error: Error) => void;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
}

/** While the login is dead, how often a new connection makes us look for a fresh login. */
const DEAD_RECHECK_MS = 5_000;
/** A token this close to expiry is not handed to a new connection (the proxy needs time to verify it). */
const MIN_USABLE_MS = 2_000;

function loginRequired(error: unknown): boolean {
  return (error as { code?: string }).code === 'login_required';
}

export class TokenKeeper implements TunnelTokenSource {
  private current: KeptToken | undefined;
  private inflight: Promise<KeptToken> | undefined;
  private timer: LongTimer | undefined;
  private failures = 0;
  private dead: Error | undefined;
  private deadAt = 0;
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly options: TokenKeeperOptions) {
    this.now = options.now ?? Date.now;
  }

  /** The current token when it is usable, else a renewal (shared by concurrent callers). */
  async getAccessToken(): Promise<KeptToken> {
    if (this.current && this.current.expiresAt - this.now() > MIN_USABLE_MS) return this.current;
    // After `gprxy login` in another terminal the source finds the new login: look again now and then.
    if (this.dead && this.now() - this.deadAt < DEAD_RECHECK_MS) throw this.dead;
    return this.renew();
  }

  close(): void {
    this.closed = true;
    this.timer?.clear();
  }

  private renew(): Promise<KeptToken> {
    this.inflight ??= this.options.source
      .getAccessToken()
      .then(
        (token) => {
          this.current = token;
          this.failures = 0;
          this.dead = undefined;
          this.options.onRefreshed?.(token);
          this.schedule(this.nextRefreshIn(token));
          return token;
        },
        (error: Error) => {
          if (loginRequired(error)) {
            if (!this.dead) this.options.onLoginRequired?.(error);
            this.dead = error;
            this.deadAt = this.now();
            this.current = undefined;
          } else {
            this.failures++;
            const { initialMs, maxMs } = this.options.backoff ?? { initialMs: 1_000, maxMs: 60_000 };
            const delay = Math.min(maxMs, initialMs * 2 ** (this.failures - 1));
            this.options.onRefreshFailed?.(error, delay);
            this.schedule(delay);
          }
          throw error;
        },
      )
      .finally(() => {
        this.inflight = undefined;
      });
    return this.inflight;
  }

  private nextRefreshIn(token: KeptToken): number {
    if (!Number.isFinite(token.expiresAt)) return -1;
    const now = this.now();
    const issuedAt = typeof token.claims.iat === 'number' ? token.claims.iat * 1000 : now;
    const lifetime = Math.max(0, token.expiresAt - issuedAt);
    // 80 % of the lifetime or 60 s before expiry, whichever comes first; but never before half the
    // lifetime, so very short tokens (tests, strict providers) are not renewed in a tight loop.
    const at = Math.max(issuedAt + lifetime * 0.5, Math.min(issuedAt + lifetime * 0.8, token.expiresAt - 60_000));
    return Math.max(250, at - now);
  }

  private schedule(ms: number): void {
    this.timer?.clear();
    if (this.closed || ms < 0) return;
    this.timer = setLongTimeout(() => void this.renew().catch(() => undefined), ms);
  }
}
