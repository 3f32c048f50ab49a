/** Per-user pools (issue 12): one per (database, role), and empty ones are forgotten, not kept per person forever. */
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { buildProxyConfig } from '../../src/config/proxy-config.js';
import { PoolManager } from '../../src/proxy/pools.js';

const config = buildProxyConfig(
  {
    tls: { allow_plaintext_loopback: true },
    providers: [{ issuer: 'https://a.example/', audience: 'https://gprxy.io' }],
    role_mapping: [{ role: 'pg_reader', account: 'app_reader' }],
    accounts: { app_reader: { password: 'pw' } },
    databases: { mydb: { identity: 'per_user' } },
    provisioning: { admin_url: 'postgresql://p@127.0.0.1/', secret: 'x'.repeat(40) },
  },
  {},
  '/',
);

afterEach(() => {
  vi.useRealTimers();
});

describe('per-user pools', () => {
  it('are keyed per role, and a pool without backends is dropped when another user arrives a minute later', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const pools = new PoolManager({ waitTimeoutMs: 1000, logger: pino({ level: 'silent' }), readBackendStart: false });
    const db = config.databases.mydb!;
    const alice = pools.getUser(db, 'alice@example.com', 'pw-a');
    expect(pools.getUser(db, 'alice@example.com', 'pw-a')).toBe(alice);
    expect(pools.getUser(db, 'carol@example.com', 'pw-c')).not.toBe(alice);
    expect(Object.keys(pools.stats())).toEqual(['mydb/user:alice@example.com', 'mydb/user:carol@example.com']);
    vi.setSystemTime(Date.now() + 61_000);
    pools.getUser(db, 'dave@example.com', 'pw-d');
    expect(Object.keys(pools.stats())).toEqual(['mydb/user:dave@example.com']);
    await pools.close();
  });
});
