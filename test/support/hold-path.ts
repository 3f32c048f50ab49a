/**
 * A TCP path between the proxy and PostgreSQL that forwards bytes both ways and, once armed, holds the first
 * chunk toward the server that contains a given byte pattern (e.g. the release reset's SQL, or a
 * CancelRequest's code) until release(): a slow network at the exact moment a test needs, which the real
 * parts cannot make on demand. Everything else on that connection waits behind the held chunk, as on a
 * congested path.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export class HoldPath {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private pattern: Buffer | undefined;
  private held: { resume: () => void } | undefined;
  private onHeld: (() => void) | undefined;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<void> {
    const server = createServer((client) => this.accept(client));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    this.port = (server.address() as { port: number }).port;
  }

  /** Arms the hold; resolves when a chunk toward the server containing `pattern` has been held. */
  holdNext(pattern: Buffer): Promise<void> {
    this.pattern = pattern;
    return new Promise<void>((resolve) => (this.onHeld = resolve));
  }

  /** Lets the held chunk (and whatever queued behind it) through. */
  release(): void {
    const held = this.held;
    this.held = undefined;
    held?.resume();
  }

  private accept(client: Socket): void {
    const upstream = connect(this.target.port, this.target.host);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('error', () => undefined);
      s.once('close', () => this.sockets.delete(s));
    }
    const queue: Buffer[] = [];
    let holding = false;
    const flush = () => {
      holding = false;
      for (const chunk of queue.splice(0)) upstream.write(chunk);
      if (clientEnded) upstream.end();
    };
    let clientEnded = false;
    client.on('data', (chunk: Buffer) => {
      if (!holding && this.pattern && chunk.includes(this.pattern)) {
        this.pattern = undefined;
        holding = true;
        this.held = { resume: flush };
        this.onHeld?.();
      }
      if (holding) queue.push(chunk);
      else upstream.write(chunk);
    });
    client.on('end', () => {
      clientEnded = true;
      if (!holding) upstream.end();
    });
    upstream.pipe(client);
    client.once('close', () => {
      if (!holding) upstream.destroy();
    });
    upstream.once('close', () => client.destroy());
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
