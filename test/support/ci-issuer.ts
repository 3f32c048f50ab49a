/**
 * A local OIDC issuer that mints CI job tokens the way GitHub Actions and GitLab do (issue 19): HTTPS on a
 * certificate from the test CA, OIDC discovery, a JWKS with an RS256 key, and GitHub's job-token request
 * endpoint (what ACTIONS_ID_TOKEN_REQUEST_URL points at: GET with `Authorization: bearer
 * $ACTIONS_ID_TOKEN_REQUEST_TOKEN` and `?audience=`, answering {"value": JWT}). Claim sets come from
 * test/support/ci-claims.ts (the examples of GitHub's and GitLab's documentation).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { CertificateAuthority } from '../../src/demo/certificates.js';

export interface CiIssuer {
  readonly issuer: string;
  /** The stand-in for ACTIONS_ID_TOKEN_REQUEST_URL (GitHub appends &audience=... to it). */
  readonly requestUrl: string;
  /** The bearer token the request endpoint wants (ACTIONS_ID_TOKEN_REQUEST_TOKEN). */
  readonly requestToken: string;
  /** Audiences asked for at the request endpoint, in order. */
  readonly requests: string[];
  /** Claims the request endpoint mints (a GitHub job's), changeable per test. */
  job: Record<string, unknown>;
  /** Lifetime of tokens from the request endpoint, seconds. */
  jobTokenLifetime: number;
  /** A Date header this far from the real clock (ms), for clock-skew checks. */
  dateSkewMs: number;
  /** False: the JWKS is published empty (a provider that lost its keys). */
  publishKeys: boolean;
  mint(claims: Record<string, unknown>, options?: { audience?: string; expiresIn?: number; issuedAt?: number }): Promise<string>;
  close(): Promise<void>;
}

export async function startCiIssuer(ca: CertificateAuthority): Promise<CiIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'ci-key-1', alg: 'RS256', use: 'sig' };
  const leaf = await ca.issue(['localhost', '127.0.0.1']);
  const requestToken = randomUUID();
  let base = '';
  const state = {
    requests: [] as string[],
    job: {} as Record<string, unknown>,
    jobTokenLifetime: 300,
    dateSkewMs: 0,
    publishKeys: true,
  };
  const mint = async (claims: Record<string, unknown>, options: { audience?: string; expiresIn?: number; issuedAt?: number } = {}): Promise<string> => {
    const iat = options.issuedAt ?? Math.floor(Date.now() / 1000);
    const { iss: _iss, aud: _aud, iat: _iat, nbf: _nbf, exp: _exp, ...rest } = claims;
    return new SignJWT({ ...rest, jti: randomUUID() })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid!, typ: 'JWT' })
      .setIssuer(base)
      .setAudience(options.audience ?? (typeof claims.aud === 'string' ? claims.aud : 'https://gprxy.io'))
      .setIssuedAt(iat)
      .setNotBefore(iat - 5)
      .setExpirationTime(iat + (options.expiresIn ?? 300))
      .sign(privateKey);
  };
  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json', date: new Date(Date.now() + state.dateSkewMs).toUTCString() });
    res.end(JSON.stringify(body));
  };
  const server = createServer({ cert: leaf.cert, key: leaf.key }, (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', base);
    if (url.pathname === '/.well-known/openid-configuration') {
      send(res, 200, { issuer: base, jwks_uri: `${base}/.well-known/jwks`, response_types_supported: ['id_token'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'] });
    } else if (url.pathname === '/.well-known/jwks') {
      send(res, 200, { keys: state.publishKeys ? [jwk] : [] });
    } else if (url.pathname === '/actions-token') {
      if (req.headers.authorization !== `bearer ${requestToken}`) {
        send(res, 401, { message: 'Bad credentials' });
        return;
      }
      const audience = url.searchParams.get('audience') ?? '';
      state.requests.push(audience);
      void mint(state.job, { audience, expiresIn: state.jobTokenLifetime }).then((value) => send(res, 200, { count: 1, value }));
    } else send(res, 404, { error: 'not found' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return Object.assign(state, {
    issuer: base,
    requestUrl: `${base}/actions-token?api-version=2.0`,
    requestToken,
    mint,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

/** The audience the CI suites mint job tokens for (their providers' `audience`). */
export const CI_AUDIENCE = 'https://gprxy.example/ci';

/** A rule admitting the example main-branch GitHub job (repository 74, refs/heads/main) as app_writer. */
export const MAIN_BRANCH_RULE = Object.freeze({ match: { repository_id: '74', ref: 'refs/heads/main' }, account: 'app_writer' });

/** The proxy-config provider of a CI issuer trusted through the stack's CA ('inline-ca'); `extra`: prefix, roles_claim, ... */
export function ciProvider(issuer: CiIssuer, kind: 'github_actions' | 'gitlab', rules: readonly unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { issuer: issuer.issuer, kind, audience: CI_AUDIENCE, ca: 'inline-ca', ...extra, rules };
}
