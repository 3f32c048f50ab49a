/**
 * The relay on real TCP socket pairs (no PostgreSQL: the far ends are this test), with every message split
 * at every byte: the client's Terminate is swallowed wherever it is cut, the backend is idle only after a
 * ReadyForQuery 'I' answered every request, and a malformed length ends the relay as a protocol error.
 */
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { query, terminate } from '../../src/protocol/client-messages.js';
import { readyForQuery } from '../../src/protocol/server-messages.js';
import { Relay } from '../../src/proxy/relay.js';

let server: Server;
const accepted: Socket[] = [];
const waiting: ((s: Socket) => void)[] = [];

beforeAll(async () => {
  server = createServer((s) => {
    const w = waiting.shift();
    if (w) w(s);
    else accepted.push(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
});
afterAll(() => server.close());

/** Two connected sockets: [the far end, the proxy's end]. */
async function pair(): Promise<[Socket, Socket]> {
  const { port } = server.address() as { port: number };
  const far = connect(port, '127.0.0.1');
  const near = accepted.shift() ?? (await new Promise<Socket>((resolve) => waiting.push(resolve)));
  await once(far, 'connect').catch(() => undefined);
  far.setNoDelay(true);
  near.setNoDelay(true);
  return [far, near];
}

/** Collects what arrives at `socket` and resolves when at least `n` bytes are there. */
function collector(socket: Socket): { bytes: () => Buffer; atLeast: (n: number) => Promise<void> } {
  let received = Buffer.alloc(0);
  let want: { n: number; resolve: () => void } | undefined;
  socket.on('data', (d: Buffer) => {
    received = Buffer.concat([received, d]);
    if (want && received.length >= want.n) want.resolve();
  });
  return {
    bytes: () => received,
    atLeast: (n) => (received.length >= n ? Promise.resolve() : new Promise<void>((resolve) => (want = { n, resolve }))),
  };
}

async function relayed(): Promise<{ app: Socket; db: Socket; relay: Relay; atDb: ReturnType<typeof collector>; atApp: ReturnType<typeof collector> }> {
  const [app, clientSide] = await pair();
  const [db, backendSide] = await pair();
  const relay = new Relay(clientSide, backendSide);
  const atDb = collector(db);
  const atApp = collector(app);
  relay.start();
  return { app, db, relay, atDb, atApp };
}

describe('Relay', () => {
  it('swallows the client Terminate wherever it is split, and the backend stays reusable', async () => {
    const q = query('select 1');
    const bytes = Buffer.concat([q, terminate()]);
    const answer = readyForQuery('I');
    for (let cut = 1; cut < bytes.length; cut++) {
      const { app, db, relay, atDb, atApp } = await relayed();
      // The query, cut in two, then the backend's answer, then the Terminate (possibly cut too).
      app.write(bytes.subarray(0, Math.min(cut, q.length)));
      await atDb.atLeast(Math.min(cut, q.length));
      app.write(bytes.subarray(Math.min(cut, q.length), q.length));
      await atDb.atLeast(q.length);
      db.write(answer);
      await atApp.atLeast(answer.length);
      if (cut > q.length) app.write(bytes.subarray(q.length, cut));
      app.write(bytes.subarray(Math.max(cut, q.length)));
      const result = await relay.done;
      expect(result.reason).toBe('client_terminate');
      expect(result.backendIdle).toBe(true);
      expect(atDb.bytes().equals(q)).toBe(true); // the Terminate never reached the backend
      expect(result.bytesFromClient).toBe(bytes.length);
      app.destroy();
      db.destroy();
    }
  });

  it('knows a backend with an unanswered request, or mid-transaction, is not reusable', async () => {
    const answers = [Buffer.alloc(0), readyForQuery('T')];
    for (const answer of answers) {
      const { app, db, relay, atDb, atApp } = await relayed();
      const q = query('begin');
      app.write(q);
      await atDb.atLeast(q.length);
      if (answer.length) {
        db.write(answer);
        await atApp.atLeast(answer.length);
      }
      app.end();
      const result = await relay.done;
      expect(result.reason).toBe('client_closed');
      expect(result.backendIdle).toBe(false);
      app.destroy();
      db.destroy();
    }
  });

  it('reports a backend message split at every byte as not at a boundary until it is whole', async () => {
    const answer = readyForQuery('I');
    for (let cut = 1; cut < answer.length; cut++) {
      const { app, db, relay, atApp } = await relayed();
      db.write(answer.subarray(0, cut));
      await atApp.atLeast(cut);
      expect(relay.clientAtBoundary).toBe(false);
      db.write(answer.subarray(cut));
      await atApp.atLeast(answer.length);
      expect(relay.clientAtBoundary).toBe(true);
      relay.stop();
      expect((await relay.done).reason).toBe('stopped');
      app.destroy();
      db.destroy();
    }
  });

  it('ends with protocol_error on a client message whose length is impossible', async () => {
    const { app, db, relay } = await relayed();
    const bad = Buffer.from([0x51, 0, 0, 0, 2]); // 'Q' with a length below 4
    app.write(bad);
    const result = await relay.done;
    expect(result.reason).toBe('protocol_error');
    expect(result.backendIdle).toBe(false);
    app.destroy();
    db.destroy();
  });
});
