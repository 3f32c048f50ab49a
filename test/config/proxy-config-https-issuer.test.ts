/** `gprxy serve --check` refuses an http:// issuer, as `gprxy configure` does (the JWKS would travel unprotected). */
import { describe, expect, it } from 'vitest';
import { buildProxyConfig } from '../../src/config/proxy-config.js';

const doc = (issuer: string) => ({
  tls: { allow_plaintext_loopback: true },
  providers: [{ issuer, audience: 'https://gprxy.io' }],
  databases: { mydb: { mode: 'passthrough' } },
});

describe('providers[].issuer', () => {
  it('refuses http://, naming the key', () => {
    expect(() => buildProxyConfig(doc('http://issuer.example.com/'), {}, '/')).toThrow(expect.objectContaining({ code: 'invalid_config', message: expect.stringMatching(/providers\[0\]\.issuer: must be an https:\/\/ URL/) }));
  });
  it('accepts https://', () => {
    expect(buildProxyConfig(doc('https://issuer.example.com/'), {}, '/').providers[0]!.issuer).toBe('https://issuer.example.com/');
  });
});
