import { describe, expect, it } from 'vitest';
import { FrameReader, type TaggedMessage } from '../../src/protocol/frame-reader.js';
import * as client from '../../src/protocol/client-messages.js';
import * as server from '../../src/protocol/server-messages.js';
import { expectProtocolError, prng, tagged } from './support.js';

// Startup-phase frames first (read with nextStartupFrame), then every tagged message we write.
const startupFrames = [
  client.sslRequest(),
  client.cancelRequest(4242, Buffer.from('abcdefgh')),
  client.startupMessage({ user: 'alice@example.com', database: 'mydb', application_name: 'psql' }, 2),
];
const taggedMessages = [
  client.passwordMessage('eyJhbGciOiJSUzI1NiJ9.payload.signature'),
  client.saslInitialResponse('SCRAM-SHA-256', Buffer.from('n,,n=,r=nonce')),
  client.saslResponse(Buffer.from('c=biws,r=nonce,p=proof')),
  client.saslResponse(Buffer.alloc(0)),
  client.query('select 1; -- ünïcode'),
  client.terminate(),
  server.authenticationOk(),
  server.authenticationCleartextPassword(),
  server.authenticationSasl(['SCRAM-SHA-256', 'OAUTHBEARER']),
  server.authenticationSaslContinue(Buffer.from('r=nonce,s=salt,i=4096')),
  server.authenticationSaslFinal(Buffer.from('v=signature')),
  server.parameterStatus('application_name', 'psql (alice)'),
  server.backendKeyData(77, Buffer.from([1, 2, 3, 4])),
  server.readyForQuery('I'),
  server.errorResponse({ severity: 'FATAL', code: '28000', message: 'token expired', detail: 'd', hint: 'run gprxy login' }),
  server.noticeResponse({ severity: 'WARNING', code: '01000', message: 'careful' }),
  server.negotiateProtocolVersion(0, ['_pq_.foo']),
  tagged('d', 4 + 3000, Buffer.alloc(3000, 0x41)), // a body larger than the initial capacity
];
const stream = Buffer.concat([...startupFrames, ...taggedMessages]);

type Result = { startup: Buffer[]; messages: TaggedMessage[] };

/** Feeds `chunks` in order, draining after each push the way a session does. */
function drive(chunks: Buffer[]): Result {
  const reader = new FrameReader();
  const result: Result = { startup: [], messages: [] };
  for (const chunk of chunks) {
    reader.push(chunk);
    for (;;) {
      if (result.startup.length < startupFrames.length) {
        const frame = reader.nextStartupFrame();
        if (!frame) break;
        result.startup.push(frame);
      } else {
        const message = reader.nextMessage();
        if (!message) break;
        result.messages.push(message);
      }
    }
  }
  expect(reader.buffered).toBe(0);
  return result;
}

// Cheap comparisons (Buffer.equals): toEqual on thousands of buffers would dominate the run time.
function expectWhole(result: Result): void {
  const mismatch =
    result.startup.length !== startupFrames.length ||
    result.messages.length !== taggedMessages.length ||
    result.startup.some((frame, i) => !frame.equals(startupFrames[i]!)) ||
    result.messages.some((m, i) => !Buffer.concat([Buffer.from([m.type]), lengthOf(m.body), m.body]).equals(taggedMessages[i]!));
  if (mismatch) expect(result).toEqual({ startup: startupFrames, messages: taggedMessages }); // shows the diff
}

function lengthOf(body: Buffer): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(body.length + 4);
  return b;
}

