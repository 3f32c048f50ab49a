/**
 * Several CA files for the CLI (`gprxy configure --ca A --ca B`, or GPRXY_CA=A:B): the issuer's private CA and
 * the proxy's are trusted together, and a PEM file without a trailing newline works. Checked with real TLS
 * handshakes against two servers, each with a certificate from one of the CAs.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, createServer, type Server } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configureProfile, resolveCliSettings } from '../../src/config/cli-config.js';
import { createCertificateAuthority } from '../../src/demo/certificates.js';

const dir = mkdtempSync(path.join(tmpdir(), 'gprxy-ca-bundle-'));
const configDir = path.join(dir, 'config');
const servers: Server[] = [];
let ports: number[] = [];

beforeAll(async () => {
  const cas = await Promise.all([createCertificateAuthority('issuer CA'), createCertificateAuthority('proxy CA')]);
  // The issuer's CA file ends without a newline, as some tools write it.
  writeFileSync(path.join(dir, 'issuer-ca.pem'), cas[0].cert.trimEnd());
  writeFileSync(path.join(dir, 'proxy-ca.pem'), cas[1].cert);
  ports = await Promise.all(
    cas.map(async (ca) => {
      const leaf = await ca.issue(['localhost']);
      const server = createServer({ cert: leaf.cert, key: leaf.key }, (s) => s.end());
      servers.push(server);
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      return (server.address() as { port: number }).port;
    }),
  );
});
afterAll(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

function handshake(port: number, ca: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca }, () => {
      socket.destroy();
      resolve();
    });
    socket.once('error', reject);
  });
}

describe('several CA files', () => {
  it('configure --ca A --ca B stores both; both servers verify, though A lacks its final newline', async () => {
    const { stored } = configureProfile(
      { issuer: 'https://tenant.example.com/', clientId: 'abc', ca: ['issuer-ca.pem', 'proxy-ca.pem'] },
      { configDir, cwd: dir },
    );
    expect(stored.ca).toEqual([path.join(dir, 'issuer-ca.pem'), path.join(dir, 'proxy-ca.pem')]);
    const settings = resolveCliSettings({ configDir, env: {} });
    expect(settings.caPaths).toHaveLength(2);
    for (const port of ports) await handshake(port, settings.caPem!);
  });

  it('GPRXY_CA takes several files separated like PATH', async () => {
    const settings = resolveCliSettings({ configDir, env: { GPRXY_CA: `${path.join(dir, 'proxy-ca.pem')}${path.delimiter}${path.join(dir, 'issuer-ca.pem')}` } });
    expect(settings.caPaths).toEqual([path.join(dir, 'proxy-ca.pem'), path.join(dir, 'issuer-ca.pem')]);
    for (const port of ports) await handshake(port, settings.caPem!);
  });

  it('one file still works, and a missing one is named', () => {
    configureProfile({ profile: 'one', issuer: 'https://tenant.example.com/', clientId: 'abc', ca: 'proxy-ca.pem' }, { configDir, cwd: dir });
    expect(resolveCliSettings({ configDir, profile: 'one', env: {} }).caPaths).toEqual([path.join(dir, 'proxy-ca.pem')]);
    expect(() => configureProfile({ profile: 'two', issuer: 'https://tenant.example.com/', clientId: 'abc', ca: ['proxy-ca.pem', 'nope.pem'] }, { configDir, cwd: dir })).toThrow(
      expect.objectContaining({ code: 'ca_unreadable', message: expect.stringContaining('nope.pem') }),
    );
  });
});
