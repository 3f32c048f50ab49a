/**
 * Tracks message boundaries in one direction of a relayed connection by reading only the 5-byte
 * headers (type + int32 length) and skipping bodies, so the relay can learn the transaction state
 * (ReadyForQuery) and spot Terminate without parsing or copying anything.
 *
 * Works with any chunking: a header, or the ReadyForQuery status byte, may arrive split across
 * chunks. Per chunk it allocates nothing; a chunk full of body bytes costs one comparison.
 * Direction-agnostic: 'Z' is only sent by servers and 'X' only by clients.
 * Optionally copies out the bodies of a few rare message types (CaptureOptions).
 */
import { BackendCode, FrontendCode } from './codes.js';
const READY_FOR_QUERY = BackendCode.READY_FOR_QUERY;
const TERMINATE = FrontendCode.TERMINATE;

/**
 * Messages of a few rare types whose bodies the owner needs (the relay: the server's ParameterStatus, to
 * see application_name changes). Only those bodies are copied, into a buffer of their exact size; every
 * other message stays header-only. Bodies longer than maxBodyLength are skipped, not copied.
 */
export interface CaptureOptions {
  readonly types: readonly number[];
  readonly maxBodyLength: number;
  onMessage(type: number, body: Buffer): void;
}

export class MessageScanner {
  /** Status byte ('I', 'T', 'E' as a char code) of the last ReadyForQuery seen; 0 before the first. */
  lastReadyStatus = 0;
  /** A Terminate message has started in this stream (sticky). */
  sawTerminate = false;
  /** Offset in the chunk last scanned where a Terminate message starts; -1 if none does. */
  terminateOffset = -1;
  /** A header declared a length below 4: the stream cannot be framed any more and scanning stops. */
  malformed = false;
  /** Headers completed so far. */
  messageCount = 0;
  /**
   * Headers seen whose type is one of the constructor's `syncTypes`. The relay counts the client's
   * Query/Sync/FunctionCall against the server's ReadyForQuery to know whether a request is outstanding.
   */
  syncCount = 0;
  /**
   * A message of one of the constructor's `openTypes` (the extended protocol's Parse/Bind/Execute/…) came
   * after the last sync-type message: the server has work it will only finish, or skip, at the next Sync.
   */
  openSinceSync = false;
  private readonly isSync: Uint8Array;
  private readonly isOpen: Uint8Array;

  /** Message types whose bodies are copied out (see CaptureOptions); undefined when nothing is. */
  private readonly isCaptured: Uint8Array | undefined;
  /** The body being copied, while inside a captured message. */
  private captureBuffer: Buffer | undefined;
  private captureFill = 0;
  private captureType = 0;

  constructor(
    syncTypes: readonly number[] = [],
    private readonly capture?: CaptureOptions,
    openTypes: readonly number[] = [],
  ) {
    this.isSync = new Uint8Array(256);
    for (const t of syncTypes) this.isSync[t & 0xff] = 1;
    this.isOpen = new Uint8Array(256);
    for (const t of openTypes) this.isOpen[t & 0xff] = 1;
    if (capture) {
      this.isCaptured = new Uint8Array(256);
      for (const t of capture.types) this.isCaptured[t & 0xff] = 1;
    }
  }

  /** Body bytes of the current message still to skip. */
  private remaining = 0;
  /** The next body byte is a ReadyForQuery status. */
  private statusPending = false;
  /** Bytes of a split header seen so far (0 when not inside a header). */
  private headerFill = 0;
  private headerType = 0;
  private headerLength = 0;

  /** True between messages: nothing of a header or body is outstanding. */
  get atMessageBoundary(): boolean {
    return this.remaining === 0 && this.headerFill === 0 && !this.malformed;
  }

  scan(chunk: Buffer): void {
    this.terminateOffset = -1;
    if (this.malformed) return;
    const n = chunk.length;
    let i = 0;
    let remaining = this.remaining;

    while (i < n) {
      if (remaining > 0) {
        if (this.statusPending) {
          this.lastReadyStatus = chunk[i]!;
          this.statusPending = false;
        }
        const available = n - i;
        if (remaining >= available) {
          if (this.captureBuffer) this.copyBody(chunk, i, n, remaining === available);
          remaining -= available;
          break;
        }
        if (this.captureBuffer) this.copyBody(chunk, i, i + remaining, true);
        i += remaining;
        remaining = 0;
        continue;
      }

      let type: number;
      let length: number;
      if (this.headerFill === 0 && n - i >= 5) {
        // Common case: the whole header is in this chunk.
        type = chunk[i]!;
        if (type === TERMINATE) this.markTerminate(i);
        length = ((chunk[i + 1]! << 24) | (chunk[i + 2]! << 16) | (chunk[i + 3]! << 8) | chunk[i + 4]!) >>> 0;
        i += 5;
      } else {
        if (this.headerFill === 0) {
          type = chunk[i]!;
          if (type === TERMINATE) this.markTerminate(i);
          this.headerType = type;
          this.headerLength = 0;
          this.headerFill = 1;
          i++;
        }
        while (this.headerFill < 5 && i < n) {
          this.headerLength = this.headerLength * 256 + chunk[i]!;
          this.headerFill++;
          i++;
        }
        if (this.headerFill < 5) break;
        this.headerFill = 0;
        type = this.headerType;
        length = this.headerLength;
      }

      if (length < 4) {
        this.malformed = true;
        remaining = 0;
        break;
      }
      this.messageCount++;
      if (this.isSync[type]) {
        this.syncCount++;
        this.openSinceSync = false;
      } else if (this.isOpen[type]) this.openSinceSync = true;
      remaining = length - 4;
      if (type === READY_FOR_QUERY && remaining > 0) this.statusPending = true;
      if (this.isCaptured?.[type] && remaining <= this.capture!.maxBodyLength) {
        if (remaining === 0) this.capture!.onMessage(type, Buffer.alloc(0));
        else {
          this.captureBuffer = Buffer.allocUnsafe(remaining);
          this.captureFill = 0;
          this.captureType = type;
        }
      }
    }

    this.remaining = remaining;
  }

  private copyBody(chunk: Buffer, from: number, to: number, last: boolean): void {
    const buffer = this.captureBuffer!;
    this.captureFill += chunk.copy(buffer, this.captureFill, from, to);
    if (!last) return;
    this.captureBuffer = undefined;
    this.capture!.onMessage(this.captureType, buffer);
  }

  private markTerminate(offset: number): void {
    this.sawTerminate = true;
    if (this.terminateOffset === -1) this.terminateOffset = offset;
  }
}
