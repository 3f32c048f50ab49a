import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as client from 'openid-client';
import { createRemoteJWKSet, customFetch, decodeProtectedHeader, jwtVerify, type FetchImplementation } from 'jose';
import { DEV_AUDIENCE, DEV_CLI_CLIENT_ID, DEV_DEVICE_GRANT, DEV_USERS, type DevProvider } from '../../src/demo/oidc-provider.js';
import { fetchWithCa } from '../../src/net/ca-fetch.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';

const SCOPE = 'openid profile email offline_access';

describe('dev OIDC provider', () => {
  let stack: TestProvider;
  let provider: DevProvider;
  let caFetch: typeof fetch;
  let cli: client.Configuration;
  const logs: string[] = [];

  const jwks = () => createRemoteJWKSet(new URL('jwks', provider.issuer), { [customFetch]: caFetch as FetchImplementation });
  const verify = (token: string) => jwtVerify(token, jwks(), { issuer: provider.issuer, audience: DEV_AUDIENCE, algorithms: ['RS256'] });

  async function deviceLogin(username: string, params: Record<string, string> = { audience: DEV_AUDIENCE }) {
    const da = await client.initiateDeviceAuthorization(cli, { scope: SCOPE, ...params });
    const approving = provider.approveDevice(da.user_code, username);
    const tokens = await client.pollDeviceAuthorizationGrant(cli, { ...da, interval: 0.05 });
    await approving;
    return tokens;
  }

  beforeAll(async () => {
    stack = await startTestProvider({ logger: (line) => logs.push(line) });
    provider = stack.provider;
    caFetch = fetchWithCa(provider.caCert);
    cli = await client.discovery(new URL(provider.issuer), DEV_CLI_CLIENT_ID, undefined, client.None(), {
      [client.customFetch]: caFetch as client.CustomFetch,
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('publishes discovery with the exact issuer (trailing slash) over HTTPS signed by the test CA', async () => {
    expect(provider.issuer).toMatch(/^https:\/\/localhost:\d+\/$/);
    expect(cli.serverMetadata().issuer).toBe(provider.issuer);
    expect(cli.serverMetadata().device_authorization_endpoint).toBeDefined();
    expect(cli.serverMetadata().revocation_endpoint).toBeDefined();
    // Without the CA the certificate is not trusted.
    await expect(fetch(new URL('.well-known/openid-configuration', provider.issuer))).rejects.toThrow();
  });

  it('issues a device-flow RS256 JWT that verifies against the JWKS with the Auth0-shaped claims', async () => {
    const tokens = await deviceLogin('alice');
    expect(tokens.refresh_token).toBeTruthy();
    const { payload, protectedHeader } = await verify(tokens.access_token);
    expect(protectedHeader.alg).toBe('RS256');
    const alice = DEV_USERS.find((u) => u.username === 'alice')!;
    expect(payload).toMatchObject({
      iss: provider.issuer,
      aud: DEV_AUDIENCE,
      sub: 'auth0|alice0001',
      email: 'alice@example.com',
      'https://gprxy.io/roles': ['pg_writer'],
      'https://gprxy.io/email': 'alice@example.com',
      'https://gprxy.io/user_id': alice.sub,
      'https://gprxy.io/org_id': 'tenant-a',
    });
    expect(payload.scope).toContain('openid');
    expect(payload.jti).toBeTruthy();
    expect(payload.exp! - payload.iat!).toBe(300);
    expect(provider.counters().tokenRequests[DEV_DEVICE_GRANT]).toBeGreaterThanOrEqual(1);
  });

  it('accepts `resource` as well as the Auth0 `audience`, and refuses a foreign audience', async () => {
    const tokens = await deviceLogin('bob', { resource: DEV_AUDIENCE });
    const { payload } = await verify(tokens.access_token);
    expect(payload['https://gprxy.io/roles']).toEqual(['pg_reader']);
    expect(payload['https://gprxy.io/org_id']).toBe('tenant-b');
    await expect(client.initiateDeviceAuthorization(cli, { scope: SCOPE, audience: 'https://elsewhere.example' })).rejects.toMatchObject({ error: 'invalid_target' });
  });

  it('reports a denied device code as access_denied', async () => {
    const da = await client.initiateDeviceAuthorization(cli, { scope: SCOPE, audience: DEV_AUDIENCE });
    expect(da.interval).toBe(1); // added by the dev provider; oidc-provider alone sends none
    const denying = provider.approveDevice(da.user_code, 'alice', { deny: true });
    await expect(client.pollDeviceAuthorizationGrant(cli, { ...da, interval: 0.05 })).rejects.toMatchObject({ error: 'access_denied' });
    await denying;
  });

  it('runs authorization code + PKCE through a loopback redirect it delivers to', async () => {
    const received: string[] = [];
    const loopback = http.createServer((req, res) => {
      received.push(req.url ?? '');
      res.end('ok');
    });
    await new Promise<void>((resolve) => loopback.listen(0, '127.0.0.1', resolve));
    try {
      const redirectUri = `http://127.0.0.1:${(loopback.address() as AddressInfo).port}/callback`;
      const verifier = client.randomPKCECodeVerifier();
      const state = client.randomState();
      const url = client.buildAuthorizationUrl(cli, {
        redirect_uri: redirectUri,
        scope: SCOPE,
        audience: DEV_AUDIENCE,
        code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
      });
      const back = await provider.authorizeInBrowser(url.href, 'sathwick');
      expect(back.startsWith(`${redirectUri}?`)).toBe(true);
      expect(received).toHaveLength(1);
      const tokens = await client.authorizationCodeGrant(cli, new URL(back), { pkceCodeVerifier: verifier, expectedState: state });
      expect(tokens.refresh_token).toBeTruthy();
      const { payload } = await verify(tokens.access_token);
      expect(payload['https://gprxy.io/roles']).toEqual(['pg_admin']);
      expect(payload.sub).toBe('auth0|sathwick0003');
    } finally {
      loopback.closeAllConnections();
      await new Promise((resolve) => loopback.close(resolve));
    }
  });

  it('requires PKCE from the public client', async () => {
    const url = client.buildAuthorizationUrl(cli, { redirect_uri: 'http://127.0.0.1:1/callback', scope: SCOPE, state: 'x' });
    // The provider refuses before any sign-in: the browser is sent back with the error.
    const back = new URL(await provider.authorizeInBrowser(url.href, 'alice', { deliver: false }));
    expect(back.searchParams.get('error')).toBe('invalid_request');
    expect(back.searchParams.get('error_description')).toMatch(/PKCE/);
  });

  it('issues client-credentials tokens with roles and no email', async () => {
    const ci = await client.discovery(new URL(provider.issuer), provider.ciClient.clientId, undefined, client.ClientSecretPost(provider.ciClient.clientSecret), {
      [client.customFetch]: caFetch as client.CustomFetch,
    });
    const tokens = await client.clientCredentialsGrant(ci, { audience: DEV_AUDIENCE });
    expect(tokens.refresh_token).toBeUndefined();
    const { payload } = await verify(tokens.access_token);
    expect(payload.sub).toBe('ci-bot');
    expect(payload['https://gprxy.io/roles']).toEqual(['pg_reader']);
    expect(payload.email).toBeUndefined();
    expect(provider.counters().tokenRequests.client_credentials).toBe(1);
    const wrong = await client.discovery(new URL(provider.issuer), provider.ciClient.clientId, undefined, client.ClientSecretPost('wrong'), {
      [client.customFetch]: caFetch as client.CustomFetch,
    });
    await expect(client.clientCredentialsGrant(wrong, { audience: DEV_AUDIENCE })).rejects.toMatchObject({ error: 'invalid_client' });
  });

  it('rotates refresh tokens and refuses a reused one', async () => {
    const first = await deviceLogin('alice');
    const second = await client.refreshTokenGrant(cli, first.refresh_token!, { audience: DEV_AUDIENCE });
    expect(second.refresh_token).toBeTruthy();
    expect(second.refresh_token).not.toBe(first.refresh_token);
    expect((await verify(second.access_token)).payload.sub).toBe('auth0|alice0001');
    await expect(client.refreshTokenGrant(cli, first.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('revokes refresh tokens (RFC 7009) so a later refresh is refused', async () => {
    const tokens = await deviceLogin('bob');
    await client.tokenRevocation(cli, tokens.refresh_token!, { token_type_hint: 'refresh_token' });
    await expect(client.refreshTokenGrant(cli, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('applies a new access-token lifetime to the next token', async () => {
    provider.setAccessTokenTtl(7);
    try {
      const tokens = await deviceLogin('alice');
      expect(tokens.expires_in).toBe(7);
      const { payload } = await verify(tokens.access_token);
      expect(payload.exp! - payload.iat!).toBe(7);
    } finally {
      provider.setAccessTokenTtl(300);
    }
  });

  it('rotates the signing key while keeping the old one published', async () => {
    const before = await deviceLogin('alice');
    const oldKid = decodeProtectedHeader(before.access_token).kid;
    await provider.rotateSigningKey();
    // Sessions, grants and refresh tokens survive the rotation.
    const after = await client.refreshTokenGrant(cli, before.refresh_token!);
    const newKid = decodeProtectedHeader(after.access_token).kid;
    expect(newKid).not.toBe(oldKid);
    const set = (await (await caFetch(new URL('jwks', provider.issuer))).json()) as { keys: { kid: string; d?: string }[] };
    expect(set.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([oldKid, newKid]));
    expect(set.keys.every((k) => k.d === undefined)).toBe(true);
    await verify(before.access_token);
    await verify(after.access_token);
  });

  it('can make the JWKS endpoint fail and stall, and restore it', async () => {
    const url = new URL('jwks', provider.issuer);
    const start = provider.counters().jwksRequests;
    provider.jwksControl.fail();
    expect((await caFetch(url)).status).toBe(500);
    provider.jwksControl.fail(503);
    expect((await caFetch(url)).status).toBe(503);
    provider.jwksControl.stall();
    // Given up on by the client once the provider has it (a fixed 200 ms abort could fire before the request
    // even arrived on a loaded machine, and then it was never counted).
    const abort = new AbortController();
    const stalled = caFetch(url, { signal: abort.signal });
    await expect.poll(() => provider.counters().jwksRequests).toBe(start + 3);
    abort.abort();
    await expect(stalled).rejects.toThrow();
    const waiting = caFetch(url);
    await expect.poll(() => provider.counters().jwksRequests).toBe(start + 4);
    provider.jwksControl.restore();
    expect((await waiting).status).toBe(200);
    expect((await caFetch(url)).status).toBe(200);
    expect(provider.counters().jwksRequests).toBe(start + 5);
  });

  it('stayed quiet: nothing it logged contains a token', () => {
    expect(logs.join('\n')).not.toMatch(/eyJ[\w-]+\.eyJ/);
  });
});
