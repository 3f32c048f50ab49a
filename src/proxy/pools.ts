/**
 * All backend pools of the proxy, one per (database, service account), created on first use, plus
 * cancel forwarding: a cancel for a session goes to the backend that session holds, over a new
 * connection, as PostgreSQL's protocol requires.
 */
import type { Logger } from 'pino';
import type { AccountConfig, DatabaseConfig } from '../config/proxy-config.js';
import { cancelRequest } from '../protocol/client-messages.js';
import { sendAndClose } from '../net/send-and-close.js';
import { defaultDialer, negotiateTls, type Backend, type BackendTarget, type Dialer } from './backend.js';
import { BACKEND_PREPARE } from './backend-sql.js';
import { BackendGuard } from './backend-guard.js';
import { EpochSource } from './identity-context.js';
import { PauseGate } from './pause-gate.js';
import { BackendPool, PoolClosedError, PoolTimeoutError, type PoolOptions } from './pool.js';
import { SQL_PREPARED_CHECK, TRANSACTION_RESET } from './txpool/tx-reset.js';

export interface PoolManagerOptions {
  readonly waitTimeoutMs: number;
  /** limits.backend_connect_timeout; a reload changes it for the next connects without retiring pools. */
  readonly connectTimeoutMs?: number;
  readonly logger: Logger;
  readonly dialer?: Dialer;
  /** Read each new backend's start time (needed to bind the identity context to it). */
  readonly readBackendStart: boolean;
  /** Checkout epochs for the identity context; one per process by default. */
  readonly epochs?: EpochSource;
  /** Counts for the metrics (audit events go to the logger). */
  readonly events?: BackendEvents;
  /** With --workers: this worker's share of a configured pool size (src/config/workers.ts shareOf). */
  readonly sizeShare?: (size: number) => number;
}

export interface BackendEvents {
  serviceAccountTampered(pool: string): void;
  serviceAccountLoginFailed(pool: string): void;
}

/** backend.attributes keys set by the prepare step. */
export const BACKEND_START = 'startMicros';
/** true when the database has gprxy.begin_session: each checkout must record an epoch. */
export const BINDS_CHECKOUT = 'bindsCheckout';
/** true when gprxy.claims() accepts transaction-pooling contexts (gprxy.transaction_contexts() exists). */
export const TX_CONTEXTS = 'transactionContexts';

export class PoolManager {
  private readonly pools = new Map<string, BackendPool>();
  /** What each pool was built from (poolSpec), so a reloaded database or account gets a new pool. */
  private readonly specs = new Map<string, string>();
  private readonly epochs: EpochSource;
  /** PAUSE / RESUME per database (admin console). */
  readonly gate = new PauseGate();
  private waitTimeoutMs: number;
  private connectTimeoutMs: number | undefined;
  private readonly connectTimeout = (): number | undefined => this.connectTimeoutMs;

  constructor(private readonly options: PoolManagerOptions) {
    this.epochs = options.epochs ?? new EpochSource();
    this.waitTimeoutMs = options.waitTimeoutMs;
    this.connectTimeoutMs = options.connectTimeoutMs;
  }

  /**
   * After a config reload: pools of removed or changed databases and accounts are retired (closed to new
   * checkouts; their backends end when the sessions holding them release them), new ones are created on
   * first use with the new settings.
   */
  reconfigure(databases: Readonly<Record<string, DatabaseConfig>>, accounts: Readonly<Record<string, AccountConfig>>, waitTimeoutMs: number, connectTimeoutMs?: number): void {
    this.waitTimeoutMs = waitTimeoutMs;
    if (connectTimeoutMs !== undefined) this.connectTimeoutMs = connectTimeoutMs;
    this.latest = { databases, accounts };
    for (const key of [...this.pools.keys()]) {
      const [db, account] = key.split('/') as [string, string];
      const d = Object.hasOwn(databases, db) ? databases[db] : undefined;
      // Per-user pools (user:<role>) follow their database only.
      const perUser = account.startsWith('user:');
      const a = perUser ? undefined : Object.hasOwn(accounts, account) ? accounts[account] : undefined;
      if (!d || (!perUser && !a) || this.specs.get(key) !== this.poolSpec(d, a)) this.retire(key);
    }
  }

