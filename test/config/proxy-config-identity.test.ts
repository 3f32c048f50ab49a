/** Provider identity settings (issue 11): prefixes with several providers, claim settings, limits. */
import { describe, expect, it } from 'vitest';
import { buildProxyConfig } from '../../src/config/proxy-config.js';
import { configProblems as problems } from '../support/config-docs.js';

function doc(providers: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    tls: { allow_plaintext_loopback: true },
    providers,
    role_mapping: [{ role: 'pg_reader', account: 'app_reader' }],
    accounts: { app_reader: { password: 'pw' } },
    databases: { mydb: {} },
    ...extra,
  };
}
const A = { issuer: 'https://a.example/', audience: 'https://gprxy.io' };
const B = { issuer: 'https://b.example/', audience: 'https://gprxy.io' };

describe('provider prefixes', () => {
  it('a single provider needs no prefix and gets the claim defaults (fail-closed e-mail)', () => {
    const config = buildProxyConfig(doc([A]), {}, '/');
    expect(config.providers[0]).toMatchObject({ userClaim: 'sub', emailVerifiedClaim: 'email_verified', emailsVerified: false });
    expect(config.providers[0]!.prefix).toBeUndefined();
  });

  it('several providers each need a prefix', () => {
    expect(problems(doc([A, B]))).toMatch(/providers\[0\]\.prefix: required when several providers[\s\S]*providers\[1\]\.prefix: required/);
    expect(problems(doc([{ ...A, prefix: 'a' }, B]))).toMatch(/providers\[1\]\.prefix: required/);
  });

  it('prefixes must be distinct (case-insensitively) and cannot hold the ":" separator', () => {
    expect(problems(doc([{ ...A, prefix: 'corp' }, { ...B, prefix: 'Corp' }]))).toMatch(/providers\[1\]\.prefix: "Corp" is already the prefix of providers\[0\]/);
    expect(problems(doc([{ ...A, prefix: 'a:b' }]))).toMatch(/providers\[0\]\.prefix: a prefix is/);
    expect(problems(doc([{ ...A, prefix: '' }]))).toMatch(/providers\[0\]\.prefix/);
  });

  it('the same issuer cannot be listed twice', () => {
    expect(problems(doc([{ ...A, prefix: 'x' }, { ...A, prefix: 'y' }]))).toMatch(/providers\[1\]\.issuer: .* is already providers\[0\]/);
  });

  it('accepts distinct prefixes and per-provider claim settings', () => {
    const config = buildProxyConfig(
      doc([
        { ...A, prefix: 'corp', email_verified_claim: 'https://gprxy.io/email_verified' },
        { ...B, prefix: 'partner', user_claim: 'oid', tenant_claims: ['tid'], email_claims: ['upn'], emails_verified: true },
      ], { role_mapping: [{ role: 'corp:pg_reader', account: 'app_reader' }, { role: 'partner:pg_reader', account: 'app_reader' }] }),
      {},
      '/',
    );
    expect(config.providers.map((p) => p.prefix)).toEqual(['corp', 'partner']);
    expect(config.providers[1]).toMatchObject({ userClaim: 'oid', tenantClaims: ['tid'], emailClaims: ['upn'], emailsVerified: true });
  });

  it('with prefixes, every role_mapping role names a configured provider (roles are prefix:role)', () => {
    const providers = [{ ...A, prefix: 'corp' }, { ...B, prefix: 'partner' }];
    expect(problems(doc(providers))).toMatch(/role_mapping\[0\]\.role: "pg_reader" names no provider.*"corp:pg_reader"/);
    expect(problems(doc(providers, { role_mapping: [{ role: 'other:pg_reader', account: 'app_reader' }] }))).toMatch(/role_mapping\[0\]\.role/);
    expect(problems(doc([{ ...A, prefix: 'corp' }]))).toMatch(/role_mapping\[0\]\.role: "pg_reader" names no provider/);
    expect(buildProxyConfig(doc([A]), {}, '/').roleMapping[0]!.role).toBe('pg_reader');
  });

  it('unknown provider keys stay errors', () => {
    expect(problems(doc([{ ...A, email_verified: true }]))).toMatch(/unknown key providers\[0\]\.email_verified/);
  });
});

describe('name-keyed maps', () => {
  it('have no prototype: constructor, __proto__ and toString are not databases or accounts', () => {
    const config = buildProxyConfig(doc([A]), {}, '/');
    for (const name of ['constructor', '__proto__', 'toString']) {
      expect(config.databases[name]).toBeUndefined();
      expect(config.accounts[name]).toBeUndefined();
      expect(config.context.settings[name]).toBeUndefined();
    }
    expect(problems(doc([A], { role_mapping: [{ role: 'r', account: 'constructor' }] }))).toMatch(/role_mapping\[0\]\.account: "constructor" is not a key of accounts/);
  });
});
