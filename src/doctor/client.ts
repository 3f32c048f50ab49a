/**
 * `gprxy doctor [DATABASE]` (issue 19), the engineer's (or CI job's) side, from the resolved CLI settings:
 * the profile, a real access token (its audience and roles, never the token itself), the issuer (discovery,
 * signing keys, clock skew against its Date header), the proxy's TLS certificate and name, and — given a
 * database — a real login through the proxy (startup, token, AuthenticationOk or the proxy's FATAL), closed
 * at once. Each check names the fix when it fails.
 */
import type { TLSSocket } from 'node:tls';
import { caFixHint, configureCommand, proxyFixHint, type CliSettings } from '../config/cli-config.js';
import { fetchWithCa } from '../net/ca-fetch.js';
import { createTokenSource } from '../oauth/cli-session.js';
import { CiTokenSource } from '../oauth/ci-token-source.js';
import type { AccessToken } from '../oauth/token-source.js';
import { parseAuthentication, parseErrorFields } from '../protocol/backend-messages.js';
import { terminate } from '../protocol/client-messages.js';
import { BackendCode } from '../protocol/codes.js';
import { FrameReader } from '../protocol/frame-reader.js';
import { errorCode } from '../shared/errors.js';
import { usernameFromClaims } from '../tunnel/tunnel.js';
import { authenticateUpstream, connectTls, UpstreamError } from '../tunnel/upstream.js';
import { inspectIssuer } from './issuer.js';
import { check, type DoctorCheck } from './report.js';

export interface ClientDoctorOptions {
  readonly settings: CliSettings;
  /** A database to log in to through the proxy (the real connection check). */
  readonly database?: string;
  /** --ci: check with this CI job's token. */
  readonly ci?: boolean;
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
}

/** Claims that commonly carry roles; the proxy's roles_claim is its own config, so these are looked at. */
const ROLE_CLAIMS = ['https://gprxy.io/roles', 'roles', 'groups', 'permissions'];

function audiences(claims: Record<string, unknown>): string[] {
  return Array.isArray(claims.aud) ? claims.aud.filter((a): a is string => typeof a === 'string') : typeof claims.aud === 'string' ? [claims.aud] : [];
}

/** Waits for AuthenticationOk (the proxy admitted the token and has a backend) or the proxy's FATAL. */
function loginOutcome(socket: TLSSocket, rest: Buffer, timeoutMs: number): Promise<{ ok: true } | { ok: false; sqlstate: string; message: string }> {
  const reader = new FrameReader({ maxMessageLength: 1024 * 1024 });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`the proxy did not answer the login within ${timeoutMs / 1000} s`)), timeoutMs);
    const finish = (e: Error | undefined, outcome?: { ok: true } | { ok: false; sqlstate: string; message: string }) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (e) reject(e);
      else resolve(outcome!);
    };
    const onClose = () => finish(new Error('the proxy closed the connection without answering the login'));
    const onData = (chunk: Buffer) => {
      try {
        reader.push(chunk);
        for (let m = reader.nextMessage(); m; m = reader.nextMessage()) {
          if (m.type === BackendCode.ERROR_RESPONSE) {
            const f = parseErrorFields(m.body);
            return finish(undefined, { ok: false, sqlstate: f.code, message: f.message });
          }
          if (m.type === BackendCode.AUTHENTICATION && parseAuthentication(m.body).kind === 'ok') return finish(undefined, { ok: true });
        }
      } catch (e) {
        finish(e as Error);
      }
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.resume();
    if (rest.length) onData(rest);
  });
}

