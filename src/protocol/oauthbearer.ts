/**
 * SASL OAUTHBEARER (RFC 7628) as PostgreSQL 18 speaks it, server side and client side, as pure functions and
 * one I/O-free state machine. The proxy drives `OAuthBearerServerExchange` for clients (libpq 18's
 * `oauth_issuer=...`), the tunnel uses `oauthBearerInitialResponse` to answer a PostgreSQL 18 server.
 *
 * Client initial response:  gs2-header kvsep *kvpair kvsep, e.g. "n,,\x01auth=Bearer <token>\x01\x01".
 * An empty auth value ("auth=") is a discovery request: the server answers with its JSON error
 * (status invalid_token, openid-configuration, scope), the client sends the dummy response "\x01", and the
 * server ends the attempt with an ErrorResponse. A token that fails verification goes the same way.
 * Everything is bounded: the response is at most `maxLength` bytes and parsed without copying it twice.
 */
import { ProtocolError } from './errors.js';

export const OAUTHBEARER = 'OAUTHBEARER';
const KVSEP = 0x01;
/** PostgreSQL 18 accepts OAUTHBEARER messages up to PG_MAX_AUTH_TOKEN_LENGTH bytes. */
export const MAX_OAUTHBEARER_MESSAGE = 65535;
/** RFC 6750 b64token: the characters a Bearer token may use, then any number of '='. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const KEY = /^[A-Za-z]+$/;

export type OAuthBearerClientResponse =
  | { readonly kind: 'discovery' }
  | { readonly kind: 'bearer'; readonly token: string }
  /** Well-formed SASL, but the auth value is not a Bearer token (another scheme, bad characters). */
  | { readonly kind: 'not_bearer'; readonly reason: string };

/** Why an OAUTHBEARER message was refused as malformed; `detail` never contains token bytes. */
export class OAuthBearerProtocolError extends ProtocolError {
  constructor(readonly detail: string) {
    super(`malformed OAUTHBEARER message: ${detail}`);
  }
}

function malformed(detail: string): never {
  throw new OAuthBearerProtocolError(detail);
}

function describeByte(b: number | undefined): string {
  if (b === undefined) return 'end of message';
  return b >= 0x21 && b <= 0x7e ? `'${String.fromCharCode(b)}'` : `0x${b.toString(16).padStart(2, '0')}`;
}

/** VCHAR / SP / HTAB / CR / LF (RFC 7628 section 3.1 `value`). */
function validValue(data: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = data[i]!;
    if ((c >= 0x21 && c <= 0x7e) || c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a) continue;
    return false;
  }
  return true;
}

/**
 * Parses a client initial response. Throws OAuthBearerProtocolError (08P01) for anything PostgreSQL 18 calls
 * a malformed message: channel binding requested, an authzid, a missing kvsep, bad key names or values, no or
 * several auth values, bytes after the final kvsep, an embedded NUL.
 */
