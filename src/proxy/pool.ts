/**
 * Session-mode pool of backends for one (database, service account) pair: at most `size` connections,
 * a FIFO wait queue with a timeout, idle timeout, max lifetime, and broken-connection detection. A backend
 * comes back through `release`, which resets it (src/proxy/backend-sql.ts releaseReset) so nothing leaks to the next user; a backend
 * that is mid-transaction, broken or too old is closed instead.
 */
import { PreparedStatementStats } from './txpool/prepared-statements.js';
import type { Logger } from 'pino';
import { SqlState } from '../protocol/sqlstate.js';
import { setLongTimeout, type LongTimer } from '../shared/long-timer.js';
import { Backend, BackendError, type BackendTarget, type Dialer } from './backend.js';
import { GprxyError } from '../shared/errors.js';
import { RELEASE_RESET_READY_COUNT, releaseReset } from './backend-sql.js';
import { BackendTamperedError } from './backend-guard.js';

/** New backends tried per open when each one turns out to carry tampered role settings. */
const MAX_TAMPERED_ATTEMPTS = 3;

export class PoolTimeoutError extends GprxyError<'pool_timeout'> {
  readonly code = 'pool_timeout' as const;
  readonly sqlstate = SqlState.TOO_MANY_CONNECTIONS;
}

export class PoolClosedError extends GprxyError<'pool_closed'> {
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
  /** How long opening a backend may take (limits.backend_connect_timeout; read at each open, so a reload applies). */
  readonly connectTimeoutMs?: () => number | undefined;
  readonly logger: Logger;
  readonly dialer?: Dialer;
  readonly now?: () => number;
  /** Runs once on every new backend before first use (e.g. reading its start time). */
  readonly prepare?: (backend: Backend) => Promise<void>;
  /**
   * Called when a new backend's connection ends after it was opened (not a refused login, not an
   * unreachable server): the role-settings guard looks for settings that end every backend. Throws
   * BackendTamperedError when it repaired something (a fresh backend is opened), the error otherwise.
   */
  readonly startFailed?: (error: BackendError) => Promise<never>;
  /** The database refused the service account's credentials (for the metric). */
  readonly onLoginFailed?: (pool: string) => void;
  /** Sends a CancelRequest for a backend (PoolManager.cancel). */
  readonly cancel?: (backend: Backend) => void;
  /** How long a backend released mid-query may take to end after its cancel (default 10 s). */
  readonly drainTimeoutMs?: number;
  /** Waits while the database is paused (admin console PAUSE); rejects when the wait times out. */
  readonly beforeAcquire?: () => Promise<void>;
  /**
   * What a released backend goes through instead of releaseReset() (DISCARD ALL): transaction pooling's
   * reset (src/proxy/txpool/tx-reset.ts), which must keep per-backend prepared statements.
   */
  readonly reset?: ReleaseResetPlan;
}

/** A release reset: the bytes, how many ReadyForQuery end them, and why the result makes the backend unusable. */
export interface ReleaseResetPlan {
  /** The reset for this backend (its attributes say what the database offers). */
  bytes(backend: Backend): Buffer;
  readonly readyCount: number;
  /** A reason to close the backend instead of reusing it (e.g. temporary objects left), or undefined when clean. */
  dirty(rows: (string | null)[][], backend: Backend): string | undefined;
  /**
   * The same reset as one simple Query (one ReadyForQuery) that a taker sends ahead of its own messages in the
   * same write, its answers unread: a dirty backend must then end itself (FATAL) before it reads anything more.
   * Absent: backends are always reset before they are handed on.
   */
  pipelined?(backend: Backend): Buffer;
}

/**
 * Backend attribute: set when the pool handed a released backend straight to a waiter that asked for
 * `pipelineReset`, without resetting it; the taker must send `takePendingReset()`'s bytes first.
 */
export const PENDING_RESET = 'pendingReset';

