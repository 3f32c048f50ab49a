/**
 * `gprxy sessions` (issue 21): the admin console's SHOW SESSIONS through a tunnel with the profile's token,
 * as a table or --json; refused with the proxy's reason (and the next step) for a token without the role.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_AUDIENCE, DEV_USERS } from '../../src/demo/oidc-provider.js';
import { runCli } from '../support/cli.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs, type TokenSet } from '../support/tokens.js';

const OPS = { username: 'olivia', password: 'olivia-pw', sub: 'auth0|olivia0005', email: 'olivia@example.com', name: 'Olivia Ops', roles: ['pg_ops'] };

let stack: ProxyStack;
let home: string;
const tokens: Record<string, TokenSet> = {};

beforeAll(async () => {
  stack = await startProxyStack({ provider: { users: [...DEV_USERS, OPS] } });
  await stack.startProxy({ admin: { database: 'gprxy', roles: ['pg_ops'] } });
  for (const u of ['alice', 'olivia']) tokens[u] = await loginAs(stack.idp.provider, u);
  home = mkdtempSync(join(tmpdir(), 'gprxy-sessions-'));
  writeFileSync(join(home, 'ca.pem'), stack.idp.ca.cert);
});
afterAll(async () => {
  await stack?.stop();
  if (home) rmSync(home, { recursive: true, force: true });
});

function sessions(args: string[], token: string) {
  return runCli(['sessions', ...args], {
    env: {
      HOME: home,
      XDG_CONFIG_HOME: join(home, '.config'),
      GPRXY_ISSUER: stack.idp.provider.issuer,
      GPRXY_AUDIENCE: DEV_AUDIENCE,
      GPRXY_CA: join(home, 'ca.pem'),
      GPRXY_PROXY: `127.0.0.1:${stack.port}`,
      GPRXY_TOKEN: token,
    },
  });
}

describe('gprxy sessions', () => {
  it('lists the sessions as JSON and as a table for an admin', async () => {
    const alice = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'alice@example.com', password: tokens.alice!.accessToken, database: 'mydb', ssl: stack.ssl, application_name: 'report' });
    await alice.connect();
    try {
      const json = await sessions(['--json'], tokens.olivia!.accessToken);
      expect(json.stderr).toBe('');
      expect(json.code).toBe(0);
      const rows = JSON.parse(json.stdout) as Record<string, unknown>[];
      const row = rows.find((r) => r.user === 'alice@example.com')!;
      expect(row).toMatchObject({ user_id: 'auth0|alice0001', account: 'app_writer', database: 'mydb', mode: 'oauth', application_name: 'report', state: 'idle', wait: 'client' });
      expect(typeof row.id).toBe('number');
      expect(typeof row.bytes_in).toBe('number');
      expect(new Date(row.since as string).getTime()).toBeGreaterThan(Date.now() - 120_000);
      expect(rows.find((r) => r.user === 'olivia@example.com')).toMatchObject({ database: 'gprxy', mode: 'admin', application_name: 'gprxy sessions' });

      const table = await sessions([], tokens.olivia!.accessToken);
      expect(table.code).toBe(0);
      const lines = table.stdout.trimEnd().split('\n');
      expect(lines[0]).toMatch(/^ID\s+USER\s+DATABASE\s+ACCOUNT\s+CLIENT\s+APPLICATION\s+SINCE\s+STATE\s+WAIT\s+IN\s+OUT$/);
      expect(lines.some((l) => /^\d+\s+alice@example\.com\s+mydb\s+app_writer\s+127\.0\.0\.1:\d+\s+report\s/.test(l))).toBe(true);
      expect(lines.at(-1)).toMatch(/^\d+ sessions$/);
    } finally {
      await alice.end();
    }
  });

  it('says why a token without the admin role is refused (exit 1), and what to do', async () => {
    const r = await sessions(['--json'], tokens.alice!.accessToken);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^gprxy: .*may not use the admin console.*pg_ops.*ask for the admin role/);
    const wrongDb = await sessions(['--database', 'nosuch'], tokens.olivia!.accessToken);
    expect(wrongDb.code).toBe(1);
    expect(wrongDb.stderr).toContain('serves no admin console named nosuch');
  });
});
