/**
 * Hostile bytes at the proxy's front door. Each connection ends with 08P01 (or a login timeout) and the
 * proxy keeps serving everyone else: nothing hangs, nothing crashes the process.
 */
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseErrorFields } from '../../src/protocol/backend-messages.js';
import { startupMessage } from '../../src/protocol/client-messages.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { loginAs } from '../support/tokens.js';

let stack: ProxyStack;
let token: string;

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** Sends raw bytes and collects everything until the proxy closes the connection. */
async function exchange(bytes: Buffer | Buffer[], opts: { timeoutMs?: number } = {}): Promise<{ reply: Buffer; closed: boolean; ms: number }> {
  const started = Date.now();
  const socket: Socket = connect(stack.port, '127.0.0.1');
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  socket.on('error', () => {});
  for (const b of Array.isArray(bytes) ? bytes : [bytes]) socket.write(b);
  const closed = await Promise.race([once(socket, 'close').then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), opts.timeoutMs ?? 8000))]);
  socket.destroy();
  return { reply: Buffer.concat(chunks), closed, ms: Date.now() - started };
}

function sqlstateOf(reply: Buffer): string | undefined {
  const at = reply.indexOf(0x45); // 'E'
  if (at < 0) return undefined;
  const len = reply.readInt32BE(at + 1);
  return parseErrorFields(reply.subarray(at + 5, at + 1 + len)).code;
}

async function stillServes(): Promise<void> {
  const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'alice@example.com', password: token, database: 'mydb', ssl: stack.ssl });
  await c.connect();
  expect((await c.query('select 1 as one')).rows[0].one).toBe(1);
  await c.end();
}

beforeAll(async () => {
  stack = await startProxyStack({ overrides: { limits: { login_timeout: '1s', pool_wait_timeout: '5s', max_client_connections: 400 } } });
  token = (await loginAs(stack.idp.provider, 'alice')).accessToken;
});
afterAll(async () => {
  await stack?.stop();
});

describe('hostile input at the proxy', () => {
  const cases: [string, Buffer | Buffer[]][] = [
    ['startup length 0', int32(0)],
    ['startup length -1', int32(0xffffffff)],
    ['startup length 2^31', int32(0x80000000)],
    ['startup length 7', Buffer.concat([int32(7), Buffer.alloc(3)])],
    ['startup larger than 10 KB', Buffer.concat([int32(20_000), Buffer.alloc(100)])],
    ['protocol version 2.0', Buffer.concat([int32(8), int32(0x00020000)])],
    ['startup parameter without NUL', Buffer.concat([int32(8 + 4), int32(196608), Buffer.from('user')])],
    ['garbage after SSLRequest', Buffer.concat([int32(8), int32(80877103), Buffer.from('GARBAGE!')])],
    ['random garbage', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    [
      'a query instead of a password',
      Buffer.concat([startupMessage({ user: 'alice@example.com', database: 'mydb' }), Buffer.from('Q'), int32(13), Buffer.from('select 1\0')]),
    ],
    ['password message with length 2^31', Buffer.concat([startupMessage({ user: 'alice@example.com', database: 'mydb' }), Buffer.from('p'), int32(0x80000000)])],
  ];

  for (const [name, bytes] of cases) {
    it(`closes the connection on ${name} with 08P01`, async () => {
      // Plaintext from loopback is refused for lack of TLS (28000) before anything else, except for
      // violations found before the startup completes: those are 08P01 straight away.
      const r = await exchange(bytes);
      expect(r.closed).toBe(true);
      expect(['08P01', '28000']).toContain(sqlstateOf(r.reply) ?? '08P01');
      expect(r.ms).toBeLessThan(3000);
    });
  }

  it('refuses bytes sent after SSLRequest before the TLS handshake with 08P01 (CVE-2021-23214)', async () => {
    const r = await exchange(Buffer.concat([int32(8), int32(80877103), startupMessage({ user: 'x' })]));
    expect(r.closed).toBe(true);
    // Either the single 'S' answer never comes, or it comes followed by nothing: never a TLS session.
    expect(r.reply.subarray(r.reply.length - 1).toString()).not.toBe('S');
  });

  it('answers GSSENCRequest with N, then negotiates unknown _pq_ options away (3.2 itself is accepted: workers-inprocess.test.ts) and a newer minor version down to 3.2', async () => {
    // Loopback plaintext is allowed on this proxy variant so the exchange can be read on a raw socket.
    await stack.startProxy({ tls: { allow_plaintext_loopback: true }, limits: { login_timeout: '1s', pool_wait_timeout: '5s', max_client_connections: 400 } });
    try {
      const startup32 = startupMessage({ user: 'alice@example.com', database: 'mydb', '_pq_.compression': 'on' }, 3);
      const r = await exchange([Buffer.concat([int32(8), int32(80877104)]), startup32], { timeoutMs: 3000 });
      expect(r.reply[0]).toBe(0x4e); // 'N' to GSSENCRequest
      expect(r.reply[1]).toBe(0x76); // 'v' NegotiateProtocolVersion
      const len = r.reply.readInt32BE(2);
      const body = r.reply.subarray(6, 2 + len);
      expect(body.readInt32BE(0)).toBe(2); // newest minor version supported: 3.2
      expect(body.readInt32BE(4)).toBe(1);
      expect(body.subarray(8).toString()).toBe('_pq_.compression\0');
      expect(r.reply[2 + len]).toBe(0x52); // then 'R': the cleartext password request
      expect(r.reply.readInt32BE(2 + len + 5)).toBe(3);
    } finally {
      await stack.startProxy({ limits: { login_timeout: '1s', pool_wait_timeout: '5s', max_client_connections: 400 } });
    }
  });

  it('times out connections that never finish logging in (login_timeout)', async () => {
    const r = await exchange(Buffer.concat([int32(8), int32(80877103)]), { timeoutMs: 5000 });
    expect(r.closed).toBe(true);
    expect(r.ms).toBeGreaterThanOrEqual(900);
    const line = await stack.logs.waitFor((l) => l.reason === 'login_timeout');
    expect(line.event).toBe('connection_refused');
  });

  it('survives a flood of 300 half-open connections and keeps serving', async () => {
    const closed: Promise<unknown>[] = [];
    const connected: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      const s = connect(stack.port, '127.0.0.1');
      s.on('error', () => {});
      s.resume(); // read what the proxy says, so its close reaches us
      connected.push(once(s, 'connect'));
      closed.push(once(s, 'close'));
      s.write(int32(8)); // half a startup packet, then silence
    }
    await Promise.all(connected);
    await stillServes();
    // The login timeout reaps every one of them.
    await Promise.all(closed);
    await stillServes();
  });

  it('refuses connections beyond max_client_connections with 53300', async () => {
    // A login timeout longer than the test: with 1 s, a loaded machine that takes over a second to open the
    // 400 connections sees the first ones reaped before the 401st arrives, and the limit is never reached.
    await stack.startProxy({ limits: { login_timeout: '60s', pool_wait_timeout: '5s', max_client_connections: 400 } });
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 400; i++) {
        const s = connect(stack.port, '127.0.0.1');
        s.on('error', () => {});
        s.resume();
        sockets.push(s);
      }
      await Promise.all(sockets.map((s) => once(s, 'connect')));
      const r = await exchange(int32(8));
      expect(sqlstateOf(r.reply)).toBe('53300');
    } finally {
      for (const s of sockets) s.destroy();
      await stack.startProxy({ limits: { login_timeout: '1s', pool_wait_timeout: '5s', max_client_connections: 400 } });
    }
  });
});
