/**
 * The status page (config `admin.status_page: true`): GET /status on the metrics listener, a small
 * server-rendered page for operators: sessions by user and database, pools, refused logins over the last
 * hour (an inline SVG chart), JWKS state. No build step, no script, no external asset.
 *
 * Access is the admin console's: a client address inside admin.networks, and `Authorization: Bearer
 * <access token>` of a verified token holding one of admin.roles (401 without a valid token, 403 without
 * the role or from another network). There is no sign-in form in the proxy: a browser gets the header
 * from an authenticating reverse proxy (oauth2-proxy with --pass-authorization-header, or similar).
 *
 * Everything shown can come from outside (user names are whatever a token's claims say, application
 * names whatever a client sets), so every value goes through `html` (a tagged template that escapes
 * every interpolation); markup is only ever the template's own text. The page is served with a strict
 * Content-Security-Policy: no script at all, the one stylesheet allowed by its hash.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { errorCode } from '../../shared/errors.js';
import { rolesFromClaim } from '../../shared/claims.js';
import { namespaced } from '../../token/identity.js';
import type { TokenVerifier, VerifiedToken } from '../../token/verifier.js';
import type { RefusalHistory } from '../refusal-history.js';
import type { AdminAccess } from './admin-access.js';
import { gprxyVersion, timestamptz, type AdminContext } from './commands.js';

/** Markup that is already safe: only `html` and `raw` make one. */
class Safe {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

type Part = Safe | string | number | boolean | null | undefined | readonly Part[];

function render(part: Part): string {
  if (part instanceof Safe) return part.text;
  if (Array.isArray(part)) return part.map((p: Part) => render(p)).join('');
  return escapeHtml(part);
}

/** A template whose interpolations are escaped (arrays are joined; nested `html` stays markup). */
export function html(strings: TemplateStringsArray, ...values: Part[]): Safe {
  let out = strings[0]!;
  values.forEach((v, i) => (out += render(v) + strings[i + 1]!));
  return new Safe(out);
}

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f24;background:#fff}
h1{font-size:1.3em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.6em 0 .4em}
p.meta{color:#57606a;margin:0}
table{border-collapse:collapse;min-width:30em}
th,td{text-align:left;padding:.25em .8em .25em 0;border-bottom:1px solid #d0d7de;vertical-align:top}
th{font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#cf222e}.empty{color:#57606a}
svg{display:block;margin:.3em 0}
`;
const STYLE_HASH = createHash('sha256').update(STYLE).digest('base64');
export const STATUS_PAGE_CSP = `default-src 'none'; style-src 'sha256-${STYLE_HASH}'; img-src 'none'; script-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;

export interface StatusData {
  readonly now: number;
  readonly startedAt: number;
  readonly ctx: AdminContext;
  readonly refusals: RefusalHistory;
}

/** One pool's line on the page. */
export interface StatusPool {
  readonly key: string;
  readonly size: number;
  readonly total: number;
  readonly active: number;
  readonly idle: number;
  readonly waiting: number;
  readonly draining: number;
  readonly paused: boolean;
}

/** One provider's key state on the page. */
export interface StatusJwks {
  readonly keys: number;
  readonly fetchedAt?: number;
  readonly nextRefreshAt?: number;
  readonly failures: number;
  readonly lastError?: string;
}

/**
 * Everything the page shows, as plain data: one process's (localStatus), or, with `serve --workers`, the
 * sum of every worker's (mergeStatus; it crosses the IPC channel, so nothing here is a live object).
 */
export interface StatusSnapshot {
  readonly now: number;
  readonly startedAt: number;
  readonly sessions: readonly { readonly user: string | null; readonly database: string | null; readonly state: string }[];
  readonly pools: readonly StatusPool[];
  /** Refused logins per minute, the last hour, oldest first. */
  readonly perMinute: readonly number[];
  readonly reasons: readonly { readonly reason: string; readonly count: number }[];
  readonly providers: readonly string[];
  readonly jwks: Readonly<Record<string, StatusJwks>>;
  /** With --workers: the workers summed, and those that did not answer (their part is missing). */
  readonly workers?: number;
  readonly unreachable?: number;
}

/** This process's part of the page. */
export function localStatus(data: StatusData): StatusSnapshot {
  const { ctx } = data;
  const jwks = ctx.jwks();
  return {
    now: data.now,
    startedAt: data.startedAt,
    sessions: ctx.registry.list().map((s) => ({ user: s.user, database: s.database, state: s.state })),
    pools: [...ctx.pools.all()].map(([key, pool]) => {
      const st = pool.stats();
      return { key, size: st.size, total: st.total, active: st.active, idle: st.idle, waiting: st.waiting, draining: st.draining, paused: ctx.pools.gate.isPaused(key.split('/')[0] ?? '') };
    }),
    perMinute: data.refusals.perMinute(),
    reasons: data.refusals.byReason(),
    providers: ctx.config().providers.map((p) => p.issuer),
    jwks: Object.fromEntries(
      Object.entries(jwks).map(([issuer, j]) => [
        issuer,
        { keys: j.keys, failures: j.failures, ...(j.fetchedAt !== undefined ? { fetchedAt: j.fetchedAt } : {}), ...(j.nextRefreshAt !== undefined ? { nextRefreshAt: j.nextRefreshAt } : {}), ...(j.lastError !== undefined ? { lastError: j.lastError } : {}) },
      ]),
    ),
  };
}

/**
 * The workers' parts as one replica's page: sessions listed together; pools and refusals added up (each
 * worker holds its share of a pool); per provider the worst worker's keys (a worker without keys refuses
 * its logins), its failures, the oldest fetch and the earliest refresh. Uptime is the oldest worker's.
 */
export function mergeStatus(parts: readonly StatusSnapshot[], unreachable: number): StatusSnapshot {
  const pools = new Map<string, StatusPool>();
  for (const p of parts.flatMap((x) => x.pools)) {
    const had = pools.get(p.key);
    pools.set(
      p.key,
      had
        ? { key: p.key, size: had.size + p.size, total: had.total + p.total, active: had.active + p.active, idle: had.idle + p.idle, waiting: had.waiting + p.waiting, draining: had.draining + p.draining, paused: had.paused || p.paused }
        : p,
    );
  }
  const reasons = new Map<string, number>();
  for (const r of parts.flatMap((x) => x.reasons)) reasons.set(r.reason, (reasons.get(r.reason) ?? 0) + r.count);
  const jwks: Record<string, StatusJwks> = {};
  for (const part of parts) {
    for (const [issuer, j] of Object.entries(part.jwks)) {
      const had = jwks[issuer];
      if (!had) {
        jwks[issuer] = j;
        continue;
      }
      const fetchedAt = had.fetchedAt === undefined || j.fetchedAt === undefined ? undefined : Math.min(had.fetchedAt, j.fetchedAt);
      const nextRefreshAt = had.nextRefreshAt === undefined ? j.nextRefreshAt : j.nextRefreshAt === undefined ? had.nextRefreshAt : Math.min(had.nextRefreshAt, j.nextRefreshAt);
      const lastError = had.lastError ?? j.lastError;
      jwks[issuer] = { keys: Math.min(had.keys, j.keys), failures: Math.max(had.failures, j.failures), ...(fetchedAt !== undefined ? { fetchedAt } : {}), ...(nextRefreshAt !== undefined ? { nextRefreshAt } : {}), ...(lastError !== undefined ? { lastError } : {}) };
    }
  }
  const length = Math.max(0, ...parts.map((x) => x.perMinute.length));
  const now = Math.max(0, ...parts.map((x) => x.now));
  return {
    now,
    startedAt: parts.length ? Math.min(...parts.map((x) => x.startedAt)) : now,
    sessions: parts.flatMap((x) => x.sessions),
    pools: [...pools.values()],
    // Aligned from the newest minute back (every worker's last entry is the current minute).
    perMinute: Array.from({ length }, (_, i) => parts.reduce((n, x) => n + (x.perMinute[x.perMinute.length - length + i] ?? 0), 0)),
    reasons: [...reasons].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason)),
    providers: parts[0]?.providers ?? [],
    jwks,
    workers: parts.length + unreachable,
    unreachable,
  };
}

function chart(perMinute: readonly number[]): Safe {
  const width = 600;
  const height = 120;
  const max = Math.max(1, ...perMinute);
  const barWidth = width / perMinute.length;
  const bars = perMinute.map((n, i) => {
    const h = Math.round((n / max) * (height - 20));
    const minutesAgo = perMinute.length - 1 - i;
    return html`<rect x="${(i * barWidth).toFixed(1)}" y="${height - h}" width="${(barWidth - 1).toFixed(1)}" height="${h}" fill="#cf222e"><title>${n} refused ${minutesAgo === 0 ? 'this minute' : `${minutesAgo} min ago`}</title></rect>`;
  });
  const total = perMinute.reduce((a, b) => a + b, 0);
  return html`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height + 16}" viewBox="0 0 ${width} ${height + 16}" role="img" aria-label="${total} refused logins in the last hour"><line x1="0" y1="${height}" x2="${width}" y2="${height}" stroke="#8c959f"/>${bars}<text x="0" y="${height + 13}" font-size="11" fill="#57606a">-60 min</text><text x="${width}" y="${height + 13}" font-size="11" fill="#57606a" text-anchor="end">now (max ${max}/min)</text></svg>`;
}

export function renderStatusPage(data: StatusSnapshot): string {
  const { now, sessions, pools, jwks, perMinute, reasons } = data;
  const byUser = new Map<string, { user: string; database: string; total: number; active: number; idle: number; waiting: number }>();
  for (const s of sessions) {
    const user = s.user ?? '(logging in)';
    const database = s.database ?? '';
    const key = `${user}\n${database}`;
    let row = byUser.get(key);
    if (!row) byUser.set(key, (row = { user, database, total: 0, active: 0, idle: 0, waiting: 0 }));
    row.total++;
    if (s.state === 'active') row.active++;
    else if (s.state === 'waiting' || s.state === 'login') row.waiting++;
    else row.idle++;
  }
  const userRows = [...byUser.values()].sort((a, b) => b.total - a.total || a.user.localeCompare(b.user));
  const uptime = Math.round((now - data.startedAt) / 1000);
  const workers = data.workers === undefined ? '' : ` · ${data.workers} worker${data.workers === 1 ? '' : 's'}${data.unreachable ? ` (${data.unreachable} did not answer: their part is missing)` : ''}`;
  const page = html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><meta name="referrer" content="no-referrer">
<title>gprxy status</title><style>${new Safe(STYLE)}</style></head>
<body>
<h1>gprxy status</h1>
<p class="meta">gprxy ${gprxyVersion()} · up ${uptime} s · ${timestamptz(now)} · ${sessions.length} connection${sessions.length === 1 ? '' : 's'}${workers}</p>

<h2>Sessions by user and database</h2>
${
  userRows.length === 0
    ? html`<p class="empty">No sessions.</p>`
    : html`<table id="sessions"><thead><tr><th>user</th><th>database</th><th>sessions</th><th>active</th><th>idle</th><th>logging in / waiting</th></tr></thead><tbody>
${userRows.map((r) => html`<tr><td class="user">${r.user}</td><td>${r.database}</td><td class="n">${r.total}</td><td class="n">${r.active}</td><td class="n">${r.idle}</td><td class="n">${r.waiting}</td></tr>\n`)}</tbody></table>`
}

<h2>Pools</h2>
${
  pools.length === 0
    ? html`<p class="empty">No pool opened yet.</p>`
    : html`<table id="pools"><thead><tr><th>database/account</th><th>size</th><th>total</th><th>active</th><th>idle</th><th>waiting</th><th>draining</th><th>paused</th></tr></thead><tbody>
${pools.map((s) => html`<tr><td>${s.key}</td><td class="n">${s.size}</td><td class="n">${s.total}</td><td class="n">${s.active}</td><td class="n">${s.idle}</td><td class="n">${s.waiting}</td><td class="n">${s.draining}</td><td>${s.paused ? 'paused' : ''}</td></tr>\n`)}</tbody></table>`
}

<h2>Refused logins, last hour</h2>
${chart(perMinute)}
${
  reasons.length === 0
    ? html`<p class="empty">None.</p>`
    : html`<table id="refusals"><thead><tr><th>reason</th><th>count</th></tr></thead><tbody>${reasons.map((r) => html`<tr><td>${r.reason}</td><td class="n">${r.count}</td></tr>`)}</tbody></table>`
}

<h2>Identity providers (JWKS)</h2>
<table id="providers"><thead><tr><th>issuer</th><th>keys</th><th>last fetch</th><th>next refresh</th><th>failures</th><th>last error</th></tr></thead><tbody>
${data.providers.map((issuer) => {
  const s = jwks[issuer];
  return html`<tr><td>${issuer}</td><td class="n${!s || s.keys === 0 ? ' bad' : ''}">${s?.keys ?? 0}</td><td>${timestamptz(s?.fetchedAt) ?? 'never'}</td><td>${timestamptz(s?.nextRefreshAt) ?? ''}</td><td class="n${s && s.failures > 0 ? ' bad' : ''}">${s?.failures ?? 0}</td><td>${s?.lastError ?? ''}</td></tr>\n`;
})}</tbody></table>
</body></html>
`;
  return page.text;
}

/** Who asked for the page: the token's user and roles (for the audit line). */
interface PageViewer {
  readonly subject: string;
  readonly issuer: string;
  readonly roles: readonly string[];
}

/** The roles of a verified token, namespaced as role_mapping sees them; the viewer when one is an admin role. */
function viewerOf(verified: VerifiedToken, access: AdminAccess): PageViewer | undefined {
  const claims = verified.claims as Record<string, unknown>;
  const provider = verified.provider;
  // Never a CI job, as for the console (admin-access.ts): its roles claim, if the operator named one, holds
  // what the job's workflow chose (e.g. its environment), not rights an IdP granted.
  if (provider.ci) return undefined;
  const raw = Object.hasOwn(claims, provider.rolesClaim) ? claims[provider.rolesClaim] : undefined;
  const roles = rolesFromClaim(raw).map((r) => namespaced(provider, r));
  if (!roles.some((r) => access.config.roles.includes(r))) return undefined;
  const sub = typeof claims.sub === 'string' ? claims.sub : '';
  return { subject: namespaced(provider, sub), issuer: verified.issuer, roles };
}

const SECURITY_HEADERS = {
  'content-security-policy': STATUS_PAGE_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/** What the page needs of an HTTP request: plain data, so the primary of `serve --workers` can pass it to a worker. */
export interface StatusRequest {
  readonly method: string;
  readonly address: string | undefined;
  readonly port: number | undefined;
  readonly authorization: string | undefined;
}

/** The whole HTTP answer (status, headers, body), as plain data for the same reason. */
export interface StatusAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body?: string;
}

export interface StatusPageDeps {
  readonly access: AdminAccess;
  readonly verifier: Pick<TokenVerifier, 'verify'>;
  /** What the page shows: this process's (localStatus), or the replica's through the primary (--workers). */
  readonly snapshot: () => StatusSnapshot | Promise<StatusSnapshot>;
  readonly log: Logger;
}

/** A plain-text answer with the page's security headers. */
export function statusText(status: number, body: string, extra: Record<string, string> = {}): StatusAnswer {
  return { status, headers: { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8', ...extra }, body: `${body}\n` };
}

/** The answer to GET /status: the admin console's access rule, then the page. */
export async function statusAnswer(deps: StatusPageDeps, req: StatusRequest): Promise<StatusAnswer> {
  const text = statusText;
  if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed', { allow: 'GET, HEAD' });
  const client = `${req.address ?? '?'}:${req.port ?? '?'}`;
  if (!deps.access.allowsAddress(req.address)) {
    deps.log.warn({ event: 'admin_action', command: 'STATUS PAGE', outcome: 'error', client, reason: 'admin_network_refused' }, 'status page refused: address outside admin.networks');
    return text(403, 'the status page does not accept requests from this address (admin.networks)');
  }
  const m = /^Bearer[ ]+([A-Za-z0-9._~+/=-]+)$/i.exec(req.authorization ?? '');
  if (!m) return text(401, 'the status page needs an access token with an admin role: Authorization: Bearer <token> (gprxy token)', { 'www-authenticate': 'Bearer realm="gprxy"' });
  let verified: VerifiedToken;
  try {
    verified = await deps.verifier.verify(m[1]!);
  } catch (e) {
    // Never the token, never the verifier's detail to an anonymous caller: the audit line has the reason.
    deps.log.info({ event: 'admin_action', command: 'STATUS PAGE', outcome: 'error', client, reason: errorCode(e) ?? 'invalid_token' }, 'status page refused: token not accepted');
    return text(401, 'the access token was not accepted (expired, foreign or malformed): get a fresh one with gprxy token', { 'www-authenticate': 'Bearer realm="gprxy", error="invalid_token"' });
  }
  const viewer = viewerOf(verified, deps.access);
  if (!viewer) {
    deps.log.warn({ event: 'admin_action', command: 'STATUS PAGE', outcome: 'error', client, reason: 'admin_role_missing', admin_issuer: verified.issuer }, 'status page refused: token without an admin role');
    return text(403, `this token has none of the admin roles (admin.roles: ${deps.access.config.roles.join(', ')})`);
  }
  deps.log.info({ event: 'admin_action', command: 'STATUS PAGE', outcome: 'ok', client, admin_sub: viewer.subject, admin_issuer: viewer.issuer, admin_roles: viewer.roles }, 'status page viewed');
  const body = renderStatusPage(await deps.snapshot());
  return { status: 200, headers: { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8' }, ...(req.method === 'HEAD' ? {} : { body }) };
}

/** Writes an answer (from this process or from a worker) to an HTTP response. */
export function writeStatusAnswer(res: ServerResponse, answer: StatusAnswer): void {
  res.writeHead(answer.status, answer.headers).end(answer.body);
}

/** The request's part the page reads. */
export function statusRequestOf(req: IncomingMessage): StatusRequest {
  return { method: req.method ?? 'GET', address: req.socket.remoteAddress, port: req.socket.remotePort, authorization: req.headers.authorization };
}

/** The /status route for the metrics listener (ProxyMetrics.route) of a single process. */
export function statusRoute(deps: StatusPageDeps): (req: IncomingMessage, res: ServerResponse, path: string) => boolean {
  return (req, res, path) => {
    if (path !== '/status') return false;
    statusAnswer(deps, statusRequestOf(req)).then(
      (answer) => writeStatusAnswer(res, answer),
      (e: Error) => {
        deps.log.error({ event: 'internal_error', err: e }, 'status page failed');
        writeStatusAnswer(res, statusText(500, 'internal error; the proxy log has details'));
      },
    );
    return true;
  };
}
