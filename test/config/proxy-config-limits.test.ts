/** limits.backend_connect_timeout: validated once at the edge like the other limits. */
import { describe, expect, it } from 'vitest';
import { buildProxyConfig, ConfigError, DEFAULT_BACKEND_CONNECT_TIMEOUT_MS } from '../../src/config/proxy-config.js';
import { minimalProxyDocument } from '../support/config-docs.js';

function build(limits?: Record<string, unknown>) {
  return buildProxyConfig(minimalProxyDocument(limits ? { limits } : {}), {}, '/etc/gprxy');
}

describe('limits.backend_connect_timeout', () => {
  it('defaults to 5 s with or without a limits section, and takes a duration', () => {
    expect(DEFAULT_BACKEND_CONNECT_TIMEOUT_MS).toBe(5000);
    expect(build().limits.backendConnectTimeoutMs).toBe(5000);
    expect(build({ login_timeout: '10s' }).limits.backendConnectTimeoutMs).toBe(5000);
    expect(build({ backend_connect_timeout: '2s' }).limits.backendConnectTimeoutMs).toBe(2000);
    expect(build({ backend_connect_timeout: '1500ms' }).limits.backendConnectTimeoutMs).toBe(1500);
    expect(build({ backend_connect_timeout: 3 }).limits.backendConnectTimeoutMs).toBe(3000); // a bare number is seconds
  });

  it('refuses 0 and nonsense, naming the key', () => {
    expect(() => build({ backend_connect_timeout: 0 })).toThrow(ConfigError);
    expect(() => build({ backend_connect_timeout: '0s' })).toThrow(/limits\.backend_connect_timeout/);
    expect(() => build({ backend_connect_timeout: 'soon' })).toThrow(/limits\.backend_connect_timeout/);
  });
});
