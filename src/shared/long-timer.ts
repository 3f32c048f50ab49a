/**
 * Timers whose delay comes from configuration or from a token (session lifetimes, token expiry, login and
 * pool-wait timeouts, JWKS refresh, token renewal). Node's setTimeout fires after ~1 ms for any delay above
 * 2^31-1 ms (~24.8 days), so a 30-day token or `session_max_lifetime: 30d` used to end a session at once
 * with a false reason. `setLongTimeout` waits in steps no longer than that limit and re-reads the clock at
 * each step, so it fires at the deadline however far away. Imports nothing of ours (any layer may use it).
 */

/** The largest delay setTimeout honours. */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

export interface LongTimer {
  /** Stops the timer; safe to call more than once, and after it fired. */
  clear(): void;
}

export interface LongTimeoutOptions {
  /** Keep the process alive while waiting (default false: a pending timer never holds the process). */
  readonly ref?: boolean;
}

/**
 * Calls `fn` once, `delayMs` from now. Negative or NaN delays fire on the next tick; Infinity never fires.
 */
export function setLongTimeout(fn: () => void, delayMs: number, options: LongTimeoutOptions = {}): LongTimer {
  // The wall clock on purpose, not a component's clock seam: a frozen test clock would never reach the
  // deadline. Tests drive this with fake timers (which fake Date.now too).
  const now = Date.now;
  const delay = Number.isNaN(delayMs) ? 0 : Math.max(0, delayMs);
  let handle: ReturnType<typeof setTimeout> | undefined;
  let cleared = false;
  const timer: LongTimer = {
    clear() {
      cleared = true;
      if (handle !== undefined) clearTimeout(handle);
      handle = undefined;
    },
  };
  if (delay === Infinity) return timer;
  const deadline = now() + delay;
  const step = (): void => {
    handle = undefined;
    if (cleared) return;
    const remaining = deadline - now();
    if (remaining > 0) {
      arm(remaining);
      return;
    }
    cleared = true;
    fn();
  };
  const arm = (ms: number): void => {
    handle = setTimeout(step, Math.min(ms, MAX_TIMER_DELAY_MS));
    if (!options.ref) handle.unref?.();
  };
  arm(delay);
  return timer;
}

/** Clears a timer that may not exist. */
export function clearLongTimeout(timer: LongTimer | undefined): void {
  timer?.clear();
}
