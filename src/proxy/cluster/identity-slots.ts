/**
 * A worker's side of limits.max_sessions_per_identity under `gprxy serve --workers N`: the primary counts
 * (identity-ledger.ts), the worker asks it for a slot at login and gives the slot back when the session ends.
 * The login waits for the primary's answer at most `timeoutMs`: past that it is refused with 57P03 (try
 * again) rather than hang or let the identity past its limit, and the lease is given back in case the
 * primary did grant it. With no limit (0) nothing is awaited: the session is still reported (one-way), so a
 * reload that sets a limit counts the sessions already open, as one process does.
 */
import { GprxyError } from '../../shared/errors.js';
import { IdentitySessions, type IdentityLimit, type IdentityRelease } from '../identity-sessions.js';

/** How long a login waits for the primary's answer (it does nothing per query: a loaded primary answers in ms). */
export const IDENTITY_SLOT_TIMEOUT_MS = 3000;

/** The primary did not answer a slot request in time (or the channel is gone). */
export class IdentityLimitUnavailableError extends GprxyError<'identity_limit_unavailable'> {
  readonly code = 'identity_limit_unavailable' as const;
}

/** The IPC messages used (src/proxy/cluster/ipc.ts: identity.acquire, identity.release). */
export interface IdentitySlotChannel {
  acquire(body: { lease: number; key: string; max: number }, timeoutMs: number): Promise<{ granted: boolean }>;
  release(body: { lease: number }): void;
}

export class ClusterIdentitySessions implements IdentityLimit {
  private nextLease = 1;
  /** What this worker holds (held(): tests, metrics); the limit is the primary's count. */
  private readonly local = new IdentitySessions(0);

  constructor(
    private max: number,
    private readonly channel: IdentitySlotChannel,
    private readonly timeoutMs = IDENTITY_SLOT_TIMEOUT_MS,
  ) {}

  get limit(): number {
    return this.max;
  }

  setLimit(max: number): void {
    this.max = max;
  }

  held(key: string): number {
    return this.local.held(key);
  }

  tryAcquire(key: string): IdentityRelease | undefined | Promise<IdentityRelease | undefined> {
    const lease = this.nextLease++;
    const max = this.max;
    const request = this.channel.acquire({ lease, key, max }, this.timeoutMs);
    if (max <= 0) {
      // No limit: nothing to wait for; the primary counts it when the message arrives.
      request.catch(() => this.channel.release({ lease }));
      return this.leased(lease, key);
    }
    return request.then(
      ({ granted }) => (granted ? this.leased(lease, key) : undefined),
      (e: unknown) => {
        // Maybe granted after all (the answer was lost or late): give it back; unknown leases are ignored.
        this.channel.release({ lease });
        throw new IdentityLimitUnavailableError(
          `cannot check limits.max_sessions_per_identity right now: the gprxy primary process did not answer within ${this.timeoutMs} ms; try again shortly`,
          { cause: e },
        );
      },
    );
  }

  private leased(lease: number, key: string): IdentityRelease {
    const local = this.local.tryAcquire(key)!;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      local();
      this.channel.release({ lease });
    };
  }
}
