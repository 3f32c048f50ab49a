/**
 * Every reason a token is refused, as a coded error. The proxy turns a TokenError into a PostgreSQL
 * ErrorResponse: `sqlstate` is the SQLSTATE to send and `message` is safe to show the client and to log
 * (it never contains the token; values taken from an unverified token are quoted and truncated).
 */
import { GprxyError, type SqlStateError } from '../shared/errors.js';

export type TokenErrorCode =
  | 'token_malformed'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'token_issuer'
  | 'token_audience'
  | 'token_algorithm'
  | 'token_signature'
  | 'token_unknown_kid'
  | 'token_scope'
  | 'token_user_mismatch'
  | 'token_no_role'
  | 'token_rule_refused'
  | 'token_no_user_id'
  | 'token_email_unverified'
  | 'jwks_unavailable'
  | 'token_too_large';

/** 28P01 (invalid_password) means "what you sent is not a token at all"; 28000 covers every refused token. */
export type TokenSqlState = '28000' | '28P01';

export function sqlstateFor(code: TokenErrorCode): TokenSqlState {
  return code === 'token_malformed' || code === 'token_too_large' ? '28P01' : '28000';
}

export class TokenError extends GprxyError<TokenErrorCode> implements SqlStateError {
  override readonly name = 'TokenError';
  readonly code: TokenErrorCode;
  readonly sqlstate: TokenSqlState;
  /** For the audit log only, never the client: the full reason (a CI rule refusal names the rules' required values). */
  readonly explanation?: string;

  constructor(code: TokenErrorCode, message: string, options?: { cause?: unknown; explanation?: string }) {
    super(message, options);
    this.code = code;
    this.sqlstate = sqlstateFor(code);
    if (options?.explanation !== undefined) this.explanation = options.explanation;
  }
}

/**
 * Quotes a value that came from an unverified token or from the client (issuer, audience, user name) for
 * an error message: control characters escaped, length capped, so a hostile value cannot forge log lines
 * or flood the client.
 */
export function quote(value: unknown, max = 120): string {
  let text: string;
  if (typeof value === 'string') text = value;
  else if (value === undefined) return '(none)';
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = String(value);
    }
  }
  const clipped = text.length > max ? `${text.slice(0, max)}…` : text;
  return JSON.stringify(clipped).replace(/[\u2028\u2029]/g, '?');
}