describe('FrameReader', () => {
  it('reads every frame from one chunk', () => {
    expectWhole(drive([stream]));
  });

  it('gives the same frames for a split at every byte boundary', () => {
    for (let k = 1; k < stream.length; k++) {
      expectWhole(drive([stream.subarray(0, k), stream.subarray(k)]));
    }
  });

  it('gives the same frames byte by byte', () => {
    const bytes: Buffer[] = [];
    for (let i = 0; i < stream.length; i++) bytes.push(stream.subarray(i, i + 1));
    expectWhole(drive(bytes));
  });

  it('gives the same frames for random multi-way splits', () => {
    const rand = prng(7);
    for (let round = 0; round < 200; round++) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < stream.length; ) {
        const size = 1 + Math.floor(rand() * 64);
        chunks.push(stream.subarray(at, at + size));
        at += size;
      }
      expectWhole(drive(chunks));
    }
  });

  it('returns frames that later pushes do not overwrite, and copies what it is given', () => {
    const reader = new FrameReader();
    const chunk = Buffer.concat([client.passwordMessage('first'), client.query('select').subarray(0, 7)]);
    reader.push(chunk);
    chunk.fill(0); // the caller may reuse its buffer
    const first = reader.nextMessage();
    expect(first && first.body.toString()).toBe('first\0');
    expect(reader.nextMessage()).toBeNull();
    for (let i = 0; i < 100; i++) reader.push(Buffer.alloc(1000, 0xee)); // forces reallocation and fills
    expect(first!.body.toString()).toBe('first\0');
  });

  it('takeRemaining hands over unread bytes and empties the reader', () => {
    const reader = new FrameReader();
    const password = client.passwordMessage('tok');
    const pipelined = Buffer.concat([client.query('select 1'), client.terminate()]);
    reader.push(Buffer.concat([password, pipelined.subarray(0, 3)]));
    reader.push(pipelined.subarray(3));
    expect(reader.nextMessage()?.type).toBe(0x70);
    expect(reader.buffered).toBe(pipelined.length);
    const rest = reader.takeRemaining();
    expect(rest).toEqual(pipelined);
    expect(reader.buffered).toBe(0);
    expect(reader.nextMessage()).toBeNull();
    reader.push(Buffer.from('Z')); // reusable afterwards, and `rest` is untouched
    expect(rest).toEqual(pipelined);
    expect(reader.buffered).toBe(1);
  });

  it('leaves bytes sent after an SSLRequest visible in `buffered` (the session must refuse them)', () => {
    const reader = new FrameReader();
    reader.push(Buffer.concat([client.sslRequest(), Buffer.from('junk')]));
    expect(reader.nextStartupFrame()).toEqual(client.sslRequest());
    expect(reader.buffered).toBe(4);
  });

  it('returns null until a frame is complete', () => {
    const reader = new FrameReader();
    expect(reader.nextStartupFrame()).toBeNull();
    expect(reader.nextMessage()).toBeNull();
    reader.push(Buffer.from([0, 0, 0]));
    expect(reader.nextStartupFrame()).toBeNull();
    reader.push(Buffer.from([8, 0x04, 0xd2]));
    expect(reader.nextStartupFrame()).toBeNull();
    reader.push(Buffer.from([0x16, 0x2f]));
    expect(reader.nextStartupFrame()).toEqual(client.sslRequest());
  });

  it('honours custom limits', () => {
    const reader = new FrameReader({ maxStartupLength: 16, maxMessageLength: 8 });
    reader.push(client.cancelRequest(1, Buffer.alloc(4)));
    expect(reader.nextStartupFrame()?.length).toBe(16);
    reader.push(tagged('p', 8, Buffer.alloc(4)));
    expect(reader.nextMessage()?.body.length).toBe(4);
    reader.push(tagged('p', 9, Buffer.alloc(5)));
    expectProtocolError(() => reader.nextMessage(), /message 'p' length 9 exceeds 8 bytes/);
    const startup = new FrameReader({ maxStartupLength: 16 });
    startup.push(client.cancelRequest(1, Buffer.alloc(5)));
    expectProtocolError(() => startup.nextStartupFrame(), /startup packet length 17 exceeds 16 bytes/);
  });

  describe('hostile lengths fail as soon as the length field is complete', () => {
    const startupCases: Array<[string, number, RegExp]> = [
      ['0', 0, /length 0 is below the minimum of 8/],
      ['-1 (0xFFFFFFFF)', 0xffffffff, /length 4294967295 exceeds 10240 bytes/],
      ['2^31', 2 ** 31, /startup packet length 2147483648 exceeds 10240 bytes/],
      ['7', 7, /length 7 is below the minimum of 8/],
      ['10241', 10241, /exceeds 10240/],
    ];
    for (const [name, length, message] of startupCases) {
      it(`startup length ${name}`, { timeout: 1000 }, () => {
        const reader = new FrameReader();
        const head = Buffer.alloc(4);
        head.writeUInt32BE(length);
        reader.push(head); // only the length: no waiting for a body
        expectProtocolError(() => reader.nextStartupFrame(), message);
      });
    }

    const messageCases: Array<[string, number, RegExp]> = [
      ['0', 0, /message 'p' length 0 is below the minimum of 4/],
      ['3', 3, /length 3 is below/],
      ['-1 (0xFFFFFFFF)', 0xffffffff, /length 4294967295 exceeds 65536 bytes/],
      ['2^31', 2 ** 31, /length 2147483648 exceeds 65536 bytes/],
      ['65537', 65537, /exceeds 65536/],
    ];
    for (const [name, length, message] of messageCases) {
      it(`message length ${name}`, { timeout: 1000 }, () => {
        const reader = new FrameReader();
        reader.push(tagged('p', length));
        expectProtocolError(() => reader.nextMessage(), message);
      });
    }

    it('a huge but allowed declared length with few bytes just waits, and takes no memory for it', () => {
      const reader = new FrameReader();
      reader.push(tagged('p', 65536, Buffer.from('abc')));
      expect(reader.nextMessage()).toBeNull();
      expect(reader.buffered).toBe(8);
      const startup = new FrameReader();
      startup.push(Buffer.from([0, 0, 0x28, 0x00, 0, 3, 0, 0])); // 10240 declared
      expect(startup.nextStartupFrame()).toBeNull();
    });

    it('names unprintable message types in hex', () => {
      const reader = new FrameReader();
      reader.push(Buffer.from([0x00, 0xff, 0xff, 0xff, 0xff]));
      expectProtocolError(() => reader.nextMessage(), /message 0x00 length/);
    });
  });
});

