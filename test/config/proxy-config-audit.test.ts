import { describe, expect, it } from 'vitest';
import { buildProxyConfig, ConfigError } from '../../src/config/proxy-config.js';
import { minimalProxyDocument } from '../support/config-docs.js';

function build(database: Record<string, unknown>) {
  return buildProxyConfig(minimalProxyDocument({ databases: { mydb: database } }), {}, '/etc/gprxy');
}

describe('databases.<name>.audit', () => {
  it('defaults to statements: none (no statement auditing)', () => {
    expect(build({}).databases.mydb!.audit).toEqual({ statements: 'none', redactLiterals: false, bindValues: false, maxStatementLength: 4096 });
  });

  it('takes the DESIGN 2.6 names, frozen, with a relative file resolved against the config directory', () => {
    const audit = build({ audit: { statements: 'write', redact_literals: true, bind_values: true, max_statement_length: 100, file: 'audit/statements.log' } }).databases.mydb!.audit;
    expect(audit).toEqual({ statements: 'write', redactLiterals: true, bindValues: true, maxStatementLength: 100, file: '/etc/gprxy/audit/statements.log' });
    expect(Object.isFrozen(audit)).toBe(true);
    expect(build({ audit: { statements: 'all', file: '-' } }).databases.mydb!.audit.file).toBe('-');
  });

  it('names the key of a wrong value or an unknown key', () => {
    expect(() => build({ audit: { statements: 'some' } })).toThrow(/databases\.mydb\.audit\.statements/);
    expect(() => build({ audit: { statement: 'all' } })).toThrow(/unknown key databases\.mydb\.audit\.statement/);
    expect(() => build({ audit: { max_statement_length: 10 } })).toThrow(ConfigError);
  });

  it('refuses statement auditing on a passthrough database', () => {
    expect(() => build({ mode: 'passthrough', audit: { statements: 'ddl' } })).toThrow(/needs mode: oauth/);
  });
});
