/**
 * The reference for gprxy's relay: the cheapest relay Node.js can be. A TCP listener that connects each
 * client to PostgreSQL and `pipe()`s bytes both ways, parsing nothing (PostgreSQL authenticates the
 * client itself, SCRAM through the pipe). What gprxy costs beyond this is gprxy's own doing; what this
 * costs beyond PgBouncer is Node's per-message I/O machinery.
 */
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

const sockets = new Set<Socket>();

function serve(target: { host: string; port: number }): Promise<number> {
  const server = createServer({ noDelay: true }, (client) => {
    const upstream = connect({ host: target.host, port: target.port, noDelay: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    }
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

function stop(code: number): never {
  for (const s of sockets) s.destroy();
  process.exit(code);
}

process.on('message', (raw: unknown) => {
  const m = raw as { type: 'init' | 'stop'; target?: { host: string; port: number } };
  if (m.type === 'init') {
    serve(m.target!).then(
      (port) => process.send!({ type: 'ready', port, pid: process.pid }),
      (e: Error) => process.send!({ type: 'error', error: e.message }),
    );
  } else if (m.type === 'stop') stop(0);
});
process.on('disconnect', () => stop(0));
process.on('SIGINT', () => stop(130));
process.on('SIGTERM', () => stop(143));
