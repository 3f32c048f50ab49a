/**
 * The proxy's codec (src/protocol) as fuzz targets, in process. Each target takes one input and returns an
 * outcome signature (what happened, with numbers blanked), which the loop uses as its guidance: an input that
 * reaches a new outcome joins the corpus. A target throws FuzzCrash when an invariant breaks; any other
 * exception that is not the codec's ProtocolError (08P01) is a crash too: the proxy would treat it as an
 * internal error instead of a protocol violation.
 */
import { parseAuthentication, parseBackendKeyData, parseDataRow, parseErrorFields, parseParameterStatus } from '../../src/protocol/backend-messages.js';
import { parsePasswordMessage, parseSaslInitialResponse, passwordMessage, saslInitialResponse, saslResponse, startupMessage, query, cancelRequest, sslRequest, terminate } from '../../src/protocol/client-messages.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { FrameReader } from '../../src/protocol/frame-reader.js';
import { MessageScanner } from '../../src/protocol/message-scanner.js';
import { OAuthBearerServerExchange, oauthBearerInitialResponse, parseOAuthBearerClientResponse } from '../../src/protocol/oauthbearer.js';
import { saslprep } from '../../src/protocol/saslprep.js';
import { parseStartupPacket } from '../../src/protocol/startup.js';
import { authenticationSasl, backendKeyData, errorResponse, parameterStatus, readyForQuery } from '../../src/protocol/server-messages.js';
import { extendedQuery } from '../../src/protocol/extended-query.js';
import { GprxyError } from '../../src/shared/errors.js';
import type { Rng } from '../lib/rng.js';
import { chunk, type Framing } from './mutate.js';

/** An invariant of the codec does not hold for an input. */
export class FuzzCrash extends GprxyError<'fuzz_crash'> {
  readonly code = 'fuzz_crash' as const;
}

export interface CodecTarget {
  readonly name: string;
  readonly framing: Framing;
  seeds(): Buffer[];
  /** Runs one input; returns its outcome signature. */
  run(input: Buffer, rng: Rng): string;
}

const FAKE_JWT = 'eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhIn0.c2lnbmF0dXJl';

function signature(e: unknown): string {
  if (e instanceof ProtocolError) return `08P01:${e.message.replace(/\d+/g, '#').replace(/"[^"]*"/g, '"…"').slice(0, 70)}`;
  throw e;
}

function expect(ok: boolean, what: string): void {
  if (!ok) throw new FuzzCrash(what);
}

function tagged(type: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeUInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}

/** Untagged startup-phase frames through the bounded reader, then the startup parser. */
const startup: CodecTarget = {
  name: 'startup',
  framing: 'startup',
  seeds: () => [
    startupMessage({ user: 'alice@example.com', database: 'mydb', application_name: 'psql', client_encoding: 'UTF8' }),
    startupMessage({ user: 'a', _pq_x: 'y' } as Record<string, string>, 2),
    Buffer.concat([sslRequest(), startupMessage({ user: 'bob', database: 'mydb' })]),
    cancelRequest(1234, Buffer.from('abcd')),
    cancelRequest(99, Buffer.alloc(32, 7)),
    Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]), // GSSENCRequest
    startupMessage({ user: 'ü', database: '__proto__', options: '-c x=y' }),
  ],
  run(input, rng) {
    const reader = new FrameReader({ maxStartupLength: 10240, maxMessageLength: 8704, maxBuffered: 8709 });
    const outcomes: string[] = [];
    try {
      for (const part of chunk(rng, input)) {
        reader.push(part);
        expect(reader.buffered <= 8709, `reader holds ${reader.buffered} bytes, above its bound`);
        for (let frame = reader.nextStartupFrame(); frame; frame = reader.nextStartupFrame()) {
          const p = parseStartupPacket(frame);
          if (p.kind === 'startup') {
            expect(typeof p.parameters.user === 'string' && p.parameters.user.length > 0, 'startup accepted without a user');
            for (const [k, v] of Object.entries(p.parameters)) expect(!k.includes('\0') && !v.includes('\0'), 'a parameter holds a NUL');
            expect(Object.getPrototypeOf(p.parameters) === null, 'parameters object has a prototype');
          }
          if (p.kind === 'cancel') expect(p.secretKey.length >= 4 && p.secretKey.length <= 256, 'cancel key length out of range');
          outcomes.push(p.kind);
        }
      }
      return outcomes.join(',') || 'incomplete';
    } catch (e) {
      return `${outcomes.join(',')}|${signature(e)}`;
    }
  },
};

