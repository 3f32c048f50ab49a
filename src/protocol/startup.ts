import { cstringEnd, decodeUtf8 } from './decode.js';
import { ProtocolError } from './errors.js';

export const SSL_REQUEST_CODE = 80877103; // 1234.5679
export const GSSENC_REQUEST_CODE = 80877104; // 1234.5680
export const CANCEL_REQUEST_CODE = 80877102; // 1234.5678
export const PROTOCOL_3_0 = 196608; // 3 << 16

/** Protocol 3.2 lets the secret key of BackendKeyData / CancelRequest grow up to 256 bytes. */
export const MAX_CANCEL_SECRET_LENGTH = 256;

/** Prefix of protocol options (`_pq_.name`); the server lists those it does not know in NegotiateProtocolVersion. */
const PROTOCOL_OPTION_PREFIX = '_pq_.';

export type StartupMessagePacket = {
  kind: 'startup';
  majorVersion: 3;
  minorVersion: number;
  /** Null-prototype object, so names like `__proto__` or `constructor` are plain keys. */
  parameters: Record<string, string>;
  /** `_pq_.*` option names, kept out of `parameters`. */
  unsupportedOptions: string[];
};

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; processId: number; secretKey: Buffer }
  | StartupMessagePacket;

/**
 * Parses one untagged startup-phase frame (as returned by FrameReader.nextStartupFrame, length
 * field included). Strict where PostgreSQL is strict: fixed lengths for the request codes,
 * protocol major version 3 only, name/value pairs ending with a final NUL, a non-empty `user`.
 */
export function parseStartupPacket(frame: Buffer): StartupPacket {
  if (frame.length < 8) throw new ProtocolError(`startup packet of ${frame.length} bytes is below the minimum of 8`);
  const length = frame.readUInt32BE(0);
  if (length !== frame.length) {
    throw new ProtocolError(`startup packet declares length ${length} but has ${frame.length} bytes`);
  }
  const code = frame.readUInt32BE(4);

  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
    const name = code === SSL_REQUEST_CODE ? 'SSLRequest' : 'GSSENCRequest';
    if (length !== 8) throw new ProtocolError(`${name} length ${length}, expected 8`);
    return code === SSL_REQUEST_CODE ? { kind: 'ssl' } : { kind: 'gssenc' };
  }

  if (code === CANCEL_REQUEST_CODE) {
    if (length < 16 || length > 12 + MAX_CANCEL_SECRET_LENGTH) {
      throw new ProtocolError(`CancelRequest length ${length}, expected 16 to ${12 + MAX_CANCEL_SECRET_LENGTH}`);
    }
    // Copy: the key outlives the frame (it is compared against live sessions).
    return { kind: 'cancel', processId: frame.readUInt32BE(8), secretKey: Buffer.from(frame.subarray(12, length)) };
  }

  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) {
    throw new ProtocolError(`unsupported frontend protocol ${major}.${minor}: server supports 3.0`);
  }
  return parseParameters(frame, minor);
}

function parseParameters(frame: Buffer, minorVersion: number): StartupMessagePacket {
  const parameters = Object.create(null) as Record<string, string>;
  const unsupportedOptions: string[] = [];
  const seen = new Set<string>();
  const end = frame.length;
  let offset = 8;

  for (;;) {
    if (offset >= end) throw new ProtocolError('startup packet is missing its final terminator');
    if (frame[offset] === 0) {
      if (offset !== end - 1) throw new ProtocolError('invalid startup packet layout: expected terminator as last byte');
      break;
    }
    const nameEnd = cstringEnd(frame, offset, end, 'startup parameter name');
    const name = decodeUtf8(frame, offset, nameEnd, 'startup parameter name');
    const valueEnd = cstringEnd(frame, nameEnd + 1, end, `value of startup parameter "${name}"`);
    const value = decodeUtf8(frame, nameEnd + 1, valueEnd, `value of startup parameter "${name}"`);
    offset = valueEnd + 1;

    if (seen.has(name)) throw new ProtocolError(`duplicate startup parameter "${name}"`);
    seen.add(name);
    if (name.startsWith(PROTOCOL_OPTION_PREFIX)) unsupportedOptions.push(name);
    else parameters[name] = value;
  }

  if (!parameters.user) throw new ProtocolError('no PostgreSQL user name specified in startup packet');
  return { kind: 'startup', majorVersion: 3, minorVersion, parameters, unsupportedOptions };
}

/** The newest protocol the proxy speaks to clients of proxied databases: 3.2 (PostgreSQL 18's longer cancel keys). */
export const NEWEST_PROTOCOL_MINOR = 2;

/**
 * True when the client asked for a minor version newer than `newestMinor` or for protocol options: the
 * server then answers NegotiateProtocolVersion(newestMinor, unsupportedOptions), as PostgreSQL does, and
 * goes on in 3.newestMinor (or the client's own, if older).
 */
export function needsNegotiation(p: StartupPacket, newestMinor = 0): boolean {
  return p.kind === 'startup' && (p.minorVersion > newestMinor || p.unsupportedOptions.length > 0);
}