/**
 * After the drain timeout the proxy cuts its connection; a server that checks its clients
 * (client_connection_check_interval, which db init sets to 10 s on PostgreSQL 14+) ends the backend within
 * that interval. The slot stays counted this much longer, so the pool never outgrows `size` meanwhile.
 */
const AFTER_CUT_GRACE_MS = 12_000;

interface Waiter {
  /** Wants a newly opened backend, not one that served someone before (see acquireFresh). */
  readonly fresh: boolean;
  /** Takes a backend whose release reset it sends itself, pipelined with its own first messages. */
  readonly pipelineReset: boolean;
  resolve(b: Backend): void;
  reject(e: Error): void;
  timer: LongTimer;
}

export interface PoolStats {
  size: number;
  total: number;
  idle: number;
  active: number;
  waiting: number;
  draining: number;
  waits: number;
  waitMs: number;
  transactions: number;
  transactionMs: number;
  /** Transaction pooling: released backends handed to a waiting client unreset (it sent the reset itself). */
  pipelinedResets: number;
  /** Transaction pooling's prepared statements across backends (src/proxy/txpool/prepared-statements.ts). */
  preparedHits: number;
  preparedMisses: number;
  preparedEvictions: number;
}

export class BackendPool {
  private readonly idle: Backend[] = [];
  private readonly waiters: Waiter[] = [];
  private total = 0;
  private active = 0;
  /** Backends being opened (counted in `total`): they hold a slot but can serve nobody yet. */
  private opening = 0;
  /** Backends released mid-query, still counted in `total` until their server process is gone. */
  private readonly draining = new Set<Backend>();
  private closed = false;
  /**
   * Work on backends that outlives the session that caused it: release resets running, and drains whose
   * server has not ended yet. close() on the proxy waits for it (settled()), so a stop does not cut it off.
   */
  private readonly inFlight = new Map<Backend, { readonly kind: 'reset' | 'drain'; readonly cut: () => void }>();
  private settleWaiters: (() => void)[] = [];
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

  stats(): PoolStats {
    return {
      size: this.options.size,
      total: this.total,
      idle: this.idle.length,
      active: this.active,
      waiting: this.waiters.length,
      draining: this.draining.size,
      waits: this.waits,
      waitMs: this.waitMs,
      transactions: this.transactions,
      transactionMs: this.transactionMs,
      pipelinedResets: this.pipelinedResets,
      preparedHits: this.preparedStatements.hits,
      preparedMisses: this.preparedStatements.misses,
      preparedEvictions: this.preparedStatements.evictions,
    };
  }

  /** Checkouts that had to queue, and their total wait; transactions served (transaction pooling) and their total time. */
  private waits = 0;
  private waitMs = 0;
  private transactions = 0;
  private transactionMs = 0;
  private pipelinedResets = 0;

  /** Transaction pooling: prepared-statement cache counters of this pool's backends. */
  readonly preparedStatements = new PreparedStatementStats();

  /** Transaction pooling: one transaction (attach to release) took `ms`. */
  recordTransaction(ms: number): void {
    this.transactions++;
    this.transactionMs += ms;
  }

  /**
   * `pipelineReset` (transaction pooling's relay): when the pool is full, a backend released by another
   * client may come without its reset having run (attribute PENDING_RESET); the caller then writes
   * `takePendingReset(backend)` ahead of its own messages, which saves a round trip per transaction.
   */
  async acquire(options: { pipelineReset?: boolean } = {}): Promise<Backend> {
    if (this.closed) throw new PoolClosedError(`pool ${this.name} is shutting down`);
    await this.options.beforeAcquire?.();
    if (this.closed) throw new PoolClosedError(`pool ${this.name} is shutting down`);
    const ready = this.takeIdle();
    if (ready) return this.checkout(ready);
    if (this.total < this.options.size) return this.checkout(await this.open());
    return this.wait(false, options.pipelineReset === true);
  }