/** Tagged messages: the same bytes in one piece and in random chunks must give the same frames (or error). */
const frames: CodecTarget = {
  name: 'frames',
  framing: 'tagged',
  seeds: () => [
    passwordMessage(FAKE_JWT),
    saslInitialResponse('OAUTHBEARER', oauthBearerInitialResponse(FAKE_JWT)),
    saslResponse(Buffer.from([1])),
    Buffer.concat([query('select 1'), terminate()]),
    extendedQuery('select $1', ['x', null]),
  ],
  run(input, rng) {
    const read = (parts: Buffer[]): string => {
      const reader = new FrameReader({ maxMessageLength: 8704, maxBuffered: 8709 });
      const got: string[] = [];
      try {
        for (const part of parts) {
          reader.push(part);
          for (let m = reader.nextMessage(); m; m = reader.nextMessage()) got.push(`${m.type}:${m.body.toString('hex')}`);
        }
        return got.join(',');
      } catch {
        // Where the error comes depends on the chunking (a bound may be hit before the whole frame arrived);
        // what must hold: the frames returned before it are a prefix of the whole-input answer.
        return `${got.join(',')}|err`;
      }
    };
    const whole = read([input]);
    const split = read(chunk(rng, input));
    const wholeFrames = whole.split('|')[0]!;
    const splitFrames = split.split('|')[0]!;
    expect(whole.endsWith('|err') ? wholeFrames.startsWith(splitFrames) || splitFrames.startsWith(wholeFrames) : whole === split || split.endsWith('|err'), `chunking changed the frames: ${whole.slice(0, 60)} vs ${split.slice(0, 60)}`);
    try {
      const reader = new FrameReader({ maxMessageLength: 8704, maxBuffered: 8709 });
      reader.push(input.subarray(0, 8709));
      let n = 0;
      for (let m = reader.nextMessage(); m; m = reader.nextMessage()) n++;
      return `frames:${Math.min(n, 3)}`;
    } catch (e) {
      return signature(e);
    }
  },
};

/** PasswordMessage and SASLInitialResponse bodies (what the proxy reads before authentication). */
const authMessages: CodecTarget = {
  name: 'auth-messages',
  framing: 'none',
  seeds: () => [
    Buffer.from(`${FAKE_JWT}\0`),
    saslInitialResponse('OAUTHBEARER', oauthBearerInitialResponse(FAKE_JWT)).subarray(5),
    saslInitialResponse('SCRAM-SHA-256', Buffer.from('n,,n=,r=abc')).subarray(5),
    Buffer.from('OAUTHBEARER\0\xff\xff\xff\xff', 'latin1'),
  ],
  run(input) {
    const out: string[] = [];
    try {
      const p = parsePasswordMessage(input);
      expect(!p.includes('\0'), 'password holds a NUL');
      out.push('password');
    } catch (e) {
      out.push(signature(e));
    }
    try {
      const s = parseSaslInitialResponse(input);
      expect(s.mechanism.length > 0 && !s.mechanism.includes('\0'), 'empty or NUL mechanism accepted');
      out.push(`sasl:${s.data === null ? 'null' : 'data'}`);
    } catch (e) {
      out.push(signature(e));
    }
    return out.join('|');
  },
};

const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** OAUTHBEARER client responses, and the server exchange driven by a sequence of them. */
const oauthbearer: CodecTarget = {
  name: 'oauthbearer',
  framing: 'none',
  seeds: () => [oauthBearerInitialResponse(FAKE_JWT), oauthBearerInitialResponse(''), Buffer.from('n,,\x01host=x\x01auth=bearer   abc\x01\x01'), Buffer.from('y,,\x01auth=Basic x\x01\x01\xfe\x01')],
  run(input) {
    let first: string;
    try {
      const r = parseOAuthBearerClientResponse(input);
      if (r.kind === 'bearer') expect(B64TOKEN.test(r.token), 'a bearer token with characters a token cannot have was accepted');
      first = r.kind;
    } catch (e) {
      first = signature(e);
    }
    // The exchange: the input split at 0xfe gives the initial response and the later SASLResponses.
    const parts: Buffer[] = [];
    let from = 0;
    for (let i = 0; i <= input.length; i++) {
      if (i === input.length || input[i] === 0xfe) {
        parts.push(input.subarray(from, i));
        from = i + 1;
      }
    }
    const ex = new OAuthBearerServerExchange({ discoveryUrl: 'https://idp.example/.well-known/openid-configuration', scope: 'openid' });
    const steps: string[] = [];
    try {
      let step = ex.initial('OAUTHBEARER', parts[0]!.length === 1 && parts[0]![0] === 0xff ? null : parts[0]!);
      steps.push(step.kind);
      for (const p of parts.slice(1)) {
        if (step.kind === 'verify') {
          // Alternate accept / reject by the token's length, so both paths run.
          if (step.token.length % 2) ex.accepted();
          else steps.push(`reject:${ex.rejected().length > 0}`);
        }
        step = ex.response(p);
        steps.push(step.kind);
      }
    } catch (e) {
      steps.push(signature(e).slice(0, 40));
    }
    return `${first}|${steps.join('>')}`;
  },
};