export function parseOAuthBearerClientResponse(data: Buffer, maxLength = MAX_OAUTHBEARER_MESSAGE): OAuthBearerClientResponse {
  if (data.length === 0) malformed('the message is empty');
  if (data.length > maxLength) malformed(`the message is ${data.length} bytes, more than ${maxLength}`);
  if (data.includes(0)) malformed('the message contains a NUL byte');

  // gs2-header: "n," or "y," (no channel binding), then an empty authzid, then ",".
  let at = 0;
  const flag = data[at];
  if (flag === 0x70 /* p */) malformed('channel binding is not supported for OAUTHBEARER, but the client requested it');
  if (flag !== 0x6e /* n */ && flag !== 0x79 /* y */) malformed(`unexpected channel-binding flag ${describeByte(flag)}`);
  at++;
  if (data[at] !== 0x2c) malformed(`comma expected, found ${describeByte(data[at])}`);
  at++;
  if (data[at] === 0x61 /* a */) malformed('the client sent an authorization identity (authzid), which is not supported');
  if (data[at] !== 0x2c) malformed(`unexpected attribute ${describeByte(data[at])} in the gs2 header`);
  at++;
  if (data[at] !== KVSEP) malformed(`key-value separator expected, found ${describeByte(data[at])}`);
  at++;

  let auth: { start: number; end: number } | undefined;
  for (;;) {
    const end = data.indexOf(KVSEP, at);
    if (end === -1) malformed(at >= data.length ? 'the message has no final terminator' : 'a key/value pair is not terminated');
    if (end === at) {
      // The empty pair ends the list; nothing may follow it.
      if (end + 1 !== data.length) malformed('the message has data after the final terminator');
      break;
    }
    const eq = data.indexOf(0x3d /* = */, at);
    if (eq === -1 || eq > end) malformed('a key has no value');
    const key = data.toString('latin1', at, eq);
    if (key === '') malformed('a key name is empty');
    if (!KEY.test(key)) malformed('a key name is not alphabetic');
    if (!validValue(data, eq + 1, end)) malformed('a value has invalid characters');
    if (key === 'auth') {
      if (auth) malformed('the message has several auth values');
      auth = { start: eq + 1, end };
    }
    // RFC 7628 3.1: unknown keys (host, port, ...) are ignored.
    at = end + 1;
  }
  if (!auth) malformed('the message has no auth value');
  if (auth.start === auth.end) return { kind: 'discovery' };

  const value = data.toString('latin1', auth.start, auth.end);
  // The scheme is compared case-insensitively (RFC 7628 section 4; HTTP auth schemes are).
  if (value.length < 7 || value.slice(0, 7).toLowerCase() !== 'bearer ') return { kind: 'not_bearer', reason: 'the auth value does not use the Bearer scheme' };
  const token = value.slice(7).replace(/^ +/, '');
  if (token === '') return { kind: 'not_bearer', reason: 'the Bearer token is empty' };
  if (!B64TOKEN.test(token)) return { kind: 'not_bearer', reason: 'the Bearer token has characters a token cannot have' };
  return { kind: 'bearer', token };
}

/** The client initial response carrying `token` (or a discovery request when `token` is empty). */
export function oauthBearerInitialResponse(token: string): Buffer {
  if (token !== '' && !B64TOKEN.test(token)) throw new ProtocolError('access token has characters a Bearer token cannot carry');
  return Buffer.from(`n,,\x01auth=${token === '' ? '' : `Bearer ${token}`}\x01\x01`, 'latin1');
}

/** The dummy client response that acknowledges a server's error (RFC 7628 section 3.2.3). */
export const OAUTHBEARER_DUMMY_RESPONSE: Buffer = Buffer.from([KVSEP]);

/**
 * The discovery document URL a server advertises for `issuer`, built as PostgreSQL 18 builds it from pg_hba's
 * `issuer` (so a libpq client configured with the same issuer string accepts it): the issuer itself when it
 * is already a .well-known URL, else issuer + "/.well-known/openid-configuration".
 */
export function discoveryUrlForIssuer(issuer: string): string {
  return issuer.includes('/.well-known/') ? issuer : `${issuer}/.well-known/openid-configuration`;
}

/** The server's error challenge (RFC 7628 section 3.2.2) in PostgreSQL 18's shape. */
export function oauthBearerErrorChallenge(discoveryUrl: string, scope: string): Buffer {
  return Buffer.from(JSON.stringify({ status: 'invalid_token', 'openid-configuration': discoveryUrl, scope }), 'utf8');
}

/** What the server side reads from an error challenge (the tunnel uses it to explain a refusal). */
export function parseOAuthBearerErrorChallenge(data: Buffer): { status?: string; discoveryUrl?: string; scope?: string } {
  if (data.length > MAX_OAUTHBEARER_MESSAGE) throw new ProtocolError('OAUTHBEARER error challenge is too large');
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString('utf8'));
  } catch {
    throw new ProtocolError('OAUTHBEARER error challenge is not JSON');
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ProtocolError('OAUTHBEARER error challenge is not a JSON object');
  const o = parsed as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const out: { status?: string; discoveryUrl?: string; scope?: string } = {};
  const status = str(o.status);
  const discoveryUrl = str(o['openid-configuration']);
  const scope = str(o.scope);
  if (status !== undefined) out.status = status;
  if (discoveryUrl !== undefined) out.discoveryUrl = discoveryUrl;
  if (scope !== undefined) out.scope = scope;
  return out;
}

