/**
 * A throwaway certificate authority for the demo and the tests: an ECDSA P-256 CA and leaf certificates
 * for localhost / 127.0.0.1 (P-256 handshakes are ~1.5x cheaper than RSA-2048 here, see NOTES.md).
 * @peculiar/x509 generates them in-process with WebCrypto, so no openssl binary is needed on the machine.
 */
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

type KeyPair = webcrypto.CryptoKeyPair;

// @peculiar/x509's types name the DOM's Crypto; Node's webcrypto is the same API.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;

export interface PemPair {
  readonly cert: string;
  readonly key: string;
}

export interface CertificateAuthority extends PemPair {
  /** Issues a server certificate for the given DNS names and IP addresses. */
  issue(hosts?: readonly string[]): Promise<PemPair>;
  /** A TLS client certificate with CN = `name` (e.g. a PostgreSQL role for `cert` authentication). */
  issueClient(name: string): Promise<PemPair>;
}

async function exportKey(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END PRIVATE KEY-----\n`;
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - 60_000), notAfter: new Date(now + days * 86_400_000) };
}

export async function createCertificateAuthority(name = 'gprxy test CA'): Promise<CertificateAuthority> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as KeyPair;
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name}`,
    keys: keys as never,
    signingAlgorithm: SIGN,
    ...validity(30),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
    ],
  });
  const caPem = caCert.toString('pem');

  return {
    cert: caPem,
    key: await exportKey(keys.privateKey),
    async issue(hosts = ['localhost', '127.0.0.1', '::1']) {
      const leafKeys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as KeyPair;
      const names = hosts.map((h) => (/^[\d.]+$|:/.test(h) ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h }));
      const leaf = await x509.X509CertificateGenerator.create({
        subject: `CN=${hosts[0] ?? 'localhost'}`,
        issuer: caCert.subject,
        publicKey: leafKeys.publicKey as never,
        signingKey: keys.privateKey as never,
        signingAlgorithm: SIGN,
        ...validity(30),
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          new x509.SubjectAlternativeNameExtension(names),
          await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
        ],
      });
      return { cert: leaf.toString('pem'), key: await exportKey(leafKeys.privateKey) };
    },
    async issueClient(name: string) {
      const leafKeys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as KeyPair;
      const leaf = await x509.X509CertificateGenerator.create({
        subject: `CN=${name}`,
        issuer: caCert.subject,
        publicKey: leafKeys.publicKey as never,
        signingKey: keys.privateKey as never,
        signingAlgorithm: SIGN,
        ...validity(30),
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
          await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
        ],
      });
      return { cert: leaf.toString('pem'), key: await exportKey(leafKeys.privateKey) };
    },
  };
}
