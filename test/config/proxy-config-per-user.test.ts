/** identity: per_user in the proxy config (issue 12): what it requires and what it refuses. */
import { describe, expect, it } from 'vitest';
import { buildProxyConfig } from '../../src/config/proxy-config.js';
import { configProblems } from '../support/config-docs.js';

const SECRET = 'x'.repeat(40);

function doc(extra: Record<string, unknown> = {}, db: Record<string, unknown> = { identity: 'per_user' }): Record<string, unknown> {
  return {
    tls: { allow_plaintext_loopback: true },
    providers: [{ issuer: 'https://a.example/', audience: 'https://gprxy.io' }],
    role_mapping: [{ role: 'pg_reader', account: 'app_reader' }],
    accounts: { app_reader: { password: 'pw' } },
    databases: { mydb: db },
    ...extra,
  };
}

function problems(document: Record<string, unknown>): string {
  return configProblems(document, (p) => (p === '/url' ? 'postgresql://prov@db/\n' : p === '/secret' ? `${SECRET}\n` : (() => { throw Object.assign(new Error('x'), { code: 'ENOENT' }); })()));
}

describe('identity: per_user config', () => {
  it('defaults to shared_account and needs no provisioning then', () => {
    const config = buildProxyConfig(doc({}, {}), {}, '/');
    expect(config.databases.mydb!.identity).toBe('shared_account');
    expect(config.provisioning).toBeUndefined();
  });

  it('needs provisioning.admin_url and a secret of 32+ characters', () => {
    expect(problems(doc())).toMatch(/provisioning: databases mydb use identity: per_user, which needs provisioning\.admin_url/);
    expect(problems(doc({ provisioning: { admin_url: 'postgresql://p@h/' } }))).toMatch(/provisioning\.secret: required/);
    expect(problems(doc({ provisioning: { admin_url: 'http://h/', secret: SECRET } }))).toMatch(/must be a postgresql:\/\/ URL/);
  });

  it('reads the admin URL and the secret from files', () => {
    const config = buildProxyConfig(doc({ provisioning: { admin_url_file: 'url', secret_file: 'secret' } }), {}, '/', (p) => (p === '/url' ? 'postgresql://prov@db/\n' : `${SECRET}\n`));
    expect(config.provisioning).toMatchObject({ adminUrl: 'postgresql://prov@db/', secret: SECRET, roleName: 'email' });
  });

  it('refuses a service account or a pg_ role as a group, and per_user on passthrough', () => {
    const provisioning = { admin_url: 'postgresql://p@h/', secret: SECRET, groups: [{ role: 'pg_reader', group: 'app_reader' }, { role: 'pg_reader', group: 'pg_monitor' }] };
    const text = problems(doc({ provisioning }));
    expect(text).toMatch(/groups\[0\]\.group: "app_reader" is a service account/);
    expect(text).toMatch(/groups\[1\]\.group: "pg_monitor" is a reserved/);
    expect(problems(doc({ provisioning: { admin_url: 'postgresql://p@h/', secret: SECRET } }, { identity: 'per_user', mode: 'passthrough' }))).toMatch(/per_user needs mode: oauth/);
  });
});
