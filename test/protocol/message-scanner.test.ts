import { describe, expect, it } from 'vitest';
import { MessageScanner } from '../../src/protocol/message-scanner.js';
import * as client from '../../src/protocol/client-messages.js';
import * as server from '../../src/protocol/server-messages.js';
import { prng, tagged } from './support.js';

// One stream with both directions' markers ('Z' from servers, 'X' from clients: the scanner is
// direction-agnostic), bodies full of 'Z' and 'X' bytes that must be skipped, empty bodies,
// and a body far larger than any chunk.
const messages = [
  server.authenticationOk(),
  server.parameterStatus('server_version', '18.4'),
  server.backendKeyData(101, Buffer.from('ZZZZ')),
  server.readyForQuery('I'),
  client.query('select \'XZXZ\''),
  tagged('D', 4 + 2000, Buffer.alloc(2000, 0x5a)),
  tagged('S', 4), // Sync: header only
  server.readyForQuery('T'),
  tagged('d', 4 + 6, Buffer.from('XXXXXX')),
  server.errorResponse({ severity: 'ERROR', code: '57014', message: 'canceling statement due to user request' }),
  server.readyForQuery('E'),
  client.terminate(),
  server.readyForQuery('I'), // after Terminate: still tracked
  client.terminate(),
];
const stream = Buffer.concat(messages);

type Expected = { boundary: boolean; count: number; status: number; sawTerminate: boolean };

/** The state a correct scanner has after the first k bytes, for every k. */
const model: Expected[] = (() => {
  const starts: number[] = [];
  let at = 0;
  for (const m of messages) {
    starts.push(at);
    at += m.length;
  }
  const out: Expected[] = [];
  for (let k = 0; k <= stream.length; k++) {
    let count = 0;
    let status = 0;
    let sawTerminate = false;
    messages.forEach((m, i) => {
      const s = starts[i]!;
      if (s + 5 <= k) count++;
      if (m[0] === 0x5a && s + 5 < k) status = m[5]!;
      if (m[0] === 0x58 && s < k) sawTerminate = true;
    });
    out.push({ boundary: k === stream.length || starts.includes(k), count, status, sawTerminate });
  }
  return out;
})();
const terminateStarts = messages.flatMap((m, i) => (m[0] === 0x58 ? [messages.slice(0, i).reduce((n, x) => n + x.length, 0)] : []));

/** Scans `stream` cut at `cuts`, checking the state and terminateOffset after every chunk. Returns the first mismatch. */
function check(cuts: number[]): string | null {
  const scanner = new MessageScanner();
  let from = 0;
  for (const to of [...cuts, stream.length]) {
    scanner.scan(stream.subarray(from, to));
    const want = model[to]!;
    const firstX = terminateStarts.find((s) => s >= from && s < to);
    const got = {
      boundary: scanner.atMessageBoundary,
      count: scanner.messageCount,
      status: scanner.lastReadyStatus,
      sawTerminate: scanner.sawTerminate,
    };
    const wantOffset = firstX === undefined ? -1 : firstX - from;
    if (JSON.stringify(got) !== JSON.stringify(want) || scanner.terminateOffset !== wantOffset) {
      return `chunk [${from}, ${to}): got ${JSON.stringify(got)} offset ${scanner.terminateOffset}, want ${JSON.stringify(want)} offset ${wantOffset}`;
    }
    from = to;
  }
  return null;
}