  private retire(key: string): void {
    const pool = this.pools.get(key);
    this.pools.delete(key);
    this.specs.delete(key);
    if (!pool) return;
    this.retired.add(pool);
    this.options.logger.info({ event: 'pool_retired', pool: key }, `pool ${key} retired by a config reload: its backends close as their sessions end`);
    // Kept until its release resets and drains are over, so a stop waits for them (settle()).
    void pool
      .close()
      .then(() => pool.settled())
      .finally(() => this.retired.delete(pool));
  }

  private readonly retired = new Set<BackendPool>();
  /** The config of the last reload: a login that began before it gets the pool of the config in force now. */
  private latest: { databases: Readonly<Record<string, DatabaseConfig>>; accounts: Readonly<Record<string, AccountConfig>> } | undefined;

  /** The database and account as the config in force now has them (a reload may have changed or removed them). */
  private inForce(database: DatabaseConfig, account: AccountConfig): { database: DatabaseConfig; account: AccountConfig } {
    const latest = this.latest;
    if (!latest) return { database, account };
    const d = Object.hasOwn(latest.databases, database.name) ? latest.databases[database.name] : undefined;
    const a = Object.hasOwn(latest.accounts, account.name) ? latest.accounts[account.name] : undefined;
    if (!d || !a) throw new PoolClosedError(`${d ? `account ${account.name}` : `database ${database.name}`} was removed from the proxy config by a reload; reconnect`);
    return { database: d, account: a };
  }

  private poolSpec(database: DatabaseConfig, account: AccountConfig | undefined): string {
    const { name: _n, audit: _a, ...target } = database;
    return JSON.stringify([target, account, this.waitTimeoutMs]);
  }

  /** The epoch of a new checkout (gprxy.begin_session); strictly increasing. */
  nextEpoch(): number {
    return this.epochs.next();
  }

  get(requested: DatabaseConfig, requestedAccount: AccountConfig): BackendPool {
    const { database, account } = this.inForce(requested, requestedAccount);
    const key = `${database.name}/${account.name}`;
    let pool = this.pools.get(key);
    if (!pool) {
      const spec = this.poolSpec(database, account);
      const target: BackendTarget = {
        host: database.host,
        port: database.port,
        dbname: database.dbname,
        sslmode: database.sslmode,
        ...(database.ca ? { ca: database.ca } : {}),
        user: account.name,
        ...(account.password !== undefined ? { password: account.password } : {}),
        ...(account.sslcert && account.sslkey ? { sslcert: account.sslcert, sslkey: account.sslkey } : {}),
      };
      pool = new BackendPool({
        name: key,
        target,
        size: this.options.sizeShare ? this.options.sizeShare(account.poolSize ?? database.pool.size) : (account.poolSize ?? database.pool.size),
        idleTimeoutMs: database.pool.idleTimeoutMs,
        maxLifetimeMs: database.pool.maxLifetimeMs,
        waitTimeoutMs: this.waitTimeoutMs,
        connectTimeoutMs: this.connectTimeout,
        logger: this.options.logger,
        ...(this.options.dialer ? { dialer: this.options.dialer } : {}),
        ...this.preparer(key, target),
        cancel: (backend: Backend) => this.cancel(backend),
        beforeAcquire: () => this.gate.wait(database.name, this.options.waitTimeoutMs, () => pausedTimeout(database.name, this.options.waitTimeoutMs)),
        // Transaction pooling resets without DISCARD ALL (it keeps the backend's prepared statements).
        ...(database.pool.mode === 'transaction' ? { reset: TRANSACTION_RESET } : {}),
        ...(this.options.events ? { onLoginFailed: (pool: string) => this.options.events!.serviceAccountLoginFailed(pool) } : {}),
      });
      this.pools.set(key, pool);
      this.specs.set(key, spec);
    }
    return pool;
  }

