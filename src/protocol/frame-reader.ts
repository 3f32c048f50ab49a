import { MessageTooLargeError, ProtocolError } from './errors.js';

export interface FrameReaderOptions {
  /** Largest startup-phase packet accepted, counting its own length field. PostgreSQL uses 10000. */
  maxStartupLength?: number;
  /** Largest declared length of a tagged message (the int32 after the type byte, which counts itself). */
  maxMessageLength?: number;
  /**
   * Most bytes the reader ever holds (unread). Beyond it push() keeps what fits and throws; the buffer
   * never grows past it either (no doubling to the next power of two). Default: no bound.
   */
  maxBuffered?: number;
}

export interface TaggedMessage {
  type: number;
  body: Buffer;
}

const EMPTY = Buffer.alloc(0);
const MIN_CAPACITY = 4096;

/**
 * Splits what a client sends during startup and authentication into frames, with bounds checked
 * as soon as a length field is complete, so an absurd length fails at once instead of waiting
 * for a body that never comes.
 *
 * One growable buffer with a read cursor (`start`) and a write cursor (`end`). Bytes are only
 * ever written past `end`; when the buffer runs out of room the unread bytes move to a fresh
 * allocation. So frames returned as views stay valid: no later push writes over them.
 */
export class FrameReader {
  private readonly maxStartupLength: number;
  private readonly maxMessageLength: number;
  private readonly maxBuffered: number;
  private buf: Buffer = EMPTY;
  private start = 0;
  private end = 0;

  constructor(opts: FrameReaderOptions = {}) {
    this.maxStartupLength = opts.maxStartupLength ?? 10240;
    this.maxMessageLength = opts.maxMessageLength ?? 65536;
    this.maxBuffered = opts.maxBuffered ?? Infinity;
  }

  /** Bytes received and not yet returned as a frame. */
  get buffered(): number {
    return this.end - this.start;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const room = this.maxBuffered - (this.end - this.start);
    if (chunk.length > room) {
      // Keep what fits (a frame header at the cursor stays readable, so an oversized length is still
      // reported as such by nextMessage), then refuse the rest.
      if (room > 0) this.push(chunk.subarray(0, room));
      throw new ProtocolError(`client sent more than ${this.maxBuffered} bytes before its previous message was complete`);
    }
    if (this.end + chunk.length > this.buf.length) {
      const pending = this.end - this.start;
      const need = pending + chunk.length;
      let capacity = MIN_CAPACITY;
      while (capacity < need) capacity *= 2;
      capacity = Math.max(need, Math.min(capacity, this.maxBuffered));
      const next = Buffer.allocUnsafe(capacity);
      this.buf.copy(next, 0, this.start, this.end);
      this.buf = next;
      this.start = 0;
      this.end = pending;
    }
    chunk.copy(this.buf, this.end);
    this.end += chunk.length;
  }

  /**
   * The next untagged startup-phase frame (StartupMessage, SSLRequest, GSSENCRequest,
   * CancelRequest), length field included, or null until it has fully arrived.
   */
  nextStartupFrame(): Buffer | null {
    if (this.end - this.start < 4) return null;
    const length = this.buf.readUInt32BE(this.start);
    if (length < 8) throw new ProtocolError(`startup packet length ${length} is below the minimum of 8 bytes`);
    if (length > this.maxStartupLength) {
      throw new MessageTooLargeError(undefined, length, this.maxStartupLength, `startup packet length ${length} exceeds ${this.maxStartupLength} bytes`);
    }
    if (this.end - this.start < length) return null;
    const frame = this.buf.subarray(this.start, this.start + length);
    this.start += length;
    return frame;
  }

  /** The next tagged message (type byte, then int32 length counting itself), or null until complete. */
  nextMessage(): TaggedMessage | null {
    if (this.end - this.start < 5) return null;
    const type = this.buf[this.start]!;
    const length = this.buf.readUInt32BE(this.start + 1);
    if (length < 4) throw new ProtocolError(`message ${describeType(type)} length ${length} is below the minimum of 4 bytes`);
    if (length > this.maxMessageLength) {
      throw new MessageTooLargeError(type, length, this.maxMessageLength, `message ${describeType(type)} length ${length} exceeds ${this.maxMessageLength} bytes`);
    }
    if (this.end - this.start < 1 + length) return null;
    const body = this.buf.subarray(this.start + 5, this.start + 1 + length);
    this.start += 1 + length;
    return { type, body };
  }

  /** Returns the unread bytes and empties the reader (the relay takes over after authentication). */
  takeRemaining(): Buffer {
    const rest = this.buf.subarray(this.start, this.end);
    this.buf = EMPTY;
    this.start = 0;
    this.end = 0;
    return rest;
  }
}

function describeType(type: number): string {
  return type >= 0x20 && type < 0x7f ? `'${String.fromCharCode(type)}'` : `0x${type.toString(16).padStart(2, '0')}`;
}
