/**
 * The claims whose value names the user, in order (DESIGN.md 2.2 username_claims): the proxy's default for
 * providers[].username_claims and the tunnel's choice of the user it connects as must be the same list, so
 * it is written once here. Imports nothing.
 */
export const DEFAULT_USERNAME_CLAIMS = ['https://gprxy.io/email', 'email', 'sub'] as const;