/** One step of the server exchange: what to send now and what happens next. */
export type OAuthBearerStep =
  /** Send `reply` (AuthenticationSASLContinue data) and pass the client's next SASLResponse to `response`. */
  | { readonly kind: 'continue'; readonly reply: Buffer }
  /** Verify `token`; on success the exchange is complete, on failure call `rejected()`. */
  | { readonly kind: 'verify'; readonly token: string }
  /** The client acknowledged the error challenge: end the attempt with an ErrorResponse. */
  | { readonly kind: 'failed'; readonly discovery: boolean; readonly notBearer?: string };

type ServerState = 'initial' | 'awaiting_initial' | 'verifying' | 'awaiting_dummy' | 'done';

/**
 * The server's side of one OAUTHBEARER exchange, without I/O. Feed it the SASLInitialResponse fields, then
 * each SASLResponse body; it answers with the next step. Out-of-order calls and any message PostgreSQL 18
 * would refuse throw ProtocolError. After a failure or a success it accepts nothing more.
 */
export class OAuthBearerServerExchange {
  private state: ServerState = 'initial';
  private discovery = false;
  private notBearer: string | undefined;

  constructor(private readonly challenge: { readonly discoveryUrl: string; readonly scope: string }) {}

  /** The discovery challenge was sent and the dummy response has not come yet. */
  get awaitingDummyAfterDiscovery(): boolean {
    return this.state === 'awaiting_dummy' && this.discovery;
  }

  /** The SASLInitialResponse: mechanism and data (null when the client sent none). */
  initial(mechanism: string, data: Buffer | null): OAuthBearerStep {
    if (this.state !== 'initial') throw new ProtocolError('a second SASLInitialResponse in one authentication exchange');
    if (mechanism !== OAUTHBEARER) throw new ProtocolError(`client selected SASL mechanism ${JSON.stringify(mechanism.slice(0, 40))}; this server offers ${OAUTHBEARER} only`);
    if (data === null) {
      // No initial response: an empty challenge, answered with what the initial response would have held.
      this.state = 'awaiting_initial';
      return { kind: 'continue', reply: Buffer.alloc(0) };
    }
    return this.clientResponse(data);
  }

  /** A SASLResponse body. */
  response(data: Buffer): OAuthBearerStep {
    switch (this.state) {
      case 'awaiting_initial':
        return this.clientResponse(data);
      case 'awaiting_dummy':
        if (data.length !== 1 || data[0] !== KVSEP) throw new OAuthBearerProtocolError('the client did not answer the error with the kvsep dummy response');
        this.state = 'done';
        return { kind: 'failed', discovery: this.discovery, ...(this.notBearer ? { notBearer: this.notBearer } : {}) };
      default:
        throw new ProtocolError('unexpected SASLResponse: the OAUTHBEARER exchange is not waiting for one');
    }
  }

  /** The token from the last `verify` step was refused: the error challenge to send, then await the dummy. */
  rejected(): Buffer {
    if (this.state !== 'verifying') throw new ProtocolError('rejected() outside of verification');
    this.state = 'awaiting_dummy';
    return oauthBearerErrorChallenge(this.challenge.discoveryUrl, this.challenge.scope);
  }

  /** The token was accepted: the exchange is over (the caller sends AuthenticationOk). */
  accepted(): void {
    if (this.state !== 'verifying') throw new ProtocolError('accepted() outside of verification');
    this.state = 'done';
  }

  private clientResponse(data: Buffer): OAuthBearerStep {
    const parsed = parseOAuthBearerClientResponse(data);
    if (parsed.kind === 'bearer') {
      this.state = 'verifying';
      return { kind: 'verify', token: parsed.token };
    }
    this.discovery = parsed.kind === 'discovery';
    if (parsed.kind === 'not_bearer') this.notBearer = parsed.reason;
    this.state = 'awaiting_dummy';
    return { kind: 'continue', reply: oauthBearerErrorChallenge(this.challenge.discoveryUrl, this.challenge.scope) };
  }
}
