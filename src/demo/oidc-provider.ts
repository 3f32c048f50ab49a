/**
 * A real OpenID provider on this machine (oidc-provider over HTTPS with a throwaway CA), shaped like the
 * Auth0 tenant gprxy targets: RS256 JWT access tokens for the audience https://gprxy.io carrying the
 * namespaced claims `https://gprxy.io/roles|email|user_id|org_id`. Every test suite and `gprxy demo` use it.
 *
 * Besides the protocol it offers what tests need to play the other parties: a scripted person who
 * approves device codes and authorization requests through the HTML forms, a settable access-token
 * lifetime, signing-key rotation, and a JWKS endpoint that can be made to fail or hang.
 */
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { KoaContextWithOIDC, Provider as OidcProvider, IssuedToken } from 'oidc-provider';
import type { CertificateAuthority } from './certificates.js';
import { fetchWithCa } from '../net/ca-fetch.js';
import { MemoryStore, memoryAdapter } from './oidc-memory-adapter.js';
import { consentPage, deviceConfirmPage, deviceInputPage, deviceSuccessPage, errorPage, loginPage } from './oidc-pages.js';
import { ScriptedBrowser, ScriptedBrowserError, errorText, findForm, pageName, type BrowserResponse } from './scripted-browser.js';

export interface DevUser {
  readonly username: string;
  readonly password: string;
  /** Auth0-shaped subject, e.g. 'auth0|alice0001'. */
  readonly sub: string;
  readonly email: string;
  readonly name: string;
  readonly roles: readonly string[];
  readonly orgId?: string;
  /** Whether the provider has verified the e-mail (default true); tokens carry it as email_verified. */
  readonly emailVerified?: boolean;
}

export const DEV_USERS: readonly DevUser[] = Object.freeze([
  Object.freeze({ username: 'alice', password: 'alice-pw', sub: 'auth0|alice0001', email: 'alice@example.com', name: 'Alice Writer', roles: Object.freeze(['pg_writer']), orgId: 'tenant-a' }),
  Object.freeze({ username: 'bob', password: 'bob-pw', sub: 'auth0|bob00002', email: 'bob@example.com', name: 'Bob Reader', roles: Object.freeze(['pg_reader']), orgId: 'tenant-b' }),
  Object.freeze({ username: 'sathwick', password: 'sathwick-pw', sub: 'auth0|sathwick0003', email: 'sathwick@example.com', name: 'Sathwick Admin', roles: Object.freeze(['pg_admin']), orgId: 'tenant-a' }),
]);

export const DEV_AUDIENCE = 'https://gprxy.io';
export const DEV_CLI_CLIENT_ID = 'gprxy-cli';
/** The confidential client for the client credentials grant; its tokens' `sub` is this id. */
export const DEV_CI_CLIENT_ID = 'ci-bot';
export const DEV_CI_ROLES: readonly string[] = Object.freeze(['pg_reader']);
/** Namespace of the custom claims, as an Auth0 Action would set them (`api.accessToken.setCustomClaim`). */
export const DEV_CLAIM_NAMESPACE = `${DEV_AUDIENCE}/`;
export const DEV_DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

export interface DevProviderOptions {
  readonly ca: CertificateAuthority;
  /** Address to listen on; default 127.0.0.1. The issuer names it `localhost` when it is a loopback address. */
  readonly host?: string;
  /** 0 (default) picks a free port. */
  readonly port?: number;
  readonly accessTokenTtlSeconds?: number;
  readonly refreshTokenTtlSeconds?: number;
  /**
   * The `interval` sent with device authorizations (oidc-provider itself sends none, which makes clients
   * wait the RFC 8628 default of 5 s between polls). Default 1; tests may use fractions such as 0.2.
   */
  readonly deviceIntervalSeconds?: number;
  /** How long a device code may wait for approval; default 600 s. */
  readonly deviceCodeTtlSeconds?: number;
  readonly users?: readonly DevUser[];
  /** Receives the provider's own errors; silent without it. Never receives tokens or passwords. */
  readonly logger?: (line: string) => void;
}

