/**
 * A TCP fault proxy for the harness, between gprxy and PostgreSQL: forwards bytes both ways, and on demand
 * stalls (stops forwarding, connections stay open: a congested or partitioned path), blackholes new
 * connections (accepted, never connected upstream: a dead host behind a load balancer), or resets every
 * connection (RST both ways: a crashed middlebox). A fake only for faults the real parts cannot make on demand.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export class FaultProxy {
  private server: Server | undefined;
  private readonly pairs = new Set<[Socket, Socket | undefined]>();
  private stalled = false;
  private blackhole = false;
  port = 0;
  connections = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<void> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as { port: number }).port;
  }

  private accept(client: Socket): void {
    this.connections++;
    client.on('error', () => undefined);
    if (this.blackhole) {
      const pair: [Socket, Socket | undefined] = [client, undefined];
      this.pairs.add(pair);
      client.resume(); // read and drop: the connect "succeeded", nothing ever answers
      client.on('close', () => this.pairs.delete(pair));
      return;
    }
    const upstream = connect(this.target.port, this.target.host);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    const pair: [Socket, Socket | undefined] = [client, upstream];
    this.pairs.add(pair);
    const forward = (from: Socket, to: Socket) => {
      from.on('data', (d: Buffer) => {
        if (!to.write(d)) from.pause();
      });
      to.on('drain', () => this.stalled || from.resume());
      from.on('end', () => to.end());
      from.on('close', () => {
        to.destroy();
        this.pairs.delete(pair);
      });
    };
    forward(client, upstream);
    forward(upstream, client);
    if (this.stalled) {
      client.pause();
      upstream.pause();
    }
  }

  /** Stops forwarding in both directions on every connection, current and new, until restore(). */
  stall(): void {
    this.stalled = true;
    for (const [a, b] of this.pairs) {
      a.pause();
      b?.pause();
    }
  }

  /** New connections are accepted and never answered (existing ones keep working unless stalled). */
  blackholeNew(on = true): void {
    this.blackhole = on;
  }

  /** Every current connection is reset (RST to both ends). */
  resetAll(): number {
    const n = this.pairs.size;
    for (const [a, b] of this.pairs) {
      a.resetAndDestroy();
      b?.resetAndDestroy();
    }
    this.pairs.clear();
    return n;
  }

  restore(): void {
    this.stalled = false;
    this.blackhole = false;
    for (const [a, b] of this.pairs) {
      a.resume();
      b?.resume();
    }
  }

  async close(): Promise<void> {
    this.resetAll();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
