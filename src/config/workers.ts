/**
 * `gprxy serve --workers N|auto` and how the config's limits divide among workers. Every worker gets its
 * share of each pool size and of limits.max_client_connections so that the sum over workers equals the
 * configured figure: worker i of N gets floor(size / N), plus one for the first (size mod N) workers.
 */
import { availableParallelism } from 'node:os';
import type { ProxyConfig } from './proxy-config.js';
import { ConfigError } from './proxy-config.js';

/** Workers a cancel key can name (6 bits of its process id, src/proxy/cancel-key.ts). */
export const MAX_WORKERS = 64;

/** The environment variable the primary sets on each worker it forks: its slot, 0..N-1. */
export const WORKER_SLOT_ENV = 'GPRXY_WORKER_SLOT';

/** `auto` = the cores this process may use (os.availableParallelism), at most MAX_WORKERS. */
export function parseWorkers(value: string | undefined): number {
  if (value === undefined || value === '') return 0;
  if (value === 'auto') return Math.min(MAX_WORKERS, Math.max(1, availableParallelism()));
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS) {
    throw new ConfigError(`--workers ${value}: expected a whole number from 1 to ${MAX_WORKERS}, or auto (one per core)`);
  }
  return n;
}

/** The slot a worker was forked for, from the primary's environment variable; undefined outside a worker. */
export function workerSlotFromEnv(env: Readonly<Record<string, string | undefined>>): number | undefined {
  const v = env[WORKER_SLOT_ENV];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n >= MAX_WORKERS) throw new ConfigError(`${WORKER_SLOT_ENV}=${v} is not a worker slot`);
  return n;
}

/**
 * Worker `slot`'s share of `total` among `workers` (the shares add up to `total`). Never below 1: a size below
 * the worker count is refused at start (checkWorkerShares), but a reload may bring one; each worker then keeps
 * one backend rather than none.
 */
export function shareOf(total: number, workers: number, slot: number): number {
  return Math.max(1, Math.floor(total / workers) + (slot < total % workers ? 1 : 0));
}

/**
 * Refuses a worker count that would leave a worker without a backend for some pool: every pool size
 * (and max_client_connections) must be at least the number of workers.
 */
export function checkWorkerShares(config: ProxyConfig, workers: number): void {
  if (workers <= 1) return;
  const problems: string[] = [];
  for (const d of Object.values(config.databases)) {
    if (d.mode !== 'oauth') continue;
    for (const a of Object.values(config.accounts)) {
      const size = a.poolSize ?? d.pool.size;
      if (size < workers) {
        const where = a.poolSize !== undefined ? `accounts.${a.name}.pool_size` : `databases.${d.name}.pool.size`;
        problems.push(`${where} is ${size}, fewer than --workers ${workers}: each worker holds its own share of the pool (${size} / ${workers}); raise the size or lower --workers`);
      }
    }
  }
  if (config.limits.maxClientConnections < workers) problems.push(`limits.max_client_connections (${config.limits.maxClientConnections}) is below --workers ${workers}`);
  if (problems.length) throw new ConfigError([...new Set(problems)].join('\n'));
}

/** The environment variable the primary sets on each worker: the replica id its cancel keys carry. */
export const REPLICA_ID_ENV = 'GPRXY_REPLICA_ID';

export function replicaIdFromEnv(env: Readonly<Record<string, string | undefined>>): number {
  const n = Number(env[REPLICA_ID_ENV] ?? '0');
  if (!Number.isInteger(n) || n < 0 || n > 255) throw new ConfigError(`${REPLICA_ID_ENV}=${env[REPLICA_ID_ENV]} is not a replica id (0-255)`);
  return n;
}
