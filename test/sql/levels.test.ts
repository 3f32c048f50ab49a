import { describe, expect, it } from 'vitest';
import { classifyName, parseLevel, resolveAccountLevels } from '../../src/sql/levels.js';

const accounts = (...names: string[]) => Object.fromEntries(names.map((name) => [name, { name, password: 'x' }]));

describe('privilege level of each service account', () => {
  it('classifies names by their words', () => {
    expect(['pg_admin', 'app_admin', 'DBA', 'pg_writer', 'rw', 'editor', 'pg_reader', 'readonly', 'app-viewer', 'svc'].map(classifyName)).toEqual([
      'admin',
      'admin',
      'admin',
      'writer',
      'writer',
      'writer',
      'reader',
      'reader',
      'reader',
      undefined,
    ]);
    expect(classifyName('admin_reader')).toBeUndefined(); // two levels in one name: no guess
    expect(classifyName('reading')).toBeUndefined(); // whole words only
  });

  it('takes the level from the roles role_mapping maps to the account, before the account name', () => {
    const levels = resolveAccountLevels({
      accounts: accounts('svc_a', 'svc_b', 'app_reader'),
      roleMapping: [
        { role: 'pg_admin', account: 'svc_a' },
        { role: 'dba', account: 'svc_a' },
        { role: 'pg_writer', account: 'svc_b' },
      ],
    });
    expect(Object.fromEntries(levels)).toEqual({ svc_a: 'admin', svc_b: 'writer', app_reader: 'reader' });
  });

  it('a role mapped to an account overrides a misleading account name', () => {
    const levels = resolveAccountLevels({ accounts: accounts('app_admin'), roleMapping: [{ role: 'pg_reader', account: 'app_admin' }] });
    expect(levels.get('app_admin')).toBe('reader');
  });

  it('refuses to guess: mixed roles and unclassifiable accounts are coded errors naming --level', () => {
    expect(() =>
      resolveAccountLevels({ accounts: accounts('svc'), roleMapping: [{ role: 'pg_admin', account: 'svc' }, { role: 'pg_reader', account: 'svc' }] }),
    ).toThrow(expect.objectContaining({ code: 'ambiguous_level', message: expect.stringContaining('--level svc=') }));
    expect(() => resolveAccountLevels({ accounts: accounts('svc'), roleMapping: [{ role: 'engineering', account: 'svc' }] })).toThrow(
      expect.objectContaining({ code: 'unknown_level', message: expect.stringContaining('--level svc=') }),
    );
  });

  it('explicit levels win and must name an account', () => {
    const config = { accounts: accounts('svc'), roleMapping: [{ role: 'engineering', account: 'svc' }] };
    expect(resolveAccountLevels(config, { svc: 'writer' }).get('svc')).toBe('writer');
    expect(() => resolveAccountLevels(config, { other: 'writer' })).toThrow(expect.objectContaining({ code: 'unknown_account' }));
  });

  it('parses ACCOUNT=LEVEL', () => {
    expect(parseLevel('app_x=reader')).toEqual({ account: 'app_x', level: 'reader' });
    expect(parseLevel('a=b=admin')).toEqual({ account: 'a=b', level: 'admin' });
    for (const bad of ['app_x', '=admin', 'app_x=root', 'app_x=']) expect(() => parseLevel(bad)).toThrow(expect.objectContaining({ code: 'unknown_level' }));
  });
});
