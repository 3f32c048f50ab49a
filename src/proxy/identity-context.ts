/**
 * The signed identity context (DESIGN.md 2.4): base64url(payload) "." base64url(HMAC-SHA256(secret, payload)).
 * The payload binds the identity to the backend it is set on (its pid and start time), so a context copied
 * to another connection fails verification in `gprxy.claims()` (src/sql) and policies fail closed; and to
 * the checkout (an epoch the proxy records with `gprxy.begin_session` in the same setup statement), so a
 * context saved in one session is worthless in a later session on the same pooled backend.
 */
import { createHmac } from 'node:crypto';
import type { Identity } from '../token/identity.js';

export interface ContextPayload {
  /** The user id (namespaced `prefix:sub` when the provider has a prefix): gprxy.user_id(). */
  readonly sub: string;
  /** The token's issuer: gprxy.issuer(). */
  readonly iss: string | null;
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
  /** The checkout it is valid for (see EpochSource); 0 when the database cannot record one. */
  readonly epoch: number;
  /** Set per transaction by transaction pooling: bound to the backend, no epoch (src/proxy/txpool). */
  readonly txn?: true;
}

export function buildContextPayload(
  identity: Identity,
  tenant: string | null,
  expiresAtMs: number,
  backend: { pid: number; startMicros: string; epoch?: number; txn?: boolean },
  nowMs: number,
): ContextPayload {
  return {
    ...(backend.txn ? { txn: true as const } : {}),
    sub: identity.subject,
    iss: identity.issuer ?? null,
    email: identity.email ?? null,
    roles: identity.roles,
    tenant,
    account: identity.account,
    exp: Math.floor(expiresAtMs / 1000),
    iat: Math.floor(nowMs / 1000),
    pid: backend.pid,
    bst: backend.startMicros,
    epoch: backend.epoch ?? 0,
  };
}

export function signContext(secret: string, payload: ContextPayload): string {
  const body = Buffer.from(JSON.stringify(payload), 'utf8').toString('base64url');
  const mac = createHmac('sha256', secret).update(body).digest('base64url');
  return `${body}.${mac}`;
}

/**
 * This backend's start time, read without pg_stat_activity: `gprxy db init` revokes EXECUTE on
 * pg_stat_get_activity from PUBLIC (users of a shared account would read each other's query text there),
 * while pg_stat_get_backend_start stays. Same value as `gprxy.claims()` computes (src/sql/identity-schema.ts
 * BACKEND_START_EXPR, over the same backend status entry). Every name qualified: it runs inside the
 * service account's environment, whose search_path any user of the account can change.
 */
const BACKEND_START_FROM =
  `(extract(epoch FROM pg_catalog.pg_stat_get_backend_start(s.id)) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8::pg_catalog.text`;
const THIS_BACKEND =
  `FROM pg_catalog.pg_stat_get_backend_idset() AS s(id) WHERE pg_catalog.pg_stat_get_backend_pid(s.id) OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()`;

/** The SQL that reads a new backend's start time in the same form `gprxy.claims()` computes it. */
export const BACKEND_START_SQL = `SELECT ${BACKEND_START_FROM} ${THIS_BACKEND}`;

/**
 * Run once per new backend: its start time, whether the database has `gprxy.begin_session` (installed by
 * `gprxy db init`; without it contexts are bound to the backend only), whether it is a hot standby, whether
 * claims() accepts transaction-pooling contexts, and whether the transaction-pooling reset must ask
 * `gprxy.prepared_statements_state()` (db init revokes pg_prepared_statements from PUBLIC).
 */
export const BACKEND_PREPARE_SQL =
  `SELECT ${BACKEND_START_FROM}, ` +
  `pg_catalog.to_regprocedure('gprxy.begin_session(bigint)') IS NOT NULL, pg_catalog.pg_is_in_recovery(), ` +
  `pg_catalog.to_regprocedure('gprxy.transaction_contexts()') IS NOT NULL, ` +
  `pg_catalog.to_regprocedure('gprxy.prepared_statements_state()') IS NOT NULL ` +
  THIS_BACKEND;

/** What `gprxy.begin_session` raises when the epoch does not move forward (src/sql/identity-schema.ts). */
export const EPOCH_REFUSED_SQLSTATE = 'XG001';

/**
 * Checkout epochs: strictly increasing within this process, which is all a backend needs (it belongs to
 * one proxy process and dies with it). Microseconds since 1970 (far below 2^53), never going back even
 * when the clock steps back.
 */
export class EpochSource {
  private last = 0;

  constructor(private readonly now: () => number = Date.now) {}

  next(): number {
    this.last = Math.max(this.last + 1, Math.floor(this.now() * 1000));
    return this.last;
  }
}