export interface DevProvider {
  /** e.g. https://localhost:PORT/ (with the trailing slash, like Auth0; equals discovery's `issuer`). */
  readonly issuer: string;
  /** PEM of the CA that signed the provider's certificate. */
  readonly caCert: string;
  readonly ciClient: { readonly clientId: string; readonly clientSecret: string };
  setAccessTokenTtl(seconds: number): void;
  /** A new RS256 key signs from now on; the old ones stay in the JWKS. */
  rotateSigningKey(): Promise<void>;
  /**
   * Holds every refresh_token answer for `ms` after the grant is processed (0: off), so a test can make
   * another process act while a refresh is in flight: a slow network a real provider has on its bad days.
   */
  delayRefreshResponses(ms: number): void;
  /** fail(): JWKS answers `status` (500); stall(): JWKS never answers until restore(). */
  readonly jwksControl: { fail(status?: number): void; stall(): void; restore(): void };
  /**
   * The whole provider down (for fault tests): begin() stops listening and drops every connection, so clients
   * get connection refused; end() listens again on the same port with the same keys, clients and grants.
   */
  readonly outage: { begin(): Promise<void>; end(): Promise<void> };
  /** Plays the person: opens /device, types the code, confirms, signs in as `username` and allows (or denies). */
  approveDevice(userCode: string, username: string, opts?: { deny?: boolean }): Promise<void>;
  /**
   * Plays the browser for an authorization request: signs in as `username`, allows, and returns the
   * redirect URL the provider sent back (the loopback callback). Unless `deliver: false`, also GETs it
   * so the waiting loopback server receives it.
   */
  authorizeInBrowser(authorizationUrl: string, username: string, opts?: { deny?: boolean; deliver?: boolean }): Promise<string>;
  /**
   * refreshTokenReuse: refresh requests with an already-used (rotated) refresh token; oidc-provider
   * answers each with invalid_grant and revokes the whole grant (reuse detection), as Auth0 does.
   */
  counters(): { tokenRequests: Record<string, number>; jwksRequests: number; refreshTokenReuse: number };
  close(): Promise<void>;
}

interface SigningKey {
  readonly jwk: JWK;
}

async function newSigningKey(): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { jwk: { ...jwk, kid, alg: 'RS256', use: 'sig' } };
}

function first(value: unknown): string | undefined {
  if (typeof value === 'string' && value) return value;
  if (Array.isArray(value) && typeof value[0] === 'string' && value[0]) return value[0];
  return undefined;
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 16 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(html) });
  res.end(html);
}

/** oidc-provider warns on import when Node is older than 22 and notices defaults; route those to our logger. */
async function importQuietly(logger: (line: string) => void): Promise<typeof import('oidc-provider')> {
  const { warn, info } = console;
  console.warn = (...args: unknown[]) => logger(args.map(String).join(' '));
  console.info = (...args: unknown[]) => logger(args.map(String).join(' '));
  try {
    return await import('oidc-provider');
  } finally {
    console.warn = warn;
    console.info = info;
  }
}

