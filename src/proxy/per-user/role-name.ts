/**
 * The PostgreSQL role name of an SSO user (identity: per_user). Names are attacker-influenced (a user picks
 * his e-mail's local part at some IdPs, a sub at others), so the rule is built to make every name map to one
 * person and never to anything else:
 * - e-mail form: `[prefix:]alice@example.com`, only for a *verified* e-mail (Identity.email is set only
 *   then), lower-cased, and only when it matches a conservative pattern (letters, digits, `._%+-`, one `@`,
 *   a dotted domain). No `:`, `#` or `~` can appear in it.
 * - subject form: `[prefix:]#<sub>` (every other case, or `role_name: sub`). It starts with `#` after the
 *   prefix, which no e-mail form does, so an attacker whose sub is `alice@example.com` gets
 *   `#alice@example.com`, never alice's role.
 * - Issuer namespacing: the provider's `prefix` (required and distinct when several providers are
 *   configured; it cannot contain `:` or `#`) comes first, so two issuers never share a name.
 * - Long or unusual names (over PostgreSQL's 63 bytes, characters outside printable ASCII, a `~`, a reserved
 *   `pg_` start) become `<first 46 bytes, sanitized>~<16 hex of SHA-256(full name)>`: stable across replicas
 *   and restarts. Only hashed names contain `~`, so a hashed name never equals a plain one, and two hashed
 *   names are equal only if 64 bits of SHA-256 collide.
 * The name is always sent quoted (src/sql/quote.ts ident) and as a bind parameter where possible.
 */
import { createHash } from 'node:crypto';
import type { ProviderConfig } from '../../config/proxy-config.js';
import type { Identity } from '../../token/identity.js';

export const MAX_ROLE_NAME_BYTES = 63;
const HASH_HEX = 16;
const KEEP_BYTES = MAX_ROLE_NAME_BYTES - HASH_HEX - 1;
const EMAIL = /^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)+$/;
/** What a plain (unhashed) name may hold: printable ASCII without space, `~` or `"`. */
const PLAIN = /^[\x21\x23-\x7d]+$/;

export type RoleNameRule = 'email' | 'sub';

/** The raw subject: Identity.subject carries `prefix:` when the provider has one. */
function rawSubject(identity: Pick<Identity, 'subject'>, prefix: string | undefined): string {
  return prefix !== undefined && identity.subject.startsWith(`${prefix}:`) ? identity.subject.slice(prefix.length + 1) : identity.subject;
}

/** Cuts to at most `max` bytes without splitting a character. */
function cutBytes(text: string, max: number): string {
  let out = '';
  for (const ch of text) {
    if (Buffer.byteLength(out + ch) > max) break;
    out += ch;
  }
  return out;
}

/** The name before the length rule: `[prefix:]email` or `[prefix:]#sub`. */
export function fullRoleName(identity: Pick<Identity, 'subject' | 'email'>, prefix: string | undefined, rule: RoleNameRule = 'email'): string {
  const namespace = prefix === undefined ? '' : `${prefix}:`;
  const email = identity.email?.toLowerCase();
  if (rule === 'email' && email !== undefined && EMAIL.test(email)) return `${namespace}${email}`;
  return `${namespace}#${rawSubject(identity, prefix)}`;
}

/** The role name PostgreSQL gets: the full name, or its stable hashed form (see the file comment). */
export function userRoleName(identity: Pick<Identity, 'subject' | 'email'>, prefix: string | undefined, rule: RoleNameRule = 'email'): string {
  const full = fullRoleName(identity, prefix, rule);
  if (Buffer.byteLength(full) <= MAX_ROLE_NAME_BYTES && PLAIN.test(full) && !full.startsWith('pg_')) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, HASH_HEX);
  const sanitized = cutBytes(full.replace(/[^\x21\x23-\x7d]/g, '_'), KEEP_BYTES).replace(/^pg_/, 'pg-');
  return `${sanitized}~${hash}`;
}

/** The provider that issued an identity's token (for its prefix). */
export function providerOf(providers: readonly ProviderConfig[], identity: Pick<Identity, 'issuer'>): ProviderConfig | undefined {
  return providers.find((p) => p.issuer === identity.issuer);
}
