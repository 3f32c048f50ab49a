/**
 * The admin console's language (PgBouncer's admin.c, in our words): SHOW SESSIONS | POOLS | DATABASES |
 * PROVIDERS | LIMITS | STATS | VERSION | HELP, KILL SESSION <id>, KILL USER '<user>', PAUSE [<db>],
 * RESUME [<db>], RELOAD. A statement is planned first (its columns are known without running it, which the
 * extended protocol's Describe needs), then run. Results are result sets with PostgreSQL type OIDs, so psql
 * aligns numbers and node-postgres parses timestamps.
 *
 * Command tags are PgBouncer's (SHOW, KILL, PAUSE, RESUME, RELOAD). Errors carry a SQLSTATE a driver can
 * act on; PgBouncer sends 08P01 for every admin error, but drivers read class 08 as "the connection is
 * broken" (JDBC, pgx), so a typo here is 42601 and a missing database 3D000 as PostgreSQL would say. A
 * failed RELOAD is F0000 as in PgBouncer.
 */
import { readFileSync } from 'node:fs';
import type { ProxyConfig } from '../../config/proxy-config.js';
import type { ColumnDescription } from '../../protocol/server-messages.js';
import { SqlState } from '../../protocol/sqlstate.js';
import { GprxyError } from '../../shared/errors.js';
import type { JwksStats } from '../../token/jwks-cache.js';
import type { PauseGate } from '../pause-gate.js';
import type { PoolManager } from '../pools.js';
import type { SessionRegistry, SessionSnapshot } from '../session-registry.js';

/** PostgreSQL type OIDs of the columns we answer with. */
const OID = { bool: 16, int8: 20, text: 25, timestamptz: 1184 } as const;
const SIZE = { bool: 1, int8: 8, text: -1, timestamptz: 8 } as const;
type ColumnType = keyof typeof OID;

const col = (name: string, type: ColumnType = 'text'): ColumnDescription => ({ name, typeOid: OID[type], typeSize: SIZE[type] });

