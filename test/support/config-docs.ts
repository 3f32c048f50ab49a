/**
 * Proxy config documents for the config unit tests: the smallest valid one (one provider, app_writer,
 * database mydb with defaults) to vary one key at a time, and the message of a document that must be refused.
 */
import { expect } from 'vitest';
import { buildProxyConfig, ConfigError } from '../../src/config/proxy-config.js';

/** The smallest valid proxy config document, with `extra` keys set on top (databases, limits, ...). */
export function minimalProxyDocument(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listen: '127.0.0.1:0',
    tls: { allow_plaintext_loopback: true },
    providers: [{ issuer: 'https://idp.example/', audience: 'https://gprxy.io' }],
    role_mapping: [{ role: 'pg_writer', account: 'app_writer' }],
    accounts: { app_writer: { password: 'pw' } },
    databases: { mydb: {} },
    ...extra,
  };
}

/** The ConfigError message for a document that must be refused (fails the test when it is accepted). */
export function configProblems(document: Record<string, unknown>, readFile?: Parameters<typeof buildProxyConfig>[3]): string {
  try {
    buildProxyConfig(document, {}, '/', readFile);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('config was accepted');
}
