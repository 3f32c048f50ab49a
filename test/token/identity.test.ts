import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimAsSettingValue, matchesUsername, resolveIdentity, rolesFromClaim } from '../../src/token/identity.js';
import { TokenVerifier, type VerifiedToken } from '../../src/token/verifier.js';
import { FakeIdp, refused, ROLES_CLAIM } from './fake-idp.js';

const MAPPING = [
  { role: 'pg_admin', account: 'app_admin' },
  { role: 'pg_writer', account: 'app_writer' },
  { role: 'pg_reader', account: 'app_reader' },
] as const;

describe('resolveIdentity (tokens verified by a real TokenVerifier)', () => {
  let idp: FakeIdp;
  let v: TokenVerifier;
  const now = (): number => Date.parse('2026-11-25T16:00:00Z');
  const verified = async (claims: Record<string, unknown> = {}): Promise<VerifiedToken> => v.verify(await idp.sign(now(), claims));

  beforeAll(async () => {
    idp = await FakeIdp.start();
    v = new TokenVerifier({ providers: [idp.providerConfig()], jwks: { cacheTtlMs: 3_600_000 }, now });
    await v.start();
  });
  afterAll(async () => {
    v.close();
    await idp.close();
  });

  it('matches the startup user against the username claims and maps the role', async () => {
    const token = await verified({ 'https://gprxy.io/org_id': 'org_42', [ROLES_CLAIM]: ['pg_reader', 'pg_writer'] });
    const identity = resolveIdentity(token, 'alice@example.com', MAPPING);
    expect(identity).toEqual({
      user: 'alice@example.com',
      subject: 'auth0|alice',
      issuer: idp.issuer,
      email: 'alice@example.com',
      roles: ['pg_reader', 'pg_writer'],
      account: 'app_writer', // rule order wins, not claim order
      tenantId: 'org_42',
      claims: token.claims,
    });
  });

  it('any username claim may match, e.g. sub', async () => {
    const identity = resolveIdentity(await verified(), 'auth0|alice', MAPPING);
    expect(identity.user).toBe('auth0|alice');
    expect(identity.account).toBe('app_reader');
  });

  it('a token for another user than the startup user → token_user_mismatch', async () => {
    const token = await verified();
    let e = await refused(Promise.resolve().then(() => resolveIdentity(token, 'bob@example.com', MAPPING)), 'token_user_mismatch');
    expect(e.message).toBe('connected as user "bob@example.com" but the token belongs to "alice@example.com"; connect with user=alice@example.com');
    // Comparison is exact: no case folding.
    e = await refused(Promise.resolve().then(() => resolveIdentity(token, 'Alice@example.com', MAPPING)), 'token_user_mismatch');
    expect(e.code).toBe('token_user_mismatch');
  });

  it('the first username claim present names the owner; non-string claims never match', async () => {
    const token = await verified({ 'https://gprxy.io/email': 'alice@corp.example', email: 42, sub: 'auth0|alice' });
    const e = await refused(Promise.resolve().then(() => resolveIdentity(token, '42', MAPPING)), 'token_user_mismatch');
    expect(e.message).toContain('connect with user=alice@corp.example');
  });

  it('a token with none of the username claims → token_user_mismatch naming the claims', async () => {
    const token = await verified({ email: undefined, sub: undefined });
    const e = await refused(Promise.resolve().then(() => resolveIdentity(token, 'alice@example.com', MAPPING)), 'token_user_mismatch');
    expect(e.message).toContain('none of the username claims https://gprxy.io/email, email, sub');
  });

  it('no roles → token_no_role', async () => {
    const token = await verified({ [ROLES_CLAIM]: undefined });
    const e = await refused(Promise.resolve().then(() => resolveIdentity(token, 'alice@example.com', MAPPING)), 'token_no_role');
    expect(e.message).toContain('token roles: none');
  });

  it('roles that map to nothing → token_no_role listing the roles', async () => {
    const token = await verified({ [ROLES_CLAIM]: ['viewer', 'billing'] });
    const e = await refused(Promise.resolve().then(() => resolveIdentity(token, 'alice@example.com', MAPPING)), 'token_no_role');
    expect(e.message).toBe('no role in the token maps to an account (token roles: "viewer", "billing")');
    expect(e.sqlstate).toBe('28000');
  });

  it('roles as a space or comma separated string', async () => {
    const token = await verified({ [ROLES_CLAIM]: 'viewer, pg_admin pg_reader' });
    const identity = resolveIdentity(token, 'alice@example.com', MAPPING);
    expect(identity.roles).toEqual(['viewer', 'pg_admin', 'pg_reader']);
    expect(identity.account).toBe('app_admin');
  });

  it('a roles claim of the wrong type maps to nothing', async () => {
    const token = await verified({ [ROLES_CLAIM]: { admin: true } });
    await refused(Promise.resolve().then(() => resolveIdentity(token, 'alice@example.com', MAPPING)), 'token_no_role');
  });

  it('an empty role mapping refuses every token', async () => {
    await refused(Promise.resolve().then(async () => resolveIdentity(await verified(), 'alice@example.com', [])), 'token_no_role');
  });
});

