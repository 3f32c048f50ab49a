/**
 * Checks every new backend for role settings the proxy did not expect (issue 11, item 2). Any user of a
 * shared service account can run `ALTER ROLE CURRENT_USER SET <param> = ...` (statement_timeout,
 * default_transaction_read_only, search_path, row_security, ...) and end its peers' backends: every
 * backend opened afterwards starts with that value, for every user of the account.
 *
 * So before a new backend serves anyone we read the settings it actually started with from the role
 * (pg_settings.source 'user' / 'database user': what this backend applied, no race with a later ALTER ROLE)
 * and the role's stored settings (pg_db_role_setting, for this database and for all: it also shows `role`
 * and `session_authorization`, which pg_settings does not list). A name outside the expected set is
 * tampering: the backend is closed, the setting removed from the role with `ALTER ROLE SESSION_USER [IN
 * DATABASE d] RESET name` (allowed to the role itself; RESET inside a session would only go back to the
 * poisoned role default) over a separate repair connection whose startup packet overrides the parameters
 * that could stop it (timeouts, read-only), and the pool opens a fresh backend. Each time: an audit event
 * `service_account_tampered` naming the settings (never their values) and a metric.
 * A setting the account cannot reset (42501: a superuser or the database owner set it) was not the
 * account's doing: it is kept, reported once in the event's `kept`, and not checked again.
 */
import type { Logger } from 'pino';
import { query } from '../protocol/client-messages.js';
import { Backend, BackendError, type BackendTarget, type Dialer } from './backend.js';
import { SAFE_SEARCH_PATH, SET_SAFE_SEARCH_PATH } from './backend-sql.js';
import { ACCOUNT_SETTINGS, isExpectedAccountSetting } from '../sql/account-settings.js';
import { literal } from '../sql/quote.js';

/** Names of the role settings `gprxy db init` sets on purpose (src/sql/account-settings.ts owns the list). */
const EXPECTED_NAMES: ReadonlySet<string> = new Set(ACCOUNT_SETTINGS.map((s) => s.name));

/**
 * What a repair connection sends in its startup packet (startup parameters override role settings), so
 * that no role setting can stop it from working: every timeout that can end a query, a transaction or an
 * idle session (a role's `transaction_timeout = 1ms` on 17+ ended the repair connection too, and with it
 * every later login of the account), read-only, search_path and role. Settings newer than the oldest
 * supported server are sent only to servers that know them (an unknown startup parameter is FATAL).
 */
const REPAIR_STARTUP_SETTINGS: readonly { readonly name: string; readonly value: string; readonly since: number }[] = Object.freeze([
  { name: 'statement_timeout', value: '0', since: 0 },
  { name: 'lock_timeout', value: '0', since: 0 },
  { name: 'idle_in_transaction_session_timeout', value: '0', since: 0 },
  { name: 'idle_session_timeout', value: '0', since: 14 },
  { name: 'transaction_timeout', value: '0', since: 17 },
  { name: 'default_transaction_read_only', value: 'off', since: 0 },
  { name: 'search_path', value: SAFE_SEARCH_PATH, since: 0 },
  // `ALTER ROLE ... SET role = other` would make CURRENT_USER another role here: the repair must act as the account.
  { name: 'role', value: 'none', since: 0 },
]);

/** The repair connection's startup settings for a server of this major version (server_version "15.18 (Debian...)"). */
export function repairStartupSettings(serverVersion: string | undefined): Readonly<Record<string, string>> {
  // Unknown version: only what every supported server knows.
  const major = Number.parseInt(serverVersion ?? '', 10) || 0;
  return Object.freeze(Object.fromEntries(REPAIR_STARTUP_SETTINGS.filter((s) => major >= s.since).map((s) => [s.name, s.value])));
}

