/**
 * Reading claims out of a JWT payload, the one way every part of gprxy does it: the proxy on a verified
 * token (src/token/identity.ts), the CLI and the tunnel on a token they only decode (src/oauth/identity.ts,
 * src/tunnel). A claim counts only as an own property (never something inherited from Object.prototype,
 * e.g. a claim named `constructor`) holding a non-empty string; roles are an array of strings or one string
 * separated by spaces or commas. Pure; imports nothing.
 */
export type Claims = Readonly<Record<string, unknown>>;

/** An own claim's value, or undefined. */
export function ownClaim(claims: Claims, name: string): unknown {
  return Object.hasOwn(claims, name) ? claims[name] : undefined;
}

/** The value if it is a non-empty string. */
export function nonEmptyString(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/** An own, non-empty string claim. */
export function stringClaim(claims: Claims, name: string): string | undefined {
  return nonEmptyString(ownClaim(claims, name));
}

/** The first of `names` that is a non-empty string claim. */
export function firstStringClaim(claims: Claims, names: readonly string[]): string | undefined {
  for (const name of names) {
    const value = stringClaim(claims, name);
    if (value !== undefined) return value;
  }
  return undefined;
}

/** Roles as an array of strings, or one string separated by spaces or commas; duplicates and empties dropped. */
export function rolesFromClaim(value: unknown): string[] {
  const raw = typeof value === 'string' ? value.split(/[\s,]+/) : Array.isArray(value) ? value.filter((r): r is string => typeof r === 'string') : [];
  return [...new Set(raw.filter((r) => r.length > 0))];
}

/**
 * A claim by its plain name or, failing that, under a namespace URL (Auth0 puts custom claims under
 * `https://<namespace>/roles`). For display in the CLI only: the proxy reads exactly the claims its config names.
 */
export function namespacedClaim(claims: Claims, name: string): unknown {
  const exact = ownClaim(claims, name);
  if (exact !== undefined) return exact;
  const key = Object.keys(claims).find((k) => k.startsWith('http') && k.endsWith(`/${name}`));
  return key === undefined ? undefined : claims[key];
}
