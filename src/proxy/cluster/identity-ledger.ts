/**
 * The primary's count of sessions per identity for `gprxy serve --workers N`: limits.max_sessions_per_identity
 * holds across the workers of one replica (a per-worker count would allow N × the limit). A worker asks for a
 * slot at login (identity.acquire, with the limit it runs with: a SIGHUP reload changes it in the workers) and
 * gives it back when the session ends (identity.release). A lease is named by its worker's slot and a number
 * the worker chose, so a worker can give back a lease whose grant it never received (its wait timed out). A
 * worker that exits, however it died, has all its leases released by the primary (releaseWorker).
 */

interface Lease {
  readonly key: string;
}

export class IdentityLedger {
  private readonly counts = new Map<string, number>();
  /** slot → lease number → lease. */
  private readonly leases = new Map<number, Map<number, Lease>>();

  /** Counts one more session of `key` for worker `slot` unless `max` (> 0) is reached; false: refused. */
  acquire(slot: number, lease: number, key: string, max: number): boolean {
    const held = this.counts.get(key) ?? 0;
    if (max > 0 && held >= max) return false;
    let mine = this.leases.get(slot);
    if (!mine) this.leases.set(slot, (mine = new Map()));
    if (mine.has(lease)) return true; // a repeated request: already counted
    mine.set(lease, { key });
    this.counts.set(key, held + 1);
    return true;
  }

  /** Gives back one lease; unknown leases (refused, or already released) are ignored. */
  release(slot: number, lease: number): void {
    const mine = this.leases.get(slot);
    const l = mine?.get(lease);
    if (!mine || !l) return;
    mine.delete(lease);
    this.drop(l.key);
  }

  /** Every lease of a worker that exited; returns how many there were. */
  releaseWorker(slot: number): number {
    const mine = this.leases.get(slot);
    if (!mine) return 0;
    this.leases.delete(slot);
    for (const l of mine.values()) this.drop(l.key);
    return mine.size;
  }

  held(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  private drop(key: string): void {
    const now = (this.counts.get(key) ?? 1) - 1;
    if (now <= 0) this.counts.delete(key);
    else this.counts.set(key, now);
  }
}
