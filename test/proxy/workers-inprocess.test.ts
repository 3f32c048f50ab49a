/**
 * The parts of issue 18 that live inside one proxy process, on one proxy stack:
 *  - protocol 3.2 (PostgreSQL 18's longer cancel keys) between a client and the proxy: a client that asks for
 *    3.2 gets no downgrade and a 32-byte secret; a CancelRequest with that key cancels its query, one with a
 *    truncated key does nothing. Whatever the backend speaks (3.0 on PostgreSQL 15), the key is the proxy's.
 *  - a worker that throws: its crash handler (src/proxy/cluster/worker.ts onCrash, installed as the worker's
 *    uncaughtException handler) logs worker_crash and ends the open session with a clean FATAL 57P01 before
 *    the exit (recorded here, not performed). The primary's side (worker_exit logged, slot re-forked) is in
 *    workers-cluster.test.ts with a real SIGKILL.
 *  - limits.max_sessions_per_identity when the primary's answer is lost (a fault a real primary cannot
 *    produce on demand: the IPC transport drops what it is given): the login is refused with 57P03
 *    (identity_limit_unavailable) after a bounded wait instead of hanging, and the lease is given back in
 *    case the primary did grant it. The counting itself is in workers-identity-limit.test.ts (real workers).
 */
import { connect, type Socket } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onCrash } from '../../src/proxy/cluster/worker.js';
import { IpcEndpoint } from '../../src/proxy/cluster/ipc.js';
import { createLogger } from '../../src/proxy/logger.js';
import { FrameReader } from '../../src/protocol/frame-reader.js';
import { parseBackendKeyData, parseErrorFields } from '../../src/protocol/backend-messages.js';
import { passwordMessage, query, startupMessage } from '../../src/protocol/client-messages.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { sendCancel } from '../support/serve-process.js';
import { loginAs, type TokenSet } from '../support/tokens.js';
import { waitUntil } from '../support/wait.js';

let stack: ProxyStack;
let alice: TokenSet;

beforeAll(async () => {
  stack = await startProxyStack({ overrides: { tls: { allow_plaintext_loopback: true } } });
  alice = await loginAs(stack.idp.provider, 'alice');
});
afterAll(async () => {
  await stack?.stop();
});

/** A raw protocol client: every message the proxy sends, by type, until the predicate says stop. */
class RawClient {
  readonly socket: Socket;
  private readonly reader = new FrameReader({ maxMessageLength: 1 << 20 });
  readonly messages: { type: string; body: Buffer }[] = [];
  private wake: (() => void) | undefined;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => {
      this.reader.push(d);
      for (let m = this.reader.nextMessage(); m; m = this.reader.nextMessage()) this.messages.push({ type: String.fromCharCode(m.type), body: Buffer.from(m.body) });
      this.wake?.();
    });
    this.socket.on('close', () => this.wake?.());
  }

  async until(type: string, from = 0): Promise<{ type: string; body: Buffer }> {
    for (;;) {
      const found = this.messages.slice(from).find((m) => m.type === type);
      if (found) return found;
      if (this.socket.destroyed) throw new Error(`closed before a ${type} message; got ${this.messages.map((m) => m.type).join('')}`);
      await new Promise<void>((r) => (this.wake = r));
    }
  }
}

describe('protocol 3.2 cancel keys', () => {
  it('accepts 3.2, issues a 32-byte secret, and cancels with it (a truncated key does nothing)', async () => {
    const c = new RawClient(stack.port);
    try {
      c.socket.write(startupMessage({ user: 'alice@example.com', database: 'mydb' }, 2));
      await c.until('R');
      expect(c.messages.some((m) => m.type === 'v')).toBe(false); // 3.2 is not negotiated down
      c.socket.write(passwordMessage(alice.accessToken));
      await c.until('Z');
      const key = parseBackendKeyData((await c.until('K')).body);
      expect(key.secretKey).toHaveLength(32);
      const from = c.messages.length;
      c.socket.write(query('select pg_sleep(30)'));
      await waitUntil(async () => (await stack.cluster.query("select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'", [], 'mydb')).rows[0]?.n === 1);
      await sendCancel(stack.port, key.processId, key.secretKey.subarray(0, 4));
      await stack.logs.waitFor((l) => l.event === 'cancel_request' && l.outcome === 'no_match');
      expect(c.messages.slice(from).some((m) => m.type === 'E')).toBe(false);
      await sendCancel(stack.port, key.processId, key.secretKey);
      const error = parseErrorFields((await c.until('E', from)).body);
      expect(error.code).toBe('57014');
      const line = await stack.logs.waitFor((l) => l.event === 'cancel_request' && l.outcome === 'cancelled');
      expect(line.user).toBe('alice@example.com');
    } finally {
      c.socket.destroy();
    }
  });
});

describe('a worker that crashes', () => {
  it('ends its sessions with 57P01 and exits 70', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'alice@example.com', password: alice.accessToken, database: 'mydb' }); // this stack allows plaintext on loopback
    const ended = new Promise<{ code?: string }>((resolve) => c.on('error', (e: Error & { code?: string }) => resolve(e)));
    await c.connect();
    expect((await c.query('select 1 as one')).rows[0].one).toBe(1);
    let exitCode: number | undefined;
    const exited = new Promise<void>((resolve) => {
      const handler = onCrash({ proxy: stack.proxy, logger: createLogger({ level: 'info', destination: stack.logs, base: { worker: 3 } }), slot: 3, flush: () => undefined, exit: (code) => ((exitCode = code), resolve()) });
      handler(new Error('something nobody caught'));
    });
    expect((await ended).code).toBe('57P01');
    await exited;
    expect(exitCode).toBe(70);
    const line = await stack.logs.waitFor((l) => l.event === 'worker_crash');
    expect(line).toMatchObject({ level: 'fatal', worker: 3 });
    await c.end().catch(() => undefined);
  });
});

describe('an identity slot request the primary never answers', () => {
  // Without the bounded wait the login would hang past login_timeout (30 s here) and this test's own timeout.
  it('refuses the login with 57P03 after a bounded wait and gives the lease back', async () => {
    const sent: { kind: string; body: { lease?: number } }[] = [];
    // The primary's end of the channel is silent: every message is lost.
    const ipc = new IpcEndpoint({ send: (m) => sent.push(m as (typeof sent)[number]), on: () => undefined, off: () => undefined, isConnected: () => true });
    const identitySlots = { acquire: (body: { lease: number; key: string; max: number }, timeoutMs: number) => ipc.request('identity.acquire', body, timeoutMs), release: (body: { lease: number }) => ipc.send('identity.release', body) };
    await stack.startProxy({ limits: { login_timeout: '30s', max_sessions_per_identity: 2 } }, { cluster: { owner: { replica: 0, worker: 0 }, workers: 1, identitySlots } });
    try {
      const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'alice@example.com', password: alice.accessToken, database: 'mydb' });
      const error = await c.connect().then(
        () => undefined,
        (e: { code?: string }) => e,
      );
      expect(error?.code).toBe('57P03');
      const line = await stack.logs.waitFor((l) => l.event === 'auth_failure' && l.reason === 'identity_limit_unavailable');
      expect(line.sqlstate).toBe('57P03');
      const acquire = sent.find((m) => m.kind === 'identity.acquire')!;
      expect(sent.filter((m) => m.kind === 'identity.release').map((m) => m.body.lease)).toEqual([acquire.body.lease]);
    } finally {
      ipc.close();
      await stack.startProxy();
    }
  });
});
