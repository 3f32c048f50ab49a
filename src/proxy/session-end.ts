/**
 * When a session the proxy opened must end, and under which reason (DESIGN.md 2.4 and issue 19): the
 * earliest of limits.session_max_lifetime and either the CI rule's max_session (a job token lives minutes,
 * the job longer: the rule's limit replaces the token's expiry) or the token's expiry when
 * limits.end_session_at_token_expiry. One function for the session relay, the transaction relay and
 * `gprxy policy test`, so they cannot disagree. Also the log fields that name a CI job's run.
 */
import type { ProxyConfig } from '../config/proxy-config.js';
import type { Identity } from '../token/identity.js';

export type LifetimeReason = 'token_expired' | 'session_max_lifetime' | 'ci_max_session';

export interface SessionEnd {
  /** Epoch ms; Infinity: no end. */
  readonly at: number;
  readonly reason: LifetimeReason;
}

export function sessionEnd(limits: ProxyConfig['limits'], identity: Pick<Identity, 'ci'>, tokenExpiresAt: number, now: number): SessionEnd {
  const candidates: SessionEnd[] = [];
  if (limits.sessionMaxLifetimeMs > 0) candidates.push({ at: now + limits.sessionMaxLifetimeMs, reason: 'session_max_lifetime' });
  if (identity.ci && identity.ci.maxSessionMs > 0) candidates.push({ at: now + identity.ci.maxSessionMs, reason: 'ci_max_session' });
  else if (limits.endSessionAtTokenExpiry) candidates.push({ at: tokenExpiresAt, reason: 'token_expired' });
  return candidates.sort((a, b) => a.at - b.at)[0] ?? { at: Number.POSITIVE_INFINITY, reason: 'session_max_lifetime' };
}

/** The child-logger fields of a CI job's session: its kind, rule and run (run_id/run_attempt, pipeline_id/job_id). */
export function ciLogFields(identity: Pick<Identity, 'ci'>): Record<string, unknown> {
  return identity.ci ? { ci: { kind: identity.ci.kind, rule: identity.ci.rule, ...identity.ci.run } } : {};
}
