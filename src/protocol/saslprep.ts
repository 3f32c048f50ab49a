/**
 * SASLprep for SCRAM passwords, shared by the proxy's SCRAM client (src/proxy/scram.ts) and the verifiers
 * `gprxy db init` computes (src/sql/scram.ts): both must prepare a password exactly as PostgreSQL does, or a
 * non-ASCII password set by one would not log in through the other.
 */

/**
 * The byte-changing steps of SASLprep (RFC 4013) that PostgreSQL applies to a password before hashing:
 * non-ASCII spaces become U+0020, "commonly mapped to nothing" characters go, then NFKC. ASCII passwords are
 * unchanged. (node-postgres applies the same three steps on the client side.)
 */
export function saslprep(password: string): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  return password
    .replace(/[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g, ' ')
    // eslint-disable-next-line no-misleading-character-class
    .replace(/[\u00AD\u034F\u1806\u180B\u180C\u180D\u200C\u200D\u2060\uFE00-\uFE0F\uFEFF]/g, '')
    .normalize('NFKC');
}