  /**
   * The pool of one per-user role (identity: per_user): keyed per (database, role), sized by pool.size per
   * user, idle backends closed after pool.idle_timeout like any pool. No role-settings guard: the
   * provisioner repairs the role at each login, and a user's role settings only reach her own sessions.
   */
  getUser(database: DatabaseConfig, role: string, password: string): BackendPool {
    const key = `${database.name}/user:${role}`;
    let pool = this.pools.get(key);
    if (!pool) {
      this.dropEmptyUserPools();
      const target: BackendTarget = {
        host: database.host,
        port: database.port,
        dbname: database.dbname,
        sslmode: database.sslmode,
        ...(database.ca ? { ca: database.ca } : {}),
        user: role,
        password,
      };
      const readStart = this.options.readBackendStart ? backendPreparer(key, this.options.logger) : undefined;
      pool = new BackendPool({
        name: `${database.name}/${role}`,
        target,
        size: this.options.sizeShare ? this.options.sizeShare(database.pool.size) : database.pool.size,
        idleTimeoutMs: database.pool.idleTimeoutMs,
        maxLifetimeMs: database.pool.maxLifetimeMs,
        waitTimeoutMs: this.waitTimeoutMs,
        connectTimeoutMs: this.connectTimeout,
        logger: this.options.logger,
        ...(this.options.dialer ? { dialer: this.options.dialer } : {}),
        ...(readStart ? { prepare: readStart } : {}),
        cancel: (backend: Backend) => this.cancel(backend),
      });
      this.pools.set(key, pool);
      this.specs.set(key, this.poolSpec(database, undefined));
    }
    return pool;
  }

  private lastUserPoolSweep = 0;

  /**
   * Per-user pools come and go with people: one with no backend, no waiter and nothing draining is closed
   * and forgotten (at most once a minute, when another user's pool is created), so a proxy that has seen
   * thousands of users does not keep a pool and its timer for each. Runs synchronously: a pool just handed
   * out has already counted its backend or waiter before anything else can run.
   */
  private dropEmptyUserPools(now = Date.now()): void {
    if (now - this.lastUserPoolSweep < 60_000) return;
    this.lastUserPoolSweep = now;
    for (const [key, pool] of this.pools) {
      if (!key.includes('/user:')) continue;
      const s = pool.stats();
      if (s.total === 0 && s.waiting === 0 && s.draining === 0) {
        this.pools.delete(key);
        void pool.close();
      }
    }
  }

  /**
   * What every new backend goes through before first use: the role-settings guard, then the context's
   * reads; and the guard again when a new backend ends before it could be checked.
   */
  private preparer(pool: string, target: BackendTarget): Pick<PoolOptions, 'prepare' | 'startFailed'> {
    const guard = new BackendGuard({
      pool,
      target,
      logger: this.options.logger,
      ...(this.options.dialer ? { dialer: this.options.dialer } : {}),
      ...(this.options.events ? { onTampered: (p: string) => this.options.events!.serviceAccountTampered(p) } : {}),
    });
    const readStart = this.options.readBackendStart ? backendPreparer(pool, this.options.logger) : undefined;
    return {
      prepare: async (backend) => {
        await guard.check(backend);
        await readStart?.(backend);
      },
      startFailed: (error) => guard.startFailed(error),
    };
  }

