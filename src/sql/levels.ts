/**
 * Which privilege level each service account gets (the seed's Option 2: admin all, writer DML, reader
 * SELECT). The proxy config has no such key, and guessing from an account's name alone would be fragile,
 * so the level comes, in this order, from:
 *   1. an explicit `--level ACCOUNT=LEVEL` (DbInitOptions.levels),
 *   2. the token roles that role_mapping maps to the account: a role naming admin / writer / reader
 *      (pg_admin, pg_writer, pg_reader in the examples; also write, editor, read, readonly, viewer),
 *   3. the account's own name, classified the same way (app_admin, app_writer, app_reader).
 * Roles of one account that name different levels, or an account nothing classifies, are errors that
 * name the --level flag: an account never silently gets more (or less) than the operator meant.
 */
import { DbInitError } from './errors.js';
import type { ProxyConfig } from '../config/proxy-config.js';

export type AccessLevel = 'admin' | 'writer' | 'reader';
export const ACCESS_LEVELS: readonly AccessLevel[] = ['admin', 'writer', 'reader'];

const WORDS: Record<string, AccessLevel> = {
  admin: 'admin',
  administrator: 'admin',
  owner: 'admin',
  dba: 'admin',
  writer: 'writer',
  write: 'writer',
  rw: 'writer',
  editor: 'writer',
  readwrite: 'writer',
  reader: 'reader',
  read: 'reader',
  ro: 'reader',
  readonly: 'reader',
  viewer: 'reader',
};

/** The level a name states, from its words (split on anything not a letter or digit), if exactly one. */
export function classifyName(name: string): AccessLevel | undefined {
  const found = new Set<AccessLevel>();
  for (const word of name.toLowerCase().split(/[^a-z0-9]+/)) {
    const level = WORDS[word];
    if (level) found.add(level);
  }
  return found.size === 1 ? [...found][0] : undefined;
}

export function parseLevel(text: string): { account: string; level: AccessLevel } {
  const eq = text.lastIndexOf('=');
  const account = eq > 0 ? text.slice(0, eq) : '';
  const level = text.slice(eq + 1) as AccessLevel;
  if (!account || !ACCESS_LEVELS.includes(level)) {
    throw new DbInitError('unknown_level', `--level expects ACCOUNT=LEVEL with LEVEL one of ${ACCESS_LEVELS.join(', ')} (got "${text}")`);
  }
  return { account, level };
}

export function resolveAccountLevels(
  config: Pick<ProxyConfig, 'accounts' | 'roleMapping'>,
  overrides: Readonly<Record<string, AccessLevel>> = {},
): Map<string, AccessLevel> {
  for (const name of Object.keys(overrides)) {
    if (!config.accounts[name]) throw new DbInitError('unknown_account', `--level ${name}=...: "${name}" is not a key of accounts in the config`);
  }
  const levels = new Map<string, AccessLevel>();
  for (const account of Object.keys(config.accounts)) {
    const explicit = overrides[account];
    if (explicit) {
      levels.set(account, explicit);
      continue;
    }
    const roles = config.roleMapping.filter((r) => r.account === account).map((r) => r.role);
    const fromRoles = new Set(roles.map(classifyName).filter((l): l is AccessLevel => l !== undefined));
    if (fromRoles.size > 1) {
      throw new DbInitError(
        'ambiguous_level',
        `account ${account} is mapped from roles of different levels (${roles.join(', ')}); say which with --level ${account}=admin|writer|reader`,
      );
    }
    const level = [...fromRoles][0] ?? classifyName(account);
    if (!level) {
      throw new DbInitError(
        'unknown_level',
        `cannot tell the privilege level of account ${account}: neither its name nor the roles mapped to it (${roles.join(', ') || 'none'}) say admin, writer or reader; pass --level ${account}=admin|writer|reader`,
      );
    }
    levels.set(account, level);
  }
  return levels;
}
