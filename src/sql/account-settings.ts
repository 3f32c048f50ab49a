/**
 * The service accounts' role settings (pg_db_role_setting), owned by `db init`.
 *
 * Any user of a shared account can run `ALTER ROLE CURRENT_USER [IN DATABASE d] SET <parameter>` for every
 * user-settable parameter (default_transaction_read_only, statement_timeout, search_path, row_security, ...),
 * and every later backend of that account, that is every other user, inherits it (issue 11 item 2). So
 * db init removes every role and role-in-database setting of the accounts except the ones below, which it
 * sets on purpose, and the proxy (src/proxy) compares a new backend's role settings with
 * `isExpectedAccountSetting` to detect an account tampered with between two runs.
 *
 * What it sets, and why:
 * - log_parameter_max_length = 0, log_parameter_max_length_on_error = 0: the proxy sends the signed identity
 *   context and claim values as bind parameters; PostgreSQL writes bind values into its log under
 *   log_statement = all or log_min_duration_statement (item 15). The first needs a superuser (or, on 15+,
 *   GRANT SET ON PARAMETER): without it db init says so and leaves it out.
 * - client_connection_check_interval = 10s (PostgreSQL 14+): a backend whose proxy connection closed ends its
 *   running query within that time instead of running on, unseen, holding a connection slot (item 5).
 */
import { doBlock, ident, literal } from './quote.js';

export interface AccountSetting {
  readonly name: string;
  readonly value: string;
  /** The first server_version_num that has the parameter. */
  readonly since: number;
  /** Only a superuser (or on 15+ a role granted SET on the parameter) may set it for a role. */
  readonly superuserOnly: boolean;
  readonly why: string;
}

export const ACCOUNT_SETTINGS: readonly AccountSetting[] = Object.freeze([
  Object.freeze({
    name: 'log_parameter_max_length',
    value: '0',
    since: 130000,
    superuserOnly: true,
    why: 'keeps bind values (the signed identity context, claim values) out of statement logs',
  }),
  Object.freeze({
    name: 'log_parameter_max_length_on_error',
    value: '0',
    since: 130000,
    superuserOnly: false,
    why: 'keeps bind values out of the log when a statement fails',
  }),
  Object.freeze({
    name: 'client_connection_check_interval',
    value: '10s',
    since: 140000,
    superuserOnly: false,
    why: 'a backend whose proxy connection is gone stops its running query within 10 s',
  }),
]);

/** A setting as pg_db_role_setting.setconfig stores it: `name=value`. */
export function settingEntry(setting: Pick<AccountSetting, 'name' | 'value'>): string {
  return `${setting.name}=${setting.value}`;
}

/**
 * The settings db init sets for each account (at database 0: every database) on a server of this version,
 * when the admin running it may set superuser-only parameters (`privileged`) or not.
 */
export function accountSettingsFor(serverVersionNum: number, privileged = true): readonly AccountSetting[] {
  return ACCOUNT_SETTINGS.filter((s) => serverVersionNum >= s.since && (privileged || !s.superuserOnly));
}

/**
 * For the proxy's check of a new backend: may this pg_db_role_setting entry of the account exist?
 * Only entries db init sets on purpose, and only as role settings for every database (`database` 0);
 * any role-in-database entry is unexpected. A missing expected entry is not tampering (db init run by a
 * non-superuser cannot set log_parameter_max_length).
 */
export function isExpectedAccountSetting(entry: string, database = 0): boolean {
  return database === 0 && ACCOUNT_SETTINGS.some((s) => settingEntry(s) === entry);
}

/**
 * One DO block per account: sets ours where missing or different, then removes every role-in-database
 * setting and every role setting that is not ours. Decided by the server it runs on (version, privilege),
 * so printed SQL is right wherever it is applied; it changes nothing when nothing differs.
 */
export function accountSettingsStatement(account: string): string {
  const wanted = ACCOUNT_SETTINGS.map((s) => {
    const entry = literal(settingEntry(s));
    return [
      `  IF version >= ${s.since}${s.superuserOnly ? ' AND privileged' : ''} THEN`,
      `    wanted := wanted || ${entry}::text;`,
      `    IF NOT EXISTS (SELECT FROM pg_catalog.pg_db_role_setting AS d WHERE d.setrole = account AND d.setdatabase = 0 AND ${entry} = ANY (d.setconfig)) THEN`,
      `      ALTER ROLE ${ident(account)} SET ${s.name} = ${literal(s.value)};`,
      `    END IF;`,
      `  END IF;`,
    ].join('\n');
  });
  const body = [
    `  IF NOT privileged AND version >= 150000 THEN`,
    `    privileged := pg_catalog.has_parameter_privilege('log_parameter_max_length', 'SET');`,
    `  END IF;`,
    ...wanted,
    `  FOR s IN SELECT d.setdatabase, e.entry`,
    `             FROM pg_catalog.pg_db_role_setting AS d CROSS JOIN LATERAL pg_catalog.unnest(d.setconfig) AS e(entry)`,
    `            WHERE d.setrole = account LOOP`,
    `    CONTINUE WHEN s.setdatabase = 0 AND s.entry = ANY (wanted);`,
    `    -- A placeholder's name (app.x) is quoted part by part.`,
    `    guc := pg_catalog.array_to_string(ARRAY(`,
    `             SELECT pg_catalog.quote_ident(p)`,
    `               FROM pg_catalog.unnest(pg_catalog.string_to_array(pg_catalog.split_part(s.entry, '=', 1), '.')) AS p), '.');`,
    `    IF s.setdatabase = 0 THEN`,
    `      EXECUTE pg_catalog.format('ALTER ROLE %I RESET %s', ${literal(account)}, guc);`,
    `    ELSE`,
    `      EXECUTE pg_catalog.format('ALTER ROLE %I IN DATABASE %I RESET %s', ${literal(account)},`,
    `        (SELECT datname FROM pg_catalog.pg_database WHERE oid = s.setdatabase), guc);`,
    `    END IF;`,
    `  END LOOP;`,
  ].join('\n');
  const declare = [
    `  account oid := (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ${literal(account)});`,
    `  version integer := pg_catalog.current_setting('server_version_num')::integer;`,
    `  privileged boolean := (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER);`,
    `  wanted text[] := '{}';`,
    `  s record;`,
    `  guc text;`,
  ].join('\n');
  return doBlock(body, declare);
}

/** One account's setting as inspected: `database` 0 is every database. */
export interface RoleSettingRow {
  readonly account: string;
  readonly database: string | null;
  readonly entry: string;
}

/** What the DO block will remove, for db init's report (same rule as the block). */
export function settingsToRemove(rows: readonly RoleSettingRow[], serverVersionNum: number, privileged: boolean): RoleSettingRow[] {
  const keep = new Set(accountSettingsFor(serverVersionNum, privileged).map(settingEntry));
  return rows.filter((r) => r.database !== null || !keep.has(r.entry));
}
