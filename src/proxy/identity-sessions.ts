/**
 * limits.max_sessions_per_identity: how many sessions one identity may hold at once (issue 11, item 6),
 * so one user cannot take a whole pool from everyone mapped to the same account. A session counts from the
 * moment its token is accepted (waiting for a backend included: a queue of waiting logins is also how one
 * identity starves the others) until it ends. An identity is the issuer plus the namespaced user id.
 */

/** The release of one counted session; safe to call more than once. */
export type IdentityRelease = () => void;

/**
 * Who counts sessions per identity: `IdentitySessions` in one process (synchronous: the single-process login
 * path stays as it was), or, under `gprxy serve --workers N`, the primary over IPC for all workers of the
 * replica (src/proxy/cluster/identity-slots.ts: a promise, settled within a bounded wait).
 */
export interface IdentityLimit {
  readonly limit: number;
  setLimit(max: number): void;
  /** A release when `key` may open one more session, undefined when it is at its limit. */
  tryAcquire(key: string): IdentityRelease | undefined | Promise<IdentityRelease | undefined>;
  /** Sessions `key` holds, as far as this process knows (tests and metrics). */
  held(key: string): number;
}

export class IdentitySessions implements IdentityLimit {
  private readonly counts = new Map<string, number>();

  /** `max` 0 means no limit. */
  constructor(private max: number) {}

  /** A reloaded limit applies to the next login; sessions already held above it stay. */
  setLimit(max: number): void {
    this.max = max;
  }

  get limit(): number {
    return this.max;
  }

  /** Counts one more session of `key`; returns its release, or undefined when the identity is at its limit. */
  tryAcquire(key: string): IdentityRelease | undefined {
    const held = this.counts.get(key) ?? 0;
    if (this.max > 0 && held >= this.max) return undefined;
    this.counts.set(key, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const now = (this.counts.get(key) ?? 1) - 1;
      if (now <= 0) this.counts.delete(key);
      else this.counts.set(key, now);
    };
  }

  /** Sessions `key` holds now (for tests and metrics). */
  held(key: string): number {
    return this.counts.get(key) ?? 0;
  }
}

/** The key of an identity: two providers never share one (user ids are namespaced, issuers differ). */
export function identityKey(identity: { readonly issuer?: string; readonly subject: string }): string {
  return `${identity.issuer ?? ''}\n${identity.subject}`;
}
