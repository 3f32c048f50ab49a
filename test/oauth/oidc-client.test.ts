import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitCodeForError } from '../../src/cli/exit-codes.js';
import { DEV_AUDIENCE, DEV_CLI_CLIENT_ID, startDevProvider, type DevProvider } from '../../src/demo/oidc-provider.js';
import { fetchWithCa } from '../../src/net/ca-fetch.js';
import { OidcClient, type OidcClientOptions } from '../../src/oauth/oidc-client.js';
import { startLoopbackReceiver } from '../../src/oauth/loopback.js';
import { startTestProvider, type TestProvider } from '../support/oidc.js';

const SCOPES = 'openid profile email offline_access';
let stack: TestProvider;
let provider: DevProvider;

const discover = (opts: Partial<OidcClientOptions> = {}, p: DevProvider = provider) =>
  OidcClient.discover({ issuer: p.issuer, clientId: DEV_CLI_CLIENT_ID, audience: DEV_AUDIENCE, scopes: SCOPES, fetch: fetchWithCa(p.caCert), ...opts });

beforeAll(async () => {
  stack = await startTestProvider({ deviceIntervalSeconds: 0.1 });
  provider = stack.provider;
});
afterAll(async () => {
  await stack?.close();
});

describe('OidcClient flows', () => {
  it('discovers the provider and runs the device flow at the provider\'s interval', async () => {
    const client = await discover();
    expect(client.issuer).toBe(provider.issuer);
    expect(client.supportsDeviceFlow).toBe(true);
    expect(client.supportsRevocation).toBe(true);
    const device = await client.startDeviceAuthorization();
    expect(device.interval).toBe(0.1);
    expect(device.verificationUriComplete).toContain(device.userCode);
    const approving = provider.approveDevice(device.userCode, 'alice');
    const tokens = await client.pollDeviceAuthorization(device);
    await approving;
    expect(tokens.claims).toMatchObject({ sub: 'auth0|alice0001', aud: DEV_AUDIENCE });
    expect(tokens.idClaims).toMatchObject({ email: 'alice@example.com' });
    expect(tokens.expiresAt - tokens.issuedAt).toBe(300_000);
  });

  it('slows down by 5 s when the provider answers slow_down', async () => {
    const caFetch = fetchWithCa(provider.caCert);
    const polls: number[] = [];
    // The dev provider never sends slow_down; this fetch answers the first poll with it.
    const slowing = (async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
      if (String(input).endsWith('/token') && String(init?.body).includes('device_code')) {
        polls.push(Date.now());
        if (polls.length === 1) return new Response(JSON.stringify({ error: 'slow_down' }), { status: 400, headers: { 'content-type': 'application/json' } });
      }
      return caFetch(input, init);
    }) as typeof fetch;
    const client = await discover({ fetch: slowing });
    const device = await client.startDeviceAuthorization();
    await provider.approveDevice(device.userCode, 'bob');
    const tokens = await client.pollDeviceAuthorization(device);
    expect(tokens.claims.sub).toBe('auth0|bob00002');
    expect(polls).toHaveLength(2);
    expect(polls[1]! - polls[0]!).toBeGreaterThanOrEqual(5_000);
  });

  it('runs authorization code + PKCE on a loopback redirect', async () => {
    const client = await discover();
    const tokens = await client.authorizeWithBrowser({ open: (url) => void provider.authorizeInBrowser(url, 'sathwick') });
    expect(tokens.claims['https://gprxy.io/roles']).toEqual(['pg_admin']);
    expect(tokens.refreshToken).toBeTruthy();
  });

  it('refreshes (rotating the refresh token) and revokes', async () => {
    const client = await discover();
    const first = await client.authorizeWithBrowser({ open: (url) => void provider.authorizeInBrowser(url, 'bob') });
    const second = await client.refresh(first.refreshToken!);
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect(await client.revoke(second.refreshToken!)).toBe(true);
    await expect(client.refresh(second.refreshToken!)).rejects.toMatchObject({ code: 'login_required' });
  });
});

