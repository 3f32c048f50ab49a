/**
 * The signed identity context (DESIGN.md 2.4): base64url(payload) "." base64url(HMAC-SHA256(secret, payload)).
 * The payload binds the identity to the backend it is set on (its pid and start time), so a context copied
 * to another connection fails verification in `gprxy.claims()` (src/sql) and policies fail closed.
 */
import { createHmac } from 'node:crypto';
import type { Identity } from '../token/identity.js';

export interface ContextPayload {
  readonly sub: string;
  readonly email: string | null;
  readonly roles: readonly string[];
  readonly tenant: string | null;
  readonly account: string;
  /** Token expiry, seconds since the epoch. */
  readonly exp: number;
  /** Issued at, seconds since the epoch. */
  readonly iat: number;
  /** The backend's pid and start time (microseconds since the epoch, as text) it is valid on. */
  readonly pid: number;
  readonly bst: string;
}

export function buildContextPayload(identity: Identity, tenant: string | null, expiresAtMs: number, backend: { pid: number; startMicros: string }, nowMs: number): ContextPayload {
  return {
    sub: identity.subject,
    email: identity.email ?? null,
    roles: identity.roles,
    tenant,
    account: identity.account,
    exp: Math.floor(expiresAtMs / 1000),
    iat: Math.floor(nowMs / 1000),
    pid: backend.pid,
    bst: backend.startMicros,
  };
}

export function signContext(secret: string, payload: ContextPayload): string {
  const body = Buffer.from(JSON.stringify(payload), 'utf8').toString('base64url');
  const mac = createHmac('sha256', secret).update(body).digest('base64url');
  return `${body}.${mac}`;
}

/** The SQL that reads a new backend's start time in the same form `gprxy.claims()` computes it. */
export const BACKEND_START_SQL = `select (extract(epoch from backend_start) * 1000000)::bigint::text from pg_stat_activity where pid = pg_backend_pid()`;