export async function clientDoctor(opts: ClientDoctorOptions): Promise<DoctorCheck[]> {
  const { settings } = opts;
  const checks: DoctorCheck[] = [];
  const configure = configureCommand(settings.profile);
  checks.push(
    check('profile', settings.profileExists || settings.ciJob.kind !== 'none' || settings.staticToken || settings.clientCredentials ? 'ok' : 'fail', `profile ${settings.profile}`,
      settings.profileExists ? `${settings.configPath}` : settings.ciJob.kind !== 'none' ? `no stored profile; CI job token (${settings.ciJob.kind}) and GPRXY_* variables` : 'not configured',
      `${configure} --issuer URL --client-id ID --audience AUD --proxy HOST:PORT`),
  );
  checks.push(
    settings.proxy
      ? check('proxy_address', 'ok', 'proxy address', `${settings.proxy.address} (from ${settings.sources.proxy === 'env' ? 'GPRXY_PROXY' : 'the profile'})`)
      : check('proxy_address', 'fail', 'proxy address', 'not set', `${configure} --proxy HOST:PORT (or GPRXY_PROXY)`),
  );

  // A real token, its claims read and reported, never printed.
  let token: AccessToken | undefined;
  let ciJob = false;
  try {
    const source = createTokenSource(settings, opts.fetch ? { fetch: opts.fetch } : {}, { ci: opts.ci ?? false });
    ciJob = source instanceof CiTokenSource;
    token = await source.getAccessToken();
    const claims = token.claims as Record<string, unknown>;
    const exp = typeof claims.exp === 'number' ? new Date(claims.exp * 1000).toISOString() : 'no expiry';
    checks.push(check('token', 'ok', 'access token', `${ciJob ? `CI job token (${settings.ciJob.kind})` : 'obtained'} for ${usernameFromClaims(claims) ?? '(no user claim)'}, expires ${exp}`));
    const aud = audiences(claims);
    if (!settings.audience) checks.push(check('token_audience', 'warn', 'token audience', `${aud.join(', ') || 'none'}; no audience configured to compare with`, `${configure} --audience AUD (the proxy's providers[].audience)`));
    else if (aud.includes(settings.audience)) checks.push(check('token_audience', 'ok', 'token audience', settings.audience));
    else checks.push(check('token_audience', 'fail', 'token audience', `${aud.join(', ') || 'none'}, not ${settings.audience}: the proxy refuses it (28000)`, ciJob ? 'request the job token for the proxy\'s audience (GPRXY_AUDIENCE; GitLab: id_tokens aud)' : 'the provider must issue access tokens for the API (audience) the proxy expects; check the API in the provider and --audience'));
    if (ciJob) checks.push(check('token_roles', 'ok', 'roles', 'a CI job token carries no roles: the proxy\'s CI rules pick the account (gprxy policy test explains them)'));
    else {
      const found = ROLE_CLAIMS.find((c) => Object.hasOwn(claims, c));
      checks.push(
        found
          ? check('token_roles', 'ok', 'roles', `${found}: ${JSON.stringify(claims[found])}`)
          : check('token_roles', 'fail', 'roles', `no roles claim (looked for ${ROLE_CLAIMS.join(', ')}): no role_mapping rule can match`, "add the roles to the access token (Auth0: an Action with api.accessToken.setCustomClaim('https://gprxy.io/roles', ...)) and log in again"),
      );
    }
  } catch (e) {
    const code = errorCode(e);
    checks.push(check('token', 'fail', 'access token', (e as Error).message, code === 'login_required' ? `gprxy login${settings.profile === 'default' ? '' : ` --profile ${settings.profile}`}` : code === 'ci_token_unavailable' ? 'see the message' : 'see the message; gprxy status shows the login'));
  }

  const claims = (token?.claims ?? {}) as Record<string, unknown>;
  const issuer = settings.issuer ?? (typeof claims.iss === 'string' ? claims.iss : undefined);
  if (!issuer) checks.push(check('issuer_discovery', 'fail', 'issuer', 'not configured', `${configure} --issuer URL`));
  else {
    const fromIssuer = await inspectIssuer(issuer, { fetch: opts.fetch ?? fetchWithCa(settings.caPem), ...(opts.now ? { now: opts.now } : {}), caHint: caFixHint(settings) });
    checks.push(...fromIssuer.checks);
  }

  if (!settings.proxy) return checks;
  const proxy = { host: settings.proxy.host, port: settings.proxy.port, ...(settings.caPem ? { ca: settings.caPem } : {}), hints: { address: proxyFixHint(settings), ca: caFixHint(settings) } };
  let socket: TLSSocket;
  try {
    socket = await connectTls(proxy);
  } catch (e) {
    checks.push(check('proxy_tls', 'fail', `proxy TLS ${settings.proxy.address}`, (e as Error).message.split('; ')[0]!, (e as Error).message.split('; ').slice(1).join('; ') || caFixHint(settings)));
    return checks;
  }
  const cert = socket.getPeerCertificate();
  const names = (cert.subjectaltname ?? '').replace(/DNS:|IP Address:/g, '');
  checks.push(check('proxy_tls', 'ok', `proxy TLS ${settings.proxy.address}`, `certificate for ${names || cert.subject?.CN || '?'}, issued by ${cert.issuer?.CN ?? '?'}, valid until ${cert.valid_to ? new Date(cert.valid_to).toISOString() : '?'}`));
  if (!opts.database) {
    socket.destroy();
    checks.push(check('proxy_database', 'skip', 'proxy serves a database', 'no database named', 'gprxy doctor DATABASE checks a real login through the proxy'));
    return checks;
  }
  const subject = `proxy serves ${opts.database}`;
  if (!token) {
    socket.destroy();
    checks.push(check('proxy_database', 'skip', subject, 'no token to log in with (above)'));
    return checks;
  }
  const refusedBy = (sqlstate: string, message: string) => {
    const fix =
      sqlstate === '3D000' ? 'connect to a database the proxy serves (the message lists them), or add it to the proxy config'
      : sqlstate.startsWith('28') ? "the proxy refused the token: gprxy policy test --config <proxy config> explains why (the proxy's audit log has the reason)"
      : 'the proxy could not serve it now: its log has details';
    checks.push(check('proxy_database', 'fail', subject, `${sqlstate}: ${message}`, fix));
  };
  try {
    const user = usernameFromClaims(claims) ?? '';
    const rest = await authenticateUpstream(socket, { user, database: opts.database, application_name: 'gprxy doctor' }, token.accessToken);
    const outcome = await loginOutcome(socket, rest, 10_000);
    if (outcome.ok) checks.push(check('proxy_database', 'ok', subject, `logged in as ${user}`));
    else refusedBy(outcome.sqlstate, outcome.message);
  } catch (e) {
    // Refused before the token was asked for (an unknown database): the proxy's own FATAL.
    if (e instanceof UpstreamError && e.fields) refusedBy(e.fields.code, e.fields.message);
    else checks.push(check('proxy_database', 'fail', subject, (e as Error).message, proxyFixHint(settings)));
  } finally {
    if (!socket.destroyed) socket.end(terminate());
    socket.destroy();
  }
  return checks;
}
