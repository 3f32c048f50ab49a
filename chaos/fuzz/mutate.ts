/**
 * The structure-aware mutator of the fuzzers (jazzer.js 4 needs glibc 2.38, not on Debian 12; its 2.x
 * downloads native code from GitHub, unreachable here: see RELIABILITY.md). Inputs are PostgreSQL frames,
 * so besides byte-level mutations (flips, interesting values, inserts, deletes, splices with other corpus
 * entries, protocol tokens from a dictionary) it knows where length fields are and, half the time, writes
 * the true length back after mutating, so that inputs get past the framing into the parsers behind it.
 */
import type { Rng } from '../lib/rng.js';

const INTERESTING_BYTES = [0x00, 0x01, 0x02, 0x2c, 0x3d, 0x7f, 0x80, 0xc0, 0xff, 0x20, 0x0a];
const INTERESTING_INT32 = [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 255, 256, 10240, 10241, 65535, 65536, 0x7fffffff, 0x80000000, 0xffffffff, 80877102, 80877103, 80877104, 196608, 196610, 131072];

/** Tokens that mean something to the parsers behind the framing. */
export const DICTIONARY: readonly Buffer[] = [
  'user\0', 'database\0', 'application_name\0', '_pq_.x\0', 'options\0', '\0\0', 'n,,\x01', 'y,,\x01', 'p=tls-unique,,', 'n,a=x,\x01',
  'auth=Bearer ', 'auth=\x01\x01', '\x01\x01', 'host=x\x01', 'OAUTHBEARER\0', 'SCRAM-SHA-256\0', 'eyJhbGciOiJSUzI1NiJ9.', '=',
  '\xc3\x28', '\xed\xa0\x80', '\xf4\x90\x80\x80', '\xe2\x80\xa8', '\u00a0', '\u00ad', 'ﬁ', '\uFEFF',
].map((s) => Buffer.from(s, 'latin1').length === s.length ? Buffer.from(s, 'latin1') : Buffer.from(s, 'utf8'));

export type Framing = 'startup' | 'tagged' | 'none';

/** Writes the true length into a frame (untagged startup frame or one tagged message) when it has room. */
export function fixLength(frame: Buffer, framing: Framing): void {
  if (framing === 'startup' && frame.length >= 4) frame.writeUInt32BE(frame.length, 0);
  else if (framing === 'tagged' && frame.length >= 5) frame.writeUInt32BE(frame.length - 1, 1);
}

function mutateOnce(rng: Rng, input: Buffer, corpus: readonly Buffer[]): Buffer {
  const n = input.length;
  const at = rng.int(n + 1);
  switch (rng.int(12)) {
    case 0: {
      if (n === 0) return rng.bytes(1);
      const b = Buffer.from(input);
      b[rng.int(n)]! ^= 1 << rng.int(8);
      return b;
    }
    case 1: {
      if (n === 0) return rng.bytes(1);
      const b = Buffer.from(input);
      b[rng.int(n)] = rng.pick(INTERESTING_BYTES);
      return b;
    }
    case 2: {
      if (n < 4) return Buffer.concat([input, rng.bytes(4)]);
      const b = Buffer.from(input);
      b.writeUInt32BE(rng.pick(INTERESTING_INT32) >>> 0, rng.int(n - 3));
      return b;
    }
    case 3: // delete a range
      return Buffer.concat([input.subarray(0, at), input.subarray(Math.min(n, at + 1 + rng.int(16)))]);
    case 4: // insert random bytes
      return Buffer.concat([input.subarray(0, at), rng.bytes(1 + rng.int(8)), input.subarray(at)]);
    case 5: {
      // duplicate a range
      const len = 1 + rng.int(Math.max(1, Math.min(64, n - at)));
      return Buffer.concat([input.subarray(0, at + len), input.subarray(at, at + len), input.subarray(at + len)]);
    }
    case 6: // truncate
      return input.subarray(0, rng.int(n + 1));
    case 7: {
      // splice with another corpus entry
      const other = rng.pick(corpus);
      const from = rng.int(other.length + 1);
      return Buffer.concat([input.subarray(0, at), other.subarray(from, from + 1 + rng.int(64))]);
    }
    case 8: // a dictionary token
      return Buffer.concat([input.subarray(0, at), rng.pick(DICTIONARY), input.subarray(at)]);
    case 9: {
      // overwrite with a dictionary token
      const tok = rng.pick(DICTIONARY);
      const b = Buffer.from(input);
      tok.copy(b, Math.min(at, Math.max(0, n - tok.length)));
      return b;
    }
    case 10: // grow a lot (length limits)
      return Buffer.concat([input, Buffer.alloc(rng.pick([100, 1000, 10240, 70000]), rng.pick(INTERESTING_BYTES))]);
    default: {
      // append another whole corpus entry (several frames in one read)
      return Buffer.concat([input, rng.pick(corpus)]);
    }
  }
}

/** 1 to 4 stacked mutations of `input`; with `framing`, half the time the length field is made true again. */
export function mutate(rng: Rng, input: Buffer, corpus: readonly Buffer[], framing: Framing): Buffer {
  let out = input;
  const rounds = 1 + rng.int(4);
  for (let i = 0; i < rounds; i++) out = mutateOnce(rng, out, corpus);
  if (framing !== 'none' && rng.chance(0.5)) {
    out = Buffer.from(out);
    fixLength(out, framing);
  }
  return out.length > 200_000 ? out.subarray(0, 200_000) : out;
}

/** Splits `input` into 1..8 chunks at random places (the same bytes, read differently). */
export function chunk(rng: Rng, input: Buffer): Buffer[] {
  if (input.length < 2 || rng.chance(0.3)) return [input];
  const cuts = new Set<number>();
  const count = 1 + rng.int(7);
  for (let i = 0; i < count; i++) cuts.add(1 + rng.int(input.length - 1));
  const sorted = [...cuts].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of sorted) {
    out.push(input.subarray(prev, c));
    prev = c;
  }
  out.push(input.subarray(prev));
  return out;
}
