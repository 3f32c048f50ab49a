/**
 * The real libpq 18 (libpq.so.5.18 of the embedded PostgreSQL 18 package) logging in to `gprxy serve` with
 * SASL OAUTHBEARER over TLS: its discovery round first, then a reconnect with the token its auth-data hook
 * returns (an application's own token cache; libpq's device flow module is not involved). Runs against
 * whichever backend the suite uses (embedded 18, or Debian's 15 with GPRXY_TEST_PG_BIN).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { buildLibpq18Client, libpq18SkipReason, type Libpq18Client } from '../support/libpq18.js';
import { loginAs } from '../support/tokens.js';

const skip = libpq18SkipReason();
if (skip) console.warn(`skipping the libpq 18 OAUTHBEARER tests: ${skip}`);

describe.skipIf(!!skip)('libpq 18 OAUTHBEARER to gprxy serve', () => {
  let stack: ProxyStack;
  let client: Libpq18Client;
  let alice: string;
  let dir: string;
  let issuer: string;

  const databases = () => ({
    mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', client_auth: 'oauthbearer', pool: { size: 3 } },
  });
  const conninfo = (extra = '') =>
    `host=localhost port=${stack.port} dbname=mydb user=alice@example.com sslmode=verify-full sslrootcert=${join(dir, 'ca.pem')} ` +
    `oauth_issuer=${issuer} oauth_client_id=gprxy-cli connect_timeout=10 ${extra}`;

  beforeAll(async () => {
    [stack, client] = await Promise.all([startProxyStack(), buildLibpq18Client()]);
    await stack.startProxy({ databases: databases() });
    issuer = stack.idp.provider.issuer;
    alice = (await loginAs(stack.idp.provider, 'alice')).accessToken;
    dir = mkdtempSync(join(tmpdir(), 'gprxy-libpq18-ca-'));
    writeFileSync(join(dir, 'ca.pem'), stack.ssl.ca);
  });
  afterAll(async () => {
    client?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
    await stack?.stop();
  });

  it('discovery first, then the hook’s token: logs in as the mapped account', async () => {
    const mark = stack.logs.lines.length;
    const r = await client.run(conninfo(), "select current_user || ' ' || current_setting('app.user_id', true)", alice);
    expect(r.error).toBeUndefined();
    expect(r.value).toBe('app_writer auth0|alice0001');
    // libpq asked the hook once, with what the proxy's discovery challenge said.
    expect(r.hooks).toEqual([{ discoveryUrl: `${issuer}/.well-known/openid-configuration`, scope: 'openid' }]);
    const lines = stack.logs.lines.slice(mark);
    const discovery = lines.findIndex((l) => l.reason === 'oauth_discovery');
    const success = lines.findIndex((l) => l.event === 'auth_success' && l.auth_method === 'oauthbearer');
    expect(discovery).toBeGreaterThanOrEqual(0);
    expect(success).toBeGreaterThan(discovery);
  });

  it('oauth_issuer given as the discovery URL skips the discovery round', async () => {
    const mark = stack.logs.lines.length;
    const r = await client.run(conninfo().replace(`oauth_issuer=${issuer}`, `oauth_issuer=${issuer}/.well-known/openid-configuration`), 'select 1', alice);
    expect(r.value).toBe('1');
    expect(r.hooks).toHaveLength(1);
    expect(stack.logs.lines.slice(mark).some((l) => l.reason === 'oauth_discovery')).toBe(false);
  });

  it('a token for another audience is refused with 28000', async () => {
    await stack.startProxy({ databases: databases(), providers: [{ issuer, audience: 'https://not-gprxy.example', ca: 'inline-ca' }] });
    try {
      const r = await client.run(conninfo(), 'select 1', alice);
      expect(r.value).toBeUndefined();
      expect(r.sqlstate).toBe('28000');
      const line = await stack.logs.waitFor((l) => l.event === 'auth_failure' && l.reason === 'token_audience');
      expect(line.auth_method).toBe('oauthbearer');
    } finally {
      await stack.startProxy({ databases: databases() });
    }
  });

  it('a client whose oauth_issuer differs from the advertised one refuses to send its token', async () => {
    const r = await client.run(conninfo().replace(`oauth_issuer=${issuer}`, 'oauth_issuer=https://other-idp.example'), 'select 1', alice);
    expect(r.value).toBeUndefined();
    expect(r.hooks).toHaveLength(0);
    expect(r.error).toMatch(/incompatible with oauth_issuer/);
  });
});
