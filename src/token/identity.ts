/**
 * From a verified token to who is connecting and as which service account: the startup user must be one
 * of the token's username claims (so `pg_stat_activity` and the audit log name the real person), and the
 * first role_mapping rule whose role the token holds picks the account (DESIGN.md 2.2).
 */
import { TokenError, quote } from './errors.js';
import type { VerifiedToken } from './verifier.js';

export interface Identity {
  /** The startup user that matched a username claim. */
  readonly user: string;
  /** The `sub` claim ('' when the token has none). */
  readonly subject: string;
  readonly email?: string;
  readonly roles: string[];
  /** The PostgreSQL account (role_mapping[].account) this session runs as. */
  readonly account: string;
  readonly tenantId?: string;
  readonly claims: Record<string, unknown>;
}

export interface RoleRule {
  readonly role: string;
  readonly account: string;
}

/** Where the email and tenant come from, in order: plain OIDC/Auth0 names, then namespaced custom claims. */
const EMAIL_CLAIMS = ['email', 'https://gprxy.io/email'] as const;
const TENANT_CLAIMS = ['org_id', 'https://gprxy.io/org_id', 'tenant_id', 'https://gprxy.io/tenant_id', 'tid'] as const;

/** Roles as an array of strings, or one string separated by spaces or commas. */
export function rolesFromClaim(value: unknown): string[] {
  const raw = typeof value === 'string' ? value.split(/[\s,]+/) : Array.isArray(value) ? value.filter((r): r is string => typeof r === 'string') : [];
  return [...new Set(raw.filter((r) => r.length > 0))];
}

function firstString(claims: Record<string, unknown>, names: readonly string[]): string | undefined {
  for (const name of names) {
    const value = claims[name];
    if (typeof value === 'string' && value.length > 0) return value;
  }
  return undefined;
}

export function resolveIdentity(token: VerifiedToken, startupUser: string, roleMapping: readonly RoleRule[]): Identity {
  const claims = token.claims as Record<string, unknown>;
  const { usernameClaims, rolesClaim } = token.provider;
  const names = usernameClaims.flatMap((c) => (typeof claims[c] === 'string' && claims[c] !== '' ? [claims[c] as string] : []));
  if (!names.includes(startupUser)) {
    const owner = names[0];
    throw new TokenError(
      'token_user_mismatch',
      owner === undefined
        ? `connected as user ${quote(startupUser)} but the token has none of the username claims ${usernameClaims.join(', ')}`
        : `connected as user ${quote(startupUser)} but the token belongs to ${quote(owner)}; connect with user=${owner}`,
    );
  }

  const roles = rolesFromClaim(claims[rolesClaim]);
  const rule = roleMapping.find((r) => roles.includes(r.role));
  if (!rule) {
    throw new TokenError(
      'token_no_role',
      roles.length === 0
        ? `no role in the token maps to an account (token roles: none; the token has no ${rolesClaim} claim with roles)`
        : `no role in the token maps to an account (token roles: ${roles.map((r) => quote(r, 60)).join(', ')})`,
    );
  }

  const email = firstString(claims, EMAIL_CLAIMS);
  const tenantId = firstString(claims, TENANT_CLAIMS);
  return {
    user: startupUser,
    subject: typeof claims.sub === 'string' ? claims.sub : '',
    ...(email !== undefined ? { email } : {}),
    roles,
    account: rule.account,
    ...(tenantId !== undefined ? { tenantId } : {}),
    claims,
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
