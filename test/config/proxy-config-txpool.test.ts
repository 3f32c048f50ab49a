import { describe, expect, it } from 'vitest';
import { buildProxyConfig, ConfigError } from '../../src/config/proxy-config.js';
import { minimalProxyDocument } from '../support/config-docs.js';

function build(database: Record<string, unknown>) {
  return buildProxyConfig(minimalProxyDocument({ databases: { mydb: database } }), {}, '/etc/gprxy');
}

describe('databases.<name>.pool.mode', () => {
  it('is session by default, transaction when asked', () => {
    expect(build({}).databases.mydb!.pool.mode).toBe('session');
    expect(build({ pool: { mode: 'transaction', size: 4 } }).databases.mydb!.pool).toMatchObject({ mode: 'transaction', size: 4 });
  });

  it('refuses transaction pooling on a passthrough database, and an unknown mode, naming the key', () => {
    expect(() => build({ mode: 'passthrough', pool: { mode: 'transaction' } })).toThrow(ConfigError);
    expect(() => build({ mode: 'passthrough', pool: { mode: 'transaction' } })).toThrow(/databases\.mydb\.pool\.mode: transaction pooling needs mode: oauth/);
    expect(() => build({ pool: { mode: 'statement' } })).toThrow(/databases\.mydb\.pool\.mode/);
  });

  it('refuses statement auditing with transaction pooling (not available yet)', () => {
    expect(() => build({ pool: { mode: 'transaction' }, audit: { statements: 'all' } })).toThrow(/pool\.mode: transaction/);
  });
});

describe('databases.<name>.pool.prepared_statements', () => {
  it("is PgBouncer's default of 200 statements per backend, 0 turns named statements off, a negative or huge size is refused", () => {
    expect(build({ pool: { mode: 'transaction' } }).databases.mydb!.pool.preparedStatements).toBe(200);
    expect(build({ pool: { mode: 'transaction', prepared_statements: 0 } }).databases.mydb!.pool.preparedStatements).toBe(0);
    expect(() => build({ pool: { mode: 'transaction', prepared_statements: -1 } })).toThrow(/databases\.mydb\.pool\.prepared_statements/);
    expect(() => build({ pool: { mode: 'transaction', prepared_statements: 1_000_000 } })).toThrow(/prepared_statements/);
  });
});
