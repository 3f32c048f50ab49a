/**
 * Transaction pooling: the ParameterStatus values a client is greeted with, per pool and per set of startup
 * parameters. A transaction-mode client holds no backend between transactions, so its login should not
 * wait for one (a busy pool would make logins fail): the first login with given startup parameters applies
 * them on a backend and reads what the server reports (it normalises them: DateStyle 'iso' → 'ISO, MDY');
 * later logins with the same parameters are greeted from here. application_name is the client's own (it
 * names the user) and is filled in per client.
 */
import type { BackendPool } from '../pool.js';

/** Distinct startup-parameter sets remembered per pool (drivers send a handful). */
const MAX_KEYS_PER_POOL = 256;

const cache = new WeakMap<BackendPool, Map<string, ReadonlyMap<string, string>>>();

function keyOf(parameters: Readonly<Record<string, string>>): string {
  return JSON.stringify(
    Object.entries(parameters)
      .filter(([name]) => name !== 'user' && name !== 'database' && name !== 'application_name')
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
}

export function knownGreeting(pool: BackendPool, parameters: Readonly<Record<string, string>>): ReadonlyMap<string, string> | undefined {
  return cache.get(pool)?.get(keyOf(parameters));
}

export function rememberGreeting(pool: BackendPool, parameters: Readonly<Record<string, string>>, reported: ReadonlyMap<string, string>): void {
  let entries = cache.get(pool);
  if (!entries) cache.set(pool, (entries = new Map()));
  if (entries.size >= MAX_KEYS_PER_POOL) entries.delete(entries.keys().next().value!);
  entries.set(keyOf(parameters), new Map(reported));
}