describe('e-mail verification and issuer namespacing (issue 11, items 9 and 10)', () => {
  let idp: FakeIdp;
  const now = (): number => Date.parse('2026-11-25T16:00:00Z');
  const verifiers: TokenVerifier[] = [];
  async function verifierFor(over: Parameters<FakeIdp['providerConfig']>[0] = {}): Promise<TokenVerifier> {
    const v = new TokenVerifier({ providers: [idp.providerConfig(over)], jwks: { cacheTtlMs: 3_600_000 }, now });
    await v.start();
    verifiers.push(v);
    return v;
  }

  beforeAll(async () => {
    idp = await FakeIdp.start();
  });
  afterAll(async () => {
    for (const v of verifiers) v.close();
    await idp.close();
  });

  it('an unverified e-mail cannot be the login name (token_email_unverified, 28000) and is not the identity', async () => {
    const v = await verifierFor();
    for (const flag of [false, undefined, 'yes', 1, null]) {
      const token = await v.verify(await idp.sign(now(), { email_verified: flag, 'https://gprxy.io/email': 'alice@example.com' }));
      const e = await refused(Promise.resolve().then(() => resolveIdentity(token, 'alice@example.com', MAPPING)), 'token_email_unverified');
      expect(e.sqlstate).toBe('28000');
      expect(e.message).toContain('connect with user=auth0|alice');
      const bySub = resolveIdentity(token, 'auth0|alice', MAPPING);
      expect(bySub.email).toBeUndefined();
      expect(bySub.subject).toBe('auth0|alice');
    }
  });

  it('a verified e-mail (true or "true") is used', async () => {
    const v = await verifierFor();
    for (const flag of [true, 'true']) {
      const token = await v.verify(await idp.sign(now(), { email_verified: flag }));
      expect(resolveIdentity(token, 'alice@example.com', MAPPING).email).toBe('alice@example.com');
    }
  });

  it('email_verified_claim names the claim (Auth0: a namespaced claim set by the Action); emails_verified trusts all', async () => {
    const auth0 = await verifierFor({ emailVerifiedClaim: 'https://gprxy.io/email_verified' });
    const plainOnly = await auth0.verify(await idp.sign(now(), { email_verified: true }));
    await refused(Promise.resolve().then(() => resolveIdentity(plainOnly, 'alice@example.com', MAPPING)), 'token_email_unverified');
    const namespacedFlag = await auth0.verify(await idp.sign(now(), { email_verified: undefined, 'https://gprxy.io/email_verified': true }));
    expect(resolveIdentity(namespacedFlag, 'alice@example.com', MAPPING).email).toBe('alice@example.com');
    const trusting = await verifierFor({ emailsVerified: true });
    const noFlag = await trusting.verify(await idp.sign(now(), { email_verified: undefined }));
    expect(resolveIdentity(noFlag, 'alice@example.com', MAPPING).email).toBe('alice@example.com');
  });

  it('a username claim named like an e-mail but not listed in email_claims needs verification too (fail closed)', async () => {
    const v = await verifierFor({ usernameClaims: ['preferred_email', 'sub'] });
    const token = await v.verify(await idp.sign(now(), { email_verified: false, preferred_email: 'alice@example.com' }));
    await refused(Promise.resolve().then(() => resolveIdentity(token, 'alice@example.com', MAPPING)), 'token_email_unverified');
  });

  it('with a prefix, user and tenant ids are namespaced; without one they stay as they are', async () => {
    const plain = await verifierFor();
    const claims = { 'https://gprxy.io/org_id': 'tenant-a' };
    const a = resolveIdentity(await plain.verify(await idp.sign(now(), claims)), 'auth0|alice', MAPPING);
    expect([a.subject, a.tenantId, a.issuer]).toEqual(['auth0|alice', 'tenant-a', idp.issuer]);
    const prefixed = await verifierFor({ prefix: 'partner' });
    const b = resolveIdentity(await prefixed.verify(await idp.sign(now(), claims)), 'auth0|alice', [{ role: 'partner:pg_reader', account: 'app_reader' }]);
    expect([b.subject, b.tenantId]).toEqual(['partner:auth0|alice', 'partner:tenant-a']);
  });

  it("with a prefix, roles are namespaced too: a rule for another provider's role (or a raw one) never matches", async () => {
    const prefixed = await verifierFor({ prefix: 'partner' });
    const token = await prefixed.verify(await idp.sign(now(), { [ROLES_CLAIM]: ['pg_admin', 'pg_reader'] }));
    const id = resolveIdentity(token, 'auth0|alice', [
      { role: 'pg_admin', account: 'app_admin' },
      { role: 'corp:pg_admin', account: 'app_admin' },
      { role: 'partner:pg_reader', account: 'app_reader' },
    ]);
    expect([id.roles, id.account]).toEqual([['partner:pg_admin', 'partner:pg_reader'], 'app_reader']);
    await refused(Promise.resolve().then(() => resolveIdentity(token, 'auth0|alice', MAPPING)), 'token_no_role');
  });

  it('user_claim and tenant_claims are per provider; a token without the user claim is refused', async () => {
    const v = await verifierFor({ userClaim: 'oid', tenantClaims: ['tid'] });
    const token = await v.verify(await idp.sign(now(), { oid: 'object-1', tid: 'dir-1', org_id: 'ignored' }));
    const id = resolveIdentity(token, 'auth0|alice', MAPPING);
    expect([id.subject, id.tenantId]).toEqual(['object-1', 'dir-1']);
    const without = await v.verify(await idp.sign(now(), {}));
    await refused(Promise.resolve().then(() => resolveIdentity(without, 'auth0|alice', MAPPING)), 'token_no_user_id');
  });

  it('inherited names are never claims: a username or roles claim called constructor finds nothing', async () => {
    const v = await verifierFor({ usernameClaims: ['constructor', 'sub'], rolesClaim: 'toString' });
    const token = await v.verify(await idp.sign(now(), {}));
    await refused(Promise.resolve().then(() => resolveIdentity(token, 'function Object() { [native code] }', MAPPING)), 'token_user_mismatch');
    await refused(Promise.resolve().then(() => resolveIdentity(token, 'auth0|alice', MAPPING)), 'token_no_role');
  });
});

