/**
 * Cancel routing. Clients get the proxy's own BackendKeyData (a process id naming the replica and worker
 * that issued it, and a random secret: src/proxy/cancel-key.ts), never the backend's: a backend's key would
 * let a client cancel queries of whoever uses that backend next. A CancelRequest that matches a live session
 * here is delivered to that session's target (whatever the session, or a transaction pool, resolves it to);
 * one whose key names another worker or replica is handed to `forward` (IPC to the primary, or the peer
 * channel), which delivers it to the owner's registry. The owner alone decides: a forged key matches nothing.
 */
import { timingSafeEqual } from 'node:crypto';
import { issueProcessId, ownerOf, RandomPool, SECRET_BYTES_3_0, type KeyOwner } from './cancel-key.js';

export interface CancelTarget {
  /** Sends a cancel for whatever this session is running now. */
  cancel(): void;
  /** Whose query it cancels, for the audit log (`cancel_request` names the user). */
  readonly user?: string;
  readonly database?: string;
}

/** What became of a CancelRequest at this process. */
export type CancelRoute =
  | { readonly outcome: 'cancelled'; readonly target: CancelTarget }
  | { readonly outcome: 'no_match' }
  | { readonly outcome: 'forwarded'; readonly owner: KeyOwner };

export interface CancelRegistryOptions {
  /** Who this process is in the key layout (default replica 0, worker 0). */
  readonly owner?: KeyOwner;
  /**
   * Sends a request that matched nothing here on its way (fire and forget); returns false when it has
   * nowhere to go (e.g. the key names this very process). Absent: no match.
   */
  readonly forward?: (owner: KeyOwner, processId: number, secretKey: Buffer) => boolean;
  readonly random?: RandomPool;
}

export class CancelRegistry {
  private readonly sessions = new Map<number, { secret: Buffer; target: CancelTarget }>();
  readonly owner: KeyOwner;
  private readonly random: RandomPool;

  constructor(private readonly options: CancelRegistryOptions = {}) {
    this.owner = options.owner ?? { replica: 0, worker: 0 };
    this.random = options.random ?? new RandomPool();
  }

  /** A key for a new session; `secretLength` 32 for clients that asked for protocol 3.2. */
  register(target: CancelTarget, secretLength = SECRET_BYTES_3_0): { processId: number; secretKey: Buffer } {
    let processId: number;
    do processId = issueProcessId(this.owner, this.random);
    while (this.sessions.has(processId));
    const secretKey = this.random.take(secretLength);
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

  /** The session this exact key belongs to here, if any (unknown pid or wrong secret: none, as PostgreSQL does). */
  lookup(processId: number, secretKey: Buffer): CancelTarget | undefined {
    const entry = this.sessions.get(processId);
    if (!entry || entry.secret.length !== secretKey.length || !timingSafeEqual(entry.secret, secretKey)) return undefined;
    return entry.target;
  }

  /** Cancels a session of this process; false when none matches. Requests delivered by other processes end here. */
  cancel(processId: number, secretKey: Buffer): boolean {
    const target = this.lookup(processId, secretKey);
    target?.cancel();
    return !!target;
  }

  /**
   * A CancelRequest a client sent to this process: cancelled here when it matches a session here
   * (pass-through keys are the backend's and may look like any owner), otherwise handed to the forwarder,
   * which sends it to the owner its key names (or, for pass-through keys, to the other workers).
   */
  route(processId: number, secretKey: Buffer): CancelRoute {
    const target = this.lookup(processId, secretKey);
    if (target) {
      target.cancel();
      return { outcome: 'cancelled', target };
    }
    const owner = ownerOf(processId);
    if (this.options.forward?.(owner, processId, secretKey)) return { outcome: 'forwarded', owner };
    return { outcome: 'no_match' };
  }

  get size(): number {
    return this.sessions.size;
  }
}
