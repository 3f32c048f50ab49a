/**
 * Who a token says you are, for `gprxy login` and `gprxy status`. The CLI only decodes (the proxy is what
 * verifies). Auth0 puts custom claims under a namespace (https://gprxy.io/roles); other providers use
 * plain names, so both are looked for.
 */
import { decodeJwt, type JWTPayload } from 'jose';
import { namespacedClaim, nonEmptyString, rolesFromClaim, stringClaim } from '../shared/claims.js';

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

/** `accessClaims` win; `idClaims` (from the ID token) fill in what an access token lacks. */
export function identityFromClaims(accessClaims: Record<string, unknown>, idClaims: Record<string, unknown> = {}): Identity {
  const roles = rolesFromClaim(namespacedClaim(accessClaims, 'roles') ?? namespacedClaim(idClaims, 'roles'));
  return Object.freeze({
    sub: stringClaim(accessClaims, 'sub') ?? stringClaim(idClaims, 'sub'),
    email: nonEmptyString(namespacedClaim(accessClaims, 'email')) ?? stringClaim(idClaims, 'email'),
    name: stringClaim(accessClaims, 'name') ?? stringClaim(idClaims, 'name'),
    roles: Object.freeze(roles),
    orgId: nonEmptyString(namespacedClaim(accessClaims, 'org_id')) ?? stringClaim(idClaims, 'org_id'),
  });
}