describe('rolesFromClaim', () => {
  it('accepts arrays of strings and separated strings, drops the rest', () => {
    expect(rolesFromClaim(['a', 1, 'b', 'a', ''])).toEqual(['a', 'b']);
    expect(rolesFromClaim(' a,b  c ,')).toEqual(['a', 'b', 'c']);
    expect(rolesFromClaim(undefined)).toEqual([]);
    expect(rolesFromClaim(7)).toEqual([]);
  });
});

describe('claimAsSettingValue', () => {
  it('formats claims as setting text', () => {
    expect(claimAsSettingValue('auth0|abc')).toBe('auth0|abc');
    expect(claimAsSettingValue(['pg_reader', 'pg_writer'])).toBe('pg_reader,pg_writer');
    expect(claimAsSettingValue([1, true, null, { a: 1 }])).toBe('1,true,,{"a":1}');
    expect(claimAsSettingValue({ org: 'x', n: [1] })).toBe('{"org":"x","n":[1]}');
    expect(claimAsSettingValue(null)).toBe('');
    expect(claimAsSettingValue(undefined)).toBe('');
    expect(claimAsSettingValue(42)).toBe('42');
    expect(claimAsSettingValue(false)).toBe('false');
    expect(claimAsSettingValue('a\0b')).toBe('ab');
  });
});

describe('matchesUsername (the rule PostgreSQL 18 validator endpoint asks)', () => {
  it('an unverified e-mail never matches; sub does', async () => {
    const idp = await FakeIdp.start();
    const now = (): number => Date.parse('2026-11-25T16:00:00Z');
    const v = new TokenVerifier({ providers: [idp.providerConfig()], jwks: { cacheTtlMs: 3_600_000 }, now });
    await v.start();
    try {
      const unverified = await v.verify(await idp.sign(now(), { email_verified: false }));
      expect(matchesUsername(unverified, 'alice@example.com')).toBe(false);
      expect(matchesUsername(unverified, 'auth0|alice')).toBe(true);
      const verifiedToken = await v.verify(await idp.sign(now(), { email_verified: true, jti: 'v' }));
      expect(matchesUsername(verifiedToken, 'alice@example.com')).toBe(true);
    } finally {
      v.close();
      await idp.close();
    }
  });
});
