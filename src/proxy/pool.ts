/**
 * Session-mode pool of backends for one (database, service account) pair: at most `size` connections,
 * a FIFO wait queue with a timeout, idle timeout, max lifetime, and broken-connection detection. A backend
 * comes back through `release`, which resets it (DISCARD ALL) so nothing leaks to the next user; a backend
 * that is mid-transaction, broken or too old is closed instead.
 */
import type { Logger } from 'pino';
import { SqlState } from '../protocol/sqlstate.js';
import { query } from '../protocol/client-messages.js';
import { setLongTimeout, type LongTimer } from '../shared/long-timer.js';
import { Backend, BackendError, type BackendTarget, type Dialer } from './backend.js';

export class PoolTimeoutError extends Error {
  readonly code = 'pool_timeout' as const;
  readonly sqlstate = SqlState.TOO_MANY_CONNECTIONS;
}

export class PoolClosedError extends Error {
  readonly code = 'pool_closed' as const;
  readonly sqlstate = SqlState.CANNOT_CONNECT_NOW;
}

export interface PoolOptions {
  readonly name: string;
  readonly target: BackendTarget;
  readonly size: number;
  readonly idleTimeoutMs: number;
  readonly maxLifetimeMs: number;
  readonly waitTimeoutMs: number;
  readonly logger: Logger;
  readonly dialer?: Dialer;
  readonly now?: () => number;
  /** Runs once on every new backend before first use (e.g. reading its start time). */
  readonly prepare?: (backend: Backend) => Promise<void>;
}

interface Waiter {
  resolve(b: Backend): void;
  reject(e: Error): void;
  timer: LongTimer;
}

const RESET = query('DISCARD ALL');

export class BackendPool {
  private readonly idle: Backend[] = [];
  private readonly waiters: Waiter[] = [];
  private total = 0;
  private active = 0;
  private closed = false;
  private readonly sweeper: NodeJS.Timeout;
  private readonly now: () => number;

  constructor(private readonly options: PoolOptions) {
    this.now = options.now ?? Date.now;
    const every = Math.max(1000, Math.min(options.idleTimeoutMs / 2, 30_000));
    this.sweeper = setInterval(() => this.sweep(), every).unref();
  }

  get name(): string {
    return this.options.name;
  }

  stats(): { size: number; total: number; idle: number; active: number; waiting: number } {
    return { size: this.options.size, total: this.total, idle: this.idle.length, active: this.active, waiting: this.waiters.length };
  }

  async acquire(): Promise<Backend> {
    if (this.closed) throw new PoolClosedError(`pool ${this.name} is shutting down`);
    const ready = this.takeIdle();
    if (ready) return this.checkout(ready);
    if (this.total < this.options.size) return this.checkout(await this.open());
    return new Promise<Backend>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setLongTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(
            new PoolTimeoutError(
              `all ${this.options.size} connections of pool ${this.name} are busy; waited ${Math.round(this.options.waitTimeoutMs / 1000)} s. Try again, or raise pool.size / limits.pool_wait_timeout`,
            ),
          );
        }, this.options.waitTimeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** Gives a backend back. `reusable` is false when the client left mid-transaction or the relay broke. */
  async release(backend: Backend, reusable: boolean): Promise<void> {
    this.active--;
    backend.lastUsedAt = this.now();
    let keep = reusable && !backend.broken && !this.closed && !this.expired(backend) && backend.cancelsInFlight === 0;
    if (keep) {
      try {
        backend.attach();
        const result = await backend.run(RESET, 10_000);
        keep = !result.error && result.status === 'I';
        if (result.error) this.options.logger.warn({ event: 'backend_reset_failed', pool: this.name, reason: result.error.message }, 'reset failed; closing backend');
      } catch (e) {
        keep = false;
        this.options.logger.warn({ event: 'backend_reset_failed', pool: this.name, reason: (e as Error).message }, 'reset failed; closing backend');
      }
    }
    if (!keep) {
      this.discard(backend, reusable ? 'reset failed or expired' : 'not reusable');
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter.timer.clear();
      waiter.resolve(this.checkout(backend));
    } else {
      this.idle.push(backend);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const w of this.waiters.splice(0)) {
      w.timer.clear();
      w.reject(new PoolClosedError(`pool ${this.name} is shutting down`));
    }
    for (const b of this.idle.splice(0)) this.discard(b, 'pool closed');
  }

  private checkout(backend: Backend): Backend {
    this.active++;
    return backend;
  }

  private takeIdle(): Backend | undefined {
    while (this.idle.length) {
      const b = this.idle.pop()!;
      if (b.broken || this.expired(b)) {
        this.discard(b, b.broken ? 'broken while idle' : 'max lifetime');
        continue;
      }
      return b;
    }
    return undefined;
  }

  private expired(b: Backend): boolean {
    return this.options.maxLifetimeMs > 0 && this.now() - b.createdAt >= this.options.maxLifetimeMs;
  }

  private async open(): Promise<Backend> {
    this.total++;
    const started = this.now();
    try {
      const backend = await Backend.connect(this.options.target, { ...(this.options.dialer ? { dialer: this.options.dialer } : {}), applicationName: 'gprxy' });
      try {
        await this.options.prepare?.(backend);
      } catch (e) {
        backend.close();
        throw e;
      }
      backend.socket.on('close', () => this.forget(backend));
      this.options.logger.debug({ event: 'backend_open', pool: this.name, pid: backend.processId, duration_ms: this.now() - started }, 'backend connected');
      return backend;
    } catch (e) {
      this.total--;
      this.serveWaiters();
      if (e instanceof BackendError) throw e;
      throw new BackendError('backend_unavailable', `cannot connect to ${this.name}: ${(e as Error).message}`);
    }
  }

  /** A backend socket closed: drop it from the idle list (it may already be gone). */
  private forget(backend: Backend): void {
    const i = this.idle.indexOf(backend);
    if (i >= 0) {
      this.idle.splice(i, 1);
      this.total--;
      this.options.logger.info({ event: 'backend_close', pool: this.name, pid: backend.processId, reason: 'closed by server while idle' }, 'backend closed');
      this.serveWaiters();
    }
  }

  private discard(backend: Backend, reason: string): void {
    this.total--;
    backend.socket.removeAllListeners('close');
    backend.close();
    this.options.logger.debug({ event: 'backend_close', pool: this.name, pid: backend.processId, reason }, 'backend closed');
    this.serveWaiters();
  }

  /** Capacity freed up: open a backend for the first waiter. */
  private serveWaiters(): void {
    if (this.closed || this.waiters.length === 0 || this.total >= this.options.size) return;
    const waiter = this.waiters.shift()!;
    waiter.timer.clear();
    this.open().then(
      (b) => waiter.resolve(this.checkout(b)),
      (e: Error) => waiter.reject(e),
    );
  }

  private sweep(): void {
    const cutoff = this.now() - this.options.idleTimeoutMs;
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const b = this.idle[i]!;
      if (b.lastUsedAt <= cutoff || this.expired(b)) {
        this.idle.splice(i, 1);
        this.discard(b, b.lastUsedAt <= cutoff ? 'idle timeout' : 'max lifetime');
      }
    }
  }
}
