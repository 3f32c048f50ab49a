/** The provider's keys over time, seen through the real proxy: rotation, outage, restart during an outage. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';

let stack: ProxyStack;
let cacheDir: string;

async function connectsAs(username: string, token: string): Promise<string> {
  const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: `${username}@example.com`, password: token, database: 'mydb', ssl: stack.ssl });
  await c.connect();
  try {
    return (await c.query('select current_user')).rows[0].current_user as string;
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  cacheDir = mkdtempSync(join(tmpdir(), 'gprxy-jwks-'));
  stack = await startProxyStack({ overrides: { jwks: { cache_ttl: '1h', cache_dir: cacheDir } } });
  await stack.startProxy({}, { unknownKidCooldownMs: 0 });
});
afterAll(async () => {
  await stack?.stop();
  rmSync(cacheDir, { recursive: true, force: true });
});

describe('JWKS through the proxy', () => {
  it('accepts a token signed with a newly rotated key without a restart', async () => {
    expect(await connectsAs('alice', (await loginAs(stack.idp.provider, 'alice')).accessToken)).toBe('app_writer');
    await stack.idp.provider.rotateSigningKey();
    const fresh = (await loginAs(stack.idp.provider, 'bob')).accessToken;
    expect(await connectsAs('bob', fresh)).toBe('app_reader');
    expect(stack.proxy.verifier.jwksStats()[stack.idp.provider.issuer]!.fetches).toBeGreaterThanOrEqual(2);
  });

  it('keeps accepting tokens with known keys while the JWKS endpoint fails', async () => {
    const token = (await loginAs(stack.idp.provider, 'sathwick')).accessToken;
    stack.idp.provider.jwksControl.fail(500);
    try {
      expect(await connectsAs('sathwick', token)).toBe('app_admin');
    } finally {
      stack.idp.provider.jwksControl.restore();
    }
  });

  it('serves after a restart during a JWKS outage, from the persisted cache', async () => {
    const token = (await loginAs(stack.idp.provider, 'alice')).accessToken;
    stack.idp.provider.jwksControl.stall();
    try {
      await stack.startProxy({}, { unknownKidCooldownMs: 0 }); // a new process would look the same: nothing in memory
      expect(await connectsAs('alice', token)).toBe('app_writer');
    } finally {
      stack.idp.provider.jwksControl.restore();
    }
  });
});
