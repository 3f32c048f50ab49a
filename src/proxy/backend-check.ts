/**
 * Can the proxy log in to every configured database as every account it maps tokens to? One implementation
 * for `gprxy serve` at start-up (each failure logged as a warning; the proxy keeps serving the rest),
 * `gprxy serve --check --connect`, and later the server side of a `gprxy doctor`. Each pair is tried with the
 * same code the pools use (Backend.connect: TCP, TLS per sslmode, SCRAM), and the outcome is classified so
 * PostgreSQL down, TLS trouble, a wrong account password and a missing database read differently.
 */
import { mappedAccounts, type AccountConfig, type DatabaseConfig, type ProxyConfig } from '../config/proxy-config.js';
import { Backend, BackendError, defaultDialer, negotiateTls, type Dialer } from './backend.js';

export type BackendCheckOutcome = 'ok' | 'unreachable' | 'tls_failed' | 'auth_failed' | 'database_missing' | 'refused';

export interface BackendCheck {
  readonly database: string;
  /** The service account, or undefined for a passthrough database (reachability and TLS only). */
  readonly account: string | undefined;
  /** host:port/dbname */
  readonly target: string;
  readonly outcome: BackendCheckOutcome;
  /** What happened, then the next step; "ok" when fine. */
  readonly message: string;
  /** PostgreSQL's SQLSTATE when the server answered with an error. */
  readonly sqlstate?: string;
}

/** The accounts an oauth database is reached with: every account of role_mapping and CI rules, once each. */
function accountsFor(config: Pick<ProxyConfig, 'roleMapping' | 'accounts' | 'providers'>, database: DatabaseConfig): AccountConfig[] {
  if (database.mode !== 'oauth') return [];
  const names = mappedAccounts(config);
  return names.map((n) => config.accounts[n]).filter((a): a is AccountConfig => !!a);
}

function classify(e: unknown, database: DatabaseConfig, account: string | undefined): Omit<BackendCheck, 'database' | 'account' | 'target'> {
  const message = (e as Error).message;
  if (e instanceof BackendError && e.fields) {
    const sqlstate = e.fields.code;
    if (sqlstate.startsWith('28')) {
      return {
        outcome: 'auth_failed',
        sqlstate,
        message: `${e.fields.message}: the password of accounts.${account} differs from the database's, or the role is missing; run gprxy db init --config <this file> (it creates the accounts and sets their passwords)`,
      };
    }
    if (sqlstate === '3D000') {
      return { outcome: 'database_missing', sqlstate, message: `${e.fields.message}: create it, or fix databases.${database.name}.dbname` };
    }
    return { outcome: 'refused', sqlstate, message: `PostgreSQL refused: ${e.fields.message} (SQLSTATE ${sqlstate})` };
  }
  if (/TLS|certificate|does not accept TLS/i.test(message)) {
    return { outcome: 'tls_failed', message: `${message}; check databases.${database.name}.sslmode and .ca against the server's TLS set-up` };
  }
  if (e instanceof BackendError && e.code === 'backend_auth_failed') return { outcome: 'auth_failed', message };
  return { outcome: 'unreachable', message: `${message}; is PostgreSQL running there? check databases.${database.name}.host and .port` };
}

export interface CheckBackendsOptions {
  readonly dialer?: Dialer;
  /** Per connection attempt (default 5 s). */
  readonly timeoutMs?: number;
}

/** Tries every database × account pair at once; never throws. */
export async function checkBackends(config: Pick<ProxyConfig, 'databases' | 'roleMapping' | 'accounts' | 'providers'>, options: CheckBackendsOptions = {}): Promise<BackendCheck[]> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const attempts: Promise<BackendCheck>[] = [];
  for (const database of Object.values(config.databases)) {
    const target = `${database.host}:${database.port}/${database.dbname}`;
    const accounts = accountsFor(config, database);
    const pairs: (AccountConfig | undefined)[] = accounts.length ? accounts : [undefined];
    for (const account of pairs) {
      attempts.push(
        (async (): Promise<BackendCheck> => {
          const base = { database: database.name, account: account?.name, target };
          try {
            if (!account) {
              // Passthrough: the client's own credentials log in later; reaching the server (and TLS) is what we can check.
              const raw = (options.dialer ?? defaultDialer)(database.host, database.port);
              const timer = setTimeout(() => raw.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
              const socket = await negotiateTls(raw, {
                host: database.host,
                port: database.port,
                dbname: database.dbname,
                sslmode: database.sslmode,
                ...(database.ca ? { ca: database.ca } : {}),
                user: '',
                password: '',
              });
              clearTimeout(timer);
              socket.destroy();
              return { ...base, outcome: 'ok', message: 'reachable (passthrough: clients log in with their own credentials)' };
            }
            const backend = await Backend.connect(
              { host: database.host, port: database.port, dbname: database.dbname, sslmode: database.sslmode, ...(database.ca ? { ca: database.ca } : {}), user: account.name, password: account.password },
              { timeoutMs, applicationName: 'gprxy check', ...(options.dialer ? { dialer: options.dialer } : {}) },
            );
            backend.close();
            return { ...base, outcome: 'ok', message: 'ok' };
          } catch (e) {
            return { ...base, ...classify(e, database, account?.name) };
          }
        })(),
      );
    }
  }
  return Promise.all(attempts);
}

/** One line per check, for people: "mydb as app_writer (db.internal:5432/mydb): ok". */
export function describeCheck(c: BackendCheck): string {
  return `${c.database}${c.account ? ` as ${c.account}` : ''} (${c.target}): ${c.outcome === 'ok' ? c.message : `${c.outcome.replace('_', ' ')}: ${c.message}`}`;
}