export class AdminCommandError extends GprxyError<'admin_command'> {
  readonly code = 'admin_command' as const;
  constructor(
    readonly sqlstate: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

export type Value = string | number | boolean | null | undefined;

export interface AdminResult {
  /** Absent for a command that returns no rows (KILL, PAUSE, ...). */
  readonly columns?: readonly ColumnDescription[];
  readonly rows: readonly (readonly Value[])[];
  readonly tag: string;
  /** NoticeResponse text sent before the result (e.g. which sessions a KILL ended). */
  readonly notice?: string;
  /** For the audit line: what the command acted on and how many things it changed. */
  readonly audit?: Record<string, unknown>;
}

/** What the console reads and acts on: the live proxy. */
export interface AdminContext {
  readonly config: () => ProxyConfig;
  readonly registry: SessionRegistry;
  readonly pools: PoolManager;
  readonly jwks: () => Record<string, JwksStats>;
  readonly now: () => number;
  readonly startedAt: number;
  /** Config reload (RELOAD); absent when this proxy cannot reload (then RELOAD is refused, 0A000). */
  readonly reload?: () => Promise<string>;
  /** Totals of sessions that ended, per database (SHOW STATS). */
  readonly totals: () => ReadonlyMap<string, DatabaseTotals>;
  /** With `serve --workers`: the sessions and kills of every worker of this replica, not only this one's. */
  readonly cluster?: AdminCluster;
}

/** What to end: one session by id, or every session of a user (login name or user id); never `except`. */
export interface KillTarget {
  readonly session?: number;
  readonly user?: string;
  readonly except?: number;
}

export interface KillOutcome {
  readonly killed: readonly { readonly id: number; readonly user: string | null }[];
  /** Workers that did not answer (their sessions of the user may still run). */
  readonly unreachable: number;
}

/** The admin console across the workers of one replica (src/proxy/cluster/): answered over IPC by the primary. */
export interface AdminCluster {
  sessions(): Promise<{ readonly sessions: readonly SessionSnapshot[]; readonly unreachable: number }>;
  kill(target: KillTarget): Promise<KillOutcome>;
  /** PAUSE / RESUME on every worker; the primary remembers the paused set for workers that start later. */
  pause(request: PauseRequest): Promise<PauseOutcome>;
  /** Every worker's rows of SHOW POOLS / DATABASES / STATS (localRows), each with its worker slot. */
  show(what: LocalShow): Promise<ShowParts>;
}

export interface ShowParts {
  readonly parts: readonly { readonly worker: number; readonly rows: readonly (readonly Value[])[] }[];
  /** Workers that did not answer (their part is missing). */
  readonly unreachable: number;
}

/** PAUSE or RESUME of `databases` (with `all`, RESUME also takes every database the replica holds paused). */
export interface PauseRequest {
  readonly verb: 'PAUSE' | 'RESUME';
  readonly databases: readonly string[];
  readonly all?: boolean;
}

export interface PauseOutcome {
  /** The databases whose state changed somewhere (in the primary's record or in a worker). */
  readonly changed: readonly string[];
  /** Listening workers that did not answer in time (they may still hand out, or still hold, backends). */
  readonly unreachable: readonly number[];
}

/**
 * Applies PAUSE / RESUME of the named databases to this process's gate; the databases whose state changed here.
 * (`all` is expanded before: by pausePlan in one process, by the primary's ReplicaPause for the workers.)
 */
export function pauseLocal(gate: PauseGate, request: PauseRequest): string[] {
  return request.databases.filter((n) => (request.verb === 'PAUSE' ? gate.pause(n) : gate.resume(n)));
}

/** Ends the sessions of this process that match `target` (KILL here, or a worker's share of a KILL). */
export function killLocal(registry: SessionRegistry, target: KillTarget): { id: number; user: string | null }[] {
  const victims = target.session !== undefined ? [registry.get(target.session)].filter((s) => s !== undefined) : target.user !== undefined ? registry.ofUser(target.user) : [];
  const out: { id: number; user: string | null }[] = [];
  for (const s of victims) {
    if (s.id === target.except) continue;
    s.kill('killed_by_admin');
    out.push({ id: s.id, user: s.identity?.user ?? null });
  }
  return out;
}

async function killEverywhere(ctx: AdminContext, target: KillTarget): Promise<KillOutcome> {
  if (ctx.cluster) return ctx.cluster.kill(target);
  return { killed: killLocal(ctx.registry, target), unreachable: 0 };
}

function unreachableError(outcome: KillOutcome, what: string): AdminCommandError {
  return new AdminCommandError(
    SqlState.CANNOT_CONNECT_NOW,
    `${what}: ${outcome.unreachable} worker${outcome.unreachable === 1 ? '' : 's'} did not answer, so sessions there may still run${outcome.killed.length ? ` (ended here: id ${outcome.killed.map((k) => k.id).join(', ')})` : ''}; run the command again`,
  );
}

export interface DatabaseTotals {
  sessions: number;
  refused: number;
  bytesIn: number;
  bytesOut: number;
}

/** A statement the console understood: columns known before it runs. */
export interface Plan {
  readonly command: string;
  readonly columns?: readonly ColumnDescription[];
  /** The running admin session's own id: KILL may not pick the connection that issued it by accident. */
  run(self: number): Promise<AdminResult> | AdminResult;
}

let cachedVersion: string | undefined;
/** gprxy's version from package.json (src/ and dist/ sit at the same depth below it). */
export function gprxyVersion(): string {
  if (cachedVersion === undefined) {
    try {
      cachedVersion = String((JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown }).version ?? 'unknown');
    } catch {
      cachedVersion = 'unknown';
    }
  }
  return cachedVersion;
}

/** PostgreSQL's text form of a timestamptz ("2026-11-30 01:02:03.456+00"), which every driver parses. */
export function timestamptz(ms: number | null | undefined): string | null {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return null;
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '+00');
}

