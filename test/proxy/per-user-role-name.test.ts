/**
 * The per-user role name rule (src/proxy/per-user/role-name.ts) against names an attacker picks: no two
 * people, issuers or forms (e-mail vs subject) share a role; long and odd names hash stably within 63 bytes.
 */
import { describe, expect, it } from 'vitest';
import { RoleCredentials } from '../../src/proxy/per-user/credentials.js';
import { userRoleName } from '../../src/proxy/per-user/role-name.js';
import { scramVerifierMatches } from '../../src/sql/scram.js';

const bytes = (s: string) => Buffer.byteLength(s);

describe('per-user role names', () => {
  it('uses the verified e-mail, lower-cased, else the subject behind #', () => {
    expect(userRoleName({ subject: 'auth0|a1', email: 'Alice@Example.com' }, undefined)).toBe('alice@example.com');
    expect(userRoleName({ subject: 'auth0|a1' }, undefined)).toBe('#auth0|a1');
    expect(userRoleName({ subject: 'auth0|a1', email: 'alice@example.com' }, undefined, 'sub')).toBe('#auth0|a1');
  });

  it('never gives a subject that looks like an e-mail the role of that e-mail', () => {
    const victim = userRoleName({ subject: 'auth0|v', email: 'alice@example.com' }, undefined);
    const attacker = userRoleName({ subject: 'alice@example.com' }, undefined);
    expect(attacker).not.toBe(victim);
  });

  it('namespaces by the issuer prefix: the same e-mail or sub at two issuers are two roles', () => {
    const corp = userRoleName({ subject: 'corp:x', email: 'alice@example.com' }, 'corp');
    const other = userRoleName({ subject: 'ext:x', email: 'alice@example.com' }, 'ext');
    expect(corp).toBe('corp:alice@example.com');
    expect(other).toBe('ext:alice@example.com');
    expect(userRoleName({ subject: 'corp:auth0|1' }, 'corp')).toBe('corp:#auth0|1');
  });

  it('falls back to the subject for e-mails outside the plain pattern (quotes, colons, tildes, non-ASCII)', () => {
    for (const email of ['"a b"@example.com', 'a:b@example.com', 'a~b@example.com', 'ålice@example.com', 'pg_admin']) {
      expect(userRoleName({ subject: 's1', email }, undefined)).toBe('#s1');
    }
  });

  it('hashes long names to 63 bytes, stably, and distinctly for names that share the first 46 bytes', () => {
    const long = `${'a'.repeat(60)}@example.com`;
    const name = userRoleName({ subject: 's', email: long }, undefined);
    expect(bytes(name)).toBeLessThanOrEqual(63);
    expect(name).toMatch(/^a{46}~[0-9a-f]{16}$/);
    expect(userRoleName({ subject: 's', email: long }, undefined)).toBe(name);
    expect(userRoleName({ subject: 's', email: `${'a'.repeat(60)}@example.org` }, undefined)).not.toBe(name);
  });

  it('hashes subjects with a tilde, quotes, spaces or multi-byte characters, so a plain name never equals a hashed one', () => {
    const long = userRoleName({ subject: 'x'.repeat(80) }, undefined);
    // An attacker choosing the hashed form as his sub gets another (hashed) name.
    expect(userRoleName({ subject: long.slice(1) }, undefined)).not.toBe(long);
    for (const subject of ['a"b', 'a b', 'ünïcödé'.repeat(10), 'tab\there']) {
      const n = userRoleName({ subject }, undefined);
      expect(n).toMatch(/~[0-9a-f]{16}$/);
      expect(bytes(n)).toBeLessThanOrEqual(63);
      expect(n).not.toMatch(/[\s"]/);
    }
  });

  it('never starts with the reserved pg_ prefix', () => {
    expect(userRoleName({ subject: 'x' }, 'pg_corp').startsWith('pg_')).toBe(false);
  });
});

describe('per-user credentials', () => {
  it('derive the same password and verifier on every replica from the secret, and differ per role and per secret', () => {
    const a = new RoleCredentials('s'.repeat(40));
    const b = new RoleCredentials('s'.repeat(40));
    expect(a.for('alice@example.com')).toEqual(b.for('alice@example.com'));
    expect(a.for('alice@example.com').password).not.toBe(a.for('carol@example.com').password);
    expect(new RoleCredentials('t'.repeat(40)).for('alice@example.com').password).not.toBe(a.for('alice@example.com').password);
    const { password, verifier } = a.for('alice@example.com');
    expect(verifier).toMatch(/^SCRAM-SHA-256\$4096:/);
    expect(verifier).not.toContain(password);
    expect(scramVerifierMatches(verifier, password)).toBe(true);
  });
});
