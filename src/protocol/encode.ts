// Internal: the fixed-size writer that server-messages.ts and client-messages.ts share.
// Every message is measured first and allocated once, so no writer concatenates buffers.
import { MessageEncodingError } from './errors.js';

/** UTF-8 bytes of a protocol string (without its terminator); NUL would end the string early. */
export function encodeString(value: string, what: string): Buffer {
  if (value.includes('\0')) throw new MessageEncodingError(`${what} contains a NUL character`);
  return Buffer.from(value, 'utf8');
}

export function checkUint32(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new MessageEncodingError(`${what} ${value} is not an unsigned 32-bit integer`);
  }
  return value;
}

export class Writer {
  private readonly buf: Buffer;
  private off: number;

  /** `type` null writes an untagged (startup-style) frame: the length is the first field. */
  constructor(type: number | null, bodyLength: number) {
    const header = type === null ? 4 : 5;
    this.buf = Buffer.allocUnsafe(header + bodyLength);
    if (type !== null) this.buf[0] = type;
    this.buf.writeUInt32BE(bodyLength + 4, header - 4);
    this.off = header;
  }

  byte(value: number): this {
    this.buf[this.off++] = value;
    return this;
  }

  int16(value: number): this {
    this.off = this.buf.writeInt16BE(value, this.off);
    return this;
  }

  int32(value: number): this {
    this.off = this.buf.writeInt32BE(value, this.off);
    return this;
  }

  uint32(value: number): this {
    this.off = this.buf.writeUInt32BE(value, this.off);
    return this;
  }

  bytes(value: Buffer): this {
    this.off += value.copy(this.buf, this.off);
    return this;
  }

  /** Bytes from encodeString plus the terminating NUL. */
  cstring(value: Buffer): this {
    this.off += value.copy(this.buf, this.off);
    this.buf[this.off++] = 0;
    return this;
  }

  done(): Buffer {
    if (this.off !== this.buf.length) throw new Error(`writer filled ${this.off} of ${this.buf.length} bytes`);
    return this.buf;
  }
}
