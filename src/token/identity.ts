/**
 * From a verified token to who is connecting and as which service account: the startup user must be one
 * of the token's username claims (so `pg_stat_activity` and the audit log name the real person), and the
 * first role_mapping rule whose role the token holds picks the account (DESIGN.md 2.2).
 *
 * Identity namespacing (issue 11, items 9 and 10):
 * - The user id is the provider's `user_claim` (default `sub`) and the tenant its first `tenant_claims`
 *   value. With a `prefix` (required, distinct, when several providers are configured) both become
 *   `prefix:value`. A prefix cannot contain ":", so the prefix part is unambiguous and two providers can
 *   never produce the same user id or tenant id, whatever values one of them mints. A single provider
 *   without a prefix keeps the raw values (existing RLS data still matches).
 * - Roles get the same `prefix:` (`corp:pg_admin`): role_mapping rules and `gprxy.has_role()` name the
 *   provider whose role they trust, so a second provider cannot mint an admin role of the first any more
 *   than alice's sub (with a prefix, role_mapping roles must carry a configured prefix: a config error
 *   otherwise). A single provider without a prefix keeps the raw roles.
 * - An e-mail is used (as a login name, in application_name, as gprxy.email()) only when the provider
 *   says it is verified (`email_verified_claim` is true) or the operator declares all its e-mails verified
 *   (`emails_verified`). Fail closed: Auth0 access tokens carry no `email_verified` unless an Action adds it.
 */
import { PROVIDER_CLAIM_DEFAULTS, type ProviderConfig } from '../config/proxy-config.js';
import { TokenError, quote } from './errors.js';
import { ciRunFields, decideCi } from './ci-rules.js';
import type { CiKind } from '../config/ci-provider-config.js';
import type { VerifiedToken } from './verifier.js';
import { firstStringClaim, rolesFromClaim, stringClaim } from '../shared/claims.js';

export { rolesFromClaim };

export interface Identity {
  /** The startup user that matched a username claim. */
  readonly user: string;
  /** The user id policies see (gprxy.user_id()): the user claim, `prefix:`-namespaced when configured. */
  readonly subject: string;
  /** The issuer (iss) of the token: gprxy.issuer(). Empty only for identities built outside a token. */
  readonly issuer?: string;
  /** A verified e-mail address (absent when the token has none, or the provider did not verify it). */
  readonly email?: string;
  readonly roles: string[];
  /** The PostgreSQL account (role_mapping[].account) this session runs as. */
  readonly account: string;
  /** The tenant policies see (gprxy.tenant_id()), `prefix:`-namespaced when configured. */
  readonly tenantId?: string;
  readonly claims: Record<string, unknown>;
  /** A CI job token (issue 19): the rule that admitted it and the run, for the session limit and the audit log. */
  readonly ci?: CiJob;
}

export interface CiJob {
  readonly kind: CiKind;
  readonly rule: number;
  /** The rule's max_session (0: not set): the session ends then, whatever the token's expiry. */
  readonly maxSessionMs: number;
  /** Which run this is (GitHub run_id/run_attempt, GitLab pipeline_id/job_id, ...). */
  readonly run: Readonly<Record<string, string>>;
  readonly explanation: string;
}

export interface RoleRule {
  readonly role: string;
  readonly account: string;
}

/** `prefix:value` when the provider has a prefix, the value itself otherwise. */
export function namespaced(provider: Pick<ProviderConfig, 'prefix'>, value: string): string {
  return provider.prefix === undefined ? value : `${provider.prefix}:${value}`;
}

/** The provider's claim settings with defaults for hand-built configs. */
function claimSettings(provider: ProviderConfig) {
  return {
    userClaim: provider.userClaim ?? PROVIDER_CLAIM_DEFAULTS.userClaim,
    emailClaims: provider.emailClaims ?? PROVIDER_CLAIM_DEFAULTS.emailClaims,
    tenantClaims: provider.tenantClaims ?? PROVIDER_CLAIM_DEFAULTS.tenantClaims,
    emailVerifiedClaim: provider.emailVerifiedClaim ?? PROVIDER_CLAIM_DEFAULTS.emailVerifiedClaim,
    emailsVerified: provider.emailsVerified ?? PROVIDER_CLAIM_DEFAULTS.emailsVerified,
  };
}

/** Whether the provider vouches for the token's e-mail: the verified claim is true (or the string "true"). */
export function emailVerified(provider: ProviderConfig, claims: Record<string, unknown>): boolean {
  const settings = claimSettings(provider);
  if (settings.emailsVerified) return true;
  const value = Object.hasOwn(claims, settings.emailVerifiedClaim) ? claims[settings.emailVerifiedClaim] : undefined;
  return value === true || value === 'true';
}

/** A username claim that holds an e-mail: one of email_claims, or any claim named like one (fail closed). */
function isEmailClaim(name: string, emailClaims: readonly string[]): boolean {
  return emailClaims.includes(name) || /e-?mail/i.test(name);
}

