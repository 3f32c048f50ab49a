/**
 * `gprxy policy test` (issue 19): given a token (or the claims of one) and a proxy config, what the proxy
 * would decide and why — which provider verifies it (or why none does), which rule or role mapping picks the
 * account (each CI rule's verdict), the resulting account and identity, or the precise reason for a refusal —
 * with the same code the proxy's login runs (TokenVerifier, resolveIdentity, decideCi), without contacting
 * PostgreSQL. A claims file skips what needs a real token (signature, algorithm, key) and says so.
 */
import type { ProviderConfig, ProxyConfig } from '../config/proxy-config.js';
import { decideCi, type RuleVerdict } from '../token/ci-rules.js';
import { TokenError, quote, sqlstateFor } from '../token/errors.js';
import { matchesUsername, namespaced, resolveIdentity, rolesFromClaim, type Identity } from '../token/identity.js';
import { CLOCK_TOLERANCE_MS, TokenVerifier, type VerifiedToken } from '../token/verifier.js';
import { sessionEnd } from './session-end.js';

export type PolicyInput = { readonly token: string } | { readonly claims: Record<string, unknown> };

export interface PolicyReport {
  readonly admitted: boolean;
  /** False for a claims file: signature, algorithm and key were not checked. */
  readonly signatureChecked: boolean;
  readonly provider?: { readonly issuer: string; readonly kind: string; readonly prefix?: string };
  /** The startup user the check used (what gprxy connect would send). */
  readonly user?: string;
  /** CI providers: each rule tried, in order. */
  readonly rules?: readonly RuleVerdict[];
  /** role_mapping providers: the token's roles (namespaced as the proxy sees them). */
  readonly roles?: readonly string[];
  readonly account?: string;
  readonly identity?: { readonly user: string; readonly userId: string; readonly issuer?: string; readonly email?: string; readonly tenant?: string; readonly roles: readonly string[] };
  /** The end of a session this token opens (ms since the epoch), and why then. */
  readonly sessionEnds?: { readonly at: number | null; readonly by: string };
  /** On refusal: the error code (the proxy's audit `reason`) and the SQLSTATE a client would get. */
  readonly code?: string;
  readonly sqlstate?: string;
  /** Why: the admitting rule, or the full reason of a refusal (what the proxy's audit log records). */
  readonly explanation: string;
  readonly notes: readonly string[];
}

export interface ExplainDeps {
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
}

function providerOf(p: ProviderConfig): PolicyReport['provider'] {
  return { issuer: p.issuer, kind: p.ci?.kind ?? 'oauth', ...(p.prefix !== undefined ? { prefix: p.prefix } : {}) };
}

/** A claims file: the provider by iss, the audience and times checked here; no signature. */
function fromClaims(config: Pick<ProxyConfig, 'providers'>, claims: Record<string, unknown>, now: number, notes: string[]): VerifiedToken {
  const iss = claims.iss;
  const configured = config.providers.map((p) => p.issuer).join(', ');
  if (typeof iss !== 'string') throw new TokenError('token_issuer', `the claims have no issuer (iss); configured: ${configured}`);
  const provider = config.providers.find((p) => p.issuer === iss);
  if (!provider) {
    const near = config.providers.find((p) => p.issuer.replace(/\/$/, '') === iss.replace(/\/$/, ''));
    throw new TokenError('token_issuer', `issuer ${quote(iss)} is not a configured provider (configured: ${configured})${near ? `; it differs from ${quote(near.issuer)} only by a trailing slash` : ''}`);
  }
  const aud = claims.aud;
  const auds = Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : typeof aud === 'string' ? [aud] : [];
  if (!auds.some((a) => provider.audience.includes(a))) {
    throw new TokenError(
      'token_audience',
      `token audience is ${auds.length ? auds.map((a) => quote(a)).join(', ') : 'missing'}, expected ${provider.audience.map((a) => quote(a)).join(' or ')}; request a token for the proxy's audience`,
    );
  }
  const exp = typeof claims.exp === 'number' ? claims.exp * 1000 : undefined;
  if (exp === undefined) notes.push('the claims have no exp: the proxy refuses tokens that do not expire');
  else if (exp + CLOCK_TOLERANCE_MS < now) notes.push(`exp ${new Date(exp).toISOString()} is in the past: a token with these claims would be refused as expired (not counted against this test)`);
  return { claims: claims as VerifiedToken['claims'], issuer: provider.issuer, provider, expiresAt: exp ?? now, tokenId: 'claims-file' };
}

/** The user gprxy connect would send: the first username claim the proxy accepts as this token's. */
function startupUser(verified: VerifiedToken): string | undefined {
  const claims = verified.claims as Record<string, unknown>;
  for (const name of verified.provider.usernameClaims) {
    const v = claims[name];
    if (typeof v === 'string' && v && matchesUsername(verified, v)) return v;
  }
  return undefined;
}

const END_BY = { session_max_lifetime: 'limits.session_max_lifetime', token_expired: 'the token expiry (limits.end_session_at_token_expiry)' } as const;