describe('FrameReader maxBuffered (pre-authentication memory cap)', () => {
  it('never holds more than maxBuffered bytes nor allocates past it, and throws on the excess', () => {
    const max = 16_901;
    const reader = new FrameReader({ maxMessageLength: 16_896, maxBuffered: max });
    // A partial 16 KiB message arriving in 1 KiB pieces: the buffer grows to what it needs, capped at max.
    reader.push(tagged('p', 16_896, Buffer.alloc(0)).subarray(0, 5));
    for (let i = 0; i < 16; i++) reader.push(Buffer.alloc(1024, 0x61));
    expect(reader.buffered).toBe(5 + 16 * 1024);
    expect(reader.nextMessage()).toBeNull();
    expect(() => reader.push(Buffer.alloc(64 * 1024))).toThrow(/more than 16901 bytes/);
    expect(reader.buffered).toBe(max);
    // What it kept is still the message's prefix.
    expect((reader as unknown as { buf: Buffer }).buf.length).toBeLessThanOrEqual(max);
  });

  it('keeps an oversized header readable when the bytes behind it overflow', () => {
    const reader = new FrameReader({ maxMessageLength: 16_896, maxBuffered: 16_901 });
    expect(() => reader.push(Buffer.concat([tagged('p', 65_536, Buffer.alloc(0)).subarray(0, 5), Buffer.alloc(30_000)]))).toThrow(/more than/);
    expect(() => reader.nextMessage()).toThrow(/length 65536 exceeds 16896/);
  });
});
