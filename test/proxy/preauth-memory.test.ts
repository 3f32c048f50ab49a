/**
 * Pre-authentication memory (issue 11, item 7): a client without any credential may make the proxy hold no
 * more than one access token's worth of bytes, and an oversized partial password is refused as soon as its
 * length arrives (28P01: "not a token at all", DESIGN.md 2.3), not after login_timeout. bench/preauth-memory.ts
 * measures the RSS per connection.
 */
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseErrorFields } from '../../src/protocol/backend-messages.js';
import { startupMessage } from '../../src/protocol/client-messages.js';
import { MAX_PREAUTH_BUFFERED, MAX_PREAUTH_MESSAGE } from '../../src/proxy/login.js';
import { MAX_TOKEN_BYTES } from '../../src/token/verifier.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';

let stack: ProxyStack;
// A long login timeout: "promptly" must mean the length check, not the timer.
const LIMITS = { limits: { login_timeout: '30s', pool_wait_timeout: '5s' } };

beforeAll(async () => {
  stack = await startProxyStack({ overrides: { tls: { allow_plaintext_loopback: true }, ...LIMITS } });
});
afterAll(async () => {
  await stack?.stop();
});

function passwordHeader(length: number): Buffer {
  const b = Buffer.alloc(5);
  b.write('p', 0, 'latin1');
  b.writeUInt32BE(length, 1);
  return b;
}

/** Startup, wait for the password request, then `bytes`; collects the reply until the proxy closes. */
async function afterPasswordRequest(bytes: Buffer): Promise<{ sqlstate: string | undefined; ms: number }> {
  const socket: Socket = connect(stack.port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  let asked: () => void = () => {};
  const passwordRequested = new Promise<void>((r) => (asked = r));
  socket.on('data', (d: Buffer) => {
    chunks.push(d);
    if (Buffer.concat(chunks).includes(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]))) asked();
  });
  const closed = once(socket, 'close');
  socket.write(startupMessage({ user: 'alice@example.com', database: 'mydb' }));
  await passwordRequested;
  const started = Date.now();
  socket.write(bytes);
  const ended = await Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
  socket.destroy();
  expect(ended, 'the proxy did not close the connection').toBe(true);
  const reply = Buffer.concat(chunks);
  const at = reply.lastIndexOf(0x45);
  return { sqlstate: at < 0 ? undefined : parseErrorFields(reply.subarray(at + 5, at + 1 + reply.readInt32BE(at + 1))).code, ms: Date.now() - started };
}

describe('pre-authentication memory', () => {
  it('caps pre-auth messages at the token size limit plus an envelope', () => {
    expect(MAX_PREAUTH_MESSAGE).toBeLessThanOrEqual(MAX_TOKEN_BYTES + 1024);
    expect(MAX_PREAUTH_BUFFERED).toBeLessThan(MAX_TOKEN_BYTES + 2048);
  });

  it('refuses a partial 64 KiB password at once with 28P01', async () => {
    const r = await afterPasswordRequest(Buffer.concat([passwordHeader(64 * 1024), Buffer.alloc(20_000, 0x61)]));
    expect(r.sqlstate).toBe('28P01');
    expect(r.ms).toBeLessThan(5000);
  });

  it('refuses a partial password just above the cap (17 KiB, under the old 64 KiB limit) at once with 28P01', async () => {
    const r = await afterPasswordRequest(Buffer.concat([passwordHeader(MAX_PREAUTH_MESSAGE + 1), Buffer.alloc(1000, 0x61)]));
    expect(r.sqlstate).toBe('28P01');
    expect(r.ms).toBeLessThan(5000);
    const line = await stack.logs.waitFor((l) => l.reason === 'token_too_large');
    expect(line.event).toBe('auth_failure');
  });
});