function sessionEnds(config: Pick<ProxyConfig, 'limits'>, identity: Identity, expiresAt: number, now: number): PolicyReport['sessionEnds'] {
  const end = sessionEnd(config.limits, identity, expiresAt, now);
  if (!Number.isFinite(end.at)) return { at: null, by: 'no limit' };
  return { at: end.at, by: end.reason === 'ci_max_session' ? `max_session of rule ${identity.ci!.rule}` : END_BY[end.reason] };
}

export async function explainPolicy(config: Pick<ProxyConfig, 'providers' | 'jwks' | 'roleMapping' | 'limits'>, input: PolicyInput, deps: ExplainDeps = {}): Promise<PolicyReport> {
  const now = (deps.now ?? Date.now)();
  const notes: string[] = [];
  const signatureChecked = 'token' in input;
  if (!signatureChecked) notes.push('claims file: the signature, algorithm and signing key are not checked (give the token itself to check them)');
  let verified: VerifiedToken;
  const refused = (e: unknown, extra: Partial<PolicyReport> = {}): PolicyReport => {
    if (!(e instanceof TokenError)) throw e;
    return { admitted: false, signatureChecked, ...extra, code: e.code, sqlstate: sqlstateFor(e.code), explanation: e.explanation ?? e.message, notes };
  };
  try {
    if ('token' in input) {
      const verifier = new TokenVerifier({ providers: config.providers, jwks: { cacheTtlMs: config.jwks.cacheTtlMs }, ...(deps.fetch ? { fetch: deps.fetch } : {}), ...(deps.now ? { now: deps.now } : {}), fetchTimeoutMs: 10_000 });
      try {
        verified = await verifier.verify(input.token.trim());
      } finally {
        verifier.close();
      }
    } else verified = fromClaims(config, input.claims, now, notes);
  } catch (e) {
    return refused(e);
  }
  const provider = verified.provider;
  const claims = verified.claims as Record<string, unknown>;
  const base: Partial<PolicyReport> = {
    provider: providerOf(provider),
    ...(provider.ci ? { rules: decideCi(provider.ci, claims).verdicts } : { roles: rolesFromClaim(claims[provider.rolesClaim]).map((r) => namespaced(provider, r)) }),
  };
  const user = startupUser(verified);
  if (user === undefined) {
    return refused(new TokenError('token_user_mismatch', `the token has none of the username claims ${provider.usernameClaims.join(', ')} (an e-mail counts only when verified)`), base);
  }
  let identity: Identity;
  try {
    identity = resolveIdentity(verified, user, config.roleMapping);
  } catch (e) {
    return refused(e, { ...base, user });
  }
  const explanation = identity.ci
    ? identity.ci.explanation
    : (() => {
        const index = config.roleMapping.findIndex((r) => identity.roles.includes(r.role));
        const rule = config.roleMapping[index]!;
        return `role_mapping[${index}] maps role ${rule.role} to ${rule.account} (first rule whose role the token holds)`;
      })();
  return {
    admitted: true,
    signatureChecked,
    ...base,
    user,
    account: identity.account,
    identity: {
      user: identity.user,
      userId: identity.subject,
      ...(identity.issuer ? { issuer: identity.issuer } : {}),
      ...(identity.email ? { email: identity.email } : {}),
      ...(identity.tenantId ? { tenant: identity.tenantId } : {}),
      roles: identity.roles,
    },
    sessionEnds: sessionEnds(config, identity, verified.expiresAt, now),
    explanation,
    notes,
  };
}

/** The report for people: one line per fact, ✓/✗ per rule. */
export function describePolicy(r: PolicyReport): string[] {
  const lines: string[] = [];
  if (r.provider) {
    lines.push(`provider: ${r.provider.issuer} (kind ${r.provider.kind}${r.provider.prefix ? `, prefix ${r.provider.prefix}` : ''})${r.signatureChecked ? ', signature verified' : ''}`);
  } else lines.push('provider: none verifies this token');
  for (const note of r.notes) lines.push(`note: ${note}`);
  if (r.user) lines.push(`user: ${r.user}`);
  if (r.rules) {
    lines.push('rules (first match wins):');
    for (const v of r.rules) lines.push(`  ${v.admitted ? '✓' : '✗'} rule ${v.rule} → ${v.account}: ${v.admitted ? `matches (${v.matched.join(', ') || 'no conditions'})` : (v.reason ?? '').replace(/^rule \d+ /, '')}`);
  }
  if (r.roles) lines.push(`token roles: ${r.roles.length ? r.roles.join(', ') : 'none'}`);
  if (r.admitted) {
    lines.push(`verdict: admitted as ${r.account}: ${r.explanation}`);
    const id = r.identity!;
    lines.push(`identity: user id ${id.userId}${id.issuer ? `, issuer ${id.issuer}` : ''}${id.email ? `, email ${id.email}` : ''}${id.tenant ? `, tenant ${id.tenant}` : ''}, roles ${id.roles.length ? id.roles.join(', ') : 'none'}`);
    if (r.sessionEnds) lines.push(`session ends: ${r.sessionEnds.at === null ? 'no limit' : `${new Date(r.sessionEnds.at).toISOString()} (${r.sessionEnds.by})`}`);
  } else {
    lines.push(`verdict: refused (${r.code}, SQLSTATE ${r.sqlstate}): ${r.explanation}`);
  }
  return lines;
}