/** This role's stored settings, here and in every database: scope, name, `name=value` entry, database oid. */
const ROLE_SETTINGS_SQL =
  `SELECT CASE WHEN r.setdatabase OPERATOR(pg_catalog.=) 0 THEN 'role' ELSE 'role_in_database' END, ` +
  `pg_catalog.lower(pg_catalog.split_part(c.cfg, '=', 1)), c.cfg, r.setdatabase::pg_catalog.text ` +
  `FROM pg_catalog.pg_db_role_setting AS r, pg_catalog.unnest(r.setconfig) AS c(cfg) ` +
  `WHERE r.setrole OPERATOR(pg_catalog.=) (SELECT o.oid FROM pg_catalog.pg_roles AS o WHERE o.rolname OPERATOR(pg_catalog.=) SESSION_USER) ` +
  `AND r.setdatabase OPERATOR(pg_catalog.=) ANY (ARRAY[0, (SELECT d.oid FROM pg_catalog.pg_database AS d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())]::pg_catalog.oid[])`;

/** ...plus what this backend actually applied from the role (no race with an ALTER ROLE after it started). */
const CHECK = query(
  `SET statement_timeout = 0; SET lock_timeout = 0; ${SET_SAFE_SEARCH_PATH}; ` +
    `SELECT CASE s.source WHEN 'user' THEN 'role' ELSE 'role_in_database' END, pg_catalog.lower(s.name), NULL, NULL FROM pg_catalog.pg_settings AS s ` +
    `WHERE s.source OPERATOR(pg_catalog.=) ANY (ARRAY['user', 'database user']::pg_catalog.text[]) UNION ${ROLE_SETTINGS_SQL}; RESET ALL`,
);

export class BackendTamperedError extends BackendError {
  constructor(message: string) {
    super('backend_tampered', message);
  }
}

export interface TamperedSetting {
  readonly name: string;
  readonly scope: 'role' | 'role_in_database';
}

export interface BackendGuardOptions {
  readonly pool: string;
  readonly target: BackendTarget;
  readonly logger: Logger;
  readonly dialer?: Dialer;
  /** Called once per detection (for the metric). */
  readonly onTampered?: (pool: string) => void;
}

/** Double-quoted name parts: `app.foo` → `"app"."foo"`. */
function settingName(name: string): string {
  return name
    .split('.')
    .map((part) => `"${part.replace(/"/g, '""')}"`)
    .join('.');
}

export class BackendGuard {
  /** Settings the account could not reset (someone with more rights set them): not the account's doing. */
  private readonly kept = new Set<string>();

  constructor(private readonly options: BackendGuardOptions) {}

  /**
   * db init's own settings are expected as role settings (for every database) with db init's value; a
   * pg_settings row (no entry) only says which name this backend took from the role, so the name decides.
   */
  private expected(scope: string | null, name: string, entry: string | null, database: string | null): boolean {
    if (entry === null) return scope === 'role' && EXPECTED_NAMES.has(name);
    return isExpectedAccountSetting(entry, Number(database));
  }

  /**
   * Resolves when the backend started with only expected role settings. Otherwise repairs the role and
   * throws BackendTamperedError: the caller closes this backend and opens a fresh one.
   */
  async check(backend: Backend): Promise<void> {
    let result;
    try {
      result = await backend.run(CHECK, 10_000);
    } catch (e) {
      // The server ended this backend before it could be checked (a role's idle_session_timeout or
      // transaction_timeout of 1 ms does that to every new backend): look at the role from outside.
      return this.startFailed(e as Error, backend);
    }
    if (!result.error) {
      const found = this.unexpected(result.rows);
      if (found.length === 0) return;
      await this.repair(backend, found);
      return;
    }
    // A poisoned setting can make even the check fail (e.g. statement_timeout = 1ms): repair from outside.
    await this.repair(backend, [], result.error.code);
  }