describe('OidcClient errors', () => {
  it('an unreachable provider', async () => {
    await expect(discover({ issuer: 'https://127.0.0.1:1/' })).rejects.toMatchObject({ code: 'provider_unreachable', message: expect.stringContaining('ECONNREFUSED') });
  });

  it('an untrusted certificate names --ca', async () => {
    await expect(discover({ fetch: undefined })).rejects.toMatchObject({ code: 'provider_unreachable', message: expect.stringContaining('--ca') });
  });

  it('an issuer without discovery', async () => {
    await expect(discover({ issuer: new URL('nothing-here/', provider.issuer).href })).rejects.toMatchObject({ code: 'discovery_failed' });
  });

  it('an unknown client id', async () => {
    const client = await discover({ clientId: 'nobody' });
    await expect(client.startDeviceAuthorization()).rejects.toMatchObject({ code: 'unknown_client' });
  });

  it('an audience the provider does not serve', async () => {
    const client = await discover({ audience: 'https://elsewhere.example' });
    await expect(client.startDeviceAuthorization()).rejects.toMatchObject({ code: 'invalid_audience', message: expect.stringContaining('gprxy configure --audience') });
  });

  it('denied consent', async () => {
    const client = await discover();
    const device = await client.startDeviceAuthorization();
    const denying = provider.approveDevice(device.userCode, 'alice', { deny: true });
    await expect(client.pollDeviceAuthorization(device)).rejects.toMatchObject({ code: 'access_denied' });
    await denying;
  });

  it('a device code that expires unapproved', async () => {
    const short = await startDevProvider({ ca: stack.ca, deviceCodeTtlSeconds: 1, deviceIntervalSeconds: 0.2 });
    try {
      const client = await discover({}, short);
      const device = await client.startDeviceAuthorization();
      await expect(client.pollDeviceAuthorization(device)).rejects.toMatchObject({ code: 'device_code_expired' });
    } finally {
      await short.close();
    }
  });

  it('Ctrl+C while polling', async () => {
    const client = await discover();
    const device = await client.startDeviceAuthorization();
    const abort = new AbortController();
    const polling = client.pollDeviceAuthorization(device, { signal: abort.signal });
    abort.abort();
    const err = await polling.catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'login_aborted' });
    expect(exitCodeForError(err)).toBe(130);
  });

  it('Ctrl+C while waiting for the browser closes the loopback server', async () => {
    const client = await discover();
    const abort = new AbortController();
    let redirectUri = '';
    const waiting = client.authorizeWithBrowser({ signal: abort.signal, open: (url) => { redirectUri = new URL(url).searchParams.get('redirect_uri')!; abort.abort(); } });
    await expect(waiting).rejects.toMatchObject({ code: 'login_aborted' });
    await expect(fetch(redirectUri)).rejects.toThrow();
  });

  it('a clock far from the provider\'s', async () => {
    const client = await discover({ clientId: provider.ciClient.clientId, clientSecret: provider.ciClient.clientSecret, now: () => Date.now() + 3_600_000 });
    await expect(client.clientCredentials()).rejects.toMatchObject({ code: 'clock_skew', message: expect.stringMatching(/about 60 minutes .*fix the system clock/) });
  });

  it('never puts a token in an error message', async () => {
    const client = await discover();
    const first = await client.authorizeWithBrowser({ open: (url) => void provider.authorizeInBrowser(url, 'alice') });
    await client.revoke(first.refreshToken!);
    const err = (await client.refresh(first.refreshToken!).catch((e: unknown) => e)) as Error;
    expect(err.message).not.toContain(first.refreshToken!);
  });
});

describe('loopback receiver', () => {
  it('answers only the redirect carrying our state', async () => {
    const receiver = await startLoopbackReceiver({ expectedState: 'abc' });
    try {
      expect((await fetch(receiver.redirectUri.replace('/callback', '/other'))).status).toBe(404);
      expect((await fetch(`${receiver.redirectUri}?code=x&state=forged`)).status).toBe(400);
      const ok = await fetch(`${receiver.redirectUri}?code=x&state=abc`);
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain('Signed in to gprxy');
      expect((await receiver.callback).searchParams.get('code')).toBe('x');
      expect((await fetch(`${receiver.redirectUri}?code=y&state=abc`)).status).toBe(400); // one shot
    } finally {
      await receiver.close();
    }
  });
});
