import { describe, expect, it } from 'vitest';
import { quote, sqlstateFor, TokenError, type TokenErrorCode } from '../../src/token/errors.js';

describe('TokenError', () => {
  it('maps "not a token at all" to 28P01 and every other refusal to 28000', () => {
    const codes: TokenErrorCode[] = [
      'token_malformed', 'token_expired', 'token_not_yet_valid', 'token_issuer', 'token_audience', 'token_algorithm',
      'token_signature', 'token_unknown_kid', 'token_scope', 'token_user_mismatch', 'token_no_role', 'jwks_unavailable', 'token_too_large',
    ];
    const notATokenAtAll = codes.filter((c) => sqlstateFor(c) === '28P01');
    expect(notATokenAtAll).toEqual(['token_malformed', 'token_too_large']);
    const e = new TokenError('token_expired', 'token expired at 2026-11-25T17:00:00Z', { cause: new Error('x') });
    expect(e).toMatchObject({ name: 'TokenError', code: 'token_expired', sqlstate: '28000', message: 'token expired at 2026-11-25T17:00:00Z' });
    expect(e.cause).toBeInstanceOf(Error);
  });

  it('quote escapes control characters and truncates', () => {
    expect(quote('a\nb')).toBe('"a\\nb"');
    expect(quote('x'.repeat(500)).length).toBeLessThan(130);
    expect(quote(undefined)).toBe('(none)');
    expect(quote(['a'])).toBe('"[\\"a\\"]"');
  });
});
