/**
 * A real HTTP server on 127.0.0.1 that plays an OIDC provider's key endpoints: discovery and a JWKS of
 * jose-generated keys. Tests rotate keys, make it fail (HTTP 500), stall, or hold responses behind a gate,
 * and wait on its request counters (events) instead of sleeping.
 */
import { KeyObject, sign as nodeSign } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { expect } from 'vitest';
import type { ProviderConfig } from '../../src/config/proxy-config.js';
import { TokenError, type TokenErrorCode } from '../../src/token/errors.js';

export interface SigningKey {
  readonly kid: string;
  readonly alg: string;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly publicJwk: JWK;
}

export type IdpMode = 'ok' | 'error' | 'stall';
export type RequestKind = 'discovery' | 'jwks' | 'other';

let kidCounter = 0;

export async function makeKey(alg = 'RS256', kid = `key-${++kidCounter}`): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicKey, publicJwk };
}

export const AUDIENCE = 'https://gprxy.io';
export const ROLES_CLAIM = 'https://gprxy.io/roles';

export class FakeIdp extends EventEmitter {
  mode: IdpMode = 'ok';
  /** While set, JWKS responses wait for it (to pile up concurrent callers on one request). */
  gate: Promise<void> | undefined;
  /** The keys whose public halves the JWKS publishes. */
  keys: SigningKey[] = [];
  /** Extra raw JWKS entries (e.g. an encryption key). */
  extraJwks: unknown[] = [];
  readonly counts: Record<RequestKind, number> = { discovery: 0, jwks: 0, other: 0 };
  readonly paths: string[] = [];
  issuer = '';
  jwksUri = '';
  private readonly stalled = new Set<ServerResponse>();

  private constructor(private readonly server: Server, private readonly issuerPath: string) {
    super();
    this.setMaxListeners(100);
  }

  /** `issuerPath` '/' gives an Auth0-style issuer with a trailing slash. */
  static async start(opts: { issuerPath?: string; keys?: SigningKey[]; server?: Server } = {}): Promise<FakeIdp> {
    const server = opts.server ?? createServer();
    const idp = new FakeIdp(server, opts.issuerPath ?? '/');
    idp.keys = opts.keys ?? [await makeKey()];
    server.on('request', (req: IncomingMessage, res: ServerResponse) => void idp.handle(req, res));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const scheme = opts.server && 'setSecureContext' in opts.server ? 'https' : 'http';
    const base = `${scheme}://127.0.0.1:${port}`;
    idp.issuer = `${base}${idp.issuerPath}`;
    idp.jwksUri = `${base}/keys/jwks.json`;
    return idp;
  }

  get key(): SigningKey {
    return this.keys[0]!;
  }

  /** Replaces the published keys with one new key and returns it. */
  async rotate(alg = 'RS256'): Promise<SigningKey> {
    const key = await makeKey(alg);
    this.keys = [key];
    return key;
  }

  /** Resolves once `kind` requests have reached `count` (already or later). */
  async waitFor(kind: RequestKind, count: number): Promise<void> {
    while (this.counts[kind] < count) await once(this, 'request');
  }

  providerConfig(over: Partial<ProviderConfig> = {}): ProviderConfig {
    return {
      issuer: this.issuer,
      audience: [AUDIENCE],
      algorithms: ['RS256'],
      rolesClaim: ROLES_CLAIM,
      usernameClaims: ['https://gprxy.io/email', 'email', 'sub'],
      requiredScopes: [],
      ...over,
    };
  }

  /**
   * Signs a token at clock `nowMs`. Claims default to a valid reader token for alice; an override of
   * `undefined` removes the claim. `kid: null` omits the kid header.
   */
  async sign(
    nowMs: number,
    claims: Record<string, unknown> = {},
    opts: { key?: SigningKey; kid?: string | null; alg?: string; header?: Record<string, unknown> } = {},
  ): Promise<string> {
    const key = opts.key ?? this.key;
    const iat = Math.floor(nowMs / 1000);
    const payload: Record<string, unknown> = {
      iss: this.issuer,
      aud: AUDIENCE,
      sub: 'auth0|alice',
      email: 'alice@example.com',
      email_verified: true,
      [ROLES_CLAIM]: ['pg_reader'],
      iat,
      exp: iat + 3600,
      ...claims,
    };
    for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
    const kid = opts.kid === null ? {} : { kid: opts.kid ?? key.kid };
    return new SignJWT(payload as JWTPayload)
      .setProtectedHeader({ alg: opts.alg ?? key.alg, typ: 'at+jwt', ...kid, ...opts.header })
      .sign(key.privateKey);
  }

  /** Signs an arbitrary header and payload with RS256 (bypassing jose's own checks, e.g. on crit). */
  signRaw(header: Record<string, unknown>, payload: Record<string, unknown>, key: SigningKey = this.key): string {
    const input = `${b64url(header)}.${b64url(payload)}`;
    const signature = nodeSign('sha256', Buffer.from(input), KeyObject.from(key.privateKey as unknown as Parameters<typeof KeyObject.from>[0]));
    return `${input}.${signature.toString('base64url')}`;
  }

  async close(): Promise<void> {
    this.gate = undefined;
    for (const res of this.stalled) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    this.paths.push(path);
    const discoveryPath = `${this.issuerPath.endsWith('/') ? this.issuerPath : `${this.issuerPath}/`}.well-known/openid-configuration`;
    const kind: RequestKind = path === discoveryPath ? 'discovery' : path === '/keys/jwks.json' ? 'jwks' : 'other';
    this.counts[kind]++;
    this.emit('request', kind);
    if (kind === 'jwks' && this.gate) await this.gate;
    if (this.mode === 'stall') {
      this.stalled.add(res);
      return;
    }
    if (this.mode === 'error' || kind === 'other') {
      res.writeHead(kind === 'other' ? 404 : 500, { 'content-type': 'text/plain' }).end('no');
      return;
    }
    const body =
      kind === 'discovery'
        ? { issuer: this.issuer, jwks_uri: this.jwksUri, response_types_supported: ['code'] }
        : { keys: [...this.keys.map((k) => k.publicJwk), ...this.extraJwks] };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }
}

/** Awaits a refusal and checks its code, its SQLSTATE, and that the message does not leak the token. */
export async function refused(promise: Promise<unknown>, code: TokenErrorCode, token?: string): Promise<TokenError> {
  const error = await promise.then(
    () => {
      throw new Error(`expected ${code}, but it was accepted`);
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TokenError);
  const tokenError = error as TokenError;
  expect(tokenError.code, tokenError.message).toBe(code);
  expect(tokenError.sqlstate).toBe(code === 'token_malformed' || code === 'token_too_large' ? '28P01' : '28000');
  if (token && token.length > 8) {
    expect(tokenError.message).not.toContain(token);
    const signature = token.split('.')[2];
    if (signature && signature.length > 8) expect(tokenError.message).not.toContain(signature);
  }
  return tokenError;
}

export function b64url(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}
