/**
 * Readers and writers for the extended-query messages whose statement names a pooler must see or change
 * (Parse, Bind, Describe, Close, Execute) and the small server answers it synthesizes (ParseComplete,
 * CloseComplete). Transaction pooling renames client statements per backend (PgBouncer ≥ 1.21's model);
 * session pooling never calls these. Readers take a message body (FrameReader.nextMessage) and check every
 * length against it; the parameter-type block of Parse and everything of Bind after the statement name stay
 * raw bytes, copied as they are.
 */
import { cstringEnd, decodeUtf8 } from './decode.js';
import { encodeString, Writer } from './encode.js';
import { ProtocolError } from './errors.js';
import { BackendCode, FrontendCode } from './codes.js';

export interface ParseMessage {
  readonly name: string;
  readonly query: string;
  /** int16 count + that many int32 type OIDs, as sent. */
  readonly paramTypes: Buffer;
}

export function parseParseMessage(body: Buffer): ParseMessage {
  const nameEnd = cstringEnd(body, 0, body.length, 'Parse statement name');
  const queryEnd = cstringEnd(body, nameEnd + 1, body.length, 'Parse query');
  const typesAt = queryEnd + 1;
  if (body.length - typesAt < 2) throw new ProtocolError('Parse is missing its parameter type count');
  const count = body.readInt16BE(typesAt);
  if (count < 0 || body.length !== typesAt + 2 + 4 * count) throw new ProtocolError(`Parse declares ${count} parameter types but carries ${body.length - typesAt - 2} bytes for them`);
  return {
    name: decodeUtf8(body, 0, nameEnd, 'statement name'),
    query: decodeUtf8(body, nameEnd + 1, queryEnd, 'query'),
    paramTypes: Buffer.from(body.subarray(typesAt)),
  };
}

export function parseMessage(name: string, query: string, paramTypes: Buffer): Buffer {
  const n = encodeString(name, 'statement name');
  const q = encodeString(query, 'query');
  return new Writer(FrontendCode.PARSE, n.length + 1 + q.length + 1 + paramTypes.length).cstring(n).cstring(q).bytes(paramTypes).done();
}

export interface BindHead {
  readonly portal: string;
  readonly statement: string;
  /** Offset in the body where the parameter formats start (everything after the statement name). */
  readonly restAt: number;
}

export function parseBindHead(body: Buffer): BindHead {
  const portalEnd = cstringEnd(body, 0, body.length, 'Bind portal name');
  const statementEnd = cstringEnd(body, portalEnd + 1, body.length, 'Bind statement name');
  return {
    portal: decodeUtf8(body, 0, portalEnd, 'portal name'),
    statement: decodeUtf8(body, portalEnd + 1, statementEnd, 'statement name'),
    restAt: statementEnd + 1,
  };
}

/** The Bind `body` with its statement name replaced; portal, formats and values copied as sent. */
export function bindWithStatement(body: Buffer, head: BindHead, statement: string): Buffer {
  const p = encodeString(head.portal, 'portal name');
  const s = encodeString(statement, 'statement name');
  const rest = body.subarray(head.restAt);
  return new Writer(FrontendCode.BIND, p.length + 1 + s.length + 1 + rest.length).cstring(p).cstring(s).bytes(rest).done();
}

/** Describe and Close: 'S' (statement) or 'P' (portal), then the name. */
export interface TargetMessage {
  readonly kind: 'S' | 'P';
  readonly name: string;
}

export function parseTargetMessage(body: Buffer, what: 'Describe' | 'Close'): TargetMessage {
  if (body.length < 2) throw new ProtocolError(`${what} is too short`);
  const kind = body[0];
  if (kind !== 0x53 && kind !== 0x50) throw new ProtocolError(`${what} target 0x${kind!.toString(16)} is neither 'S' nor 'P'`);
  const end = cstringEnd(body, 1, body.length, `${what} name`);
  if (end !== body.length - 1) throw new ProtocolError(`${what} has bytes after its name`);
  return { kind: kind === 0x53 ? 'S' : 'P', name: decodeUtf8(body, 1, end, `${what} name`) };
}

function target(type: number, kind: 'S' | 'P', name: string): Buffer {
  const n = encodeString(name, 'name');
  return new Writer(type, 1 + n.length + 1).byte(kind.charCodeAt(0)).cstring(n).done();
}

export function describeMessage(kind: 'S' | 'P', name: string): Buffer {
  return target(FrontendCode.DESCRIBE, kind, name);
}

export function closeMessage(kind: 'S' | 'P', name: string): Buffer {
  return target(FrontendCode.CLOSE, kind, name);
}

/** Execute: the portal name (the row limit after it is not needed here). */
export function parseExecutePortal(body: Buffer): string {
  const end = cstringEnd(body, 0, body.length, 'Execute portal name');
  if (body.length !== end + 5) throw new ProtocolError('Execute must end with a 4-byte row limit');
  return decodeUtf8(body, 0, end, 'portal name');
}

/** The text of a Query message body. */
export function parseQueryText(body: Buffer): string {
  const end = cstringEnd(body, 0, body.length, 'query');
  if (end !== body.length - 1) throw new ProtocolError('Query has bytes after its text');
  return decodeUtf8(body, 0, end, 'query');
}

/** The command tag of a CommandComplete body (e.g. 'DEALLOCATE ALL'); '' when malformed. */
export function commandTag(body: Buffer): string {
  const end = body.indexOf(0);
  return body.toString('latin1', 0, end < 0 ? body.length : end);
}

const PARSE_COMPLETE = Buffer.from([BackendCode.PARSE_COMPLETE, 0, 0, 0, 4]);
const CLOSE_COMPLETE = Buffer.from([BackendCode.CLOSE_COMPLETE, 0, 0, 0, 4]);

export function parseComplete(): Buffer {
  return PARSE_COMPLETE;
}

export function closeComplete(): Buffer {
  return CLOSE_COMPLETE;
}
