/**
 * Who a token says you are, for `gprxy login` and `gprxy status`. The CLI only decodes (the proxy is what
 * verifies). Auth0 puts custom claims under a namespace (https://gprxy.io/roles); other providers use
 * plain names, so both are looked for.
 */
import { decodeJwt, type JWTPayload } from 'jose';

export interface Identity {
  readonly sub: string | undefined;
  readonly email: string | undefined;
  readonly name: string | undefined;
  readonly roles: readonly string[];
  readonly orgId: string | undefined;
}

/** The payload of a JWT access token, or {} for an opaque token. */
export function decodeClaims(token: string | undefined): JWTPayload {
  if (!token) return {};
  try {
    return decodeJwt(token);
  } catch {
    return {};
  }
}

function claimEndingWith(claims: Record<string, unknown>, suffix: string): unknown {
  const exact = claims[suffix];
  if (exact !== undefined) return exact;
  const key = Object.keys(claims).find((k) => k.startsWith('http') && k.endsWith(`/${suffix}`));
  return key === undefined ? undefined : claims[key];
}

function asString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** `accessClaims` win; `idClaims` (from the ID token) fill in what an access token lacks. */
export function identityFromClaims(accessClaims: Record<string, unknown>, idClaims: Record<string, unknown> = {}): Identity {
  const rolesValue = claimEndingWith(accessClaims, 'roles') ?? claimEndingWith(idClaims, 'roles');
  const roles = Array.isArray(rolesValue) ? rolesValue.filter((r): r is string => typeof r === 'string') : typeof rolesValue === 'string' ? rolesValue.split(/[\s,]+/).filter(Boolean) : [];
  return Object.freeze({
    sub: asString(accessClaims.sub) ?? asString(idClaims.sub),
    email: asString(claimEndingWith(accessClaims, 'email')) ?? asString(idClaims.email),
    name: asString(accessClaims.name) ?? asString(idClaims.name),
    roles: Object.freeze(roles),
    orgId: asString(claimEndingWith(accessClaims, 'org_id')) ?? asString(idClaims.org_id),
  });
}
