// Shared by the protocol tests: a seeded PRNG (failures reproduce) and pg-protocol's backend parser.
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { expect } from 'vitest';
import { ProtocolError } from '../../src/protocol/errors.js';

/** mulberry32: tiny deterministic PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Parses backend messages the way node-postgres does, to prove our writers are byte-correct. */
export function parseBackend(buf: Buffer): BackendMessage[] {
  const out: BackendMessage[] = [];
  new Parser().parse(buf, (m) => out.push(m));
  return out;
}

export function expectProtocolError(fn: () => unknown, message?: RegExp): ProtocolError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ProtocolError);
  const err = caught as ProtocolError;
  expect(err.code).toBe('protocol_violation');
  expect(err.sqlstate).toBe('08P01');
  if (message) expect(err.message).toMatch(message);
  return err;
}

/** An untagged frame: int32 length (counting itself) followed by `body`. */
export function untagged(body: Buffer): Buffer {
  const b = Buffer.alloc(4 + body.length);
  b.writeUInt32BE(4 + body.length, 0);
  body.copy(b, 4);
  return b;
}

/** A startup frame with an arbitrary protocol code and raw parameter bytes. */
export function startupFrame(code: number, params: string | Buffer): Buffer {
  const p = typeof params === 'string' ? Buffer.from(params, 'latin1') : params;
  const body = Buffer.alloc(4 + p.length);
  body.writeUInt32BE(code >>> 0, 0);
  p.copy(body, 4);
  return untagged(body);
}

/** A tagged frame with a declared length that may lie. */
export function tagged(type: string, length: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeUInt32BE(length >>> 0, 1);
  body.copy(b, 5);
  return b;
}
