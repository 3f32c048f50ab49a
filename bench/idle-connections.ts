/**
 * Opens many idle client connections the way libpq would: TCP, SSLRequest, TLS, StartupMessage, then
 * authentication (the token as a cleartext password for gprxy, SCRAM-SHA-256 for PgBouncer). A connection
 * counts as open once the client has done its part of the login: the token sent (gprxy), or SCRAM
 * accepted (PgBouncer). Those that get a backend then receive ReadyForQuery (counted); the others wait for
 * one because the pool is full. Either way they then stay idle until `close()`; the caller lets the server
 * settle before it reads the server's memory.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { parseAuthentication } from '../src/protocol/backend-messages.js';
import { passwordMessage, saslInitialResponse, saslResponse, sslRequest, startupMessage } from '../src/protocol/client-messages.js';
import { FrameReader } from '../src/protocol/frame-reader.js';
import { ScramClient } from '../src/proxy/scram.js';

export interface IdleTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  readonly ca: string;
}

export interface IdleConnection {
  readonly socket: TLSSocket;
}

const ERROR = 0x45;
const AUTH = 0x52;
const READY = 0x5a;

function openOne(t: IdleTarget, counters: { ready: number }): Promise<IdleConnection> {
  return new Promise((resolve, reject) => {
    let socket: Socket | TLSSocket = netConnect({ host: t.host, port: t.port, noDelay: true });
    let done = false;
    const fail = (e: Error) => {
      if (done) return;
      done = true;
      socket.destroy();
      reject(e);
    };
    // Resolves as soon as the login is as far as the client can take it; ReadyForQuery may come later
    // (when a backend is free) and is only counted.
    const finish = () => {
      if (done) return;
      done = true;
      resolve({ socket: socket as TLSSocket });
    };
    socket.once('error', fail);
    socket.once('connect', () => {
      socket.write(sslRequest());
      socket.once('data', (answer: Buffer) => {
        if (answer[0] !== 0x53) return fail(new Error(`server refused TLS (answered ${answer.toString('hex')})`));
        const secure = tlsConnect({ socket: socket as Socket, ca: t.ca, servername: 'localhost' });
        socket = secure;
        secure.once('error', fail);
        secure.once('secureConnect', () => {
          const reader = new FrameReader({ maxMessageLength: 1 << 20 });
          let scram: ScramClient | undefined;
          secure.on('data', (chunk: Buffer) => {
            void (async () => {
              reader.push(chunk);
              for (let m = reader.nextMessage(); m; m = reader.nextMessage()) {
                if (m.type === ERROR) return fail(new Error(`server refused the login: ${m.body.toString('utf8').replace(/\0/g, ' ').trim()}`));
                if (m.type === READY) {
                  counters.ready++;
                  finish();
                  continue;
                }
                if (m.type !== AUTH) continue;
                const auth = parseAuthentication(m.body);
                if (auth.kind === 'cleartext') {
                  secure.write(passwordMessage(t.password));
                  finish();
                } else if (auth.kind === 'sasl') {
                  scram = new ScramClient(t.password);
                  secure.write(saslInitialResponse(scram.mechanism, scram.clientFirst()));
                } else if (auth.kind === 'sasl-continue') {
                  secure.write(saslResponse(await scram!.clientFinal(auth.data)));
                } else if (auth.kind === 'sasl-final') {
                  scram!.verifyServerFinal(auth.data);
                } else if (auth.kind === 'ok') {
                  finish();
                } else {
                  return fail(new Error(`unexpected authentication request ${auth.kind}`));
                }
              }
            })().catch(fail);
          });
          secure.on('error', () => {});
          secure.write(startupMessage({ user: t.user, database: t.database, application_name: 'idle-bench' }));
        });
      });
    });
  });
}

export interface IdlePool {
  readonly connections: IdleConnection[];
  /** Connections that received ReadyForQuery (they hold a backend); the rest wait for one. */
  readonly ready: number;
  /** Opens `count` more connections, `concurrency` logins at a time. */
  open(count: number, concurrency?: number): Promise<void>;
  close(): Promise<void>;
}

export function idlePool(target: IdleTarget): IdlePool {
  const connections: IdleConnection[] = [];
  const counters = { ready: 0 };
  return {
    connections,
    get ready() {
      return counters.ready;
    },
    async open(count, concurrency = 64) {
      let started = 0;
      const worker = async () => {
        while (started < count) {
          started++;
          connections.push(await openOne(target, counters));
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
    },
    async close() {
      for (const c of connections.splice(0)) c.socket.destroy();
      await new Promise((r) => setTimeout(r, 200));
    },
  };
}
