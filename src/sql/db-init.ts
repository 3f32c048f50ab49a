/**
 * `gprxy db init` as a library: plan the SQL for one database of the proxy config (roles and grants,
 * schema gprxy, the context secret), print it, or apply it in one transaction and report what changed.
 *
 * Idempotent by construction: every statement is a no-op when its object is already as wanted, and the
 * two things that cannot be written that way are decided from the catalog first: a service account's
 * password is only set when the stored SCRAM verifier does not already match the config's password (read
 * from pg_authid, or by trying to log in when the admin may not read it), and a context secret differing
 * from the stored one is refused unless --rotate-secret says to rotate. A catalog snapshot before and after
 * tells the operator whether anything changed.
 *
 * The cleartext passwords never leave this process (verifiers are computed here, src/sql/scram.ts); the
 * context secret is sent as a bind parameter, so it appears in no query text or statement log.
 */
import type { DatabaseConfig, ProxyConfig } from '../config/proxy-config.js';
import { accountSettingsFor, accountSettingsStatement, settingsToRemove, type RoleSettingRow } from './account-settings.js';
import { DbInitError } from './errors.js';
import { forceRlsStatement, hbaLines, inspectFindings } from './findings.js';
import { PEER_FUNCTION_GROUPS, peerIsolationStatements, publicPeerFunctions, type PeerFunctionGroup } from './peer-isolation.js';
import { inspectPublicCreate, revokePublicCreateStatement } from './public-schema.js';
import { GPRXY_SCHEMA, identitySchemaStatements, OWNER_ROLE, secretStatements } from './identity-schema.js';
import { resolveAccountLevels, type AccessLevel } from './levels.js';
import { clearPassword, databaseGrants, ensureLoginRole, ensureNologinRole, GROUP_ROLES, groupMembership, schemaGrants, setPassword } from './roles.js';
import { scramVerifier, scramVerifierMatches } from './scram.js';
import { catalogSnapshot, changedSections } from './snapshot.js';
import { NO_GROUP_OBJECTS_TRIGGER, perUserHbaLines, perUserStatements, provisionerNotes, USERS_ROLE } from './per-user.js';
import { groupMapping } from './user-groups.js';

