/**
 * A `password` function for node-postgres: pg.Pool and pg.Client call a function-valued `password` for every
 * new connection, so each connection to `gprxy serve` gets a fresh access token (refreshed only when it
 * runs low). Tokens come from a gprxy profile (`gprxy login`), or the client credentials grant (services, CI),
 * or GPRXY_TOKEN, exactly as `gprxy token` gets them. node-postgres has no OAUTHBEARER callback yet, so the
 * token travels as the password: use it with databases that keep `client_auth: password` (the default).
 *
 *   import pg from 'pg';
 *   import { gprxyPassword } from 'gprxy';
 *   const pool = new pg.Pool({ host: 'proxy.example.com', port: 6432, database: 'mydb', user: 'alice@example.com',
 *                              ssl: true, password: gprxyPassword({ profile: 'default' }) });
 */
import { resolveCliSettings } from '../config/cli-config.js';
import { createTokenSource } from '../oauth/cli-session.js';

export interface GprxyPasswordOptions {
  /** Profile written by `gprxy configure` / `gprxy login` (default: GPRXY_PROFILE or "default"). */
  readonly profile?: string;
  /** Client credentials instead of a stored login (nothing is stored). */
  readonly clientCredentials?: { readonly clientId: string; readonly clientSecret: string };
  /** Override the profile's issuer, audience or CA file (like GPRXY_ISSUER, GPRXY_AUDIENCE, GPRXY_CA). */
  readonly issuer?: string;
  readonly audience?: string;
  readonly ca?: string;
  /** The environment to read GPRXY_* from (default: process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** Returns `() => Promise<string>`: the current access token, refreshed when needed (one refresh at a time). */
export function gprxyPassword(options: GprxyPasswordOptions = {}): () => Promise<string> {
  let source: ReturnType<typeof createTokenSource> | undefined;
  return async () => {
    if (!source) {
      const env: Record<string, string | undefined> = { ...(options.env ?? process.env) };
      if (options.clientCredentials) {
        env.GPRXY_CLIENT_ID = options.clientCredentials.clientId;
        env.GPRXY_CLIENT_SECRET = options.clientCredentials.clientSecret;
      }
      if (options.issuer) env.GPRXY_ISSUER = options.issuer;
      if (options.audience) env.GPRXY_AUDIENCE = options.audience;
      if (options.ca) env.GPRXY_CA = options.ca;
      source = createTokenSource(resolveCliSettings({ ...(options.profile ? { profile: options.profile } : {}), env }));
    }
    return (await source.getAccessToken()).accessToken;
  };
}
