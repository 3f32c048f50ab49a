/**
 * Real access tokens from the dev OIDC provider for the proxy and tunnel tests: a device-flow login
 * approved by the scripted person (as `alice`, `bob`, `sathwick`), or client credentials for the CI bot.
 */
import * as oidc from 'openid-client';
import { DEV_AUDIENCE, DEV_CLI_CLIENT_ID, type DevProvider } from '../../src/demo/oidc-provider.js';
import { fetchWithCa } from '../../src/net/ca-fetch.js';

export interface TokenSet {
  readonly accessToken: string;
  readonly refreshToken?: string;
  readonly expiresIn?: number;
}

async function discover(provider: DevProvider, clientId: string, secret?: string): Promise<oidc.Configuration> {
  const config = await oidc.discovery(
    new URL(provider.issuer),
    clientId,
    secret ? { client_secret: secret } : undefined,
    secret ? oidc.ClientSecretPost(secret) : oidc.None(),
    { execute: [], [oidc.customFetch]: fetchWithCa(provider.caCert) as never },
  );
  return config;
}

/** A device-flow login for a dev user, approved through the provider's HTML pages. */
export async function loginAs(provider: DevProvider, username: string): Promise<TokenSet> {
  const config = await discover(provider, DEV_CLI_CLIENT_ID);
  const device = await oidc.initiateDeviceAuthorization(config, { scope: 'openid profile email offline_access', resource: DEV_AUDIENCE });
  await provider.approveDevice(device.user_code, username);
  const tokens = await oidc.pollDeviceAuthorizationGrant(config, { ...device, interval: 0.01 });
  return { accessToken: tokens.access_token, ...(tokens.refresh_token ? { refreshToken: tokens.refresh_token } : {}), ...(tokens.expires_in ? { expiresIn: tokens.expires_in } : {}) };
}

/** The CI bot's token (client credentials). */
export async function ciToken(provider: DevProvider): Promise<TokenSet> {
  const config = await discover(provider, provider.ciClient.clientId, provider.ciClient.clientSecret);
  const tokens = await oidc.clientCredentialsGrant(config, { resource: DEV_AUDIENCE });
  return { accessToken: tokens.access_token };
}

