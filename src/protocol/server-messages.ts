/**
 * Backend → client message writers: what the proxy says to a client before it starts relaying.
 *
 * pg-protocol (npm) only parses backend messages and serializes frontend ones (the client side),
 * so the server side of the protocol is ours. Each writer returns a fresh Buffer holding one
 * complete message. Strings are UTF-8; a NUL inside one throws MessageEncodingError.
 */
import { MAX_CANCEL_SECRET_LENGTH } from './startup.js';
import { MessageEncodingError } from './errors.js';
import { checkUint32, encodeString, Writer } from './encode.js';
import { AuthCode, BackendCode, EncryptionAnswer, ErrorField } from './codes.js';

const { AUTHENTICATION, PARAMETER_STATUS, BACKEND_KEY_DATA, READY_FOR_QUERY, ERROR_RESPONSE, NOTICE_RESPONSE, NEGOTIATE_PROTOCOL_VERSION } = BackendCode;

export type TransactionStatus = 'I' | 'T' | 'E';

export interface ErrorFields {
  severity: 'ERROR' | 'FATAL' | 'PANIC';
  /** SQLSTATE, five characters (see SqlState). */
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

export interface NoticeFields {
  severity: 'WARNING' | 'NOTICE' | 'INFO';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

function authentication(kind: number, data?: Buffer): Buffer {
  const w = new Writer(AUTHENTICATION, 4 + (data?.length ?? 0)).int32(kind);
  if (data) w.bytes(data);
  return w.done();
}

export function authenticationOk(): Buffer {
  return authentication(AuthCode.OK);
}

export function authenticationCleartextPassword(): Buffer {
  return authentication(AuthCode.CLEARTEXT_PASSWORD);
}

/** AuthenticationSASL: the mechanisms the server offers, e.g. ['OAUTHBEARER'] or ['SCRAM-SHA-256']. */
export function authenticationSasl(mechanisms: string[]): Buffer {
  if (mechanisms.length === 0) throw new MessageEncodingError('AuthenticationSASL needs at least one mechanism');
  const names = mechanisms.map((m) => {
    if (m === '') throw new MessageEncodingError('SASL mechanism name is empty');
    return encodeString(m, 'SASL mechanism name');
  });
  const size = names.reduce((n, b) => n + b.length + 1, 4 + 1);
  const w = new Writer(AUTHENTICATION, size).int32(AuthCode.SASL);
  for (const name of names) w.cstring(name);
  return w.byte(0).done();
}

export function authenticationSaslContinue(data: Buffer): Buffer {
  return authentication(AuthCode.SASL_CONTINUE, data);
}

export function authenticationSaslFinal(data: Buffer): Buffer {
  return authentication(AuthCode.SASL_FINAL, data);
}

export function parameterStatus(name: string, value: string): Buffer {
  const n = encodeString(name, 'parameter name');
  const v = encodeString(value, `value of parameter "${name}"`);
  return new Writer(PARAMETER_STATUS, n.length + 1 + v.length + 1).cstring(n).cstring(v).done();
}

/** BackendKeyData: 4-byte secret in protocol 3.0, up to 256 bytes from 3.2. */
export function backendKeyData(processId: number, secretKey: Buffer): Buffer {
  checkUint32(processId, 'process id');
  if (secretKey.length < 4 || secretKey.length > MAX_CANCEL_SECRET_LENGTH) {
    throw new MessageEncodingError(`secret key of ${secretKey.length} bytes, expected 4 to ${MAX_CANCEL_SECRET_LENGTH}`);
  }
  return new Writer(BACKEND_KEY_DATA, 4 + secretKey.length).uint32(processId).bytes(secretKey).done();
}

export function readyForQuery(status: TransactionStatus): Buffer {
  if (status !== 'I' && status !== 'T' && status !== 'E') {
    throw new MessageEncodingError(`transaction status ${JSON.stringify(status)} is not I, T or E`);
  }
  return new Writer(READY_FOR_QUERY, 1).byte(status.charCodeAt(0)).done();
}

/** ErrorResponse with fields S and V (severity), C (SQLSTATE), M, and D / H when given. */
export function errorResponse(fields: ErrorFields): Buffer {
  return noticeOrError(ERROR_RESPONSE, fields);
}

/** NoticeResponse: same fields as errorResponse, non-fatal severities. */
export function noticeResponse(fields: NoticeFields): Buffer {
  return noticeOrError(NOTICE_RESPONSE, fields);
}

const SQLSTATE_PATTERN = /^[0-9A-Z]{5}$/;

function noticeOrError(type: number, fields: ErrorFields | NoticeFields): Buffer {
  if (!SQLSTATE_PATTERN.test(fields.code)) throw new MessageEncodingError(`SQLSTATE ${JSON.stringify(fields.code)} is not five characters [0-9A-Z]`);
  const severity = encodeString(fields.severity, 'severity');
  const entries: Array<[number, Buffer]> = [
    [ErrorField.SEVERITY, severity], // localized; we do not localize
    [ErrorField.SEVERITY_NONLOCALIZED, severity],
    [ErrorField.CODE, encodeString(fields.code, 'SQLSTATE')],
    [ErrorField.MESSAGE, encodeString(fields.message, 'message')],
  ];
  if (fields.detail !== undefined) entries.push([ErrorField.DETAIL, encodeString(fields.detail, 'detail')]);
  if (fields.hint !== undefined) entries.push([ErrorField.HINT, encodeString(fields.hint, 'hint')]);
  const size = entries.reduce((n, [, v]) => n + 1 + v.length + 1, 1);
  const w = new Writer(type, size);
  for (const [field, value] of entries) w.byte(field).cstring(value);
  return w.byte(0).done();
}

/** NegotiateProtocolVersion: the newest minor version we support and the `_pq_.*` options we do not. */
export function negotiateProtocolVersion(newestMinor: number, unsupported: string[]): Buffer {
  if (!Number.isInteger(newestMinor) || newestMinor < 0 || newestMinor > 0xffff) {
    throw new MessageEncodingError(`minor protocol version ${newestMinor} is out of range`);
  }
  const names = unsupported.map((o) => encodeString(o, 'protocol option name'));
  const size = names.reduce((n, b) => n + b.length + 1, 8);
  const w = new Writer(NEGOTIATE_PROTOCOL_VERSION, size).int32(newestMinor).int32(names.length);
  for (const name of names) w.cstring(name);
  return w.done();
}

/** The single-byte answer to SSLRequest (and GSSENCRequest): 'S' to start TLS, 'N' to refuse. */
export function sslResponse(accept: boolean): Buffer {
  return Buffer.from([accept ? EncryptionAnswer.ACCEPT : EncryptionAnswer.REJECT]);
}

// Result sets: what a server sends for a query (the admin console's answers).

/** A column of a RowDescription. Type OIDs are PostgreSQL's (25 text, 20 int8, 23 int4, 16 bool, 1184 timestamptz). */
export interface ColumnDescription {
  readonly name: string;
  readonly typeOid: number;
  /** pg_type.typlen of the type: -1 for variable length. */
  readonly typeSize: number;
}

/** RowDescription: every column in text format, no table attribution (a computed result, as SHOW gives). */
export function rowDescription(columns: readonly ColumnDescription[]): Buffer {
  const names = columns.map((c) => encodeString(c.name, 'column name'));
  const size = names.reduce((n, b) => n + b.length + 1 + 18, 2);
  const w = new Writer(BackendCode.ROW_DESCRIPTION, size).int16(columns.length);
  columns.forEach((c, i) => {
    checkUint32(c.typeOid, 'type OID');
    w.cstring(names[i]!).int32(0).int16(0).uint32(c.typeOid).int16(c.typeSize).int32(-1).int16(0);
  });
  return w.done();
}

/** DataRow: text values, null for SQL NULL (values are length-prefixed, so any text fits). */
export function dataRow(values: readonly (string | null)[]): Buffer {
  const bytes = values.map((v) => (v === null ? null : Buffer.from(v, 'utf8')));
  const size = bytes.reduce((n, b) => n + 4 + (b?.length ?? 0), 2);
  const w = new Writer(BackendCode.DATA_ROW, size).int16(values.length);
  for (const b of bytes) {
    if (b === null) w.int32(-1);
    else w.int32(b.length).bytes(b);
  }
  return w.done();
}

/** CommandComplete with its tag, e.g. "SHOW", "SELECT 3", "PAUSE". */
export function commandComplete(tag: string): Buffer {
  const t = encodeString(tag, 'command tag');
  return new Writer(BackendCode.COMMAND_COMPLETE, t.length + 1).cstring(t).done();
}

export function emptyQueryResponse(): Buffer {
  return new Writer(BackendCode.EMPTY_QUERY_RESPONSE, 0).done();
}

export function bindComplete(): Buffer {
  return new Writer(BackendCode.BIND_COMPLETE, 0).done();
}

export function noData(): Buffer {
  return new Writer(BackendCode.NO_DATA, 0).done();
}

/** ParameterDescription: the types of a prepared statement's parameters. */
export function parameterDescription(typeOids: readonly number[]): Buffer {
  const w = new Writer(BackendCode.PARAMETER_DESCRIPTION, 2 + 4 * typeOids.length).int16(typeOids.length);
  for (const oid of typeOids) w.uint32(checkUint32(oid, 'type OID'));
  return w.done();
}