  /** The reset a backend handed on unreset needs before anything else (undefined: it was reset already). */
  takePendingReset(backend: Backend): Buffer | undefined {
    if (backend.attributes.get(PENDING_RESET) !== true) return undefined;
    backend.attributes.delete(PENDING_RESET);
    return this.options.reset?.pipelined?.(backend);
  }

  /**
   * A backend no one has used yet: after a pooled backend turned out to be unusable for a reason its
   * previous user may have caused (e.g. gprxy.begin_session's epoch pushed forward), the retry must not
   * land on another backend that user prepared the same way. Closes an idle backend to make room when
   * the pool is full; otherwise waits like acquire() and takes the first freed slot, opening a new one.
   */
  async acquireFresh(): Promise<Backend> {
    if (this.closed) throw new PoolClosedError(`pool ${this.name} is shutting down`);
    await this.options.beforeAcquire?.();
    if (this.closed) throw new PoolClosedError(`pool ${this.name} is shutting down`);
    if (this.total >= this.options.size) {
      const idle = this.idle.shift();
      if (idle) this.discard(idle, 'room for a fresh backend', false);
    }
    if (this.total < this.options.size) return this.checkout(await this.open());
    return this.wait(true, false);
  }

  /**
   * Queues for the next freed backend. Every wait is counted, served or timed out: the waits that hit
   * pool_wait_timeout are the ones an operator most needs in gprxy_pool_wait_seconds_avg.
   */
  private wait(fresh: boolean, pipelineReset: boolean): Promise<Backend> {
    const started = this.now();
    const counted = () => {
      this.waits++;
      this.waitMs += this.now() - started;
    };
    return new Promise<Backend>((resolve, reject) => {
      const waiter: Waiter = {
        fresh,
        pipelineReset,
        resolve: (b) => {
          counted();
          resolve(b);
        },
        reject: (e) => {
          counted();
          reject(e);
        },
        timer: setLongTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          waiter.reject(
            new PoolTimeoutError(
              `all ${this.options.size} connections of pool ${this.name} are busy; waited ${Math.round(this.options.waitTimeoutMs / 1000)} s. Try again, or raise pool.size / limits.pool_wait_timeout`,
            ),
          );
        }, this.options.waitTimeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /**
   * Gives a backend back. `reusable` is false when the client left mid-transaction or the relay broke;
   * `busy` when it is still running something (the client vanished mid-query): then it is drained.
   */
  async release(backend: Backend, reusable: boolean, busy = false): Promise<void> {
    this.active--;
    backend.lastUsedAt = this.now();
    let keep = reusable && !backend.broken && !this.closed && !this.expired(backend) && backend.cancelsInFlight === 0;
    if (keep && this.options.reset?.pipelined && this.waiters[0]?.pipelineReset) {
      // Transaction pooling under contention: the next client sends the reset itself, in the same write as
      // its identity setup and first messages (one round trip of backend time per transaction, not two).
      backend.attributes.set(PENDING_RESET, true);
      this.pipelinedResets++;
      const waiter = this.waiters.shift()!;
      waiter.timer.clear();
      waiter.resolve(this.checkout(backend));
      return;
    }
    if (keep) {
      backend.attributes.delete(PENDING_RESET);
      this.inFlight.set(backend, { kind: 'reset', cut: () => backend.socket.destroy() });
      try {
        backend.attach();
        const plan = this.options.reset;
        const result = plan ? await backend.run(plan.bytes(backend), 10_000, plan.readyCount) : await backend.run(releaseReset(), 10_000, RELEASE_RESET_READY_COUNT);
        keep = !result.error && result.status === 'I';
        if (result.error) this.options.logger.warn({ event: 'backend_reset_failed', pool: this.name, reason: result.error.message }, 'reset failed; closing backend');
        const dirty = keep && plan ? plan.dirty(result.rows, backend) : undefined;
        if (dirty) {
          keep = false;
          this.options.logger.warn({ event: 'backend_dirty', pool: this.name, pid: backend.processId, reason: dirty }, `backend left with ${dirty}; closing it`);
        }
      } catch (e) {
        keep = false;
        this.options.logger.warn({ event: 'backend_reset_failed', pool: this.name, reason: (e as Error).message }, 'reset failed; closing backend');
      } finally {
        this.settle(backend);
      }
      // The pool closed while the reset ran: the backend is closed (Terminate), not parked in a closed pool.
      if (keep && this.closed) {
        this.discard(backend, 'pool closed');
        return;
      }
    }
    if (!keep) {
      if (busy && !reusable && !backend.broken) this.drain(backend);
      else this.discard(backend, reusable ? 'reset failed or expired' : 'not reusable');
      return;
    }
    const waiter = this.waiters[0];
    if (waiter?.fresh) {
      // discard() frees the slot and opens a new backend for this waiter.
      this.discard(backend, 'a waiter needs a fresh backend');
    } else if (waiter) {
      this.waiters.shift();
      waiter.timer.clear();
      waiter.resolve(this.checkout(backend));
    } else {
      this.idle.push(backend);
    }
  }

  /** Release resets and drains in flight (see inFlight). */
  get unsettled(): number {
    return this.inFlight.size;
  }

  /** Resolves once no release reset and no drain is in flight (at once when none is). */
  settled(): Promise<void> {
    if (this.inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.settleWaiters.push(resolve));
  }

  /** Cuts the connections of resets and drains still in flight (a stop that could wait no longer). */
  cutUnsettled(): number {
    const cut = [...this.inFlight];
    for (const [backend, work] of cut) {
      this.options.logger.warn({ event: 'backend_close', pool: this.name, pid: backend.processId, reason: `server shutdown: ${work.kind} unfinished, connection cut` }, `backend ${backend.processId} cut at shutdown (${work.kind} unfinished)`);
      work.cut();
    }
    return cut.length;
  }

  private settle(backend: Backend): void {
    if (!this.inFlight.delete(backend) || this.inFlight.size > 0) return;
    for (const resolve of this.settleWaiters.splice(0)) resolve();
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
    this.opening++;
    const started = this.now();
    const timeoutMs = this.options.connectTimeoutMs?.();
    try {
      let backend: Backend;
      for (let attempt = 1; ; attempt++) {
        try {
          backend = await Backend.connect(this.options.target, {
            ...(this.options.dialer ? { dialer: this.options.dialer } : {}),
            ...(timeoutMs !== undefined ? { timeoutMs } : {}),
            applicationName: 'gprxy',
            now: this.now,
          });
        } catch (e) {
          if (!(e instanceof BackendError) || e.code !== 'backend_closed' || !this.options.startFailed) throw e;
          const outcome: unknown = await this.options.startFailed(e).catch((r: unknown) => r);
          if (outcome instanceof BackendTamperedError && attempt < MAX_TAMPERED_ATTEMPTS) continue;
          throw outcome;
        }
        try {
          await this.options.prepare?.(backend);
          break;
        } catch (e) {
          backend.close();
          // The guard repaired the account's settings: a fresh backend starts without them. Someone who
          // keeps poisoning them faster than we repair gets this pool refused, and logged, not used.
          if (e instanceof BackendTamperedError && attempt < MAX_TAMPERED_ATTEMPTS) continue;
          throw e;
        }
      }
      this.opening--;
      backend.socket.on('close', () => this.forget(backend));
      this.options.logger.debug({ event: 'backend_open', pool: this.name, pid: backend.processId, duration_ms: this.now() - started }, 'backend connected');
      return backend;
    } catch (e) {
      this.total--;
      this.opening--;
      const error = e instanceof BackendError ? e : new BackendError('backend_unavailable', `cannot connect to ${this.name}: ${(e as Error).message}`);
      if (error.code === 'backend_auth_failed') this.loginFailed(error);
      if (error.code === 'backend_unavailable' && this.total - this.opening - this.draining.size === 0) this.failWaiters(error);
      else this.serveWaiters();
      throw error;
    }
  }

  /**
   * The server could not be reached (connect timed out or refused, or it refused new sessions) and this
   * pool has no connected backend that could come back to a waiter: every slot is another connect on its
   * way to the same server. Waiters get the same error now, not a connect timeout each in turn (a
   * blackholed server would otherwise hold each login for its wait plus one or more connect timeouts, and
   * a burst of logins would queue connects behind connects going nowhere).
   */
  private failWaiters(error: BackendError): void {
    for (const w of this.waiters.splice(0)) {
      w.timer.clear();
      w.reject(error);
    }
  }

  /**
   * The database refused the service account itself (e.g. its password was changed by one of its users):
   * every user of the account is refused until an operator acts, so it is an audit event of its own.
   */
  private loginFailed(e: BackendError): void {
    this.options.onLoginFailed?.(this.name);
    this.options.logger.error(
      { event: 'service_account_login_failed', pool: this.name, account: this.options.target.user, database: this.options.target.dbname, sqlstate: e.fields?.code, reason: e.message },
      `PostgreSQL refused the service account ${this.options.target.user}: ${e.message}`,
    );
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

  private discard(backend: Backend, reason: string, serve = true): void {
    this.total--;
    backend.socket.removeAllListeners('close');
    backend.close();
    this.options.logger.debug({ event: 'backend_close', pool: this.name, pid: backend.processId, reason }, 'backend closed');
    if (serve) this.serveWaiters();
  }

  /**
   * A backend whose client vanished mid-query (issue 11 item 5): closing our socket alone leaves the server
   * process running the query (pg_sleep(3600) runs for an hour) while the pool, had it forgotten it, opens
   * more, until max_connections is full. So: a CancelRequest (protocol-level, keyed by the backend's secret:
   * it works even when the accounts may not signal each other), our side half-closed (the server reads EOF
   * once the query stops, and exits), whatever it still sends read and dropped (a server blocked writing a
   * big result never sees a cancel). It stays counted in `total` until the server closes the connection;
   * if that does not happen in time the connection is cut, and the slot is kept a little longer for the
   * server's own client check (client_connection_check_interval) to end it.
   */
  private drain(backend: Backend): void {
    this.draining.add(backend);
    const socket = backend.socket;
    const started = this.now();
    let grace: NodeJS.Timeout | undefined;
    const gone = (reason: string) => {
      if (!this.draining.delete(backend)) return;
      clearTimeout(cut);
      clearTimeout(grace);
      this.total--;
      this.options.logger.info({ event: 'backend_close', pool: this.name, pid: backend.processId, reason, duration_ms: this.now() - started }, 'busy backend ended');
      this.serveWaiters();
    };
    this.inFlight.set(backend, {
      kind: 'drain',
      cut: () => {
        socket.removeAllListeners('close');
        socket.destroy();
        this.settle(backend);
        gone('connection cut at server shutdown');
      },
    });
    socket.removeAllListeners('close');
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    socket.once('close', () => gone('ended after cancel'));
    socket.once('close', () => this.settle(backend));
    socket.resume();
    this.options.cancel?.(backend);
    socket.end();
    const cut = setTimeout(() => {
      socket.removeAllListeners('close');
      socket.destroy();
      this.settle(backend);
      this.options.logger.warn(
        { event: 'backend_drain_timeout', pool: this.name, pid: backend.processId },
        `backend ${backend.processId} did not end within ${this.drainTimeoutMs} ms of its cancel; connection cut, slot kept for ${AFTER_CUT_GRACE_MS} ms`,
      );
      grace = setTimeout(() => gone('connection cut after drain timeout'), AFTER_CUT_GRACE_MS);
      grace.unref();
    }, this.drainTimeoutMs);
    cut.unref();
  }

  private get drainTimeoutMs(): number {
    return this.options.drainTimeoutMs ?? 10_000;
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