/**
 * The username rule alone: `user` is the value of one of the provider's username claims, an e-mail claim
 * counting only when the e-mail is verified. (PostgreSQL 18's validator endpoint asks just this.)
 */
export function matchesUsername(token: VerifiedToken, user: string): boolean {
  const claims = token.claims as Record<string, unknown>;
  const settings = claimSettings(token.provider);
  const verified = emailVerified(token.provider, claims);
  return token.provider.usernameClaims.some((c) => stringClaim(claims, c) === user && (verified || !isEmailClaim(c, settings.emailClaims)));
}

export function resolveIdentity(token: VerifiedToken, startupUser: string, roleMapping: readonly RoleRule[]): Identity {
  const claims = token.claims as Record<string, unknown>;
  const provider = token.provider;
  const { usernameClaims, rolesClaim } = provider;
  const settings = claimSettings(provider);
  const verified = emailVerified(provider, claims);

  const matching = usernameClaims.filter((c) => stringClaim(claims, c) === startupUser);
  const usable = matching.filter((c) => verified || !isEmailClaim(c, settings.emailClaims));
  if (usable.length === 0) {
    if (matching.length > 0) {
      const other = usernameClaims.find((c) => !isEmailClaim(c, settings.emailClaims) && stringClaim(claims, c) !== undefined);
      throw new TokenError(
        'token_email_unverified',
        `connected as user ${quote(startupUser)}, an e-mail address the provider has not verified (claim ${quote(settings.emailVerifiedClaim)} is not true); ` +
          (other ? `verify it with the provider, or connect with user=${stringClaim(claims, other)}` : 'verify it with the provider and log in again'),
      );
    }
    const names = usernameClaims.flatMap((c) => {
      const v = stringClaim(claims, c);
      return v !== undefined && (verified || !isEmailClaim(c, settings.emailClaims)) ? [v] : [];
    });
    const owner = names[0];
    throw new TokenError(
      'token_user_mismatch',
      owner === undefined
        ? `connected as user ${quote(startupUser)} but the token has none of the username claims ${usernameClaims.join(', ')}`
        : `connected as user ${quote(startupUser)} but the token belongs to ${quote(owner)}; connect with user=${owner}`,
    );
  }

  const userId = stringClaim(claims, settings.userClaim);
  if (userId === undefined) {
    throw new TokenError('token_no_user_id', `the token has no ${quote(settings.userClaim)} claim to identify the user; configure the provider's user_claim`);
  }

  // Roles are namespaced like the ids: they grant accounts (role_mapping) and rows (gprxy.has_role), so a
  // second provider must not be able to mint another provider's roles any more than its users.
  const roles = rolesFromClaim(Object.hasOwn(claims, rolesClaim) ? claims[rolesClaim] : undefined).map((r) => namespaced(provider, r));
  // A CI provider's rules pick the account (src/token/ci-rules.ts); role_mapping is for people's tokens.
  let ci: CiJob | undefined;
  if (provider.ci) {
    const decision = decideCi(provider.ci, claims);
    if (!decision.admitted || !decision.rule) {
      throw new TokenError('token_rule_refused', decision.clientReason, { explanation: decision.explanation });
    }
    ci = { kind: provider.ci.kind, rule: decision.rule.number, maxSessionMs: decision.rule.maxSessionMs, run: ciRunFields(provider.ci.kind, claims), explanation: decision.explanation };
  }
  const rule = ci ? { account: provider.ci!.rules[ci.rule - 1]!.account } : roleMapping.find((r) => roles.includes(r.role));
  if (!rule) {
    throw new TokenError(
      'token_no_role',
      roles.length === 0
        ? `no role in the token maps to an account (token roles: none; the token has no ${rolesClaim} claim with roles)`
        : `no role in the token maps to an account (token roles: ${roles.map((r) => quote(r, 60)).join(', ')})`,
    );
  }

  const email = verified ? firstStringClaim(claims, settings.emailClaims) : undefined;
  const tenant = firstStringClaim(claims, settings.tenantClaims);
  // An unverified e-mail reaches nothing the session sets either (context.settings are filled from these).
  const usableClaims = verified ? claims : Object.freeze(Object.fromEntries(Object.entries(claims).filter(([name]) => !isEmailClaim(name, settings.emailClaims))));
  return {
    user: startupUser,
    subject: namespaced(provider, userId),
    issuer: token.issuer,
    ...(email !== undefined ? { email } : {}),
    roles,
    account: rule.account,
    ...(tenant !== undefined ? { tenantId: namespaced(provider, tenant) } : {}),
    claims: usableClaims,
    ...(ci ? { ci } : {}),
  };
}

/**
 * A claim as the text of a PostgreSQL setting (context.settings): arrays joined by commas, objects as JSON,
 * null/undefined as ''. NUL is removed because PostgreSQL text cannot hold it.
 */
export function claimAsSettingValue(value: unknown): string {
  const text = (v: unknown): string => {
    if (v === null || v === undefined) return '';
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
    return JSON.stringify(v) ?? '';
  };
  const joined = Array.isArray(value) ? value.map(text).join(',') : text(value);
  return joined.replace(/\0/g, '');
}
