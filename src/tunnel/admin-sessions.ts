/**
 * `gprxy sessions`: the admin console's SHOW SESSIONS from an engineer's machine. A short-lived tunnel (the
 * same one `gprxy connect` opens: the profile's token, TLS to the proxy, the CA and its hints) to the admin
 * database, one query, closed. The proxy decides who may see the list (admin.roles, admin.networks).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { GprxyError } from '../shared/errors.js';
import { openTunnel, type OpenTunnelDeps } from './open.js';
import type { ProxyAddress } from './upstream.js';

export interface SessionRow {
  readonly id: number;
  readonly user: string | null;
  readonly user_id: string | null;
  readonly issuer: string | null;
  readonly account: string | null;
  readonly database: string | null;
  readonly mode: string | null;
  readonly client_addr: string;
  readonly application_name: string | null;
  readonly since: string | null;
  readonly state: string;
  readonly wait: string;
  readonly wait_since: string | null;
  readonly bytes_in: number;
  readonly bytes_out: number;
}

export type AdminSessionsErrorCode = 'admin_forbidden' | 'admin_not_served' | 'admin_refused';

export class AdminSessionsError extends GprxyError<AdminSessionsErrorCode> {
  constructor(
    readonly code: AdminSessionsErrorCode,
    message: string,
    /** The SQLSTATE the proxy answered with. */
    readonly sqlstate?: string,
  ) {
    super(message);
  }
}

function iso(value: unknown): string | null {
  if (value instanceof Date) return value.toISOString();
  return value === null || value === undefined ? null : String(value);
}

function text(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}

/** SHOW SESSIONS of the proxy's admin console `database`, as the profile's identity. */
export async function listSessions(settings: { readonly proxy: ProxyAddress; readonly database: string }, deps: OpenTunnelDeps): Promise<SessionRow[]> {
  // Only this process may use the tunnel during its short life.
  const localPassword = randomBytes(18).toString('base64url');
  const opened = await openTunnel({ databases: [settings.database], proxy: settings.proxy, port: 0, findFreePort: false, localPassword }, deps);
  const listener = opened.listeners[0]!;
  const client = new pg.Client({ host: listener.host, port: listener.port, user: opened.user, password: localPassword, database: settings.database, ssl: false, application_name: 'gprxy sessions' });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query('SHOW SESSIONS');
    return rows.map((r: Record<string, unknown>) => ({
      id: Number(r.id),
      user: text(r.user),
      user_id: text(r.user_id),
      issuer: text(r.issuer),
      account: text(r.account),
      database: text(r.database),
      mode: text(r.mode),
      client_addr: String(r.client_addr),
      application_name: text(r.application_name),
      since: iso(r.since),
      state: String(r.state),
      wait: String(r.wait),
      wait_since: iso(r.wait_since),
      bytes_in: Number(r.bytes_in),
      bytes_out: Number(r.bytes_out),
    }));
  } catch (e) {
    throw explain(e, settings.database, opened.user);
  } finally {
    await client.end().catch(() => undefined);
    await opened.close();
  }
}

/** The proxy's refusal, with the next step for the person at the keyboard. */
function explain(e: unknown, database: string, user: string): unknown {
  const sqlstate = typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
  const message = e instanceof Error ? e.message : String(e);
  if (sqlstate === '42501') return new AdminSessionsError('admin_forbidden', `${message} (you are ${user}: ask for the admin role, then gprxy login again)`, sqlstate);
  if (sqlstate === '3D000') return new AdminSessionsError('admin_not_served', `the proxy serves no admin console named ${database}: pass --database with the proxy's admin.database, or ask its operator to configure admin`, sqlstate);
  if (sqlstate) return new AdminSessionsError('admin_refused', message, sqlstate);
  return e;
}
