/**
 * PostgreSQL 17+ direct TLS (sslnegotiation=direct): the client's first bytes are a TLS ClientHello with ALPN
 * "postgresql", no SSLRequest. gprxy serve accepts it and checks ALPN as PostgreSQL does: a direct connection
 * without ALPN is refused (08P01) after the handshake; a client offering only other protocols gets a fatal alert.
 * The real client is libpq 18 (libpq.so.5.18 of the embedded package, compiled test client); the ALPN cases use
 * Node's TLS client, which can leave ALPN out.
 */
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sslRequest, startupMessage } from '../../src/protocol/client-messages.js';
import { startProxyStack, type ProxyStack } from '../support/proxy-stack.js';
import { buildLibpq18Client, libpq18SkipReason, type Libpq18Client } from '../support/libpq18.js';
import { loginAs } from '../support/tokens.js';

let stack: ProxyStack;
beforeAll(async () => {
  stack = await startProxyStack();
  await stack.startProxy({
    databases: {
      mydb: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', pool: { size: 3 } },
      bearer: { host: stack.cluster.host, port: stack.cluster.port, dbname: 'mydb', client_auth: 'oauthbearer', pool: { size: 3 } },
    },
  });
});
afterAll(async () => {
  await stack?.stop();
});

/** A direct TLS connection from Node: ClientHello first, then a StartupMessage; resolves with the first reply. */
function directTls(alpn: string[] | undefined): Promise<{ socket: TLSSocket; alpn: string | false | null; reply: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: stack.port, servername: stack.ssl.servername, ca: stack.ssl.ca, ...(alpn ? { ALPNProtocols: alpn } : {}) });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      socket.write(startupMessage({ user: 'alice@example.com', database: 'mydb' }));
      let reply = Buffer.alloc(0);
      socket.on('data', (d: Buffer) => {
        reply = Buffer.concat([reply, d]);
        if (reply.length >= 5 && reply.length >= 1 + reply.readUInt32BE(1)) resolve({ socket, alpn: socket.alpnProtocol, reply });
      });
      socket.once('close', () => resolve({ socket, alpn: socket.alpnProtocol, reply }));
    });
  });
}

/** The SQLSTATE field of an ErrorResponse. */
function sqlstate(reply: Buffer): string | undefined {
  return /C([0-9A-Z]{5})\0/.exec(reply.subarray(5).toString('latin1'))?.[1];
}

describe('direct TLS (sslnegotiation=direct) to gprxy serve', () => {
  it('ALPN "postgresql": TLS without SSLRequest, then the usual password request', async () => {
    const { socket, alpn, reply } = await directTls(['postgresql']);
    socket.destroy();
    expect(alpn).toBe('postgresql');
    expect(String.fromCharCode(reply[0]!)).toBe('R');
    expect(reply.readUInt32BE(5)).toBe(3); // AuthenticationCleartextPassword: the token comes next
  });

  it('no ALPN: refused with 08P01 after the handshake, as PostgreSQL does', async () => {
    const { alpn, reply } = await directTls(undefined);
    expect(alpn).toBe(false);
    expect(String.fromCharCode(reply[0]!)).toBe('E');
    expect(sqlstate(reply)).toBe('08P01');
  });

  it('only other ALPN protocols: the handshake fails with no_application_protocol', async () => {
    await expect(directTls(['http/1.1'])).rejects.toThrow(/no.application.protocol|alert number 120/i);
  });

  it('SSLRequest clients are unaffected, and may offer ALPN "postgresql" too', async () => {
    const raw = netConnect({ host: '127.0.0.1', port: stack.port });
    await once(raw, 'connect');
    raw.write(sslRequest());
    const [answer] = (await once(raw, 'data')) as [Buffer];
    expect(answer.toString()).toBe('S');
    const secure = tlsConnect({ socket: raw, servername: stack.ssl.servername, ca: stack.ssl.ca, ALPNProtocols: ['postgresql'] });
    await once(secure, 'secureConnect');
    expect(secure.alpnProtocol).toBe('postgresql');
    secure.destroy();
  });
});

const skip = libpq18SkipReason();
if (skip) console.warn(`skipping the libpq 18 direct TLS test: ${skip}`);

describe.skipIf(!!skip)('libpq 18 with sslnegotiation=direct', () => {
  let client: Libpq18Client;
  let dir: string;
  beforeAll(async () => {
    client = await buildLibpq18Client();
    dir = mkdtempSync(join(tmpdir(), 'gprxy-direct-tls-'));
    writeFileSync(join(dir, 'ca.pem'), stack.ssl.ca);
  });
  afterAll(() => {
    client?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('logs in and runs a query', async () => {
    const alice = (await loginAs(stack.idp.provider, 'alice')).accessToken;
    const conninfo =
      `host=localhost port=${stack.port} dbname=bearer user=alice@example.com sslmode=verify-full sslnegotiation=direct ` +
      `sslrootcert=${join(dir, 'ca.pem')} oauth_issuer=${stack.idp.provider.issuer} oauth_client_id=gprxy-cli connect_timeout=10`;
    const r = await client.run(conninfo, 'select current_user', alice);
    expect(r.error).toBeUndefined();
    expect(r.value).toBe('app_writer');
  });
});
