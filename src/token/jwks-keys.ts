/**
 * Local key selection for a provider's JWKS (jose separates this from remote fetching too): which entries
 * of a key set may verify signatures at all, and which of them fit a token's header (kid, alg). Pure: no
 * I/O, no state; src/token/jwks-cache.ts holds the keys and decides when to fetch.
 */
import type { JWK } from 'jose';

/** What getKey needs from a JWS protected header. */
export interface KeyHeader {
  readonly kid?: string;
  readonly alg: string;
}

export interface KeySpec {
  readonly kty: string;
  readonly crv?: readonly string[];
}

/** The key type (and curve) each asymmetric JWS algorithm needs. HS* and none are absent on purpose. */
const KEY_TYPE_FOR_ALG: Readonly<Record<string, KeySpec>> = {
  RS256: { kty: 'RSA' },
  RS384: { kty: 'RSA' },
  RS512: { kty: 'RSA' },
  PS256: { kty: 'RSA' },
  PS384: { kty: 'RSA' },
  PS512: { kty: 'RSA' },
  ES256: { kty: 'EC', crv: ['P-256'] },
  ES384: { kty: 'EC', crv: ['P-384'] },
  ES512: { kty: 'EC', crv: ['P-521'] },
  EdDSA: { kty: 'OKP', crv: ['Ed25519', 'Ed448'] },
  Ed25519: { kty: 'OKP', crv: ['Ed25519'] },
};

/** The key a signature algorithm needs; undefined for one a provider's public key cannot verify (HS*, none). */
export function keySpecFor(alg: string): KeySpec | undefined {
  return Object.hasOwn(KEY_TYPE_FOR_ALG, alg) ? KEY_TYPE_FOR_ALG[alg] : undefined;
}

/** Keys that may verify signatures: public asymmetric keys whose `use` is absent or "sig". */
export function usableKeys(document: unknown): JWK[] {
  if (!document || typeof document !== 'object' || !Array.isArray((document as { keys?: unknown }).keys)) {
    throw new Error('the response is not a JSON Web Key Set (no "keys" array)');
  }
  return ((document as { keys: unknown[] }).keys).filter((k): k is JWK => {
    if (!k || typeof k !== 'object') return false;
    const jwk = k as JWK;
    if (jwk.kty !== 'RSA' && jwk.kty !== 'EC' && jwk.kty !== 'OKP') return false;
    if (jwk.use !== undefined && jwk.use !== 'sig') return false;
    if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) return false;
    // Private material in a JWKS is a provider mistake; never verify with such an entry.
    if ('d' in jwk) return false;
    return jwk.kid === undefined || typeof jwk.kid === 'string';
  });
}

/** The candidates for a header: the keys with its kid, or without a kid every key of the algorithm's type. */
export function candidateKeys(keys: readonly JWK[], header: KeyHeader): JWK[] {
  if (header.kid !== undefined) return keys.filter((jwk) => jwk.kid === header.kid);
  const spec = keySpecFor(header.alg);
  return keys.filter((jwk) => jwk.kty === spec?.kty);
}

/** Of the candidates, those that can verify `alg` (type, curve, and the key's own alg when it names one). */
export function keysForAlgorithm(candidates: readonly JWK[], spec: KeySpec, alg: string): JWK[] {
  return candidates.filter((jwk) => jwk.kty === spec.kty && (!spec.crv || spec.crv.includes(jwk.crv ?? '')) && (jwk.alg === undefined || jwk.alg === alg));
}
