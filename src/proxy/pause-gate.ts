/**
 * PAUSE / RESUME of the admin console (PgBouncer's `PAUSE [db]`): while a database is paused no backend of
 * it is handed out, so new logins (and, with transaction pooling, new transactions) wait; sessions that
 * already hold a backend go on. RESUME lets the waiters through in arrival order. A waiter gives up after
 * the pool's wait timeout like any other (pool_timeout, 53300), so a forgotten PAUSE cannot hold clients forever.
 */
import { setLongTimeout } from '../shared/long-timer.js';

interface Waiter {
  resolve(): void;
  reject(e: Error): void;
}

export class PauseGate {
  private readonly paused = new Map<string, Set<Waiter>>();

  isPaused(database: string): boolean {
    return this.paused.has(database);
  }

  /** The paused databases, in the order they were paused. */
  list(): string[] {
    return [...this.paused.keys()];
  }

  /** False when it was paused already. */
  pause(database: string): boolean {
    if (this.paused.has(database)) return false;
    this.paused.set(database, new Set());
    return true;
  }

  /** False when it was not paused. */
  resume(database: string): boolean {
    const waiters = this.paused.get(database);
    if (!waiters) return false;
    this.paused.delete(database);
    for (const w of waiters) w.resolve();
    return true;
  }

  /** Resolves at once when `database` is not paused, else at its RESUME; rejects with `timeout()` after `timeoutMs`. */
  wait(database: string, timeoutMs: number, timeout: () => Error): Promise<void> {
    const waiters = this.paused.get(database);
    if (!waiters) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setLongTimeout(() => {
        waiters.delete(waiter);
        reject(timeout());
      }, timeoutMs);
      const waiter: Waiter = {
        resolve: () => {
          timer.clear();
          resolve();
        },
        reject,
      };
      waiters.add(waiter);
    });
  }

  /** How many acquisitions wait on `database` now. */
  waiting(database: string): number {
    return this.paused.get(database)?.size ?? 0;
  }
}
