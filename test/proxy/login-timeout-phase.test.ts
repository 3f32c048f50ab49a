/**
 * limits.login_timeout says where it hit. A client that sent SSLRequest, read 'S' and then never finished
 * its TLS handshake (slow, or gone without closing) is cut without a FATAL (it could not read one), and its
 * log line says so: reason login_timeout, phase tls_handshake, no sqlstate. It used to carry 08P01, the
 * protocol violation's code, though nothing was sent. A client that finished TLS and then stalled before its
 * startup packet is told 08P01 and logged with phase startup; one that never sent its token, phase authentication.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sslRequest, startupMessage } from '../../src/protocol/client-messages.js';
import { SqlState } from '../../src/protocol/sqlstate.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';

let stack: ProxyStack;

beforeAll(async () => {
  stack = await startProxyStack({ overrides: { limits: { login_timeout: '1500ms', pool_wait_timeout: '5s' } } });
});

afterAll(async () => {
  await stack?.stop();
});

/** A raw TCP connection that sent SSLRequest and read the proxy's answer. */
async function afterSslRequest(): Promise<{ socket: Socket; answer: string }> {
  const socket = netConnect(stack.port, '127.0.0.1');
  socket.on('error', () => undefined);
  await new Promise((r) => socket.once('connect', r));
  socket.write(sslRequest());
  const answer = await new Promise<Buffer>((r) => socket.once('data', r));
  return { socket, answer: answer.toString('latin1') };
}

/** A connection that finished its TLS handshake after SSLRequest (and sent nothing yet). */
async function afterTlsHandshake(): Promise<TLSSocket> {
  const { socket: raw } = await afterSslRequest();
  const secure = tlsConnect({ socket: raw, ca: stack.ssl.ca, servername: stack.ssl.servername, ALPNProtocols: ['postgresql'] });
  secure.on('error', () => undefined);
  await new Promise((r) => secure.once('secureConnect', r));
  return secure;
}

/** Everything the client receives until the proxy closes the connection. */
function untilClosed(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve) => socket.once('close', () => resolve(Buffer.concat(chunks))));
}

/** The login_timeout refusals logged so far (each test waits for one more than before it began). */
const timeoutLines = () => stack.logs.lines.filter((l) => l.event === 'connection_refused' && l.reason === 'login_timeout');

describe('login_timeout names the step it hit', () => {
  it('mid TLS handshake (SSLRequest answered S, then silence): cut without a FATAL, logged with phase tls_handshake and no sqlstate', async () => {
    const before = timeoutLines().length;
    const { socket, answer } = await afterSslRequest();
    expect(answer).toBe('S');
    const received = await untilClosed(socket); // the client stalls: no ClientHello
    expect(received.length).toBe(0);
    const line = await stack.logs.waitFor((l) => l.event === 'connection_refused' && l.reason === 'login_timeout' && timeoutLines().indexOf(l) >= before);
    expect(line.phase).toBe('tls_handshake');
    expect(line).not.toHaveProperty('sqlstate');
  });

  it('after the handshake, before the startup packet: 08P01 sent to the client and logged, phase startup', async () => {
    const before = timeoutLines().length;
    const secure = await afterTlsHandshake();
    const received = await untilClosed(secure);
    expect(String.fromCharCode(received[0]!)).toBe('E');
    expect(received.toString('latin1')).toContain(`C${SqlState.PROTOCOL_VIOLATION}\0`);
    const line = await stack.logs.waitFor((l) => l.event === 'connection_refused' && l.reason === 'login_timeout' && timeoutLines().indexOf(l) >= before);
    expect(line).toMatchObject({ phase: 'startup', sqlstate: SqlState.PROTOCOL_VIOLATION });
  });

  it('after the startup packet, no token: phase authentication', async () => {
    const before = timeoutLines().length;
    const secure = await afterTlsHandshake();
    const closed = untilClosed(secure);
    secure.write(startupMessage({ user: 'alice@example.com', database: 'mydb' }));
    await closed;
    const line = await stack.logs.waitFor((l) => l.event === 'connection_refused' && l.reason === 'login_timeout' && timeoutLines().indexOf(l) >= before);
    expect(line).toMatchObject({ phase: 'authentication', sqlstate: SqlState.PROTOCOL_VIOLATION });
  });
});