export interface Queryable {
  query(sql: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
}

export interface AdminConnection extends Queryable {
  end(): Promise<void>;
}

export interface DbInitOptions {
  /** A key of `databases`; default: every oauth database of the config. */
  readonly database?: string;
  /** Make the config's context secret current and keep the stored one accepted as previous. */
  readonly rotateSecret?: boolean;
  /** Schemas whose tables, sequences and routines the group roles get privileges on (default: public). */
  readonly schemas?: readonly string[];
  /** Explicit privilege levels per account (see src/sql/levels.ts for the default). */
  readonly levels?: Readonly<Record<string, AccessLevel>>;
  /** Leave CREATE on schema public to PUBLIC where the server grants it (PostgreSQL 13/14 defaults). */
  readonly keepPublicCreate?: boolean;
  /** Leave the activity, signal and large-object functions executable by PUBLIC (src/sql/peer-isolation.ts). */
  readonly keepPeerAccess?: boolean;
  /** FORCE ROW LEVEL SECURITY on RLS tables whose owner is (reachable by) a service account. */
  readonly forceRls?: boolean;
}

/** What the catalogs say before planning; without it the plan assumes nothing (--print without a server). */
export interface DatabaseState {
  readonly existingRoles: ReadonlySet<string>;
  /** Accounts whose stored password already is the config's. */
  readonly passwordsCurrent: ReadonlySet<string>;
  readonly secret: { readonly current: 'absent' | 'match' | 'differs' | 'unreadable'; readonly previous: boolean };
  /** server_version_num. */
  readonly serverVersion: number;
  /** The admin may set superuser-only parameters (log_parameter_max_length) for roles. */
  readonly privileged: boolean;
  /** The accounts' role and role-in-database settings as found. */
  readonly roleSettings: readonly RoleSettingRow[];
  /** PUBLIC holds CREATE on schema public. */
  readonly publicCreate: boolean;
  /** The admin may change schema public's ACL. */
  readonly mayChangePublic: boolean;
  readonly databaseOwner: string;
  /** The admin is a superuser (pg_catalog's function ACLs). */
  readonly superuser: boolean;
  /** Peer functions PUBLIC may still execute, per group. */
  readonly publicPeerFunctions: ReadonlyMap<PeerFunctionGroup['key'], readonly string[]>;
  /** The provisioning connection's role (per_user databases), when it exists here. */
  readonly provisioner?: { readonly name: string; readonly superuser: boolean };
}

export interface PlanStatement {
  readonly sql: string;
  /** `$1` in sql is the context secret: a bind parameter when applied, a psql variable when printed. */
  readonly usesSecret?: true;
}

export interface DbInitPlan {
  readonly database: DatabaseConfig;
  readonly statements: readonly PlanStatement[];
  /** Every role db init manages (owner, groups, accounts). */
  readonly roles: readonly string[];
  readonly schemas: readonly string[];
  /** What the plan will do that the operator should know (created roles, passwords, secret). */
  readonly notes: readonly string[];
  /** pg_hba.conf lines for certificate authentication of the accounts. */
  readonly hba: readonly string[];
}

export interface DbInitResult {
  readonly database: string;
  /** Catalog sections that changed; empty when the database was already up to date. */
  readonly changed: readonly string[];
  readonly notes: readonly string[];
  /** What db init found but left alone (src/sql/findings.ts), read after applying. */
  readonly findings: readonly string[];
}

export const PRINT_SECRET_VARIABLE = 'gprxy_context_secret';
const LOCK_SQL = `SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('gprxy db init'))`;
/**
 * First in db init's transaction: every name its statements leave unqualified (types, now(), operators)
 * resolves in pg_catalog, never in a schema a service account can create in, whatever the admin's own
 * search_path says. (PL/pgSQL and SQL function bodies pin their own.)
 */
export const SAFE_SEARCH_PATH_SQL = 'SET LOCAL search_path = pg_catalog, pg_temp';

export function managedRoles(config: Pick<ProxyConfig, 'accounts'> & Partial<Pick<ProxyConfig, 'databases'>>): string[] {
  const perUser = Object.values(config.databases ?? {}).some((d) => d.identity === 'per_user');
  return [OWNER_ROLE, ...Object.values(GROUP_ROLES), ...(perUser ? [USERS_ROLE] : []), ...Object.keys(config.accounts)];
}

/** The user of provisioning.admin_url (the role that provisions per-user roles), if it names one. */
export function provisionerRole(config: Pick<ProxyConfig, 'provisioning'>): string | undefined {
  if (!config.provisioning) return undefined;
  try {
    return decodeURIComponent(new URL(config.provisioning.adminUrl).username) || undefined;
  } catch {
    return undefined;
  }
}

/** The databases db init applies to: the named one, or every oauth database. */
export function selectDatabases(config: ProxyConfig, name?: string): DatabaseConfig[] {
  if (name !== undefined) {
    const db = config.databases[name];
    if (!db) throw new DbInitError('unknown_database', `--database ${name}: not a key of databases in the config (${Object.keys(config.databases).join(', ')})`);
    if (db.mode !== 'oauth') throw new DbInitError('no_oauth_database', `database ${name} is in ${db.mode} mode: db init prepares oauth databases (service accounts and the gprxy schema)`);
    return [db];
  }
  const dbs = Object.values(config.databases).filter((d) => d.mode === 'oauth');
  if (dbs.length === 0) throw new DbInitError('no_oauth_database', 'the config has no database in oauth mode: nothing for db init to prepare');
  return dbs;
}

export function planDbInit(config: ProxyConfig, database: DatabaseConfig, options: DbInitOptions = {}, state?: DatabaseState): DbInitPlan {
  const levels = resolveAccountLevels(config, options.levels);
  const schemas = [...new Set(options.schemas?.length ? options.schemas : ['public'])];
  const notes: string[] = [];
  const statements: PlanStatement[] = [];
  const add = (...sql: string[]) => statements.push(...sql.map((s) => ({ sql: s })));

  for (const group of Object.values(GROUP_ROLES)) add(ensureNologinRole(group));
  for (const [account, level] of levels) {
    add(ensureLoginRole(account));
    const password = accountPassword(config, account);
    if (password === undefined) {
      // Certificate authentication (accounts.<name>.sslcert): no password the proxy needs, none to keep.
      add(clearPassword(account));
    } else if (!state?.passwordsCurrent.has(account)) {
      add(setPassword(account, scramVerifier(password)));
      if (state) notes.push(state.existingRoles.has(account) ? `password of ${account} set (the stored one differs from the config's, or could not be checked)` : `account ${account} created (${level})`);
    }
    add(groupMembership(account, level));
    add(accountSettingsStatement(account));
  }
  if (state) notes.push(...roleSettingNotes(state, [...levels.keys()]));
  add(...databaseGrants(database.dbname));
  const creators = [...levels].filter(([, l]) => l === 'admin').map(([a]) => a);
  for (const schema of schemas) add(...schemaGrants(schema, [GROUP_ROLES.admin, ...creators]));
  add(...identitySchemaStatements());
  if (!options.keepPublicCreate) add(revokePublicCreateStatement());
  if (!options.keepPeerAccess) add(...peerIsolationStatements());
  if (options.forceRls) add(forceRlsStatement([...levels.keys()]));
  if (state) notes.push(...hardeningNotes(state, options));
  const hba = hbaLines(database, [...levels.keys()]);
  if (database.identity === 'per_user') {
    // Without a server (--print alone) the admin URL's user is assumed to exist and not to be a superuser.
    const named = provisionerRole(config);
    const provisioner = state ? state.provisioner : named !== undefined ? { name: named, superuser: false } : undefined;
    const limited = provisioner && !provisioner.superuser ? provisioner.name : undefined;
    add(...perUserStatements(groupMapping(config).all, limited, state?.serverVersion ?? 160000));
    notes.push(...provisionerNotes(provisioner?.name, provisioner?.superuser ?? false, state?.serverVersion ?? 160000));
    if (state && !state.superuser) {
      notes.push(`per-user roles: event trigger ${NO_GROUP_OBJECTS_TRIGGER} not created (only a superuser may): until it is, a user can leave objects owned by a group (SET ROLE, then CREATE FUNCTION … SECURITY DEFINER) that keep the group's privileges after the IdP takes the role away. Run db init as a superuser`);
    }
    hba.push(...perUserHbaLines(database.dbname, database.sslmode));
  }

  if (config.context.secret === undefined) {
    notes.push('no context.secret in the config: gprxy.claims() returns NULL until db init runs with one');
  } else {
    const secret = state?.secret;
    if (secret?.current === 'differs' && !options.rotateSecret) {
      throw new DbInitError(
        'secret_mismatch',
        `database ${database.name}: context.secret differs from the secret stored in gprxy.context_secret. ` +
          'To rotate (old secret still accepted while proxies restart) run db init --rotate-secret; to drop the old one immediately, run it again without the flag afterwards.',
      );
    }
    statements.push(...secretStatements(options.rotateSecret === true).map((sql) => ({ sql, usesSecret: true as const })));
    if (secret?.current === 'absent') notes.push('context secret installed');
    else if (secret?.current === 'differs') notes.push('context secret rotated: the previous one stays accepted until db init runs again without --rotate-secret');
    else if (secret?.current === 'match' && secret.previous && !options.rotateSecret) notes.push('previous context secret dropped: the rotation is complete');
    else if (secret?.current === 'match' && options.rotateSecret) notes.push('context secret already current (a previous one, if any, stays accepted)');
    else if (secret?.current === 'unreadable') notes.push('this admin cannot read gprxy.context_secret: run db init as a superuser or a member of gprxy_owner');
  }
  return { database, statements, roles: managedRoles(config), schemas, notes, hba };
}

/** What the public-schema and peer-isolation statements will change here, why, and what that breaks. */
function hardeningNotes(state: DatabaseState, options: DbInitOptions): string[] {
  const notes: string[] = [];
  if (state.publicCreate && !options.keepPublicCreate && !state.mayChangePublic) {
    notes.push(`schema public: PUBLIC may create objects in it, and this admin cannot change that (only its owner or a superuser): every user of a service account can plant functions other users' statements resolve to`);
  } else if (state.publicCreate && !options.keepPublicCreate) {
    notes.push(
      `revoked CREATE on schema public from PUBLIC and granted it to the database owner ${state.databaseOwner} (the PostgreSQL 13/14 default let every user of a service account plant functions other users' statements resolve to); roles that created objects in public need an explicit GRANT CREATE ON SCHEMA public now; keep it with --keep-public-create`,
    );
  }
  if (!options.keepPeerAccess && !state.superuser && state.publicPeerFunctions.size > 0) {
    notes.push(
      `peer isolation not applied: only a superuser may revoke EXECUTE on ${[...state.publicPeerFunctions.values()].flat().slice(0, 3).join(', ')}, ... from PUBLIC; until then users of one account read each other's query text, signal each other's backends and share large objects. Run db init as a superuser`,
    );
  } else if (!options.keepPeerAccess) {
    for (const group of PEER_FUNCTION_GROUPS) {
      const functions = state.publicPeerFunctions.get(group.key);
      if (!functions?.length) continue;
      const to = group.grantTo.length ? `, granted to ${group.grantTo.join(', ')}` : '';
      notes.push(`revoked EXECUTE on ${functions.join(', ')} from PUBLIC in this database${to}: ${group.why}. Breaks: ${group.breaks}; keep them with --keep-peer-access`);
    }
  }
  return notes;
}

/** What the role-settings blocks will do here, in words (see src/sql/account-settings.ts). */
function roleSettingNotes(state: DatabaseState, accounts: readonly string[]): string[] {
  const notes: string[] = [];
  for (const r of settingsToRemove(state.roleSettings, state.serverVersion, state.privileged)) {
    notes.push(`removed role setting ${r.entry} of ${r.account} (${r.database === null ? 'every database' : `database ${r.database}`}): db init owns the accounts' settings, any user of an account can change them for all its users`);
  }
  const wanted = accountSettingsFor(state.serverVersion, state.privileged);
  for (const setting of wanted) {
    const accountsWithout = accounts.filter((a) => !state.roleSettings.some((r) => r.account === a && r.database === null && r.entry === `${setting.name}=${setting.value}`));
    if (accountsWithout.length > 0) notes.push(`set ${setting.name} = ${setting.value} for ${accountsWithout.join(', ')}: ${setting.why}`);
  }
  if (!state.privileged) {
    notes.push('log_parameter_max_length not set for the accounts: it needs a superuser (or GRANT SET ON PARAMETER log_parameter_max_length on PostgreSQL 15+); until then statement logs (log_statement = all, log_min_duration_statement) may show bind values, including the identity context');
  }
  if (state.serverVersion < 140000) {
    notes.push('PostgreSQL 13 has no client_connection_check_interval: a query whose proxy connection is gone runs until it ends or the proxy cancels it');
  }
  return notes;
}

/** The account's password in the config; none when it authenticates with a client certificate. */
function accountPassword(config: Pick<ProxyConfig, 'accounts'>, account: string): string | undefined {
  const entry: { password?: string | undefined } = config.accounts[account]!;
  return entry.password || undefined;
}

/** Reads what planning needs to know. `probeLogin` checks a password by logging in when pg_authid is unreadable. */
export async function inspectDatabase(
  client: Queryable,
  config: ProxyConfig,
  probeLogin?: (user: string, password: string) => Promise<boolean>,
): Promise<DatabaseState> {
  const roles = managedRoles(config);
  const existing = new Set(
    (await client.query(`SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1)`, [roles])).rows.map((r) => String(r.rolname)),
  );
  const accounts = Object.keys(config.accounts).filter((a) => existing.has(a));
  const passwordsCurrent = new Set<string>();
  const canReadAuthid = (await client.query(`SELECT pg_catalog.has_table_privilege('pg_catalog.pg_authid', 'SELECT') AS ok`)).rows[0]?.ok === true;
  if (canReadAuthid) {
    const stored = await client.query(`SELECT rolname, rolpassword FROM pg_catalog.pg_authid WHERE rolname = ANY($1)`, [accounts]);
    for (const row of stored.rows) {
      const name = String(row.rolname);
      const password = accountPassword(config, name);
      if (password !== undefined && scramVerifierMatches(row.rolpassword as string | null, password)) passwordsCurrent.add(name);
    }
  } else if (probeLogin) {
    for (const name of accounts) {
      const password = accountPassword(config, name);
      if (password !== undefined && (await probeLogin(name, password))) passwordsCurrent.add(name);
    }
  }

  let secret: DatabaseState['secret'] = { current: 'absent', previous: false };
  const table = (await client.query(`SELECT pg_catalog.to_regclass('${GPRXY_SCHEMA}.context_secret') IS NOT NULL AS present`)).rows[0]?.present === true;
  if (table) {
    const readable = (await client.query(`SELECT pg_catalog.has_table_privilege('${GPRXY_SCHEMA}.context_secret', 'SELECT') AS ok`)).rows[0]?.ok === true;
    if (!readable) secret = { current: 'unreadable', previous: false };
    else if (config.context.secret !== undefined) {
      const rows = (
        await client.query(`SELECT slot, secret = pg_catalog.convert_to($1, 'UTF8') AS same FROM ${GPRXY_SCHEMA}.context_secret`, [config.context.secret])
      ).rows;
      const current = rows.find((r) => r.slot === 'current');
      secret = { current: !current ? 'absent' : current.same === true ? 'match' : 'differs', previous: rows.some((r) => r.slot === 'previous') };
    }
  }
  const server = (
    await client.query(
      `SELECT pg_catalog.current_setting('server_version_num')::integer AS version,
              (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER) AS superuser`,
    )
  ).rows[0]!;
  const serverVersion = Number(server.version);
  let privileged = server.superuser === true;
  if (!privileged && serverVersion >= 150000) {
    privileged = (await client.query(`SELECT pg_catalog.has_parameter_privilege('log_parameter_max_length', 'SET') AS ok`)).rows[0]?.ok === true;
  }
  const roleSettings = (
    await client.query(
      `SELECT r.rolname AS account, db.datname AS database, e.entry
         FROM pg_catalog.pg_db_role_setting AS d
         JOIN pg_catalog.pg_roles AS r ON r.oid = d.setrole
         LEFT JOIN pg_catalog.pg_database AS db ON db.oid = d.setdatabase AND d.setdatabase <> 0
        CROSS JOIN LATERAL pg_catalog.unnest(d.setconfig) WITH ORDINALITY AS e(entry, n)
        WHERE r.rolname = ANY($1) ORDER BY 1, 2 NULLS FIRST, e.n`,
      [Object.keys(config.accounts)],
    )
  ).rows.map((r) => ({ account: String(r.account), database: r.database === null ? null : String(r.database), entry: String(r.entry) }));
  const { publicCreate, mayChangePublic, databaseOwner } = await inspectPublicCreate(client);
  return {
    existingRoles: existing,
    passwordsCurrent,
    secret,
    serverVersion,
    privileged,
    roleSettings,
    publicCreate,
    mayChangePublic,
    databaseOwner,
    superuser: server.superuser === true,
    publicPeerFunctions: await publicPeerFunctions(client),
    ...(await inspectProvisioner(client, config)),
  };
}

/** Whether provisioning.admin_url's role exists and is a superuser (what db init must grant it otherwise). */
async function inspectProvisioner(client: Queryable, config: ProxyConfig): Promise<{ provisioner?: { name: string; superuser: boolean } }> {
  const name = provisionerRole(config);
  if (name === undefined) return {};
  const row = (await client.query(`SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1`, [name])).rows[0];
  if (!row) return {};
  return { provisioner: { name, superuser: row.rolsuper === true } };
}

/** Runs a plan's statements on `client`, inside the caller's transaction. */
export async function applyDbInit(client: Queryable, plan: DbInitPlan, secret: string | undefined): Promise<void> {
  for (const statement of plan.statements) {
    if (statement.usesSecret) {
      if (secret === undefined) continue;
      await client.query(statement.sql, [secret]);
    } else {
      await client.query(statement.sql);
    }
  }
}

/**
 * One database: lock, inspect, plan, apply, all in one transaction (a failure changes nothing). With
 * `print`, a read-only transaction that only inspects, and the plan is returned for rendering.
 */
export async function initDatabase(
  client: Queryable,
  config: ProxyConfig,
  database: DatabaseConfig,
  options: DbInitOptions & { print?: boolean; probeLogin?: (user: string, password: string) => Promise<boolean> } = {},
): Promise<{ plan: DbInitPlan; findings: readonly string[]; result?: DbInitResult }> {
  await client.query(options.print ? 'BEGIN TRANSACTION READ ONLY' : 'BEGIN');
  try {
    await client.query(SAFE_SEARCH_PATH_SQL);
    if (!options.print) await client.query(LOCK_SQL);
    const state = await inspectDatabase(client, config, options.probeLogin);
    const plan = planDbInit(config, database, options, state);
    const findingsInput = {
      accounts: Object.keys(config.accounts),
      adminAccounts: [...resolveAccountLevels(config, options.levels)].filter(([, l]) => l === 'admin').map(([a]) => a),
      managedSchemas: plan.schemas,
      databases: Object.values(config.databases).filter((d) => d.mode === 'oauth' && d.host === database.host && d.port === database.port).map((d) => d.dbname),
    };
    if (options.print) {
      const findings = await inspectFindings(client, findingsInput);
      await client.query('ROLLBACK');
      return { plan, findings };
    }
    const before = await catalogSnapshot(client, plan);
    await applyDbInit(client, plan, config.context.secret);
    const after = await catalogSnapshot(client, plan);
    const findings = await inspectFindings(client, findingsInput);
    await client.query('COMMIT');
    return { plan, findings, result: { database: database.name, changed: changedSections(before, after), notes: plan.notes, findings } };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

function psqlQuote(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** The SQL of one or more plans as a psql script; the secret is the psql variable, never its value. */
export function renderPlans(plans: readonly DbInitPlan[], findings: readonly (readonly string[])[] = []): string {
  const out = [
    '-- gprxy db init: roles and grants, schema gprxy (identity context for row-level security) and the context secret.',
    '-- Passwords appear only as SCRAM verifiers; the context secret is the psql variable :' + PRINT_SECRET_VARIABLE + ', e.g.',
    `--   gprxy db init --config gprxy.yaml --print | psql -v ON_ERROR_STOP=1 -v ${PRINT_SECRET_VARIABLE}="$GPRXY_CONTEXT_SECRET" "$ADMIN_URL"`,
    '-- Every statement is safe to run again.',
  ];
  for (const [i, plan] of plans.entries()) {
    out.push('', `-- database ${plan.database.name} (${plan.database.dbname})`, `\\connect ${psqlQuote(plan.database.dbname)}`, 'BEGIN;', `${SAFE_SEARCH_PATH_SQL};`);
    for (const note of plan.notes) out.push(`-- ${note}`);
    for (const finding of findings[i] ?? []) out.push(`-- check: ${finding}`);
    for (const s of plan.statements) out.push(s.usesSecret ? s.sql.replace(/\$1\b/g, `:'${PRINT_SECRET_VARIABLE}'`) : s.sql);
    out.push('COMMIT;', ...plan.hba.map((l) => `-- ${l.replace(/^# ?/, '')}`));
  }
  return out.join('\n') + '\n';
}

/** The admin URL with the config database's name (and its host when the URL names none), or a login's credentials. */
export function adminConnectionString(adminUrl: string, database: DatabaseConfig, login?: { user: string; password: string }): string {
  let url: URL;
  try {
    url = new URL(adminUrl);
  } catch {
    throw new DbInitError('invalid_admin_url', 'the admin URL is not a URL: expected postgresql://USER:PASSWORD@HOST:PORT/?sslmode=...');
  }
  if (url.protocol !== 'postgresql:' && url.protocol !== 'postgres:') {
    throw new DbInitError('invalid_admin_url', `the admin URL must start with postgresql:// (got ${url.protocol}//)`);
  }
  if (!url.hostname && !url.searchParams.has('host')) {
    url.hostname = database.host;
    url.port = String(database.port);
  }
  url.pathname = `/${encodeURIComponent(database.dbname)}`;
  if (login) {
    url.username = encodeURIComponent(login.user);
    url.password = encodeURIComponent(login.password);
  }
  return url.toString();
}

/** The admin connection for messages: the URL db init uses, without its password. */
export function describeAdminConnection(adminUrl: string, database: DatabaseConfig): string {
  const url = new URL(adminConnectionString(adminUrl, database));
  url.password = '';
  return url.toString();
}

export interface RunDbInitOptions extends DbInitOptions {
  readonly adminUrl?: string;
  /** Where the admin URL came from (--admin-url or GPRXY_ADMIN_URL), for messages. */
  readonly adminUrlSource?: string;
  readonly print?: boolean;
  /** Opens a connection to a database (the admin's, or a service account's for the password probe). */
  readonly connect?: (database: DatabaseConfig, login?: { user: string; password: string }) => Promise<AdminConnection>;
  readonly out: (text: string) => void;
}

async function defaultConnect(adminUrl: string, database: DatabaseConfig, login?: { user: string; password: string }): Promise<AdminConnection> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: adminConnectionString(adminUrl, database, login), application_name: 'gprxy db init' });
  client.on('error', () => {});
  await client.connect();
  return client as unknown as AdminConnection;
}

/** The whole command: each selected database in turn; with `print` and no admin URL, touches no server. */
export async function runDbInit(config: ProxyConfig, options: RunDbInitOptions): Promise<DbInitResult[]> {
  const databases = selectDatabases(config, options.database);
  const adminUrl = options.adminUrl;
  const connect = options.connect ?? (adminUrl ? (db: DatabaseConfig, login?: { user: string; password: string }) => defaultConnect(adminUrl, db, login) : undefined);
  if (!connect) {
    if (!options.print) throw new DbInitError('no_admin_url', 'db init needs an admin connection: pass --admin-url postgresql://USER:PASSWORD@HOST:PORT or set GPRXY_ADMIN_URL (or use --print)');
    options.out(renderPlans(databases.map((db) => planDbInit(config, db, options))));
    return [];
  }
  const plans: DbInitPlan[] = [];
  const allFindings: (readonly string[])[] = [];
  const results: DbInitResult[] = [];
  for (const database of databases) {
    let client: AdminConnection;
    try {
      client = await connect(database);
    } catch (e) {
      if (e instanceof DbInitError || !adminUrl) throw e;
      const from = options.adminUrlSource ? ` (from ${options.adminUrlSource})` : '';
      throw new DbInitError(
        'admin_connect_failed',
        `cannot open the admin connection ${describeAdminConnection(adminUrl, database)}${from}: ${(e as Error).message}; check its user, password, host, port and sslmode`,
        { cause: e },
      );
    }
    try {
      const probeLogin = async (user: string, password: string): Promise<boolean> => {
        try {
          const c = await connect(database, { user, password });
          await c.end();
          return true;
        } catch {
          return false;
        }
      };
      const { plan, result, findings } = await initDatabase(client, config, database, { ...options, probeLogin });
      plans.push(plan);
      allFindings.push(findings);
      if (result) {
        results.push(result);
        options.out(
          result.changed.length === 0
            ? `${database.name}: up to date, nothing changed`
            : `${database.name}: applied (changed: ${result.changed.join(', ')})${result.notes.map((n) => `\n  ${n}`).join('')}`,
        );
        if (findings.length) options.out(`${database.name}: check${findings.map((f) => `\n  ! ${f}`).join('')}`);
        options.out(plan.hba.map((l) => `  ${l}`).join('\n'));
      }
    } finally {
      await client.end().catch(() => {});
    }
  }
  if (options.print) options.out(renderPlans(plans, allFindings));
  return results;
}
