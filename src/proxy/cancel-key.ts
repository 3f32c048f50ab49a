/**
 * What a cancel key the proxy hands out says about where it was issued. The process id field (31 bits,
 * kept positive for clients that read it as a signed int) carries the replica (8 bits) and the worker
 * (6 bits) that issued it, then 17 random bits; the secret key stays entirely random: 4 bytes in protocol
 * 3.0, as PostgreSQL's own (whose process id is not secret either), 32 bytes when the client asked for 3.2
 * (PostgreSQL 18 sends 32 too). A forged key therefore still has to guess the full secret.
 *
 * Random bytes come from a pre-filled pool: one randomBytes call per 4 KiB instead of one per session
 * (the last benchmark's profile put per-session randomBytes at ~2 % of the proxy's CPU per connection).
 */
import { randomBytes } from 'node:crypto';

export interface KeyOwner {
  /** 0..255: which replica issued the key (config cluster.replica_id, or random at start). */
  readonly replica: number;
  /** 0..63: which worker of that replica (0 without --workers). */
  readonly worker: number;
}

const RANDOM_BITS = 17;
const WORKER_BITS = 6;
const REPLICA_SHIFT = RANDOM_BITS + WORKER_BITS;

/** Secret key lengths: protocol 3.0 fixes 4 bytes; 3.2 allows up to 256, PostgreSQL 18 sends 32. */
export const SECRET_BYTES_3_0 = 4;
export const SECRET_BYTES_3_2 = 32;

export function ownerOf(processId: number): KeyOwner {
  return { replica: (processId >>> REPLICA_SHIFT) & 0xff, worker: (processId >>> RANDOM_BITS) & ((1 << WORKER_BITS) - 1) };
}

export function sameOwner(a: KeyOwner, b: KeyOwner): boolean {
  return a.replica === b.replica && a.worker === b.worker;
}

/** Random bytes served from a buffer refilled 4 KiB at a time. */
export class RandomPool {
  private buffer = Buffer.alloc(0);
  private offset = 0;

  constructor(private readonly blockSize = 4096) {}

  /** `n` fresh random bytes (a copy: the caller may keep it). */
  take(n: number): Buffer {
    if (this.offset + n > this.buffer.length) {
      this.buffer = randomBytes(Math.max(this.blockSize, n));
      this.offset = 0;
    }
    const out = Buffer.from(this.buffer.subarray(this.offset, this.offset + n));
    // Used bytes are zeroed so that no later copy of the buffer can reveal an issued secret.
    this.buffer.fill(0, this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  /** A uniformly random integer in [0, 2^bits), bits ≤ 24. */
  bits(bits: number): number {
    const b = this.take(3);
    return ((b[0]! << 16) | (b[1]! << 8) | b[2]!) & ((1 << bits) - 1);
  }
}

/** A process id naming `owner`, with fresh random low bits; never 0. */
export function issueProcessId(owner: KeyOwner, random: RandomPool): number {
  for (;;) {
    const pid = ((owner.replica << REPLICA_SHIFT) | (owner.worker << RANDOM_BITS) | random.bits(RANDOM_BITS)) >>> 0;
    if (pid !== 0) return pid;
  }
}
