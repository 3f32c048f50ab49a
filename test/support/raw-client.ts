/** A raw PostgreSQL-protocol client on plaintext loopback, logged in with a token: for tests that need exact bytes. */
import { connect, type Socket } from 'node:net';
import { passwordMessage, startupMessage } from '../../src/protocol/client-messages.js';
import { countReady, trace } from './pg-messages.js';

export interface RawClient {
  readonly socket: Socket;
  send(bytes: Buffer): void;
  /** The answers (see pg-messages trace) up to the n-th ReadyForQuery from now. */
  until(n: number): Promise<string[]>;
}

export async function rawClient(port: number, user: string, token: string, database = 'mydb'): Promise<RawClient> {
  const socket = connect(port, '127.0.0.1');
  let buffered = Buffer.alloc(0);
  let wake: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    buffered = Buffer.concat([buffered, d]);
    wake?.();
  });
  const until = async (n: number): Promise<string[]> => {
    while (countReady(buffered) < n) await new Promise<void>((r) => (wake = r));
    const out = trace(buffered);
    buffered = Buffer.alloc(0);
    return out;
  };
  await new Promise((r) => socket.once('connect', r));
  socket.write(startupMessage({ user, database }));
  while (buffered.length < 9) await new Promise<void>((r) => (wake = r));
  buffered = Buffer.alloc(0);
  socket.write(passwordMessage(token));
  await until(1);
  return { socket, send: (b) => socket.write(b), until };
}
