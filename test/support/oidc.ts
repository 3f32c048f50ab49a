/**
 * A CA plus a running dev OIDC provider for one suite. The CA is returned so the same CA can sign the
 * proxy's test certificate; nothing global is registered: call `close()` (afterAll) to stop it.
 */
import { createCertificateAuthority, type CertificateAuthority } from '../../src/demo/certificates.js';
import { startDevProvider, type DevProvider, type DevProviderOptions } from '../../src/demo/oidc-provider.js';

export interface TestProvider {
  readonly provider: DevProvider;
  readonly ca: CertificateAuthority;
  close(): Promise<void>;
}

export async function startTestProvider(opts: Omit<DevProviderOptions, 'ca'> & { ca?: CertificateAuthority } = {}): Promise<TestProvider> {
  const ca = opts.ca ?? (await createCertificateAuthority('gprxy test CA'));
  const provider = await startDevProvider({ ...opts, ca });
  return { provider, ca, close: () => provider.close() };
}