describe('MessageScanner', () => {
  it('tracks the whole stream in one chunk', () => {
    expect(check([])).toBeNull();
    const scanner = new MessageScanner();
    scanner.scan(stream);
    expect(scanner.messageCount).toBe(messages.length);
    expect(String.fromCharCode(scanner.lastReadyStatus)).toBe('I');
    expect(scanner.terminateOffset).toBe(terminateStarts[0]);
    expect(scanner.malformed).toBe(false);
  });

  it('gives the same boundaries and status for a split at every byte', () => {
    for (let k = 0; k <= stream.length; k++) {
      const mismatch = check([k]);
      if (mismatch) expect.fail(`split at ${k}: ${mismatch}`);
    }
  });

  it('gives the same boundaries and status byte by byte', () => {
    expect(check(Array.from({ length: stream.length }, (_, i) => i))).toBeNull();
  });

  it('gives the same boundaries and status for random multi-way splits (including empty chunks)', () => {
    const rand = prng(11);
    for (let round = 0; round < 300; round++) {
      const cuts: number[] = [];
      for (let at = 0; at < stream.length; ) {
        at = Math.min(stream.length, at + Math.floor(rand() * 40));
        cuts.push(at);
      }
      const mismatch = check(cuts);
      if (mismatch) expect.fail(`round ${round}: ${mismatch}`);
    }
  });

  it('lets the proxy forward the bytes before a Terminate and drop the rest', () => {
    const chunk = Buffer.concat([client.query('select 1'), client.terminate()]);
    const scanner = new MessageScanner();
    scanner.scan(chunk);
    expect(scanner.sawTerminate).toBe(true);
    expect(chunk.subarray(0, scanner.terminateOffset)).toEqual(client.query('select 1'));
    scanner.scan(client.query('select 2'));
    expect(scanner.terminateOffset).toBe(-1);
    expect(scanner.sawTerminate).toBe(true);
  });

  it('reads the ReadyForQuery status byte when it arrives in the next chunk', () => {
    const scanner = new MessageScanner();
    const z = server.readyForQuery('T');
    scanner.scan(z.subarray(0, 5));
    expect(scanner.lastReadyStatus).toBe(0);
    expect(scanner.atMessageBoundary).toBe(false);
    scanner.scan(z.subarray(5));
    expect(String.fromCharCode(scanner.lastReadyStatus)).toBe('T');
    expect(scanner.atMessageBoundary).toBe(true);
  });

  it('skips a huge declared body without looking inside it', () => {
    const scanner = new MessageScanner();
    scanner.scan(tagged('d', 0xffffffff, Buffer.from(server.readyForQuery('E'))));
    expect(scanner.messageCount).toBe(1);
    expect(scanner.lastReadyStatus).toBe(0);
    expect(scanner.atMessageBoundary).toBe(false);
  });

  it('marks a length below 4 as malformed and stops', () => {
    for (const length of [0, 3]) {
      const scanner = new MessageScanner();
      scanner.scan(Buffer.concat([server.readyForQuery('I'), tagged('D', length), server.readyForQuery('E')]));
      expect(scanner.malformed).toBe(true);
      expect(scanner.atMessageBoundary).toBe(false);
      expect(String.fromCharCode(scanner.lastReadyStatus)).toBe('I');
      scanner.scan(server.readyForQuery('T'));
      expect(String.fromCharCode(scanner.lastReadyStatus)).toBe('I');
    }
    const split = new MessageScanner();
    const bad = tagged('D', 2);
    split.scan(bad.subarray(0, 2));
    split.scan(bad.subarray(2));
    expect(split.malformed).toBe(true);
  });

  it('ignores empty chunks', () => {
    const scanner = new MessageScanner();
    scanner.scan(Buffer.alloc(0));
    expect(scanner.atMessageBoundary).toBe(true);
    expect(scanner.terminateOffset).toBe(-1);
  });
});

describe('MessageScanner body capture', () => {
  const stream = Buffer.concat([
    server.parameterStatus('application_name', 'carol@example.com via psql'),
    tagged('D', 4 + 3000, Buffer.alloc(3000, 0x53)), // 'S' bytes inside a body are not headers
    server.readyForQuery('I'),
    server.parameterStatus('TimeZone', 'UTC'),
    tagged('S', 4), // an empty body
    tagged('S', 4 + 5000, Buffer.alloc(5000, 0x41)), // over the limit: skipped, not copied
    server.parameterStatus('application_name', 'x'),
  ]);
  const expected = [
    'application_name=carol@example.com via psql',
    'TimeZone=UTC',
    '',
    'application_name=x',
  ];
  const scanWith = (chunks: Buffer[]): string[] => {
    const seen: string[] = [];
    const scanner = new MessageScanner([0x5a], {
      types: [0x53],
      maxBodyLength: 4096,
      onMessage: (_type, body) => seen.push(body.length ? body.toString('utf8').replace(/\0$/, '').replace('\0', '=') : ''),
    });
    for (const c of chunks) scanner.scan(c);
    expect(scanner.atMessageBoundary).toBe(true);
    expect(scanner.lastReadyStatus).toBe(0x49);
    return seen;
  };

  it('copies only the bodies of the chosen types, whole, in one chunk or split at every byte', () => {
    expect(scanWith([stream])).toEqual(expected);
    for (let at = 0; at <= stream.length; at++) expect(scanWith([stream.subarray(0, at), stream.subarray(at)])).toEqual(expected);
  });

  it('copies the same bodies byte by byte', () => {
    expect(scanWith([...stream].map((b) => Buffer.from([b])))).toEqual(expected);
  });
});

describe('MessageScanner: extended-protocol messages waiting for a Sync', () => {
  // Parse/Bind/Execute open a sequence, Sync or Query close it; CopyData and Terminate change nothing.
  const Q = client.query('select 1');
  const P = tagged('P', 4 + 4, Buffer.from('P\0\0\0')); // bodies of 'S' and 'Q' bytes: not headers
  const B = tagged('B', 4 + 3, Buffer.from('SSS'));
  const E = tagged('E', 4 + 3, Buffer.from('QQQ'));
  const S = tagged('S', 4);
  const d = tagged('d', 4 + 2, Buffer.from('SS'));
  const steps: [Buffer, boolean][] = [[Q, false], [P, true], [B, true], [E, true], [d, true], [S, false], [d, false], [P, true], [Q, false]];
  const scanner = () => new MessageScanner([0x51, 0x53], undefined, [0x50, 0x42, 0x45]);

  it('is open from the first such message to the next sync-type message, whatever the chunking', () => {
    for (const split of [0, 1, 2, 5, 7]) {
      const s = scanner();
      for (const [bytes, open] of steps) {
        if (split > 0 && split < bytes.length) {
          s.scan(bytes.subarray(0, split));
          s.scan(bytes.subarray(split));
        } else s.scan(bytes);
        expect(s.openSinceSync).toBe(open);
      }
    }
  });

  it('byte by byte', () => {
    const s = scanner();
    for (const [bytes, open] of steps) {
      for (const b of bytes) s.scan(Buffer.from([b]));
      expect(s.openSinceSync).toBe(open);
    }
  });
});
