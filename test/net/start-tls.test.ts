/** The one SSLRequest → TLS upgrade (src/net/start-tls.ts): the SNI rule and the two ways it fails. */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startTls, tlsHostOptions } from '../../src/net/start-tls.js';
import { errorCode } from '../../src/shared/errors.js';

const REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A server that answers the SSLRequest with `answer`, and the ClientHello with `hello` (not TLS). */
async function server(answer: string, hello = ''): Promise<number> {
  const s = createServer((c: Socket) => {
    c.on('error', () => undefined);
    let n = 0;
    c.on('data', () => void (n++ === 0 ? c.write(answer) : c.end(hello)));
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as { port: number }).port;
}

async function connected(port: number): Promise<Socket> {
  const raw = connect({ host: '127.0.0.1', port });
  raw.on('error', () => undefined);
  await new Promise((r) => raw.once('connect', r));
  return raw;
}

describe('startTls', () => {
  it('sends SNI for a DNS name only, never for an IP address', () => {
    expect(tlsHostOptions('db.example.com')).toEqual({ host: 'db.example.com', servername: 'db.example.com' });
    expect(tlsHostOptions('127.0.0.1')).toEqual({ host: '127.0.0.1' });
    expect(tlsHostOptions('::1')).toEqual({ host: '::1' });
  });

  it('a server that answers N: tls_refused, and the socket is destroyed', async () => {
    const raw = await connected(await server('N'));
    const err = await startTls(raw, REQUEST, 0x53, { host: '127.0.0.1' }).catch((e: unknown) => e);
    expect(errorCode(err)).toBe('tls_refused');
    expect(raw.destroyed).toBe(true);
  });

  it('a server that accepts but does not speak TLS: tls_handshake_failed with the cause', async () => {
    const raw = await connected(await server('S', 'HTTP/1.1 400 Bad Request\r\n\r\n'));
    const err = (await startTls(raw, REQUEST, 0x53, { host: '127.0.0.1', rejectUnauthorized: false }).catch((e: unknown) => e)) as Error;
    expect(errorCode(err)).toBe('tls_handshake_failed');
    expect(err.cause).toBeInstanceOf(Error);
  });
});
