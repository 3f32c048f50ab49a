import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildProxyConfig, type ProxyConfig } from '../../src/config/proxy-config.js';
import { adminConnectionString, planDbInit, runDbInit, selectDatabases, type DatabaseState } from '../../src/sql/db-init.js';
import { MULTITENANT_EXAMPLE_SQL } from '../../src/sql/example.js';
import { accountSettingsFor, settingEntry } from '../../src/sql/account-settings.js';
import { doBlock, ident, literal } from '../../src/sql/quote.js';

const SECRET = 'plan-test-secret-0123456789abcdefghij';

function config(overrides: Record<string, unknown> = {}): ProxyConfig {
  return buildProxyConfig(
    {
      tls: { allow_plaintext_loopback: true },
      providers: [{ issuer: 'https://idp.example/', audience: 'a' }],
      role_mapping: [
        { role: 'pg_admin', account: 'app_admin' },
        { role: 'pg_reader', account: 'app_reader' },
      ],
      accounts: { app_admin: { password: 'admin-cleartext-pw' }, app_reader: { password: "it's a \\ reader pw" } },
      databases: { main: { dbname: 'my db' }, other: { port: 5433 }, relay: { mode: 'passthrough' } },
      context: { secret: SECRET },
      ...overrides,
    },
    {},
    '/',
  );
}

const state = (secret: DatabaseState['secret'], passwordsCurrent: string[] = []): DatabaseState => ({
  existingRoles: new Set(['app_admin', 'app_reader']),
  passwordsCurrent: new Set(passwordsCurrent),
  secret,
  serverVersion: 180000,
  privileged: true,
  // What db init sets on purpose is already there: no notes about settings.
  publicCreate: false,
  mayChangePublic: true,
  superuser: true,
  databaseOwner: 'postgres',
  publicPeerFunctions: new Map(),
  roleSettings: ['app_admin', 'app_reader'].flatMap((account) => accountSettingsFor(180000).map((s) => ({ account, database: null, entry: settingEntry(s) }))),
});

