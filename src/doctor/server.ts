/**
 * `gprxy doctor --config FILE` (issue 19), the proxy's side: the config's warnings, each provider (discovery,
 * signing keys, clock), each database × account login (src/proxy/backend-check.ts, as `serve --check
 * --connect`), and whether `gprxy db init` has prepared each oauth database (the gprxy schema's functions
 * exist), read as one of the accounts the proxy logs in with.
 */
import { mappedAccounts, type ProxyConfig } from '../config/proxy-config.js';
import { fetchWithCa } from '../net/ca-fetch.js';
import { query } from '../protocol/client-messages.js';
import { Backend } from '../proxy/backend.js';
import { checkBackends, describeCheck, type BackendCheck } from '../proxy/backend-check.js';
import { inspectIssuer } from './issuer.js';
import { check, type DoctorCheck } from './report.js';

export interface ServerDoctorDeps {
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
  readonly timeoutMs?: number;
}

const DB_INIT_SQL =
  "SELECT pg_catalog.to_regprocedure('gprxy.claims()') IS NOT NULL, pg_catalog.to_regprocedure('gprxy.begin_session(bigint)') IS NOT NULL";

async function dbInitStatus(config: ProxyConfig, logins: readonly BackendCheck[], configFile: string, timeoutMs: number): Promise<DoctorCheck[]> {
  const out: DoctorCheck[] = [];
  for (const database of Object.values(config.databases)) {
    if (database.mode !== 'oauth') continue;
    const subject = `db init on ${database.name}`;
    const login = logins.find((c) => c.database === database.name && c.outcome === 'ok' && c.account);
    if (!login) {
      out.push(check('db_init', 'skip', subject, 'no account could log in (above)'));
      continue;
    }
    const account = config.accounts[login.account!]!;
    try {
      const backend = await Backend.connect(
        { host: database.host, port: database.port, dbname: database.dbname, sslmode: database.sslmode, ...(database.ca ? { ca: database.ca } : {}), user: account.name, password: account.password, ...(account.sslcert && account.sslkey ? { sslcert: account.sslcert, sslkey: account.sslkey } : {}) },
        { timeoutMs, applicationName: 'gprxy doctor' },
      );
      try {
        const result = await backend.run(query(DB_INIT_SQL), timeoutMs);
        const [claims, beginSession] = result.rows[0] ?? [];
        if (result.error) out.push(check('db_init', 'fail', subject, `could not read the schema: ${result.error.message}`, `run gprxy db init --config ${configFile}`));
        else if (claims !== 't') out.push(check('db_init', 'fail', subject, 'schema gprxy is missing: policies cannot read the signed identity (gprxy.user_id() …)', `run gprxy db init --config ${configFile}`));
        else if (beginSession !== 't') out.push(check('db_init', 'fail', subject, 'gprxy.begin_session is missing (an older db init): contexts are not bound to the checkout', `run gprxy db init --config ${configFile} again`));
        else out.push(check('db_init', 'ok', subject, 'schema gprxy with claims() and begin_session()'));
      } finally {
        backend.close();
      }
    } catch (e) {
      out.push(check('db_init', 'fail', subject, (e as Error).message, `run gprxy db init --config ${configFile}`));
    }
  }
  return out;
}

export async function serverDoctor(config: ProxyConfig, configFile: string, deps: ServerDoctorDeps = {}): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  checks.push(check('config', 'ok', `config ${configFile}`, `${config.providers.length} provider(s), ${Object.keys(config.databases).length} database(s), accounts mapped: ${mappedAccounts(config).join(', ') || 'none'}`));
  for (const w of config.warnings) checks.push(check('config_warning', 'warn', 'config', w, 'see README "Rules for CI jobs"'));
  const providers = await Promise.all(
    config.providers.map((p, i) =>
      inspectIssuer(p.issuer, {
        ...(p.jwksUri ? { jwksUri: p.jwksUri } : {}),
        fetch: deps.fetch ?? fetchWithCa(p.ca),
        ...(deps.now ? { now: deps.now } : {}),
        label: `providers[${i}] ${p.issuer}`,
        caHint: p.ca ? `check providers[${i}].ca` : `a private provider needs providers[${i}].ca`,
      }),
    ),
  );
  for (const p of providers) checks.push(...p.checks);
  const timeoutMs = deps.timeoutMs ?? 5_000;
  const logins = await checkBackends(config, { timeoutMs });
  for (const c of logins) {
    checks.push(check(c.account ? 'database_login' : 'database_reachable', c.outcome === 'ok' ? 'ok' : 'fail', `${c.database}${c.account ? ` as ${c.account}` : ''} (${c.target})`, c.outcome === 'ok' ? c.message : `${c.outcome.replace('_', ' ')}`, c.outcome === 'ok' ? undefined : describeCheck(c).split(': ').slice(1).join(': ')));
  }
  checks.push(...(await dbInitStatus(config, logins, configFile, timeoutMs)));
  return checks;
}
