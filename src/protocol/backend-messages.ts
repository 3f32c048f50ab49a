/**
 * Readers for the few backend messages the proxy and the tunnel interpret while they authenticate to an
 * upstream server (authentication requests, ParameterStatus, BackendKeyData, ReadyForQuery, ErrorResponse,
 * NegotiateProtocolVersion). After authentication nothing is parsed past the message header.
 * pg-protocol has a full backend parser, but it is stream-bound; these work on single framed bodies.
 */
import { ProtocolError } from './errors.js';
import { AuthCode } from './codes.js';

export type AuthenticationMessage =
  | { kind: 'ok' }
  | { kind: 'cleartext' }
  | { kind: 'md5'; salt: Buffer }
  | { kind: 'sasl'; mechanisms: string[] }
  | { kind: 'sasl-continue'; data: Buffer }
  | { kind: 'sasl-final'; data: Buffer }
  | { kind: 'unsupported'; method: number };

function cstrings(body: Buffer, start: number): string[] {
  const out: string[] = [];
  let at = start;
  while (at < body.length) {
    const end = body.indexOf(0, at);
    if (end === -1) throw new ProtocolError('backend message string is not NUL-terminated');
    if (end === at) break;
    out.push(body.toString('utf8', at, end));
    at = end + 1;
  }
  return out;
}

export function parseAuthentication(body: Buffer): AuthenticationMessage {
  if (body.length < 4) throw new ProtocolError('authentication message is too short');
  const method = body.readInt32BE(0);
  switch (method) {
    case AuthCode.OK:
      return { kind: 'ok' };
    case AuthCode.CLEARTEXT_PASSWORD:
      return { kind: 'cleartext' };
    case AuthCode.MD5_PASSWORD:
      if (body.length !== 8) throw new ProtocolError('MD5 authentication request must carry a 4-byte salt');
      return { kind: 'md5', salt: Buffer.from(body.subarray(4, 8)) };
    case AuthCode.SASL:
      return { kind: 'sasl', mechanisms: cstrings(body, 4) };
    case AuthCode.SASL_CONTINUE:
      return { kind: 'sasl-continue', data: Buffer.from(body.subarray(4)) };
    case AuthCode.SASL_FINAL:
      return { kind: 'sasl-final', data: Buffer.from(body.subarray(4)) };
    default:
      return { kind: 'unsupported', method };
  }
}

export function parseParameterStatus(body: Buffer): { name: string; value: string } {
  const [name, value] = cstrings(body, 0);
  if (name === undefined) throw new ProtocolError('ParameterStatus without a name');
  return { name, value: value ?? '' };
}

/** DataRow: each column as text, or null for SQL NULL. Lengths are checked against the body. */
export function parseDataRow(body: Buffer): (string | null)[] {
  if (body.length < 2) throw new ProtocolError('DataRow is too short');
  const n = body.readInt16BE(0);
  const row: (string | null)[] = [];
  let at = 2;
  for (let i = 0; i < n; i++) {
    if (at + 4 > body.length) throw new ProtocolError('DataRow ends inside a column length');
    const len = body.readInt32BE(at);
    at += 4;
    if (len < 0) row.push(null);
    else {
      if (at + len > body.length) throw new ProtocolError('DataRow column runs past the message');
      row.push(body.toString('utf8', at, at + len));
      at += len;
    }
  }
  return row;
}

export function parseBackendKeyData(body: Buffer): { processId: number; secretKey: Buffer } {
  if (body.length < 8 || body.length > 260) throw new ProtocolError('BackendKeyData has an invalid length');
  return { processId: body.readInt32BE(0), secretKey: Buffer.from(body.subarray(4)) };
}

/** ErrorResponse and NoticeResponse fields, keyed by their one-letter codes (S, V, C, M, D, H, ...). */
export interface BackendErrorFields {
  severity: string;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
  [field: string]: string | undefined;
}

export function parseErrorFields(body: Buffer): BackendErrorFields {
  const fields: Record<string, string> = {};
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const type = String.fromCharCode(body[at]!);
    const end = body.indexOf(0, at + 1);
    if (end === -1) throw new ProtocolError('error field is not NUL-terminated');
    fields[type] = body.toString('utf8', at + 1, end);
    at = end + 1;
  }
  return {
    ...fields,
    severity: fields.V ?? fields.S ?? 'ERROR',
    code: fields.C ?? 'XX000',
    message: fields.M ?? '',
    ...(fields.D ? { detail: fields.D } : {}),
    ...(fields.H ? { hint: fields.H } : {}),
  };
}