const HELP: readonly [string, string][] = [
  ['SHOW SESSIONS', 'client connections: who, from where, to which database, state, bytes, current wait'],
  ['SHOW POOLS', 'backend pools per database and service account'],
  ['SHOW DATABASES', 'the databases this proxy serves, paused or not'],
  ['SHOW PROVIDERS', 'identity providers: JWKS keys, last fetch, next refresh, failures'],
  ['SHOW LIMITS', 'configured limits and their current use'],
  ['SHOW STATS', 'sessions, refused logins and bytes per database'],
  ['SHOW VERSION', 'gprxy version'],
  ['KILL SESSION <id>', 'end one session (57P01 to its client)'],
  ["KILL USER '<user>'", 'end every session of a user (login name or user id), e.g. after an offboarding'],
  ['PAUSE [<db>]', 'hand out no backend of the database (all databases without a name) until RESUME'],
  ['RESUME [<db>]', 'undo PAUSE'],
  ['RELOAD', 'reload the configuration file'],
];

function syntaxError(statement: string): AdminCommandError {
  return new AdminCommandError(SqlState.SYNTAX_ERROR, `invalid command '${statement.length > 200 ? `${statement.slice(0, 200)}…` : statement}', use SHOW HELP;`);
}

/** A user name argument: 'quoted' (with '' for a quote), "quoted", or one bare word. */
function parseName(text: string): string | undefined {
  const single = /^'((?:[^']|'')*)'$/s.exec(text);
  if (single) return single[1]!.replace(/''/g, "'");
  const double = /^"((?:[^"]|"")*)"$/s.exec(text);
  if (double) return double[1]!.replace(/""/g, '"');
  return /^[^\s'";]+$/.test(text) ? text : undefined;
}

/** Understands one statement (no trailing semicolon); throws AdminCommandError (42601) when it is not one of ours. */
export function plan(statement: string, ctx: AdminContext): Plan {
  const text = statement.trim();
  const m = /^([A-Za-z]+)(?:\s+([\s\S]*))?$/.exec(text);
  if (!m) throw syntaxError(text);
  const verb = m[1]!.toUpperCase();
  const rest = (m[2] ?? '').trim();
  switch (verb) {
    case 'SHOW':
      return showPlan(rest, ctx, text);
    case 'KILL':
      return killPlan(rest, ctx, text);
    case 'PAUSE':
    case 'RESUME':
      return pausePlan(verb, rest, ctx, text);
    case 'RELOAD':
      if (rest) throw syntaxError(text);
      return {
        command: 'RELOAD',
        async run() {
          if (!ctx.reload) throw new AdminCommandError(SqlState.FEATURE_NOT_SUPPORTED, 'RELOAD is not available in this proxy: restart gprxy serve to apply a changed configuration');
          let summary: string;
          try {
            summary = await ctx.reload();
          } catch (e) {
            throw new AdminCommandError(SqlState.CONFIG_FILE_ERROR, `RELOAD failed, the running configuration stays: ${(e as Error).message}`);
          }
          return { rows: [], tag: 'RELOAD', notice: summary, audit: { summary } };
        },
      };
    default:
      throw syntaxError(text);
  }
}

const POOL_COLUMNS = [col('database'), col('account'), col('pool_mode'), col('size', 'int8'), col('total', 'int8'), col('active', 'int8'), col('idle', 'int8'), col('waiting', 'int8'), col('draining', 'int8'), col('paused', 'bool')];
const DATABASE_COLUMNS = [col('name'), col('host'), col('port', 'int8'), col('dbname'), col('mode'), col('client_auth'), col('pool_mode'), col('pool_size', 'int8'), col('paused', 'bool'), col('sessions', 'int8')];
const STATS_COLUMNS = [col('database'), col('total_sessions', 'int8'), col('refused_logins', 'int8'), col('current_sessions', 'int8'), col('total_received', 'int8'), col('total_sent', 'int8')];

/** The SHOW commands whose rows each worker computes for its own part (`serve --workers`: merged by the caller). */
export type LocalShow = 'POOLS' | 'DATABASES' | 'STATS';

