import { createServer } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority, type CertificateAuthority } from '../../src/demo/certificates.js';
import { fetchWithCa } from '../../src/net/ca-fetch.js';
import { TokenVerifier } from '../../src/token/verifier.js';
import { FakeIdp, refused } from '../token/fake-idp.js';

describe('a provider behind a private CA (ProviderConfig.ca)', () => {
  let ca: CertificateAuthority;
  let idp: FakeIdp;

  beforeAll(async () => {
    ca = await createCertificateAuthority('gprxy token test CA');
    const leaf = await ca.issue(['127.0.0.1']);
    idp = await FakeIdp.start({ server: createServer({ cert: leaf.cert, key: leaf.key }) });
  });
  afterAll(async () => {
    await idp.close();
  });

  it('discovers and verifies over HTTPS trusting the configured CA', async () => {
    expect(idp.issuer).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
    const v = new TokenVerifier({ providers: [idp.providerConfig({ ca: ca.cert })], jwks: { cacheTtlMs: 3_600_000 } });
    try {
      await v.start();
      await expect(v.verify(await idp.sign(Date.now()))).resolves.toMatchObject({ issuer: idp.issuer });
    } finally {
      v.close();
    }
  });

  it('without the CA the provider is not trusted → jwks_unavailable', async () => {
    const v = new TokenVerifier({ providers: [idp.providerConfig()], jwks: { cacheTtlMs: 3_600_000 } });
    try {
      const e = await refused(v.start(), 'jwks_unavailable');
      expect(e.message).toMatch(/certificate/i);
    } finally {
      v.close();
    }
  });

  it('caps the body and passes the status through', async () => {
    const f = fetchWithCa(ca.cert, 64);
    const missing = await f(`${idp.issuer}nope`);
    expect(missing.status).toBe(404);
    await expect(f(idp.jwksUri)).rejects.toThrow(/exceeds 64 bytes/);
  });
});
