/**
 * Byte chunks in, byte chunks out around a StatementRouter: frames each direction with the protocol's
 * FrameReader (any chunking, a message split at any byte) and hands the router complete messages. A relay in
 * transaction mode feeds it what the client and the backend send and writes what it returns.
 * Memory: one message at a time per direction is buffered, up to the limits below.
 */
import { FrameReader } from '../../protocol/frame-reader.js';
import type { RouterOutput, StatementRouter } from './prepared-statements.js';

/** PostgreSQL accepts messages up to 1 GB; a client message larger than this is a protocol error here. */
export const MAX_CLIENT_MESSAGE = 256 * 1024 * 1024;
/** A DataRow may carry a 1 GB value; past this the connection ends with a protocol error. */
export const MAX_BACKEND_MESSAGE = 1024 * 1024 * 1024;

function whole(body: Buffer): Buffer {
  // FrameReader returns the body as a view; the 5 header bytes sit right before it in the same buffer.
  return Buffer.from(body.buffer, body.byteOffset - 5, body.length + 5);
}

function joined(parts: Buffer[]): Buffer {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

export class StatementStream {
  private readonly client = new FrameReader({ maxMessageLength: MAX_CLIENT_MESSAGE, maxBuffered: MAX_CLIENT_MESSAGE + 5 });
  private readonly backend = new FrameReader({ maxMessageLength: MAX_BACKEND_MESSAGE });

  constructor(readonly router: StatementRouter) {}

  /** Client bytes → what to write to the backend and (synthesized answers) to the client. Throws ProtocolError. */
  fromClient(chunk: Buffer): { toBackend: Buffer; toClient: Buffer } {
    this.client.push(chunk);
    const out: RouterOutput = { toBackend: [], toClient: [] };
    let m;
    while ((m = this.client.nextMessage())) this.router.fromClient(m.type, m.body, whole(m.body), out);
    return { toBackend: joined(out.toBackend), toClient: joined(out.toClient) };
  }

  /** Backend bytes → what to write to the client. */
  fromBackend(chunk: Buffer): Buffer {
    this.backend.push(chunk);
    const out: RouterOutput = { toBackend: [], toClient: [] };
    let m;
    while ((m = this.backend.nextMessage())) this.router.fromBackend(m.type, m.body, whole(m.body), out);
    return joined(out.toClient);
  }

  /** No partial message buffered in either direction. */
  get atBoundary(): boolean {
    return this.client.buffered === 0 && this.backend.buffered === 0;
  }
}