/** This process's rows of SHOW POOLS / DATABASES / STATS (with --workers: one worker's part). */
export function localRows(what: LocalShow, ctx: AdminContext): Value[][] {
  const config = ctx.config();
  switch (what) {
    case 'POOLS':
      return [...ctx.pools.all()].map(([key, pool]) => {
        const [database = '', account = ''] = key.split('/');
        const s = pool.stats();
        const db = Object.hasOwn(config.databases, database) ? config.databases[database] : undefined;
        return [database, account, db?.pool.mode ?? 'session', s.size, s.total, s.active, s.idle, s.waiting + ctx.pools.gate.waiting(database), s.draining, ctx.pools.gate.isPaused(database)];
      });
    case 'DATABASES': {
      const sessions = new Map<string, number>();
      for (const s of ctx.registry.list()) if (s.database) sessions.set(s.database, (sessions.get(s.database) ?? 0) + 1);
      return Object.values(config.databases).map((d) => [d.name, d.host, d.port, d.dbname, d.mode, d.clientAuth, d.pool.mode, d.pool.size, ctx.pools.gate.isPaused(d.name), sessions.get(d.name) ?? 0]);
    }
    case 'STATS': {
      const rows = new Map<string, { sessions: number; refused: number; current: number; bytesIn: number; bytesOut: number }>();
      const row = (db: string) => {
        let r = rows.get(db);
        if (!r) rows.set(db, (r = { sessions: 0, refused: 0, current: 0, bytesIn: 0, bytesOut: 0 }));
        return r;
      };
      for (const name of Object.keys(config.databases)) row(name);
      for (const [db, t] of ctx.totals()) {
        const r = row(db);
        r.sessions += t.sessions;
        r.refused += t.refused;
        r.bytesIn += t.bytesIn;
        r.bytesOut += t.bytesOut;
      }
      for (const s of ctx.registry.list()) {
        if (!s.database || s.mode === 'admin') continue;
        const r = row(s.database);
        r.current++;
        r.bytesIn += s.bytesIn;
        r.bytesOut += s.bytesOut;
      }
      return [...rows].map(([db, r]) => [db, r.sessions + r.current, r.refused, r.current, r.bytesIn, r.bytesOut]);
    }
  }
}

/** The workers' rows as one row per first column (database), in the order first seen; `add` folds one more in. */
function mergeRows(parts: readonly { readonly rows: readonly (readonly Value[])[] }[], add: (had: readonly Value[], row: readonly Value[]) => Value[]): Value[][] {
  const merged = new Map<string, Value[]>();
  for (const row of parts.flatMap((p) => p.rows)) {
    const key = String(row[0]);
    const had = merged.get(key);
    merged.set(key, had ? add(had, row) : [...row]);
  }
  return [...merged.values()];
}

/** SHOW LIMITS from a list of sessions (this process's, or with --workers the replica's). */
function limitRows(ctx: AdminContext, sessions: readonly SessionSnapshot[]): Value[][] {
  const l = ctx.config().limits;
  const perIdentity = new Map<string, number>();
  for (const s of sessions) if (s.subject && s.mode === 'oauth') perIdentity.set(`${s.issuer}\n${s.subject}`, (perIdentity.get(`${s.issuer}\n${s.subject}`) ?? 0) + 1);
  const seconds = (ms: number) => `${ms / 1000}s`;
  return [
    ['max_client_connections', String(l.maxClientConnections), sessions.length],
    ['max_sessions_per_identity', l.maxSessionsPerIdentity === 0 ? 'unlimited' : String(l.maxSessionsPerIdentity), perIdentity.size ? Math.max(...perIdentity.values()) : 0],
    ['login_timeout', seconds(l.loginTimeoutMs), null],
    ['pool_wait_timeout', seconds(l.poolWaitTimeoutMs), null],
    ['backend_connect_timeout', seconds(l.backendConnectTimeoutMs), null],
    ['session_max_lifetime', l.sessionMaxLifetimeMs === 0 ? 'unlimited' : seconds(l.sessionMaxLifetimeMs), null],
    ['end_session_at_token_expiry', String(l.endSessionAtTokenExpiry), null],
  ];
}