export async function startDevProvider(opts: DevProviderOptions): Promise<DevProvider> {
  const logger = opts.logger ?? (() => {});
  const users = opts.users ?? DEV_USERS;
  const host = opts.host ?? '127.0.0.1';
  let accessTokenTtl = opts.accessTokenTtlSeconds ?? 300;
  const refreshTokenTtl = opts.refreshTokenTtlSeconds ?? 24 * 3600;
  const deviceInterval = opts.deviceIntervalSeconds ?? 1;
  const deviceCodeTtl = opts.deviceCodeTtlSeconds ?? 600;
  const ciClient = Object.freeze({ clientId: DEV_CI_CLIENT_ID, clientSecret: randomBytes(24).toString('base64url') });
  const cookieKeys = [randomBytes(32).toString('base64url')];
  const store = new MemoryStore();
  const Adapter = memoryAdapter(store);
  const { Provider, errors } = await importQuietly(logger);

  const loopback = host === '127.0.0.1' || host === 'localhost' || host === '::1' || host === '0.0.0.0' || host === '::';
  const issuerHost = loopback ? 'localhost' : host.includes(':') ? `[${host}]` : host;
  const leaf = await opts.ca.issue([...new Set(['localhost', '127.0.0.1', '::1', ...(loopback ? [] : [host])])]);

  const signingKeys: SigningKey[] = [await newSigningKey()];
  const tokenRequests: Record<string, number> = {};
  let jwksRequests = 0;
  let refreshTokenReuse = 0;
  let refreshDelayMs = 0;
  let jwksMode: { kind: 'ok' } | { kind: 'fail'; status: number } | { kind: 'stall' } = { kind: 'ok' };
  const stalled = new Set<{ req: IncomingMessage; res: ServerResponse }>();

  const userBySub = (sub: string | undefined): DevUser | undefined => users.find((u) => u.sub === sub);

  // --- configuration ------------------------------------------------------------------------------
  const resourceServer = () => ({
    scope: 'openid profile email offline_access',
    audience: DEV_AUDIENCE,
    accessTokenTTL: accessTokenTtl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  });

  const configuration = (jwks: JWK[]): Record<string, unknown> => ({
    adapter: Adapter,
    jwks: { keys: jwks },
    cookies: { keys: cookieKeys },
    clients: [
      {
        client_id: DEV_CLI_CLIENT_ID,
        client_name: 'gprxy CLI',
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token', DEV_DEVICE_GRANT],
        response_types: ['code'],
        // Native client: any port on the loopback redirect is accepted (RFC 8252 section 7.3).
        redirect_uris: ['http://127.0.0.1/callback'],
      },
      {
        client_id: ciClient.clientId,
        client_secret: ciClient.clientSecret,
        client_name: 'CI bot',
        token_endpoint_auth_method: 'client_secret_post',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'nickname'] },
    scopes: ['openid', 'offline_access', 'profile', 'email'],
    responseTypes: ['code'],
    pkce: { required: () => true },
    rotateRefreshToken: true,
    clientBasedCORS: () => false,
    findAccount: async (_ctx: unknown, sub: string) => {
      const user = userBySub(sub);
      if (!user) return undefined;
      return {
        accountId: user.sub,
        claims: async () => ({ sub: user.sub, email: user.email, email_verified: user.emailVerified ?? true, name: user.name, nickname: user.username }),
      };
    },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    ttl: {
      AccessToken: () => accessTokenTtl,
      ClientCredentials: () => accessTokenTtl,
      RefreshToken: () => refreshTokenTtl,
      AuthorizationCode: 60,
      DeviceCode: deviceCodeTtl,
      IdToken: 3600,
      Interaction: 3600,
      Session: 24 * 3600,
      Grant: 24 * 3600,
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      revocation: {
        enabled: true,
        // A client may revoke only its own tokens.
        allowedPolicy: async (_ctx: unknown, client: { clientId: string }, token: { clientId?: string }) => token.clientId === client.clientId,
      },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: async (ctx: KoaContextWithOIDC, form: string, _out: unknown, err?: { name?: string; userCode?: string }) => {
          let message: string | undefined;
          if (err?.userCode || err?.name === 'NoCodeError') message = 'That code is not valid. Check it and try again.';
          else if (err?.name === 'AbortedError') message = 'The sign-in was cancelled.';
          else if (err) message = 'The sign-in could not be completed. Start again from your terminal.';
          ctx.type = 'html';
          ctx.body = deviceInputPage(form, message);
        },
        userCodeConfirmSource: async (ctx: KoaContextWithOIDC, form: string, client: { clientName?: string; clientId: string }, _info: unknown, userCode: string) => {
          ctx.type = 'html';
          ctx.body = deviceConfirmPage(form, client.clientName ?? client.clientId, userCode);
        },
        successSource: async (ctx: KoaContextWithOIDC) => {
          const client = ctx.oidc.client;
          ctx.type = 'html';
          ctx.body = deviceSuccessPage(client?.clientName ?? client?.clientId ?? 'The application');
        },
      },
      resourceIndicators: {
        enabled: true,
        // Auth0 clients name the API with `audience`; RFC 8707 clients with `resource`. Both work here:
        // `resource` wins when present, else `audience`, else the one API this provider protects.
        defaultResource: async (ctx: KoaContextWithOIDC, _client: unknown, oneOf?: string | string[]) =>
          first(ctx.oidc.body?.audience) ?? first(ctx.query.audience) ?? first(oneOf) ?? DEV_AUDIENCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: unknown, indicator: string) => {
          if (indicator !== DEV_AUDIENCE) throw new errors.InvalidTarget(`unknown audience; this provider issues tokens for ${DEV_AUDIENCE}`);
          return resourceServer();
        },
      },
    },
    formats: {
      customizers: {
        // The claims an Auth0 Action sets on the access token (the README's Auth0 steps).
        jwt: async (_ctx: unknown, token: IssuedToken, jwt: { payload: Record<string, unknown> }) => {
          const user = userBySub(token.accountId);
          const clientId = token.client?.clientId ?? token.clientId;
          const p = jwt.payload;
          p.azp = clientId;
          if (user) {
            p[`${DEV_CLAIM_NAMESPACE}roles`] = [...user.roles];
            p[`${DEV_CLAIM_NAMESPACE}email`] = user.email;
            // As the README's Auth0 Action does: the proxy uses an e-mail only when it is verified.
            p[`${DEV_CLAIM_NAMESPACE}email_verified`] = user.emailVerified ?? true;
            p.email_verified = user.emailVerified ?? true;
            p[`${DEV_CLAIM_NAMESPACE}user_id`] = user.sub;
            if (user.orgId) p[`${DEV_CLAIM_NAMESPACE}org_id`] = user.orgId;
            p.email = user.email;
          } else if (clientId === ciClient.clientId) {
            p[`${DEV_CLAIM_NAMESPACE}roles`] = [...DEV_CI_ROLES];
            p[`${DEV_CLAIM_NAMESPACE}user_id`] = clientId;
          }
        },
      },
    },
    renderError: async (ctx: KoaContextWithOIDC, out: { error?: string; error_description?: string }) => {
      ctx.type = 'html';
      ctx.body = errorPage(out.error ?? 'error', out.error_description);
    },
  });

  // --- provider instance (rebuilt on key rotation; state lives in `store`) --------------------------
  const buildProvider = (): { provider: OidcProvider; handle: (req: IncomingMessage, res: ServerResponse) => void } => {
    const provider = new Provider(issuer, configuration(signingKeys.map((k) => k.jwk)));
    provider.use(async (ctx, next) => {
      // oidc-provider drops offline_access at /auth unless prompt=consent; Auth0 does not. Our consent
      // page is shown anyway, so asking for it keeps refresh tokens flowing for the PKCE login.
      if (ctx.method === 'GET' && ctx.path === '/auth') {
        const q = new URLSearchParams(ctx.querystring);
        if (!q.has('prompt') && (q.get('scope') ?? '').split(' ').includes('offline_access')) {
          q.set('prompt', 'consent');
          ctx.querystring = q.toString();
        }
      }
      await next();
      if (ctx.method === 'POST' && ctx.path === '/device/auth' && ctx.status === 200 && typeof ctx.body === 'object' && ctx.body !== null) {
        (ctx.body as Record<string, unknown>).interval ??= deviceInterval;
      }
      if (ctx.method === 'POST' && ctx.path === '/token') {
        const grantType = first(ctx.oidc?.params?.grant_type) ?? first(ctx.oidc?.body?.grant_type) ?? 'unknown';
        tokenRequests[grantType] = (tokenRequests[grantType] ?? 0) + 1;
        if (grantType === 'refresh_token' && refreshDelayMs > 0) await new Promise((r) => setTimeout(r, refreshDelayMs));
      }
    });
    provider.on('grant.error', (_ctx: unknown, err: unknown) => {
      if ((err as { error_detail?: string })?.error_detail === 'refresh token already used') refreshTokenReuse++;
    });
    const quietErrors = new Set(['authorization_pending', 'slow_down']);
    for (const event of ['server_error', 'grant.error', 'authorization.error', 'revocation.error', 'discovery.error', 'userinfo.error', 'jwks.error', 'end_session.error', 'code_verification.error', 'device_authorization.error']) {
      provider.on(event, (_ctx: unknown, err: unknown) => {
        const e = err as { error?: string; error_description?: string; message?: string };
        if (e?.error && quietErrors.has(e.error)) return;
        logger(`oidc ${event}: ${e?.error ?? ''} ${e?.error_description ?? e?.message ?? String(err)}`.trim());
      });
    }
    // Koa prints unhandled errors to stderr unless something listens.
    provider.on('error', (err: unknown) => logger(`oidc error: ${(err as Error)?.message ?? String(err)}`));
    return { provider, handle: provider.callback() };
  };

  // --- interactions: our login and consent pages ------------------------------------------------
  const handleInteraction = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    const m = /^\/interaction\/([\w-]+)(?:\/(login|confirm|abort))?$/.exec(path);
    if (!m) return sendHtml(res, 404, errorPage('not_found'));
    const provider = current.provider;
    let details;
    try {
      details = await provider.interactionDetails(req, res);
    } catch {
      return sendHtml(res, 400, errorPage('session_not_found', 'this sign-in has expired or was started in another browser'));
    }
    if (details.uid !== m[1]) return sendHtml(res, 400, errorPage('invalid_request', 'interaction mismatch'));
    const clientId = details.params.client_id ?? '';
    const client = await provider.Client.find(clientId);
    const clientName = client?.clientName ?? clientId;
    const action = m[2];
    const base = `/interaction/${details.uid}`;

    if (action === undefined && req.method === 'GET') {
      if (details.prompt.name === 'login') {
        return sendHtml(res, 200, loginPage({ action: `${base}/login`, clientName, hintUsers: users }));
      }
      const user = userBySub(details.session?.accountId);
      const scopes = String(details.params.scope ?? '').split(' ').filter(Boolean);
      return sendHtml(res, 200, consentPage({ allowAction: `${base}/confirm`, denyAction: `${base}/abort`, clientName, username: user?.username ?? '?', scopes, audience: DEV_AUDIENCE }));
    }
    if (req.method !== 'POST') return sendHtml(res, 405, errorPage('method_not_allowed'));

    if (action === 'login') {
      const form = await readForm(req);
      const username = form.get('username') ?? '';
      const user = users.find((u) => u.username === username && u.password === form.get('password'));
      if (!user || details.prompt.name !== 'login') {
        return sendHtml(res, 401, loginPage({ action: `${base}/login`, clientName, hintUsers: users, username, error: 'Wrong username or password.' }));
      }
      return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
    }
    if (action === 'confirm') {
      await readForm(req);
      const accountId = details.session?.accountId;
      if (details.prompt.name !== 'consent' || !accountId) return sendHtml(res, 400, errorPage('invalid_request', 'nothing to consent to'));
      const grant = (details.grantId ? await provider.Grant.find(details.grantId) : undefined) ?? new provider.Grant({ accountId, clientId });
      const missing = details.prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
      const grantId = await grant.save();
      return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    }
    // abort: the person pressed Deny.
    await readForm(req);
    return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'End-User denied the request' }, { mergeWithLastSubmission: false });
  };

  const handleJwks = (req: IncomingMessage, res: ServerResponse): boolean => {
    jwksRequests++;
    if (jwksMode.kind === 'fail') {
      const body = JSON.stringify({ error: 'server_error', error_description: 'JWKS made to fail by the test' });
      res.writeHead(jwksMode.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return true;
    }
    if (jwksMode.kind === 'stall') {
      const entry = { req, res };
      stalled.add(entry);
      res.on('close', () => stalled.delete(entry));
      return true;
    }
    return false;
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/jwks' && handleJwks(req, res)) return;
    if (path.startsWith('/interaction/')) {
      handleInteraction(req, res, path).catch((err: unknown) => {
        logger(`oidc interaction error: ${(err as Error)?.message ?? String(err)}`);
        if (!res.headersSent) sendHtml(res, 500, errorPage('server_error'));
        else res.destroy();
      });
      return;
    }
    current.handle(req, res);
  };

  // --- server -------------------------------------------------------------------------------------
  const server = https.createServer({ cert: leaf.cert, key: leaf.key }, onRequest);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `https://${issuerHost}:${port}/`;
  let current = buildProvider();

  const caFetch = fetchWithCa(opts.ca.cert);
  const passwordOf = (username: string): string => {
    const user = users.find((u) => u.username === username);
    if (!user) throw new ScriptedBrowserError(`no dev user named "${username}"`);
    return user.password;
  };

  /** Walks the pages until the flow finishes: device success, a redirect off the provider, or a dead end. */
  const drive = async (browser: ScriptedBrowser, start: BrowserResponse, username: string, deny: boolean, userCode?: string): Promise<BrowserResponse> => {
    let res = start;
    for (let step = 0; step < 15; step++) {
      if (res.leftOriginTo) return res;
      const name = pageName(res.body);
      switch (name) {
        case 'device-input':
          if (step > 0 && errorText(res.body)) return res; // shown again after Deny / a bad code
          res = await browser.submit(res, findForm(res, 'op.deviceInputForm'), { user_code: userCode ?? '' });
          break;
        case 'device-confirm':
          res = await browser.submit(res, findForm(res, 'op.deviceConfirmForm'));
          break;
        case 'login':
          if (errorText(res.body)) throw new ScriptedBrowserError(`sign-in as ${username} failed: ${errorText(res.body)}`);
          res = await browser.submit(res, findForm(res, 'login'), { username, password: passwordOf(username) });
          break;
        case 'consent':
          res = await browser.submit(res, findForm(res, deny ? 'deny' : 'allow'));
          break;
        case 'form-post':
          res = await browser.submit(res, findForm(res));
          break;
        case 'device-success':
          return res;
        case 'error':
          throw new ScriptedBrowserError(`provider showed an error: ${errorText(res.body) ?? `HTTP ${res.status}`}`);
        default:
          throw new ScriptedBrowserError(`unexpected page at ${res.url} (HTTP ${res.status})`);
      }
    }
    throw new ScriptedBrowserError('the sign-in did not finish within 15 pages');
  };

  const provider: DevProvider = {
    issuer,
    caCert: opts.ca.cert,
    ciClient,
    delayRefreshResponses(ms: number) {
      refreshDelayMs = ms;
    },
    setAccessTokenTtl(seconds: number) {
      accessTokenTtl = seconds;
    },
    async rotateSigningKey() {
      signingKeys.unshift(await newSigningKey()); // the first key is the one oidc-provider signs with
      current = buildProvider();
    },
    jwksControl: {
      fail(status = 500) {
        jwksMode = { kind: 'fail', status };
      },
      stall() {
        jwksMode = { kind: 'stall' };
      },
      restore() {
        jwksMode = { kind: 'ok' };
        // Stalled requests whose clients are still waiting now get the real answer.
        for (const { req, res } of stalled) current.handle(req, res);
        stalled.clear();
      },
    },
    outage: {
      async begin() {
        if (!server.listening) return;
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      },
      async end() {
        if (server.listening) return;
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(port, host, () => {
            server.off('error', reject);
            resolve();
          });
        });
      },
    },
    async approveDevice(userCode, username, opts2 = {}) {
      const browser = new ScriptedBrowser(issuer, caFetch);
      const res = await drive(browser, await browser.request('/device'), username, opts2.deny ?? false, userCode);
      const name = pageName(res.body);
      if (opts2.deny) {
        if (name === 'device-input' || name === 'error') return;
        throw new ScriptedBrowserError(`denying the device code ended on ${name ?? res.url}`);
      }
      if (name !== 'device-success') throw new ScriptedBrowserError(`device approval failed: ${errorText(res.body) ?? name ?? res.url}`);
    },
    async authorizeInBrowser(authorizationUrl, username, opts2 = {}) {
      const browser = new ScriptedBrowser(issuer, caFetch);
      const res = await drive(browser, await browser.request(authorizationUrl), username, opts2.deny ?? false);
      if (!res.leftOriginTo) throw new ScriptedBrowserError(`authorization did not redirect back: ${errorText(res.body) ?? res.url}`);
      if (opts2.deliver !== false) {
        const delivered = await fetch(res.leftOriginTo, { redirect: 'manual' });
        await delivered.arrayBuffer();
      }
      return res.leftOriginTo;
    },
    counters() {
      return { tokenRequests: { ...tokenRequests }, jwksRequests, refreshTokenReuse };
    },
    async close() {
      for (const { res } of stalled) res.destroy();
      stalled.clear();
      await new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      store.clear();
    },
  };
  return provider;
}
