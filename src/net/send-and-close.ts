/**
 * Fire-and-forget one request on its own connection, as a CancelRequest is sent (libpq does the same):
 * write, half-close, and let the server close. Used by the proxy's cancel forwarding (pooled and
 * passthrough) and the tunnel's. Lives in src/net: imports nothing of ours.
 */
import type { Socket } from 'node:net';

/** Ends `socket` with `bytes`; a socket error just destroys it. Resolves when the connection is closed. */
export function sendAndClose(socket: Socket, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    socket.on('error', () => socket.destroy());
    socket.once('close', () => resolve());
    socket.end(bytes);
  });
}
