/**
 * Frames one direction of a relayed connection for the statement audit and hands over the messages it
 * cares about, in order: the types in `withBody` with their body (at most `maxBody(type)` bytes of it,
 * plus the full length), the types in `headerOnly` without. Every other message (DataRow, CopyData, ...)
 * is skipped by its length, as MessageScanner does. Only the audited relay uses this; the header-only
 * relay never constructs one (`tapStats.bodies` counts every body read, so tests can assert that).
 *
 * A body inside one chunk is handed over as a view of that chunk (no copy); one split across chunks is
 * gathered. Malformed framing (a length below 4) stops the tap: the relay's own scanner ends the session.
 */

/** Process-wide counters of the audit tap (tests assert that `statements: none` reads no body). */
export const tapStats = { bodies: 0 };

export type TapHandler = (type: number, body: Buffer, length: number) => void;

const EMPTY = Buffer.alloc(0);

export class MessageTap {
  private readonly mode: Uint8Array; // 0 skip, 1 header only, 2 with body
  private remaining = 0;
  private headerFill = 0;
  private headerType = 0;
  private headerLength = 0;
  /** The message whose body is being gathered across chunks. */
  private gatherType = -1;
  private gatherLength = 0;
  private gatherCap = 0;
  private parts: Buffer[] = [];
  private kept = 0;
  malformed = false;

  constructor(
    withBody: readonly number[],
    headerOnly: readonly number[],
    private readonly maxBody: (type: number) => number,
    private readonly handler: TapHandler,
  ) {
    this.mode = new Uint8Array(256);
    for (const t of headerOnly) this.mode[t] = 1;
    for (const t of withBody) this.mode[t] = 2;
  }

  push(chunk: Buffer): void {
    if (this.malformed) return;
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, n - i);
        if (this.gatherType >= 0) this.gather(chunk.subarray(i, i + take));
        this.remaining -= take;
        i += take;
        if (this.remaining === 0 && this.gatherType >= 0) this.deliverGathered();
        continue;
      }
      let type: number;
      let length: number;
      if (this.headerFill === 0 && n - i >= 5) {
        type = chunk[i]!;
        length = chunk.readUInt32BE(i + 1);
        i += 5;
      } else {
        if (this.headerFill === 0) {
          this.headerType = chunk[i]!;
          this.headerLength = 0;
          this.headerFill = 1;
          i++;
        }
        while (this.headerFill < 5 && i < n) {
          this.headerLength = this.headerLength * 256 + chunk[i]!;
          this.headerFill++;
          i++;
        }
        if (this.headerFill < 5) return;
        this.headerFill = 0;
        type = this.headerType;
        length = this.headerLength;
      }
      if (length < 4) {
        this.malformed = true;
        return;
      }
      const bodyLength = length - 4;
      const mode = this.mode[type]!;
      if (mode === 2) {
        tapStats.bodies++;
        if (n - i >= bodyLength) {
          // The whole body is in this chunk: a view, capped.
          this.handler(type, chunk.subarray(i, i + Math.min(bodyLength, this.maxBody(type))), bodyLength);
          i += bodyLength;
          continue;
        }
        this.gatherType = type;
        this.gatherLength = bodyLength;
        this.gatherCap = this.maxBody(type);
        this.parts = [];
        this.kept = 0;
      } else if (mode === 1) {
        this.handler(type, EMPTY, bodyLength);
      }
      this.remaining = bodyLength;
    }
  }

  private gather(slice: Buffer): void {
    const room = this.gatherCap - this.kept;
    if (room <= 0) return;
    // Copied: the chunk's memory belongs to the relay, which hands it on to the other side.
    const part = Buffer.from(slice.subarray(0, room));
    this.parts.push(part);
    this.kept += part.length;
  }

  private deliverGathered(): void {
    const type = this.gatherType;
    this.gatherType = -1;
    const body = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.kept);
    this.parts = [];
    this.handler(type, body, this.gatherLength);
  }
}
