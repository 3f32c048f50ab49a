// Shared by the SQL tests: a proxy config for a test cluster, contexts signed the way the proxy signs them,
// and a catalog dump independent of src/sql/snapshot.ts (so "nothing changed" is not checked by the code under test).
import { createHmac } from 'node:crypto';
import pg from 'pg';
import { buildProxyConfig, type ProxyConfig } from '../../src/config/proxy-config.js';
import { BACKEND_START_SQL, buildContextPayload, EpochSource, signContext } from '../../src/proxy/identity-context.js';
import type { Cluster } from '../support/postgres.js';

export const SECRET_1 = 'first-context-secret-0123456789abcdef';
export const SECRET_2 = 'second-context-secret-0123456789abcdef';
export const PASSWORDS = { app_admin: 'admin-pw-0123456789', app_writer: 'writer-pw-0123456789', app_reader: 'reader-pw-0123456789' } as const;

export function testConfig(cluster: Cluster, overrides: Record<string, unknown> = {}): ProxyConfig {
  return buildProxyConfig(
    {
      listen: '127.0.0.1:0',
      tls: { allow_plaintext_loopback: true },
      providers: [{ issuer: 'https://idp.example/', audience: 'https://gprxy.io' }],
      role_mapping: [
        { role: 'pg_admin', account: 'app_admin' },
        { role: 'pg_writer', account: 'app_writer' },
        { role: 'pg_reader', account: 'app_reader' },
      ],
      accounts: Object.fromEntries(Object.entries(PASSWORDS).map(([k, password]) => [k, { password }])),
      databases: { mydb: { host: cluster.host, port: cluster.port } },
      context: { secret: SECRET_1 },
      ...overrides,
    },
    {},
    '/',
  );
}

export interface BackendId {
  pid: number;
  startMicros: string;
  /** The checkout epoch (recorded by gprxy.begin_session) a context must carry. */
  epoch?: number;
}

/** Parses the payload of a context (no verification). */
export function payloadOf(context: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(context.split('.')[0]!, 'base64url').toString()) as Record<string, unknown>;
}

/**
 * The connection's backend, with the epoch its current gprxy.context carries (the proxy's checkout, for a
 * session through the proxy): call it before the test replaces that context.
 */
export async function backendOf(client: pg.Client): Promise<BackendId> {
  const pid = (await client.query('select pg_backend_pid() as pid')).rows[0].pid as number;
  const start = (await client.query({ text: BACKEND_START_SQL, rowMode: 'array' })).rows[0]![0] as string;
  const context = (await client.query(`select current_setting('gprxy.context', true) as v`)).rows[0].v as string | null;
  const epoch = context ? payloadOf(context).epoch : undefined;
  return { pid, startMicros: start, ...(typeof epoch === 'number' ? { epoch } : {}) };
}

const epochs = new EpochSource();

/** What the proxy does at checkout, for a direct connection: records a new epoch for its backend. */
export async function beginSession(client: pg.Client): Promise<Required<BackendId>> {
  const epoch = epochs.next();
  await client.query('select gprxy.begin_session($1)', [epoch]);
  return { ...(await backendOf(client)), epoch };
}

export interface Who {
  sub: string;
  tenant: string | null;
  roles: string[];
  email?: string;
  account?: string;
}

/** A context exactly as the proxy builds it (src/proxy/identity-context.ts), for any backend and secret. */
export function contextFor(secret: string, who: Who, backend: BackendId, expiresAtMs = Date.now() + 600_000): string {
  const identity = {
    user: who.email ?? who.sub,
    subject: who.sub,
    ...(who.email ? { email: who.email } : {}),
    roles: who.roles,
    account: who.account ?? 'app_writer',
    claims: {},
  };
  return signContext(secret, buildContextPayload(identity, who.tenant, expiresAtMs, backend, Date.now()));
}

/** Signs an arbitrary payload object the same way (for payloads the proxy would never build). */
export function signRaw(secret: string, payload: unknown): string {
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

export const ALICE: Who = { sub: 'auth0|alice0001', tenant: 'tenant-a', roles: ['pg_writer'], email: 'alice@example.com' };
export const BOB: Who = { sub: 'auth0|bob00002', tenant: 'tenant-b', roles: ['pg_reader'], email: 'bob@example.com', account: 'app_reader' };
export const SATHWICK: Who = { sub: 'auth0|sathwick0003', tenant: 'tenant-a', roles: ['pg_admin'], email: 'sathwick@example.com', account: 'app_admin' };

/** Everything a db init could touch, straight from the catalogs (superuser). */
export async function catalogDump(cluster: Cluster, database = 'mydb'): Promise<Record<string, unknown[]>> {
  const q = async (sql: string) => (await cluster.query(sql, [], database)).rows;
  return {
    authid: await q(`select to_jsonb(a) - 'oid' as r from pg_authid a where rolname !~ '^pg_' order by rolname`),
    members: await q(`select roleid::regrole::text, member::regrole::text, grantor::regrole::text, admin_option from pg_auth_members order by 1, 2, 3`),
    namespaces: await q(`select nspname, nspowner::regrole::text, nspacl::text from pg_namespace order by 1`),
    classes: await q(`select c.oid::regclass::text, relkind, relowner::regrole::text, relacl::text, relrowsecurity, relforcerowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace where nspname not in ('pg_catalog', 'information_schema', 'pg_toast') order by 1`),
    procs: await q(`select p.oid::regprocedure::text, proowner::regrole::text, proacl::text, prosrc, proconfig::text, prosecdef, provolatile, proparallel, proisstrict from pg_proc p join pg_namespace n on n.oid = p.pronamespace where nspname not in ('pg_catalog', 'information_schema') order by 1`),
    defaultAcl: await q(`select defaclrole::regrole::text, defaclnamespace, defaclobjtype, defaclacl::text from pg_default_acl order by 1, 2, 3`),
    extensions: await q(`select extname, extnamespace::regnamespace::text, extversion from pg_extension order by 1`),
    databases: await q(`select datname, datacl::text from pg_database order by 1`),
    catalogAcls: await q(`select p.oid::regprocedure::text, proacl::text from pg_proc p where pronamespace = 'pg_catalog'::regnamespace and proacl is not null order by 1`),
    roleSettings: await q(`select setrole::regrole::text, setdatabase, setconfig::text from pg_db_role_setting order by 1, 2`),
    secret: (await q(`select to_regclass('gprxy.context_secret') is not null as present`))[0]!.present
      ? await q(`select slot, encode(secret, 'hex') as secret, set_at from gprxy.context_secret order by slot`)
      : [],
  };
}

export function connect(cluster: Cluster, user: string, password: string, database = 'mydb'): Promise<pg.Client> {
  const client = new pg.Client({ host: cluster.host, port: cluster.port, user, password, database });
  return client.connect().then(() => client);
}
