/**
 * What a client session sets on its backend at checkout, in one round trip: the client's own startup
 * parameters (client_encoding, DateStyle, ...), `application_name` naming the real user, the plain
 * `context.settings` from token claims, and the signed `gprxy.context`; and, when the database has it,
 * `gprxy.begin_session(epoch)`, which records the checkout the context is bound to. Everything goes as
 * bind parameters of a single statement, so no value is ever part of query text, and it is one implicit
 * transaction: if begin_session refuses, none of the settings stay.
 * The account's environment is not trusted (src/proxy/backend-sql.ts): the same message first sets a safe
 * search_path, every name in the statement is qualified, and a final `RESET search_path` gives the session
 * the account's default search_path back (the one the backend guard checked when the backend opened),
 * unless the client asked for its own in the startup packet.
 */
import { extendedQueries } from '../protocol/extended-query.js';
import { SET_SAFE_SEARCH_PATH } from './backend-sql.js';
import { claimAsSettingValue, type Identity } from '../token/identity.js';

/**
 * Startup parameters that are not settings, or that the proxy decides itself, or that would change who
 * the session is: those are never taken from the client.
 */
const NOT_SETTINGS = new Set(['user', 'database', 'replication', 'options', 'application_name', 'role', 'session_authorization']);

function clientMaySet(name: string, settings: Readonly<Record<string, string>>): boolean {
  const lower = name.toLowerCase();
  return !NOT_SETTINGS.has(lower) && !lower.startsWith('gprxy.') && !Object.hasOwn(settings, name) && !lower.startsWith('_pq_.');
}

/** PostgreSQL truncates names to 63 bytes (NAMEDATALEN - 1). */
function truncateBytes(value: string, max = 63): string {
  let out = value;
  while (Buffer.byteLength(out) > max) out = out.slice(0, -1);
  return out;
}

/** `alice@example.com via psql`: pg_stat_activity shows who is behind a shared service account. */
export function applicationNameFor(identity: Identity, clientApplicationName: string | undefined): string {
  const who = identity.email ?? identity.subject;
  return truncateBytes(clientApplicationName ? `${who} via ${clientApplicationName}` : who);
}

export interface SetupInput {
  readonly identity: Identity;
  readonly clientParameters: Readonly<Record<string, string>>;
  readonly settings: Readonly<Record<string, string>>;
  /** The signed context, when context.secret is configured. */
  readonly context?: string;
  /** The checkout epoch the context carries, when the database has gprxy.begin_session. */
  readonly epoch?: number;
}

export function buildSetup(input: SetupInput): Buffer {
  const pairs: [string, string][] = [];
  for (const [name, value] of Object.entries(input.clientParameters)) {
    if (clientMaySet(name, input.settings)) pairs.push([name, value]);
  }
  pairs.push(['application_name', applicationNameFor(input.identity, input.clientParameters.application_name)]);
  for (const [setting, claim] of Object.entries(input.settings)) {
    pairs.push([setting, claimAsSettingValue(input.identity.claims[claim])]);
  }
  if (input.context) pairs.push(['gprxy.context', input.context]);
  const calls = pairs.map((_, i) => `pg_catalog.set_config($${2 * i + 1}, $${2 * i + 2}, false)`);
  const values = pairs.flat();
  if (input.epoch !== undefined) {
    values.push(String(input.epoch));
    calls.push(`gprxy.begin_session($${values.length}::pg_catalog.int8)`);
  }
  const clientSearchPath = pairs.some(([name]) => name.toLowerCase() === 'search_path');
  return extendedQueries([
    { sql: SET_SAFE_SEARCH_PATH, params: [] },
    { sql: `SELECT ${calls.join(', ')}`, params: values },
    ...(clientSearchPath ? [] : [{ sql: 'RESET search_path', params: [] }]),
  ]);
}