function showPlan(what: string, ctx: AdminContext, text: string): Plan {
  const word = what.toUpperCase();
  const simple = (columns: ColumnDescription[], rows: () => (readonly Value[])[] | Promise<(readonly Value[])[]>, notice?: () => string | undefined): Plan => ({
    command: `SHOW ${word}`,
    columns,
    run: async () => {
      const r = await rows();
      const n = notice?.();
      return { columns, rows: r, tag: 'SHOW', ...(n ? { notice: n } : {}) };
    },
  });
  let missing = 0;
  const missingNotice = () => (missing ? `${missing} worker${missing === 1 ? '' : 's'} did not answer: their part is missing from this answer` : undefined);
  switch (word) {
    case 'SESSIONS':
    case 'CLIENTS': {
      const all = async (): Promise<readonly SessionSnapshot[]> => {
        if (!ctx.cluster) return ctx.registry.list((db) => ctx.pools.gate.isPaused(db));
        const r = await ctx.cluster.sessions();
        missing = r.unreachable;
        return [...r.sessions].sort((a, b) => a.since - b.since || a.id - b.id);
      };
      return simple(
        [
          col('id', 'int8'),
          col('user'),
          col('user_id'),
          col('issuer'),
          col('account'),
          col('database'),
          col('mode'),
          col('client_addr'),
          col('application_name'),
          col('since', 'timestamptz'),
          col('state'),
          col('wait'),
          col('wait_since', 'timestamptz'),
          col('bytes_in', 'int8'),
          col('bytes_out', 'int8'),
        ],
        async () =>
          (await all()).map((s) => [s.id, s.user, s.subject, s.issuer, s.account, s.database, s.mode, s.client, s.application, timestamptz(s.since), s.state, s.wait, timestamptz(s.waitingSince), s.bytesIn, s.bytesOut]),
        () => (missing ? `${missing} worker${missing === 1 ? '' : 's'} did not answer: their sessions are missing from this list` : undefined),
      );
    }
    case 'POOLS': {
      // With --workers, one row per worker and pool (a `worker` column), not a sum: each worker holds its own
      // share of a pool and a client waits on its worker's share even when another worker's has room, so a
      // sum would hide exactly the busy share an operator looks for (PgBouncer's SHOW POOLS is per process too).
      const columns = [...POOL_COLUMNS, ...(ctx.cluster ? [col('worker', 'int8')] : [])];
      return simple(
        columns,
        async () => {
          if (!ctx.cluster) return localRows('POOLS', ctx);
          const r = await ctx.cluster.show('POOLS');
          missing = r.unreachable;
          return r.parts
            .flatMap((p) => p.rows.map((row) => [...row, p.worker]))
            .sort((a, b) => String(a[0]).localeCompare(String(b[0])) || String(a[1]).localeCompare(String(b[1])) || Number(a.at(-1)) - Number(b.at(-1)));
        },
        missingNotice,
      );
    }
    case 'DATABASES': {
      return simple(
        DATABASE_COLUMNS,
        async () => {
          if (!ctx.cluster) return localRows('DATABASES', ctx);
          const r = await ctx.cluster.show('DATABASES');
          missing = r.unreachable;
          // One row per database: paused only when every worker that answered holds it paused (the safe
          // answer before maintenance), sessions added up.
          return mergeRows(r.parts, (had, row) => [...had.slice(0, 8), had[8] === true && row[8] === true, Number(had[9]) + Number(row[9])]);
        },
        missingNotice,
      );
    }
    case 'PROVIDERS':
      return simple(
        [col('issuer'), col('prefix'), col('jwks_uri'), col('keys', 'int8'), col('kids'), col('last_fetch', 'timestamptz'), col('next_refresh', 'timestamptz'), col('fetches', 'int8'), col('failures', 'int8'), col('last_error')],
        () => {
          const stats = ctx.jwks();
          return ctx.config().providers.map((p) => {
            const s = stats[p.issuer];
            return [p.issuer, p.prefix ?? null, p.jwksUri ?? null, s?.keys ?? 0, s ? s.kids.join(',') : null, timestamptz(s?.fetchedAt), timestamptz(s?.nextRefreshAt), s?.fetches ?? 0, s?.failures ?? 0, s?.lastError ?? null];
          });
        },
      );
    case 'LIMITS':
      return simple(
        [col('name'), col('value'), col('current', 'int8')],
        async () => {
          // With --workers, the current use of the replica (every worker's sessions); the values are the
          // configured totals, which the workers share (README, workers section).
          if (!ctx.cluster) return limitRows(ctx, ctx.registry.list());
          const r = await ctx.cluster.sessions();
          missing = r.unreachable;
          return limitRows(ctx, r.sessions);
        },
        missingNotice,
      );
    case 'STATS':
      return simple(
        STATS_COLUMNS,
        async () => {
          if (!ctx.cluster) return localRows('STATS', ctx);
          const r = await ctx.cluster.show('STATS');
          missing = r.unreachable;
          // Counters: the replica's are the workers' added up.
          return mergeRows(r.parts, (had, row) => [had[0], ...had.slice(1).map((v, i) => Number(v) + Number(row[i + 1]))]);
        },
        missingNotice,
      );
    case 'VERSION':
      return simple([col('version')], () => [[`gprxy ${gprxyVersion()} (node ${process.version})`]]);
    case 'HELP':
      return simple([col('command'), col('description')], () => HELP.map(([c, d]) => [c, d]));
    default:
      throw syntaxError(text);
  }
}

