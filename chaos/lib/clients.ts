/** Small client-side actions the scenarios share: a raw CancelRequest, an abrupt disconnect, raw bytes. */
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import type pg from 'pg';
import { cancelRequest } from '../../src/protocol/client-messages.js';

/** Sends a CancelRequest for `client`'s session (the keys the proxy gave it) to host:port, plaintext. */
export async function sendCancel(client: pg.Client, host: string, port: number): Promise<void> {
  const c = client as unknown as { processID: number; secretKey: number | Buffer };
  const key = Buffer.isBuffer(c.secretKey) ? c.secretKey : Buffer.alloc(4);
  if (!Buffer.isBuffer(c.secretKey)) key.writeInt32BE(c.secretKey | 0);
  const s = connect(port, host);
  s.on('error', () => undefined);
  await once(s, 'connect');
  s.end(cancelRequest(c.processID >>> 0, key));
  await once(s, 'close');
}

/** Cuts the client's TCP connection without a Terminate (a laptop closing its lid). */
export function cutConnection(client: pg.Client): void {
  (client as unknown as { connection: { stream: Socket } }).connection.stream.destroy();
}
