import { describe, expect, it } from 'vitest';
import { firstStringClaim, namespacedClaim, rolesFromClaim, stringClaim } from '../../src/shared/claims.js';
import { identityFromClaims } from '../../src/oauth/identity.js';
import { usernameFromClaims } from '../../src/tunnel/tunnel.js';

describe('claim readers (one rule for the proxy, the CLI and the tunnel)', () => {
  it('reads only own, non-empty string claims', () => {
    const claims = JSON.parse('{"sub":"auth0|1","email":"","name":7,"__proto__":"x"}') as Record<string, unknown>;
    expect(stringClaim(claims, 'sub')).toBe('auth0|1');
    expect(stringClaim(claims, 'email')).toBeUndefined();
    expect(stringClaim(claims, 'name')).toBeUndefined();
    expect(stringClaim({}, 'constructor')).toBeUndefined();
    expect(stringClaim({}, 'toString')).toBeUndefined();
    expect(firstStringClaim(claims, ['email', 'sub'])).toBe('auth0|1');
  });

  it('parses roles from an array or a space/comma separated string, without duplicates', () => {
    expect(rolesFromClaim(['pg_writer', 3, '', 'pg_writer'])).toEqual(['pg_writer']);
    expect(rolesFromClaim('pg_reader, pg_writer pg_reader')).toEqual(['pg_reader', 'pg_writer']);
    expect(rolesFromClaim({ role: 'x' })).toEqual([]);
  });

  it('finds an Auth0 namespaced claim when the plain name is absent, for display only', () => {
    expect(namespacedClaim({ 'https://gprxy.io/roles': ['a'] }, 'roles')).toEqual(['a']);
    expect(namespacedClaim({ roles: ['b'], 'https://gprxy.io/roles': ['a'] }, 'roles')).toEqual(['b']);
    expect(namespacedClaim({ 'urn:x/roles': ['a'] }, 'roles')).toBeUndefined();
  });

  it('the CLI identity and the tunnel user use the same readers', () => {
    const claims = { sub: 'auth0|1', 'https://gprxy.io/email': 'alice@example.com', roles: 'pg_writer,pg_writer pg_reader', name: '' };
    const identity = identityFromClaims(claims, { name: 'Alice' });
    expect(identity).toMatchObject({ sub: 'auth0|1', email: 'alice@example.com', name: 'Alice', roles: ['pg_writer', 'pg_reader'] });
    expect(usernameFromClaims(claims)).toBe('alice@example.com');
    expect(usernameFromClaims({ email: '', sub: 'auth0|1' })).toBe('auth0|1');
  });
});