function killPlan(rest: string, ctx: AdminContext, text: string): Plan {
  const m = /^(SESSION|USER)\s+([\s\S]+)$/i.exec(rest);
  if (!m) throw syntaxError(text);
  const target = m[2]!.trim();
  if (m[1]!.toUpperCase() === 'SESSION') {
    if (!/^\d{1,15}$/.test(target)) throw new AdminCommandError(SqlState.SYNTAX_ERROR, `KILL SESSION takes a session id (a number from SHOW SESSIONS), not '${target.slice(0, 80)}'`);
    const id = Number(target);
    return {
      command: 'KILL SESSION',
      async run() {
        const outcome = await killEverywhere(ctx, { session: id });
        const hit = outcome.killed[0];
        if (!hit) {
          if (outcome.unreachable) throw unreachableError(outcome, `session ${id} was not found on the workers that answered`);
          throw new AdminCommandError(SqlState.UNDEFINED_OBJECT, `no session with id ${id} (it may have ended; SHOW SESSIONS lists the current ones)`);
        }
        return { rows: [], tag: 'KILL', audit: { target_session: id, target_user: hit.user, sessions: [id] } };
      },
    };
  }
  const user = parseName(target);
  if (user === undefined || user === '') throw new AdminCommandError(SqlState.SYNTAX_ERROR, `KILL USER takes one user name, e.g. KILL USER 'alice@example.com'`);
  return {
    command: 'KILL USER',
    async run(self) {
      const outcome = await killEverywhere(ctx, { user, except: self });
      const ids = outcome.killed.map((k) => k.id).sort((a, b) => a - b);
      if (outcome.unreachable) throw unreachableError(outcome, `KILL USER '${user}' is incomplete`);
      const notice = ids.length === 0 ? `no session of user ${user}` : `ended ${ids.length} session${ids.length === 1 ? '' : 's'} of user ${user} (id ${ids.join(', ')})`;
      return { rows: [], tag: 'KILL', notice, audit: { target_user: user, sessions: ids } };
    },
  };
}