describe('planning and printing db init', () => {
  it('prints runnable SQL for every oauth database without any server, with verifiers and no secrets', async () => {
    let out = '';
    expect(await runDbInit(config(), { print: true, out: (t) => (out += t) })).toEqual([]);
    expect(out.match(/^\\connect /gm)).toHaveLength(2);
    expect(out).toContain(`\\connect 'my db'`);
    expect(out).not.toContain('relay');
    expect(out).toMatch(/ALTER ROLE "app_reader" PASSWORD 'SCRAM-SHA-256\$4096:[^']+';/);
    for (const secret of ['admin-cleartext-pw', "it's a", SECRET]) expect(out).not.toContain(secret);
    expect(out).toContain(`pg_catalog.convert_to(:'gprxy_context_secret', 'UTF8')`);
    expect(out).not.toMatch(/\$1\b/);
    expect(out.match(/^BEGIN;$/gm)).toHaveLength(2);
    expect(out.match(/^COMMIT;$/gm)).toHaveLength(2);
  });

  it('gives every group its grants and default privileges, and admin accounts default privileges of their own', () => {
    const sql = planDbInit(config(), config().databases.main!).statements.map((s) => s.sql).join('\n');
    expect(sql).toContain('GRANT SELECT ON ALL TABLES IN SCHEMA "public" TO gprxy_reader;');
    expect(sql).toContain('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "public" TO gprxy_writer;');
    expect(sql).toContain('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "public" TO gprxy_writer;');
    expect(sql).toContain('GRANT EXECUTE ON ALL ROUTINES IN SCHEMA "public" TO gprxy_admin, gprxy_writer, gprxy_reader;');
    expect(sql).toContain('ALTER DEFAULT PRIVILEGES IN SCHEMA "public" GRANT SELECT ON TABLES TO gprxy_reader;');
    expect(sql).toContain('ALTER DEFAULT PRIVILEGES FOR ROLE "app_admin" IN SCHEMA "public" GRANT ALL ON TABLES TO gprxy_admin;');
    expect(sql).not.toContain('FOR ROLE "app_reader"');
    expect(sql).toContain('GRANT ALL ON DATABASE "my db" TO gprxy_admin;');
    expect(sql).toContain('GRANT "gprxy_reader" TO "app_reader";');
    expect(sql).toContain('CREATE EXTENSION IF NOT EXISTS pgcrypto SCHEMA public;');
    expect(sql).toContain('GRANT "pg_read_all_stats" TO "gprxy_owner";');
  });

  it('skips passwords that already match and refuses a silent secret change', () => {
    const db = config().databases.main!;
    const plan = planDbInit(config(), db, {}, state({ current: 'match', previous: false }, ['app_admin']));
    const sql = plan.statements.map((s) => s.sql).join('\n');
    expect(sql).not.toContain('ALTER ROLE "app_admin" PASSWORD');
    expect(sql).toContain('ALTER ROLE "app_reader" PASSWORD');
    expect(plan.notes).toEqual(['password of app_reader set (the stored one differs from the config\'s, or could not be checked)']);
    expect(() => planDbInit(config(), db, {}, state({ current: 'differs', previous: false }))).toThrow(expect.objectContaining({ code: 'secret_mismatch' }));
    const rotation = planDbInit(config(), db, { rotateSecret: true }, state({ current: 'differs', previous: true }, ['app_admin', 'app_reader']));
    expect(rotation.notes).toEqual([expect.stringContaining('context secret rotated')]);
    expect(rotation.statements.filter((s) => s.usesSecret).map((s) => s.sql.split(' ')[0])).toEqual(['DELETE', 'UPDATE', 'INSERT']);
  });

  it('an account without a password (certificate authentication) gets none: PASSWORD NULL where one is set', () => {
    const base = config();
    // The config keys for certificates come with the proxy side (accounts.<name>.sslcert/sslkey).
    const certOnly = { ...base, accounts: { ...base.accounts, app_reader: { name: 'app_reader' } } } as unknown as ProxyConfig;
    const sql = planDbInit(certOnly, base.databases.main!).statements.map((s) => s.sql).join('\n');
    expect(sql).not.toContain('ALTER ROLE "app_reader" PASSWORD \'');
    expect(sql).toContain('ALTER ROLE "app_reader" PASSWORD NULL;');
    expect(sql).toContain('ALTER ROLE "app_admin" PASSWORD \'SCRAM-SHA-256');
  });

  it('without context.secret still installs the functions (they return NULL) and says so', () => {
    const plan = planDbInit(config({ context: {} }), config().databases.main!);
    expect(plan.statements.some((s) => s.usesSecret)).toBe(false);
    expect(plan.notes).toEqual([expect.stringContaining('no context.secret')]);
  });

  it('selects databases and refuses unknown or passthrough ones with coded errors', () => {
    expect(selectDatabases(config()).map((d) => d.name)).toEqual(['main', 'other']);
    expect(selectDatabases(config(), 'other').map((d) => d.name)).toEqual(['other']);
    expect(() => selectDatabases(config(), 'nope')).toThrow(expect.objectContaining({ code: 'unknown_database' }));
    expect(() => selectDatabases(config(), 'relay')).toThrow(expect.objectContaining({ code: 'no_oauth_database' }));
  });

  it('builds connection strings from the admin URL with the config database, never echoing a bad URL', async () => {
    const db = config().databases.main!;
    expect(adminConnectionString('postgresql://postgres:p%40ss@db.internal:5432/postgres?sslmode=verify-full', db)).toBe(
      'postgresql://postgres:p%40ss@db.internal:5432/my%20db?sslmode=verify-full',
    );
    expect(adminConnectionString('postgres:///?sslmode=disable', db)).toBe('postgres://127.0.0.1:5432/my%20db?sslmode=disable');
    expect(adminConnectionString('postgresql://admin@h/x', db, { user: 'app_reader', password: 'a b%c@d' })).toBe('postgresql://app_reader:a%20b%25c%40d@h/my%20db');
    expect(() => adminConnectionString('not a url with s3cret', db)).toThrow(expect.objectContaining({ code: 'invalid_admin_url', message: expect.not.stringContaining('s3cret') }));
    expect(() => adminConnectionString('mysql://x@h/db', db)).toThrow(expect.objectContaining({ code: 'invalid_admin_url' }));
    await expect(runDbInit(config(), { out: () => {} })).rejects.toMatchObject({ code: 'no_admin_url' });
  });

  it('quotes names and literals, and refuses text that would end a dollar quote', () => {
    expect(ident('we"ird')).toBe('"we""ird"');
    expect(literal("it's")).toBe("'it''s'");
    expect(literal('a\\b')).toBe("E'a\\\\b'");
    expect(() => ident('x'.repeat(64))).toThrow(expect.objectContaining({ code: 'invalid_identifier' }));
    expect(() => doBlock('RAISE $gprxy$;')).toThrow(expect.objectContaining({ code: 'invalid_identifier' }));
    expect(() => planDbInit(config({ accounts: { 'app_$gprxy$_admin': { password: 'x' } }, role_mapping: [{ role: 'pg_admin', account: 'app_$gprxy$_admin' }] }), config().databases.main!)).toThrow(
      expect.objectContaining({ code: 'invalid_identifier' }),
    );
  });

  it('examples/multitenant.sql is the exported example', () => {
    const file = readFileSync(new URL('../../examples/multitenant.sql', import.meta.url), 'utf8');
    // To regenerate: node --import tsx -e "import('./src/sql/example.ts').then(m => process.stdout.write(m.MULTITENANT_EXAMPLE_SQL))" > examples/multitenant.sql
    expect(file).toBe(MULTITENANT_EXAMPLE_SQL);
  });
});
