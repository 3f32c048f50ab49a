/**
 * A provider whose HTTPS certificate comes from a private CA the proxy was not told about: the JWKS fetch
 * fails, and the log line (and the error a client's login meets) names the setting that fixes it,
 * providers[].ca. Real provider, real TLS verification failure.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { buildProxyConfig } from '../../src/config/proxy-config.js';
import { TokenVerifier } from '../../src/token/verifier.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';
import { LogCapture } from '../support/proxy-stack.js';

let idp: TestProvider;
beforeAll(async () => {
  idp = await startTestProvider();
});
afterAll(async () => {
  await idp?.close();
});

describe('JWKS fetch from a provider with an untrusted certificate', () => {
  it('logs a reason naming providers[].ca', async () => {
    const config = buildProxyConfig(
      {
        tls: { allow_plaintext_loopback: true },
        providers: [{ issuer: idp.provider.issuer, audience: 'https://gprxy.io' }], // no ca
        databases: { mydb: { mode: 'passthrough' } },
      },
      {},
      '/',
    );
    const logs = new LogCapture();
    const verifier = new TokenVerifier({ providers: config.providers, jwks: config.jwks, logger: pino({ level: 'debug' }, logs) });
    try {
      await expect(verifier.start()).rejects.toThrow(/providers\[\]\.ca/);
      const line = logs.lines.find((l) => /JWKS fetch failed/.test(String(l.msg)));
      expect(line, JSON.stringify(logs.lines)).toBeDefined();
      expect(String(line!.err)).toMatch(/certificate is not trusted: set providers\[\]\.ca to the PEM file of its CA/);
    } finally {
      verifier.close();
    }
  });
});