function pausePlan(verb: 'PAUSE' | 'RESUME', rest: string, ctx: AdminContext, text: string): Plan {
  const name = rest === '' ? undefined : parseName(rest);
  if (rest !== '' && name === undefined) throw syntaxError(text);
  return {
    command: verb,
    run() {
      const config = ctx.config();
      const gate = ctx.pools.gate;
      let names: string[];
      if (name !== undefined) {
        if (config.admin && name === config.admin.database) throw new AdminCommandError(SqlState.OBJECT_NOT_IN_PREREQUISITE_STATE, `cannot ${verb.toLowerCase()} the admin database ${name}`);
        const db = Object.hasOwn(config.databases, name) ? config.databases[name] : undefined;
        if (!db) throw new AdminCommandError(SqlState.INVALID_CATALOG, `no such database: ${name} (SHOW DATABASES lists them)`);
        if (db.mode === 'passthrough') throw new AdminCommandError(SqlState.FEATURE_NOT_SUPPORTED, `database ${name} is a passthrough database: PostgreSQL authenticates its clients and the proxy holds no pool to pause`);
        if (ctx.cluster) return pauseEverywhere(ctx.cluster, verb, [name], name);
        if (verb === 'PAUSE' && gate.isPaused(name)) throw alreadyError(verb, name);
        if (verb === 'RESUME' && !gate.isPaused(name)) throw alreadyError(verb, name);
        names = [name];
      } else {
        const pool = Object.values(config.databases).filter((d) => d.mode !== 'passthrough').map((d) => d.name);
        if (ctx.cluster) return pauseEverywhere(ctx.cluster, verb, verb === 'PAUSE' ? pool : [...new Set([...pool, ...gate.list()])], undefined);
        names = verb === 'PAUSE' ? pool.filter((n) => !gate.isPaused(n)) : gate.list();
        if (names.length === 0) throw alreadyError(verb, undefined);
      }
      pauseLocal(gate, { verb, databases: names });
      return { rows: [], tag: verb, audit: { databases: names } };
    },
  };
}

/** PAUSE of what is paused, RESUME of what is not (55000). */
function alreadyError(verb: 'PAUSE' | 'RESUME', name: string | undefined): AdminCommandError {
  const message = name !== undefined ? `database ${name} ${verb === 'PAUSE' ? 'is already paused' : 'is not paused'}` : verb === 'PAUSE' ? 'every database is already paused' : 'no database is paused';
  return new AdminCommandError(SqlState.OBJECT_NOT_IN_PREREQUISITE_STATE, message);
}

/**
 * With `serve --workers`: the command acts on every worker (through the primary, which also remembers the
 * paused set for a worker that starts later). "Already paused" is decided on the replica's answer, not on
 * this worker's gate: a PAUSE that one worker missed can be repeated and then reaches that worker. Any
 * listening worker that did not answer makes the command an error (57P03) that says so: an operator must
 * never believe a database is paused everywhere while a worker still hands out its backends.
 */
async function pauseEverywhere(cluster: AdminCluster, verb: 'PAUSE' | 'RESUME', names: string[], name: string | undefined): Promise<AdminResult> {
  const outcome = await cluster.pause({ verb, databases: names, ...(name === undefined && verb === 'RESUME' ? { all: true } : {}) });
  const what = `${verb}${name === undefined ? '' : ` ${name}`}`;
  if (outcome.unreachable.length) {
    const list = outcome.unreachable.join(', ');
    const plural = outcome.unreachable.length === 1 ? '' : 's';
    throw new AdminCommandError(
      SqlState.CANNOT_CONNECT_NOW,
      `${what} is incomplete: worker${plural} ${list} did not answer, so ${verb === 'PAUSE' ? 'new logins there may still get a backend' : 'logins there may still wait'}; run ${what} again`,
      'the replica remembers the state: a worker that starts again comes up with it',
    );
  }
  if (outcome.changed.length === 0) throw alreadyError(verb, name);
  return { rows: [], tag: verb, audit: { databases: [...outcome.changed] } };
}

/**
 * Splits a simple-protocol query string into statements at semicolons outside quotes ("SHOW POOLS; SHOW
 * STATS" from psql -c). Empty statements are dropped; an all-empty string gives [].
 */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let current = '';
  let quote: string | undefined;
  for (const ch of sql) {
    if (quote) {
      current += ch;
      if (ch === quote) quote = undefined;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      current += ch;
    } else if (ch === ';') {
      if (current.trim()) out.push(current.trim());
      current = '';
    } else current += ch;
  }
  if (current.trim()) out.push(current.trim());
  return out;
}
