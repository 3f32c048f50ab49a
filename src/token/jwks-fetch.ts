/**
 * Remote half of a provider's keys: OIDC discovery and the JWKS request, each a bounded JSON GET (timeout,
 * 1 MiB cap, HTTP 200 only), with errors that name the URL and the reason undici hides in `cause`. No
 * state: src/token/jwks-cache.ts decides when to call and what to keep.
 */
import { GprxyError } from '../shared/errors.js';
import { quote } from './errors.js';

export type JwksFetchErrorCode =
  | 'response_too_large'
  | 'http_status'
  | 'not_json'
  | 'timeout'
  | 'request_failed'
  | 'discovery_invalid'
  | 'discovery_issuer_mismatch'
  | 'no_usable_key'
  | 'closed';

/**
 * Why discovery or the JWKS request failed. The JWKS cache logs it and keeps serving the last good keys; a
 * login that finds no usable key gets a TokenError('jwks_unavailable') whose message carries this one's.
 */
export class JwksFetchError extends GprxyError<JwksFetchErrorCode> {
  readonly code: JwksFetchErrorCode;

  constructor(code: JwksFetchErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

const MAX_RESPONSE_BYTES = 1024 * 1024;

/** OpenSSL's verification failures that a trusted CA (providers[].ca) would fix. */
const UNTRUSTED_CERT_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
]);

/** OIDC discovery URL; an issuer with a trailing slash (Auth0's do) does not get a second one. */
export function discoveryUrl(issuer: string): string {
  return `${issuer.endsWith('/') ? issuer : `${issuer}/`}.well-known/openid-configuration`;
}

/** An error's text with its cause's reason (and the setting that fixes an untrusted certificate). */
export function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error) {
    // undici says only "fetch failed"; the cause has the reason (ECONNREFUSED, a TLS verification error...).
    const code = (cause as NodeJS.ErrnoException).code;
    // A private provider's certificate: say which setting fixes it.
    const hint = code && UNTRUSTED_CERT_CODES.has(code) ? "; the provider's certificate is not trusted: set providers[].ca to the PEM file of its CA" : '';
    return `${error.message} (${code && !cause.message.includes(code) ? `${code}: ` : ''}${cause.message})${hint}`;
  }
  return error.message;
}

async function readCapped(response: Response, maxBytes: number): Promise<string> {
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel();
    throw new JwksFetchError('response_too_large', `the response is ${declared} bytes, more than ${maxBytes}`);
  }
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw new JwksFetchError('response_too_large', `the response is more than ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export interface GetJsonOptions {
  readonly fetch: typeof fetch;
  readonly timeoutMs: number;
  /** Aborts the request when the owner closes. */
  readonly signal: AbortSignal;
}

/** GET `url` as JSON; `what` ("JWKS", "OIDC discovery") starts every error message. */
export async function getJson(url: string, what: string, options: GetJsonOptions): Promise<unknown> {
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = AbortSignal.any([timeout, options.signal]);
  try {
    const response = await options.fetch(url, { signal, headers: { accept: 'application/json, application/jwk-set+json' } });
    if (response.status !== 200) {
      await response.body?.cancel().catch(() => undefined);
      throw new JwksFetchError('http_status', `${what} at ${url} answered HTTP ${response.status}`);
    }
    const text = await readCapped(response, MAX_RESPONSE_BYTES);
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new JwksFetchError('not_json', `${what} at ${url} is not JSON`);
    }
  } catch (error) {
    if (timeout.aborted) throw new JwksFetchError('timeout', `${what} request to ${url} timed out after ${options.timeoutMs} ms`, { cause: error });
    if (error instanceof JwksFetchError && error.message.startsWith(what)) throw error;
    if (error instanceof JwksFetchError) throw new JwksFetchError(error.code, `${what} at ${url}: ${error.message}`, { cause: error });
    throw new JwksFetchError('request_failed', `${what} request to ${url} failed: ${describe(error)}`, { cause: error });
  }
}

/** The issuer's jwks_uri from its OIDC discovery document, which must name exactly this issuer. */
export async function discoverJwksUri(issuer: string, options: GetJsonOptions): Promise<string> {
  const url = discoveryUrl(issuer);
  const document = (await getJson(url, 'OIDC discovery', options)) as { issuer?: unknown; jwks_uri?: unknown } | null;
  if (!document || typeof document !== 'object') throw new JwksFetchError('discovery_invalid', `OIDC discovery at ${url} is not a JSON object`);
  if (document.issuer !== issuer) {
    throw new JwksFetchError('discovery_issuer_mismatch', `OIDC discovery at ${url} names issuer ${quote(document.issuer)}, not ${quote(issuer)}; set the provider's issuer exactly as the provider spells it`);
  }
  if (typeof document.jwks_uri !== 'string' || !URL.canParse(document.jwks_uri)) {
    throw new JwksFetchError('discovery_invalid', `OIDC discovery at ${url} has no valid jwks_uri; set jwks_uri in the provider config`);
  }
  return document.jwks_uri;
}