/**
 * The relay's header-only scanner: a stream scanned whole and in random chunks must give the same message
 * count, sync count, ReadyForQuery status, Terminate flag and captured bodies; and both must agree with a
 * plain reference walk over the headers.
 */
const scanner: CodecTarget = {
  name: 'scanner',
  framing: 'tagged',
  seeds: () => [
    Buffer.concat([authenticationSasl(['OAUTHBEARER']), parameterStatus('application_name', 'x'), backendKeyData(1, Buffer.alloc(4)), readyForQuery('I')]),
    Buffer.concat([query('begin'), readyForQuery('T'), errorResponse({ severity: 'ERROR', code: '42601', message: 'x' }), readyForQuery('E'), terminate()]),
    extendedQuery('select 1', []),
    tagged('Z', Buffer.from('I')),
  ],
  run(input, rng) {
    const SYNC = [0x51, 0x53, 0x46];
    const scan = (parts: Buffer[]) => {
      const captured: string[] = [];
      const s = new MessageScanner(SYNC, { types: [0x53], maxBodyLength: 64, onMessage: (t, b) => captured.push(`${t}:${b.toString('hex')}`) });
      for (const p of parts) s.scan(p);
      return `${s.messageCount}/${s.syncCount}/${s.lastReadyStatus}/${s.sawTerminate}/${s.malformed}/${s.atMessageBoundary}/${captured.join(',')}`;
    };
    const whole = scan([input]);
    const split = scan(chunk(rng, input));
    expect(whole === split, `scanner differs by chunking: ${whole.slice(0, 80)} vs ${split.slice(0, 80)}`);
    // Reference walk.
    let at = 0;
    let count = 0;
    let malformed = false;
    while (input.length - at >= 5) {
      const len = input.readUInt32BE(at + 1);
      if (len < 4) {
        malformed = true;
        break;
      }
      count++;
      at += 1 + len;
    }
    const [c, , , , m] = whole.split('/');
    expect(Number(c) === count && (m === 'true') === malformed, `scanner disagrees with the reference walk: ${whole.slice(0, 40)} vs ${count}/${malformed}`);
    return `n${Math.min(count, 4)}/${malformed}/${whole.split('/')[2]}`;
  },
};

/** What a server sends, as the proxy's backend connector and the tunnel read it. */
const backend: CodecTarget = {
  name: 'backend-messages',
  framing: 'none',
  seeds: () => [
    authenticationSasl(['SCRAM-SHA-256', 'OAUTHBEARER']).subarray(5),
    Buffer.from([0, 0, 0, 5, 1, 2, 3, 4]),
    errorResponse({ severity: 'FATAL', code: '57P01', message: 'terminating connection' }).subarray(5),
    Buffer.from([0, 2, 0, 0, 0, 1, 0x41, 0xff, 0xff, 0xff, 0xff]),
    backendKeyData(42, Buffer.alloc(32, 1)).subarray(5),
  ],
  run(input) {
    const out: string[] = [];
    const attempt = (name: string, f: () => unknown) => {
      try {
        f();
        out.push(name);
      } catch (e) {
        out.push(signature(e).slice(0, 30));
      }
    };
    attempt('auth', () => parseAuthentication(input));
    attempt('ps', () => parseParameterStatus(input));
    attempt('row', () => parseDataRow(input));
    attempt('key', () => parseBackendKeyData(input));
    attempt('err', () => parseErrorFields(input));
    return out.join('|');
  },
};

/** SASLprep never throws and its output is stable under a second pass on what it returns for ASCII. */
const saslprepTarget: CodecTarget = {
  name: 'saslprep',
  framing: 'none',
  seeds: () => [Buffer.from('password'), Buffer.from('pass\u00a0word\u00ad'), Buffer.from('ﬁ\u2003x'), Buffer.from([0xc3, 0x28, 0x41])],
  run(input) {
    const text = input.toString('utf8');
    const out = saslprep(text);
    expect(typeof out === 'string', 'saslprep returned a non-string');
    // eslint-disable-next-line no-control-regex
    if (/^[\x00-\x7f]*$/.test(text)) expect(out === text, 'saslprep changed an ASCII password');
    return out === text ? 'same' : out.length < text.length ? 'shorter' : 'changed';
  },
};

export const CODEC_TARGETS: readonly CodecTarget[] = [startup, frames, authMessages, oauthbearer, scanner, backend, saslprepTarget];
