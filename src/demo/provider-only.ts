/**
 * `gprxy demo --provider-only`: just the demo's OIDC provider, for an operator trying their own PostgreSQL and
 * `gprxy serve` on one machine (README, "Try your own gprxy serve"). It prints what a real provider's console
 * would tell you (issuer, CA, the public client id, a CI client id and secret, the users) and writes the CA
 * plus a localhost certificate for the proxy, signed by the same CA, so one CA file serves the whole chain.
 * Everything lives in one temporary directory, removed by stop().
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCertificateAuthority } from './certificates.js';
import { DEV_AUDIENCE, DEV_CI_ROLES, DEV_CLAIM_NAMESPACE, DEV_CLI_CLIENT_ID, DEV_USERS, startDevProvider } from './oidc-provider.js';

export interface ProviderOnly {
  readonly issuer: string;
  readonly dir: string;
  readonly caPath: string;
  readonly proxyCertPath: string;
  readonly proxyKeyPath: string;
  readonly ciClient: { readonly clientId: string; readonly clientSecret: string };
  stop(): Promise<void>;
}

export async function startProviderOnly(options: { port?: number } = {}): Promise<ProviderOnly> {
  const dir = mkdtempSync(join(tmpdir(), 'gprxy-provider-'));
  try {
    const ca = await createCertificateAuthority('gprxy local provider CA');
    const caPath = join(dir, 'ca.pem');
    writeFileSync(caPath, ca.cert);
    const leaf = await ca.issue(['localhost', '127.0.0.1']);
    const proxyCertPath = join(dir, 'proxy.crt');
    const proxyKeyPath = join(dir, 'proxy.key');
    writeFileSync(proxyCertPath, leaf.cert);
    writeFileSync(proxyKeyPath, leaf.key, { mode: 0o600 });
    // One-hour access tokens, like a typical API.
    const provider = await startDevProvider({ ca, accessTokenTtlSeconds: 3600, ...(options.port ? { port: options.port } : {}) });
    return {
      issuer: provider.issuer,
      dir,
      caPath,
      proxyCertPath,
      proxyKeyPath,
      ciClient: provider.ciClient,
      async stop() {
        await provider.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** What to copy into gprxy.yaml and `gprxy configure`, for a person. The CI secret is printed: it is a throwaway. */
export function describeProviderOnly(p: ProviderOnly): string[] {
  const users = DEV_USERS.map((u) => `    ${u.username.padEnd(9)} password ${u.password.padEnd(12)} email ${u.email.padEnd(20)} roles ${u.roles.join(',').padEnd(10)} tenant ${u.orgId ?? '-'}`);
  return [
    '',
    'gprxy demo --provider-only: a local OIDC provider is running (Ctrl+C stops it and removes its files).',
    '',
    `  issuer               ${p.issuer}`,
    `  audience             ${DEV_AUDIENCE}`,
    `  CA file              ${p.caPath}   (providers[].ca in gprxy.yaml; --ca for gprxy configure)`,
    `  public client id     ${DEV_CLI_CLIENT_ID}   (gprxy configure --client-id: device flow, browser + PKCE)`,
    `  CI client            ${p.ciClient.clientId} / ${p.ciClient.clientSecret}   (GPRXY_CLIENT_ID / GPRXY_CLIENT_SECRET; roles ${DEV_CI_ROLES.join(',')})`,
    `  claims               ${DEV_CLAIM_NAMESPACE}roles, ${DEV_CLAIM_NAMESPACE}email, ${DEV_CLAIM_NAMESPACE}user_id, ${DEV_CLAIM_NAMESPACE}org_id`,
    `  proxy certificate    ${p.proxyCertPath} and ${p.proxyKeyPath}   (localhost, 127.0.0.1; same CA: tls.cert / tls.key)`,
    '',
    '  Users (sign in on the device page gprxy login shows):',
    ...users,
    '',
    '  For gprxy.yaml:',
    '    providers:',
    `      - issuer: "${p.issuer}"`,
    `        audience: "${DEV_AUDIENCE}"`,
    `        ca: ${p.caPath}`,
    `    tls: { cert: ${p.proxyCertPath}, key: ${p.proxyKeyPath} }`,
    '',
    '  For the CLI:',
    `    gprxy configure --profile local --issuer ${p.issuer} --client-id ${DEV_CLI_CLIENT_ID} --audience ${DEV_AUDIENCE} --proxy localhost:6432 --ca ${p.caPath}`,
    '',
  ];
}
