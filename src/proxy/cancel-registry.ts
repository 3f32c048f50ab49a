/**
 * Cancel routing. Clients get the proxy's own BackendKeyData (a random pid and secret), never the
 * backend's: a backend's key would let a client cancel queries of whoever uses that backend next.
 * A CancelRequest that matches a live session is forwarded to that session's current backend.
 */
import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

export interface CancelTarget {
  /** Sends a cancel for whatever this session is running now. */
  cancel(): void;
}

export class CancelRegistry {
  private readonly sessions = new Map<number, { secret: Buffer; target: CancelTarget }>();

  register(target: CancelTarget): { processId: number; secretKey: Buffer } {
    let processId: number;
    do processId = randomInt(1, 0x7fffffff);
    while (this.sessions.has(processId));
    const secretKey = randomBytes(4);
    this.sessions.set(processId, { secret: secretKey, target });
    return { processId, secretKey };
  }

  /**
   * Pass-through sessions: the client holds the backend's own key, so requests are matched on it.
   * Returns false (and registers nothing) if that pid is already in use here.
   */
  registerKey(processId: number, secretKey: Buffer, target: CancelTarget): boolean {
    if (this.sessions.has(processId)) return false;
    this.sessions.set(processId, { secret: Buffer.from(secretKey), target });
    return true;
  }

  unregister(processId: number): void {
    this.sessions.delete(processId);
  }

  /** Returns false when no session matches (unknown pid or wrong secret: both are ignored, as PostgreSQL does). */
  cancel(processId: number, secretKey: Buffer): boolean {
    const entry = this.sessions.get(processId);
    if (!entry || entry.secret.length !== secretKey.length || !timingSafeEqual(entry.secret, secretKey)) return false;
    entry.target.cancel();
    return true;
  }

  get size(): number {
    return this.sessions.size;
  }
}
