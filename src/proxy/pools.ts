/**
 * All backend pools of the proxy, one per (database, service account), created on first use, plus
 * cancel forwarding: a cancel for a session goes to the backend that session holds, over a new
 * connection, as PostgreSQL's protocol requires.
 */
import type { Logger } from 'pino';
import type { AccountConfig, DatabaseConfig } from '../config/proxy-config.js';
import { cancelRequest } from '../protocol/client-messages.js';
import { defaultDialer, negotiateTls, type Backend, type BackendTarget, type Dialer } from './backend.js';
import { BACKEND_START_SQL } from './identity-context.js';
import { BackendPool } from './pool.js';
import { query } from '../protocol/client-messages.js';

export interface PoolManagerOptions {
  readonly waitTimeoutMs: number;
  readonly logger: Logger;
  readonly dialer?: Dialer;
  /** Read each new backend's start time (needed to bind the identity context to it). */
  readonly readBackendStart: boolean;
}

export class PoolManager {
  private readonly pools = new Map<string, BackendPool>();

  constructor(private readonly options: PoolManagerOptions) {}

  get(database: DatabaseConfig, account: AccountConfig): BackendPool {
    const key = `${database.name}/${account.name}`;
    let pool = this.pools.get(key);
    if (!pool) {
      const target: BackendTarget = {
        host: database.host,
        port: database.port,
        dbname: database.dbname,
        sslmode: database.sslmode,
        ...(database.ca ? { ca: database.ca } : {}),
        user: account.name,
        password: account.password,
      };
      pool = new BackendPool({
        name: key,
        target,
        size: account.poolSize ?? database.pool.size,
        idleTimeoutMs: database.pool.idleTimeoutMs,
        maxLifetimeMs: database.pool.maxLifetimeMs,
        waitTimeoutMs: this.options.waitTimeoutMs,
        logger: this.options.logger,
        ...(this.options.dialer ? { dialer: this.options.dialer } : {}),
        ...(this.options.readBackendStart ? { prepare: readBackendStart } : {}),
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Forwards a cancel to the backend a session currently holds. Fire and forget, as libpq does. */
  cancel(backend: Backend): void {
    const { host, port } = backend.target;
    const raw = (this.options.dialer ?? defaultDialer)(host, port);
    negotiateTls(raw, backend.target).then(
      (socket) => {
        socket.on('error', () => socket.destroy());
        socket.end(cancelRequest(backend.processId, backend.secretKey));
      },
      (e: Error) => this.options.logger.warn({ event: 'cancel_failed', pool: `${backend.target.dbname}/${backend.target.user}`, reason: e.message }, 'could not forward cancel'),
    );
  }

  stats(): Record<string, ReturnType<BackendPool['stats']>> {
    return Object.fromEntries([...this.pools].map(([k, p]) => [k, p.stats()]));
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
  }
}

async function readBackendStart(backend: Backend): Promise<void> {
  const result = await backend.run(query(BACKEND_START_SQL));
  const value = result.rows[0]?.[0];
  if (result.error || !value) throw new Error(`cannot read the backend start time: ${result.error?.message ?? 'no row'}`);
  backend.attributes.set('startMicros', value);
}
