/**
 * Client → server messages. Readers parse what a client sends during authentication (the server
 * side, which pg-protocol does not cover); writers produce the frontend messages the tunnel and
 * the backend connector send. Readers take the body of a tagged message (FrameReader.nextMessage).
 */
import { cstringEnd, decodeUtf8 } from './decode.js';
import { checkUint32, encodeString, Writer } from './encode.js';
import { MessageEncodingError, ProtocolError } from './errors.js';
import { CANCEL_REQUEST_CODE, MAX_CANCEL_SECRET_LENGTH, PROTOCOL_3_0, SSL_REQUEST_CODE } from './startup.js';
import { FrontendCode } from './codes.js';

const { PASSWORD, QUERY, TERMINATE } = FrontendCode;

/** Body of a PasswordMessage: exactly one NUL-terminated string filling the body. */
export function parsePasswordMessage(body: Buffer): string {
  const end = cstringEnd(body, 0, body.length, 'password message');
  if (end !== body.length - 1) {
    throw new ProtocolError(`password message has ${body.length - 1 - end} unexpected bytes after its terminator`);
  }
  return decodeUtf8(body, 0, end, 'password');
}

export interface SaslInitialResponse {
  mechanism: string;
  /** null when the client sent length -1 (no initial response). */
  data: Buffer | null;
}

/** Body of a SASLInitialResponse: mechanism cstring, int32 length (-1 for none), that many bytes. */
export function parseSaslInitialResponse(body: Buffer): SaslInitialResponse {
  const mechEnd = cstringEnd(body, 0, body.length, 'SASL mechanism name');
  if (mechEnd === 0) throw new ProtocolError('SASL mechanism name is empty');
  const mechanism = decodeUtf8(body, 0, mechEnd, 'SASL mechanism name');
  const lengthAt = mechEnd + 1;
  if (body.length - lengthAt < 4) throw new ProtocolError('SASLInitialResponse is missing its data length');
  const declared = body.readInt32BE(lengthAt);
  const actual = body.length - lengthAt - 4;
  if (declared === -1) {
    if (actual !== 0) throw new ProtocolError(`SASLInitialResponse has ${actual} bytes after a data length of -1`);
    return { mechanism, data: null };
  }
  if (declared !== actual) {
    throw new ProtocolError(`SASLInitialResponse declares ${declared} data bytes but carries ${actual}`);
  }
  return { mechanism, data: Buffer.from(body.subarray(lengthAt + 4)) };
}

/** StartupMessage for protocol 3.minorVersion with the given parameters, in their order. */
export function startupMessage(parameters: Record<string, string>, minorVersion = 0): Buffer {
  if (!Number.isInteger(minorVersion) || minorVersion < 0 || minorVersion > 0xffff) {
    throw new MessageEncodingError(`minor protocol version ${minorVersion} is out of range`);
  }
  const pairs: Array<[Buffer, Buffer]> = [];
  let size = 4 + 1;
  for (const [name, value] of Object.entries(parameters)) {
    if (name === '') throw new MessageEncodingError('startup parameter name is empty');
    const pair: [Buffer, Buffer] = [encodeString(name, 'startup parameter name'), encodeString(value, `value of startup parameter "${name}"`)];
    size += pair[0].length + 1 + pair[1].length + 1;
    pairs.push(pair);
  }
  const w = new Writer(null, size).uint32(PROTOCOL_3_0 + minorVersion);
  for (const [n, v] of pairs) w.cstring(n).cstring(v);
  return w.byte(0).done();
}

export function passwordMessage(password: string): Buffer {
  const p = encodeString(password, 'password');
  return new Writer(PASSWORD, p.length + 1).cstring(p).done();
}

export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  if (mechanism === '') throw new MessageEncodingError('SASL mechanism name is empty');
  const m = encodeString(mechanism, 'SASL mechanism name');
  return new Writer(PASSWORD, m.length + 1 + 4 + data.length).cstring(m).int32(data.length).bytes(data).done();
}

export function saslResponse(data: Buffer): Buffer {
  return new Writer(PASSWORD, data.length).bytes(data).done();
}

export function sslRequest(): Buffer {
  return new Writer(null, 4).uint32(SSL_REQUEST_CODE).done();
}

/** CancelRequest: 4-byte secret in protocol 3.0, up to 256 bytes from 3.2. */
export function cancelRequest(processId: number, secretKey: Buffer): Buffer {
  checkUint32(processId, 'process id');
  if (secretKey.length < 4 || secretKey.length > MAX_CANCEL_SECRET_LENGTH) {
    throw new MessageEncodingError(`secret key of ${secretKey.length} bytes, expected 4 to ${MAX_CANCEL_SECRET_LENGTH}`);
  }
  return new Writer(null, 8 + secretKey.length).uint32(CANCEL_REQUEST_CODE).uint32(processId).bytes(secretKey).done();
}

export function terminate(): Buffer {
  return new Writer(TERMINATE, 0).done();
}

/** Simple-protocol Query. */
export function query(sql: string): Buffer {
  const q = encodeString(sql, 'query');
  return new Writer(QUERY, q.length + 1).cstring(q).done();
}
