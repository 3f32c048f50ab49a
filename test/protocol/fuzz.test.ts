// Random and mutated input: every reader must either succeed or throw ProtocolError, never
// another exception, never hang. Seeded so a failure reproduces.
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/protocol/errors.js';
import { FrameReader } from '../../src/protocol/frame-reader.js';
import { MessageScanner } from '../../src/protocol/message-scanner.js';
import { CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, parseStartupPacket, PROTOCOL_3_0, SSL_REQUEST_CODE } from '../../src/protocol/startup.js';
import { parsePasswordMessage, parseSaslInitialResponse, saslInitialResponse, startupMessage } from '../../src/protocol/client-messages.js';
import { prng, startupFrame } from './support.js';

const ROUNDS = 3000;

/** Runs fn; returns 'ok' or 'protocol'; anything else fails the test with the input. */
function outcome(fn: () => unknown, input: Buffer): 'ok' | 'protocol' {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (err instanceof ProtocolError && err.code === 'protocol_violation') return 'protocol';
    throw new Error(`unexpected ${String(err)} for input ${input.toString('hex')}`);
  }
}

function randomBytes(rand: () => number, max: number): Buffer {
  const alphabet = [0, 0, 0, 0x61, 0x75, 0x73, 0x65, 0x72, 0x5f, 0x70, 0x71, 0x2e, 0xff, 0xc3, 0x80];
  const b = Buffer.alloc(Math.floor(rand() * max));
  for (let i = 0; i < b.length; i++) {
    // Mostly protocol-ish bytes (NULs, letters of "user" and "_pq_."), sometimes anything.
    b[i] = rand() < 0.7 ? alphabet[Math.floor(rand() * alphabet.length)]! : Math.floor(rand() * 256);
  }
  return b;
}

describe('fuzz', () => {
  it('parseStartupPacket on random frames', () => {
    const rand = prng(1);
    const codes = [SSL_REQUEST_CODE, GSSENC_REQUEST_CODE, CANCEL_REQUEST_CODE, PROTOCOL_3_0, PROTOCOL_3_0 + 2, 2 << 16, 0, 0xffffffff];
    const seen = { ok: 0, protocol: 0 };
    for (let i = 0; i < ROUNDS; i++) {
      const code = rand() < 0.9 ? codes[Math.floor(rand() * codes.length)]! : Math.floor(rand() * 2 ** 32);
      let frame = startupFrame(code, randomBytes(rand, 40));
      if (rand() < 0.2) frame = randomBytes(rand, 24); // lengths that lie
      seen[outcome(() => parseStartupPacket(frame), frame)]++;
    }
    expect(seen.protocol).toBeGreaterThan(0);
    expect(seen.ok).toBeGreaterThan(0);
  });

  it('parseStartupPacket on mutations of a valid startup message', () => {
    const rand = prng(2);
    const valid = startupMessage({ user: 'alice', database: 'db', '_pq_.x': 'y', application_name: 'a' }, 2);
    const seen = { ok: 0, protocol: 0 };
    for (let i = 0; i < ROUNDS; i++) {
      const frame = Buffer.from(valid);
      const flips = 1 + Math.floor(rand() * 3);
      for (let f = 0; f < flips; f++) {
        const at = 8 + Math.floor(rand() * (frame.length - 8)); // keep the length and version intact
        frame[at] = rand() < 0.5 ? 0 : Math.floor(rand() * 256);
      }
      seen[outcome(() => parseStartupPacket(frame), frame)]++;
    }
    expect(seen.protocol).toBeGreaterThan(0);
    expect(seen.ok).toBeGreaterThan(0);
  });

  it('message body parsers on random bodies', () => {
    const rand = prng(3);
    for (let i = 0; i < ROUNDS; i++) {
      const body = rand() < 0.3 ? Buffer.concat([saslInitialResponse('OAUTHBEARER', randomBytes(rand, 8)).subarray(5), randomBytes(rand, 3)]) : randomBytes(rand, 32);
      outcome(() => parsePasswordMessage(body), body);
      outcome(() => parseSaslInitialResponse(body), body);
    }
  });

  it('FrameReader on random streams in random chunks', () => {
    const rand = prng(4);
    for (let i = 0; i < ROUNDS; i++) {
      const stream = randomBytes(rand, 200);
      const startup = rand() < 0.5;
      const reader = new FrameReader({ maxMessageLength: 1 + Math.floor(rand() * 300) });
      const next = (): Buffer | null => (startup ? reader.nextStartupFrame() : (reader.nextMessage()?.body ?? null));
      outcome(() => {
        for (let at = 0; at < stream.length; ) {
          const chunk = stream.subarray(at, at + 1 + Math.floor(rand() * 30));
          at += chunk.length;
          reader.push(chunk);
          for (let frame = next(); frame; frame = next()) if (startup) parseStartupPacket(frame);
        }
      }, stream);
    }
  });

  it('MessageScanner ends in the same state however random streams are chunked', () => {
    const rand = prng(5);
    const state = (s: MessageScanner) => [s.messageCount, s.lastReadyStatus, s.malformed, s.atMessageBoundary, s.sawTerminate].join();
    for (let i = 0; i < ROUNDS; i++) {
      const stream = randomBytes(rand, 200);
      const whole = new MessageScanner();
      whole.scan(stream);
      const chunked = new MessageScanner();
      for (let at = 0; at < stream.length; ) {
        const chunk = stream.subarray(at, at + Math.floor(rand() * 12));
        at += chunk.length;
        chunked.scan(chunk);
      }
      if (state(chunked) !== state(whole)) expect.fail(`${state(chunked)} != ${state(whole)} for ${stream.toString('hex')}`);
    }
  });
});
