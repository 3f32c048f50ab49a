/** The one error base: every coded error of gprxy is a GprxyError with a literal code, a name and a cause. */
import { describe, expect, it } from 'vitest';
import { LoginRequiredError } from '../../src/oauth/errors.js';
import { MessageTooLargeError, ProtocolError } from '../../src/protocol/errors.js';
import { BackendError } from '../../src/proxy/backend.js';
import { Refusal } from '../../src/proxy/disconnect.js';
import { PoolTimeoutError } from '../../src/proxy/pool.js';
import { errorCode, GprxyError } from '../../src/shared/errors.js';
import { TokenError } from '../../src/token/errors.js';
import { TunnelError } from '../../src/tunnel/tunnel.js';
import { UpstreamError } from '../../src/tunnel/upstream.js';

describe('GprxyError', () => {
  it('carries code, name and cause in every layer', () => {
    const cause = new Error('socket reset');
    const errors: [GprxyError, string, string][] = [
      [new ProtocolError('bad'), 'protocol_violation', 'ProtocolError'],
      [new MessageTooLargeError(0x70, 70_000, 65_536, 'too large'), 'protocol_violation', 'MessageTooLargeError'],
      [new TokenError('token_expired', 'expired', { cause }), 'token_expired', 'TokenError'],
      [new BackendError('backend_closed', 'closed', undefined, undefined, { cause }), 'backend_closed', 'BackendError'],
      [new PoolTimeoutError('waited'), 'pool_timeout', 'PoolTimeoutError'],
      [new Refusal('login_timeout', 'slow'), 'login_timeout', 'Refusal'],
      [new LoginRequiredError('run gprxy login', { cause }), 'login_required', 'LoginRequiredError'],
      [new TunnelError('port_in_use', 'taken'), 'port_in_use', 'TunnelError'],
      [new UpstreamError('proxy_refused', 'no'), 'proxy_refused', 'UpstreamError'],
    ];
    for (const [error, code, name] of errors) {
      expect(error).toBeInstanceOf(GprxyError);
      expect(error.code).toBe(code);
      expect(errorCode(error)).toBe(code);
      expect(error.name).toBe(name);
    }
    expect(new TokenError('token_expired', 'x', { cause }).cause).toBe(cause);
    expect(new TokenError('token_malformed', 'x').sqlstate).toBe('28P01');
  });

  it('reads no code off foreign objects', () => {
    expect(errorCode(Object.assign(new Error('x'), { code: 'login_required' }))).toBeUndefined();
    expect(errorCode({ code: 'login_required' })).toBeUndefined();
    expect(errorCode(undefined)).toBeUndefined();
  });
});
