/**
 * Keeps an access token ready for the tunnel so a new local connection never waits on the provider:
 * the token is renewed in the background at the time its source names (`refreshAt`, from the CLI's one
 * refresh policy, src/shared/refresh-policy.ts), so the keeper asks exactly when the source agrees to
 * refresh, and reads the token store once per renewal, not in a loop. Failures are retried with
 * exponential backoff while the current token is still valid. When the source says only `gprxy login`
 * can help (refresh token expired or revoked, logged out), every new connection gets that error, and
 * `onLoginRequired` fires once so the terminal can say it once; a new login (in another terminal) is
 * picked up by the next connection after a few seconds, or at once after `invalidate()` (the login
 * generation marker changed), without restarting the tunnel.
 */
import { setLongTimeout, type LongTimer } from '../shared/long-timer.js';
import { refreshAt } from '../shared/refresh-policy.js';
import type { TunnelTokenSource } from './tunnel.js';
import { errorCode } from '../shared/errors.js';

export interface KeptToken {
  readonly accessToken: string;
  readonly expiresAt: number;
  /**
   * When the source will renew it (epoch ms; Infinity: never). The keeper schedules from this; a source
   * that does not say gets the same policy applied to the token's iat and expiry.
   */
  readonly refreshAt?: number;
  readonly claims: Record<string, unknown>;
}

export interface KeeperTokenSource {
  getAccessToken(): Promise<KeptToken>;
}

export interface TokenKeeperOptions {
  readonly source: KeeperTokenSource;
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
/** Timers may fire a millisecond early; asking a little late keeps the source and the keeper in agreement. */
const TIMER_SLACK_MS = 20;

/** The token source's LoginRequiredError (oauth/errors.ts): retrying cannot help, only gprxy login. */
function loginRequired(error: unknown): boolean {
  return errorCode(error) === 'login_required';
}

export class TokenKeeper implements TunnelTokenSource {
  private current: KeptToken | undefined;
  private inflight: Promise<KeptToken> | undefined;
  private timer: LongTimer | undefined;
  private failures = 0;
  private dead: Error | undefined;
  private deadAt = 0;
  private closed = false;
  /** Bumped by invalidate(): a renewal that started before it does not put its token back. */
  private epoch = 0;
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

  /**
   * The login changed underneath (logout, or a login as someone else): forget the kept token, so the
   * next connection asks the source again (which then says "run gprxy login", or finds the new login).
   */
  invalidate(): void {
    this.epoch++;
    this.current = undefined;
    this.dead = undefined;
    this.failures = 0;
    this.timer?.clear();
  }

  /**
   * Stops renewing. Resolves once a renewal in flight has finished: a process that exits between the
   * provider rotating the refresh token and the store saving the new one would leave a used refresh
   * token behind, and the next refresh with it would make the provider revoke the whole login.
   */
  close(): Promise<void> {
    this.closed = true;
    this.timer?.clear();
    return (this.inflight ?? Promise.resolve()).then(
      () => undefined,
      () => undefined,
    );
  }

  private renew(): Promise<KeptToken> {
    if (this.inflight) return this.inflight;
    const epoch = this.epoch;
    const stale = () => epoch !== this.epoch;
    // A renewal that straddled invalidate() is answered by a new one (its token may be the old login's).
    const again = (): Promise<KeptToken> => {
      if (this.inflight === renewal) this.inflight = undefined;
      return this.renew();
    };
    const renewal: Promise<KeptToken> = this.options.source
      .getAccessToken()
      .then(
        (token) => {
          if (stale()) return again();
          this.current = token;
          this.dead = undefined;
          this.options.onRefreshed?.(token);
          const at = token.refreshAt ?? refreshAt({ issuedAt: typeof token.claims.iat === 'number' ? token.claims.iat * 1000 : undefined, expiresAt: token.expiresAt });
          const due = at - this.now();
          if (due > 0) {
            this.failures = 0;
            this.schedule(due === Number.POSITIVE_INFINITY ? -1 : due + TIMER_SLACK_MS);
          } else {
            // The source handed back a token it wanted renewed (it could not reach the provider and
            // said so): try again with backoff rather than at once.
            this.schedule(this.backoff());
          }
          return token;
        },
        (error: Error) => {
          if (stale()) return again();
          if (loginRequired(error)) {
            if (!this.dead) this.options.onLoginRequired?.(error);
            this.dead = error;
            this.deadAt = this.now();
            this.current = undefined;
          } else {
            const delay = this.backoff();
            this.options.onRefreshFailed?.(error, delay);
            this.schedule(delay);
          }
          throw error;
        },
      )
      .finally(() => {
        if (this.inflight === renewal) this.inflight = undefined;
      });
    this.inflight = renewal;
    return renewal;
  }

  private backoff(): number {
    this.failures++;
    const { initialMs, maxMs } = this.options.backoff ?? { initialMs: 1_000, maxMs: 60_000 };
    return Math.min(maxMs, initialMs * 2 ** (this.failures - 1));
  }

  private schedule(ms: number): void {
    this.timer?.clear();
    if (this.closed || ms < 0) return;
    this.timer = setLongTimeout(() => void this.renew().catch(() => undefined), ms);
  }
}