  /**
   * A new backend of the account ended (or its connection failed) after PostgreSQL accepted the account:
   * role settings may be the cause, so they are checked and repaired over a repair connection, which no
   * role setting can stop. Throws BackendTamperedError when something was repaired (the caller opens a
   * fresh backend), the original error otherwise.
   */
  async startFailed(original: Error, backend?: Backend): Promise<never> {
    return this.repair(backend, [], original instanceof BackendError ? original.code : 'backend_closed', original);
  }

  private unexpected(rows: readonly (string | null)[][]): TamperedSetting[] {
    const seen = new Map<string, TamperedSetting>();
    for (const [scope, name, entry, database] of rows) {
      if (!name || this.kept.has(name) || this.expected(scope ?? null, name, entry ?? null, database ?? null)) continue;
      seen.set(`${scope}:${name}`, { name, scope: scope === 'role' ? 'role' : 'role_in_database' });
    }
    return [...seen.values()];
  }

  private async repair(backend: Backend | undefined, found: TamperedSetting[], checkFailed?: string, original?: Error): Promise<never> {
    const { logger, pool, target } = this.options;
    const repaired: string[] = [];
    const kept: string[] = [];
    let repairError: string | undefined;
    let fixer: Backend | undefined;
    try {
      fixer = await Backend.connect(target, { ...(this.options.dialer ? { dialer: this.options.dialer } : {}), applicationName: 'gprxy repair', settings: repairStartupSettings(backend?.parameters.get('server_version')) });
      const stored = await fixer.run(query(`SET ROLE NONE; ${SET_SAFE_SEARCH_PATH}; ${ROLE_SETTINGS_SQL}`), 10_000);
      if (stored.error) throw new Error(stored.error.message);
      const database = target.dbname.replace(/"/g, '""');
      for (const setting of this.unexpected(stored.rows)) {
        if (!found.some((f) => f.name === setting.name && f.scope === setting.scope)) found.push(setting);
        const where = setting.scope === 'role' ? '' : ` IN DATABASE "${database}"`;
        // One of db init's own settings with another value gets db init's value back; anything else goes.
        const ours = setting.scope === 'role' ? ACCOUNT_SETTINGS.find((a) => a.name === setting.name) : undefined;
        const change = ours ? `SET ${settingName(ours.name)} = ${literal(ours.value)}` : `RESET ${settingName(setting.name)}`;
        const reset = await fixer.run(query(`ALTER ROLE SESSION_USER${where} ${change}`), 10_000);
        if (!reset.error) repaired.push(setting.name);
        else if (reset.error.code === '42501') {
          kept.push(setting.name);
          this.kept.add(setting.name);
        } else repairError = `${setting.name}: ${reset.error.code}`;
      }
    } catch (e) {
      repairError = (e as Error).message;
    } finally {
      fixer?.close();
    }
    const tampered = found.filter((f) => !kept.includes(f.name));
    // A backend that ended for a reason that is not in the role's settings (server shutdown, network): not ours.
    if (original && tampered.length === 0) throw original;
    if (tampered.length > 0 || checkFailed) {
      this.options.onTampered?.(pool);
      logger.warn(
        {
          event: 'service_account_tampered',
          pool,
          account: target.user,
          database: target.dbname,
          ...(backend ? { backend_pid: backend.processId } : {}),
          settings: tampered,
          repaired,
          ...(kept.length ? { kept } : {}),
          ...(checkFailed ? { check_failed: checkFailed } : {}),
          ...(repairError ? { repair_error: repairError } : {}),
        },
        `service account ${target.user} carries role settings the proxy did not set (${tampered.map((t) => t.name).join(', ') || `check failed with ${checkFailed}`}): ` +
          `${repairError ? 'repair failed' : 'reset them'}; this backend is replaced`,
      );
    } else if (kept.length) {
      logger.warn({ event: 'service_account_setting_kept', pool, account: target.user, kept }, `role settings of ${target.user} that the account cannot reset are kept: ${kept.join(', ')}`);
    }
    throw new BackendTamperedError(`backend of ${pool} started with role settings the proxy did not expect`);
  }
}
