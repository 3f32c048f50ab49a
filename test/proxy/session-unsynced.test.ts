/**
 * Session pooling: a client that leaves in the middle of an extended-protocol sequence (messages sent, no Sync).
 * PostgreSQL itself rolls back what such a client started; the backend it leaves behind has work pending (or
 * skips everything until a Sync after an error), so it must not be reset and handed to the next client as idle.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { B, E, P, Q, S } from '../support/pg-messages.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { rawClient } from '../support/raw-client.js';
import { loginAs, type TokenSet } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';

let stack: ProxyStack;
let alice: TokenSet;

beforeAll(async () => {
  stack = await startProxyStack();
  await stack.startProxy({ tls: { cert: 'inline-cert', key: 'inline-key', allow_plaintext_loopback: true } });
  alice = await loginAs(stack.idp.provider, 'alice');
  await stack.cluster.query('create table unsynced (v text); grant select, insert on unsynced to app_writer', [], 'mydb');
});
afterAll(async () => {
  await stack?.stop();
});

async function leaveWith(bytes: Buffer, answers = 0): Promise<Record<string, unknown>> {
  const client = await rawClient(stack.port, 'alice@example.com', alice.accessToken);
  client.send(Q('select 1'));
  await client.until(1);
  const ends = () => stack.logs.lines.filter((l) => l.event === 'session_end').length;
  const before = ends();
  client.send(bytes);
  if (answers) await client.until(answers);
  client.socket.end();
  await waitUntil(() => ends() > before, 20_000);
  return stack.logs.lines.filter((l) => l.event === 'session_end')[before]!;
}

describe('a client that leaves before its Sync', () => {
  it('an Execute without Sync is not committed by the proxy (PostgreSQL rolls it back when its client leaves)', async () => {
    const end = await leaveWith(Buffer.concat([P('', `insert into unsynced values ('never synced')`), B(''), E()]));
    await waitUntil(async () => (await stack.cluster.query(`select count(*)::int as n from pg_stat_activity where usename = 'app_writer' and state <> 'idle'`)).rows[0]!.n === 0);
    expect((await stack.cluster.query('select count(*)::int as n from unsynced', [], 'mydb')).rows[0]!.n).toBe(0);
    expect(end.backend_reused).toBe(false);
  });

  it('a failed Parse without Sync: the backend (skipping to the next Sync) is not reset as if idle', async () => {
    const end = await leaveWith(P('', 'selec broken'));
    expect(end.backend_reused).toBe(false);
    expect(stack.logs.lines.some((l) => l.event === 'backend_reset_failed')).toBe(false);
  });

  it('a completed Sync still leaves the backend reusable', async () => {
    const end = await leaveWith(Buffer.concat([P('', 'select 1'), B(''), E(), S()]), 1);
    expect(end.backend_reused).toBe(true);
  });
});