  /** Forwards a cancel to the backend a session currently holds. Fire and forget, as libpq does. */
  cancel(backend: Backend): void {
    const { host, port } = backend.target;
    // While a cancel is on its way the backend must not serve another client: a late cancel would
    // interrupt the next user's statement. The pool discards a backend released with cancels in flight.
    backend.cancelsInFlight++;
    const settled = () => backend.cancelsInFlight--;
    const raw = (this.options.dialer ?? defaultDialer)(host, port);
    negotiateTls(raw, backend.target).then(
      (socket) => void sendAndClose(socket, cancelRequest(backend.processId, backend.secretKey)).then(settled),
      (e: Error) => {
        settled();
        this.options.logger.warn({ event: 'cancel_failed', pool: `${backend.target.dbname}/${backend.target.user}`, reason: e.message }, 'could not forward cancel');
      },
    );
  }

  /** Every pool created so far, keyed `database/account`. */
  all(): ReadonlyMap<string, BackendPool> {
    return this.pools;
  }

  stats(): Record<string, ReturnType<BackendPool['stats']>> {
    return Object.fromEntries([...this.pools].map(([k, p]) => [k, p.stats()]));
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values(), ...this.retired].map((p) => p.close()));
  }

  /** Release resets and drains in flight, over all pools (retired ones too). */
  unsettled(): { pools: number; backends: number } {
    const busy = [...this.pools.values(), ...this.retired].filter((p) => p.unsettled > 0);
    return { pools: busy.length, backends: busy.reduce((n, p) => n + p.unsettled, 0) };
  }

  /**
   * Waits up to `timeoutMs` for the release resets and drains in flight to finish (a stop must not cut a
   * reset mid-way, nor exit before a drained backend's cancel was delivered); cuts what is left then.
   * Returns how many backends were cut.
   */
  async settle(timeoutMs: number): Promise<number> {
    const pools = [...new Set([...this.pools.values(), ...this.retired])].filter((p) => p.unsettled > 0);
    if (pools.length === 0) return 0;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<true>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs)));
    const late = await Promise.race([Promise.all(pools.map((p) => p.settled())).then(() => false as const), timedOut]);
    clearTimeout(timer);
    return late ? pools.reduce((n, p) => n + p.cutUnsettled(), 0) : 0;
  }
}

function pausedTimeout(database: string, waitedMs: number): PoolTimeoutError {
  return new PoolTimeoutError(`database ${database} is paused by an operator (admin console PAUSE); waited ${Math.round(waitedMs / 1000)} s: try again after it is resumed`);
}

/**
 * Reads a new backend's start time and whether its database can bind contexts to a checkout. Warns once
 * per pool when it cannot: until `gprxy db init` installs gprxy.begin_session, a context saved in one
 * session still verifies in a later session on the same backend.
 */
function backendPreparer(pool: string, logger: Logger): (backend: Backend) => Promise<void> {
  const warned = new Set<string>();
  const warnOnce = (kind: string, message: string) => {
    if (warned.has(kind)) return;
    warned.add(kind);
    logger.warn({ event: 'context_not_checkout_bound', pool, reason: kind }, message);
  };
  return async (backend) => {
    const result = await backend.run(BACKEND_PREPARE);
    const [start, hasBeginSession, standby, txContexts, sqlPreparedCheck] = result.rows[0] ?? [];
    if (result.error || !start) throw new Error(`cannot read the backend start time: ${result.error?.message ?? 'no row'}`);
    backend.attributes.set(BACKEND_START, start);
    backend.attributes.set(BINDS_CHECKOUT, hasBeginSession === 't');
    backend.attributes.set(TX_CONTEXTS, txContexts === 't');
    backend.attributes.set(SQL_PREPARED_CHECK, sqlPreparedCheck === 't');
    if (hasBeginSession !== 't') {
      warnOnce(
        'no_begin_session',
        `database of pool ${pool} has no gprxy.begin_session: identity contexts are bound to the backend but not to the checkout ` +
          '(a context saved in one session verifies in a later session on the same pooled backend) until `gprxy db init` is re-run',
      );
    } else if (standby === 't') {
      warnOnce('standby', `pool ${pool} is on a hot standby, which cannot record checkouts: identity contexts there are bound to the backend only`);
    }
  };
}
