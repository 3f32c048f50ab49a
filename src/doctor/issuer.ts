/**
 * An OIDC issuer as both doctors see it: discovery (the document's issuer must be the configured one), the
 * JWKS (reachable, with keys that can verify tokens, and their types), and the issuer's clock (its Date
 * header against ours: tokens are refused as "not yet valid" or expired when the clocks disagree by more
 * than the proxy's tolerance).
 */
import { CLOCK_TOLERANCE_MS } from '../token/verifier.js';
import { check, type DoctorCheck } from './report.js';

export interface IssuerChecks {
  readonly checks: DoctorCheck[];
  /** Local clock minus the issuer's (ms), when its Date header could be read. */
  readonly skewMs?: number;
}

function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
}

/** Signing key types of a JWKS ("RSA RS256", "EC P-256"), and how many keys can verify a token. */
function describeKeys(keys: readonly Record<string, unknown>[]): { usable: number; types: string[] } {
  const usable = keys.filter((k) => k.use !== 'enc' && (k.kty === 'RSA' || k.kty === 'EC' || k.kty === 'OKP'));
  const types = [...new Set(usable.map((k) => [k.kty, k.alg ?? k.crv].filter(Boolean).join(' ')))];
  return { usable: usable.length, types };
}

export async function inspectIssuer(
  issuer: string,
  options: { readonly jwksUri?: string; readonly fetch: typeof fetch; readonly now?: () => number; readonly label?: string; readonly caHint: string },
): Promise<IssuerChecks> {
  const now = options.now ?? Date.now;
  const label = options.label ?? issuer;
  const checks: DoctorCheck[] = [];
  let jwksUri = options.jwksUri;
  let skewMs: number | undefined;
  const url = discoveryUrl(issuer);
  try {
    const before = now();
    const response = await options.fetch(url, { signal: AbortSignal.timeout(10_000) });
    const after = now();
    const date = response.headers.get('date');
    if (date && Number.isFinite(Date.parse(date))) skewMs = Math.round((before + after) / 2 - Date.parse(date));
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const doc = (await response.json()) as Record<string, unknown>;
    if (doc.issuer !== issuer) {
      checks.push(check('issuer_discovery', 'fail', `issuer discovery ${label}`, `the discovery document says issuer ${JSON.stringify(doc.issuer)}, not ${JSON.stringify(issuer)}`, 'set the issuer exactly as the provider writes it (trailing slash included)'));
    } else {
      checks.push(check('issuer_discovery', 'ok', `issuer discovery ${label}`, url));
      if (!jwksUri && typeof doc.jwks_uri === 'string') jwksUri = doc.jwks_uri;
    }
  } catch (e) {
    checks.push(check('issuer_discovery', 'fail', `issuer discovery ${label}`, `${url}: ${(e as Error).message}${(e as Error & { cause?: Error }).cause ? ` (${(e as Error & { cause: Error }).cause.message})` : ''}`, `check the issuer URL and the network; ${options.caHint}`));
  }
  if (!jwksUri) {
    checks.push(check('jwks', 'skip', `signing keys ${label}`, 'no jwks_uri (discovery failed)'));
  } else {
    try {
      const response = await options.fetch(jwksUri, { signal: AbortSignal.timeout(10_000) });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const body = (await response.json()) as { keys?: Record<string, unknown>[] };
      const { usable, types } = describeKeys(Array.isArray(body.keys) ? body.keys : []);
      checks.push(
        usable > 0
          ? check('jwks', 'ok', `signing keys ${label}`, `${usable} key${usable === 1 ? '' : 's'} (${types.join(', ')}) at ${jwksUri}`)
          : check('jwks', 'fail', `signing keys ${label}`, `${jwksUri} has no key that can verify a token`, 'the provider must publish its signing keys (RSA, EC or OKP) there'),
      );
    } catch (e) {
      checks.push(check('jwks', 'fail', `signing keys ${label}`, `${jwksUri}: ${(e as Error).message}`, `check that the JWKS is reachable from here; ${options.caHint}`));
    }
  }
  if (skewMs !== undefined) {
    // The Date header has one-second resolution: a second of disagreement is noise.
    const off = Math.abs(skewMs);
    checks.push(
      off <= CLOCK_TOLERANCE_MS
        ? check('clock_skew', 'ok', `clock vs ${label}`, `${(skewMs / 1000).toFixed(0)} s apart (the proxy tolerates ${CLOCK_TOLERANCE_MS / 1000} s)`)
        : check('clock_skew', 'fail', `clock vs ${label}`, `this clock is ${(off / 1000).toFixed(0)} s ${skewMs > 0 ? 'ahead of' : 'behind'} the issuer's (tolerance ${CLOCK_TOLERANCE_MS / 1000} s): tokens would look expired or not yet valid`, 'synchronise the clock (NTP: timedatectl set-ntp true)'),
    );
  }
  return { checks, ...(skewMs !== undefined ? { skewMs } : {}) };
}
