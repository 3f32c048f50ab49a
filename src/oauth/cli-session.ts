/**
 * The library entry points behind `gprxy login | logout | status | token`, working from the resolved
 * CLI settings. Commands stay thin: they parse flags, call one of these, and print.
 *
 * Token storage is the keychain unless the person chose --insecure-storage at login; that choice is the
 * token file itself (it only exists because they asked for it), so every later command finds it again.
 *
 * Across processes: refreshes, login's save and logout's delete of a profile run under the profile's
 * lock (profile-lock.ts), so no sequence of gprxy commands reuses a rotated refresh token or brings a
 * deleted login back; login and logout then bump the profile's generation marker (login-generation.ts)
 * that running tunnels watch.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { CliConfigError, requireIssuer, type CliSettings } from '../config/cli-config.js';
import { fetchWithCa } from '../net/ca-fetch.js';
import type { Identity } from './identity.js';
import { decodeClaims, identityFromClaims } from './identity.js';
import { OidcClient, type TokenResult } from './oidc-client.js';
import { ProviderUnreachableError } from './errors.js';
import { LoginGenerations, type TunnelRecord } from './login-generation.js';
import { FileProfileLock, type ProfileLock } from './profile-lock.js';
import { FileStore, KeychainStore, type StoredTokens, type TokenStore, type TokenStoreKind } from './token-store.js';
import { TokenSource, pickIdClaims, type AccessToken } from './token-source.js';
import { CiTokenSource, noCiJob } from './ci-token-source.js';

export interface SessionDeps {
  /** Default: fetchWithCa(settings.caPem). */
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
  /** Warnings for the person (stderr in the CLI). */
  readonly warn?: (message: string) => void;
  readonly keychain?: KeychainStore;
  /** Default: a lock file per profile in settings.stateDir. */
  readonly lock?: ProfileLock;
  /** Debug lines (stderr with --debug): e.g. every read of the token store. */
  readonly debug?: (message: string) => void;
}

function clientFactory(settings: CliSettings, deps: SessionDeps): () => Promise<OidcClient> {
  return () => {
    const { issuer, clientId } = requireIssuer(settings);
    const ci = settings.clientCredentials;
    return OidcClient.discover({
      issuer,
      clientId: ci?.clientId ?? clientId,
      clientSecret: ci?.clientSecret,
      audience: settings.audience,
      scopes: settings.scopes,
      fetch: deps.fetch ?? fetchWithCa(settings.caPem),
      now: deps.now,
      clientHint: ci ? 'check GPRXY_CLIENT_ID and GPRXY_CLIENT_SECRET' : `check it with gprxy configure${settings.profile === 'default' ? '' : ` --profile ${settings.profile}`} --client-id`,
    });
  };
}

/** One FileStore per token directory per process: its unencrypted-storage warning comes once per process. */
const fileStores = new Map<string, FileStore>();

/** Logs every read of a store (--debug), so a test or a curious person can count keychain reads. */
function traced(store: TokenStore, debug: ((m: string) => void) | undefined): TokenStore {
  if (!debug) return store;
  return {
    kind: store.kind,
    load: (profile) => {
      debug(`reading the tokens of profile "${profile}" from the ${store.kind === 'keychain' ? 'OS keychain' : `${store.kind} store`}`);
      return store.load(profile);
    },
    save: (profile, data) => store.save(profile, data),
    delete: (profile) => store.delete(profile),
  };
}

function stores(settings: CliSettings, deps: SessionDeps): { keychain: KeychainStore; file: FileStore } {
  let file = fileStores.get(settings.tokensDir);
  if (!file) {
    file = new FileStore({ dir: settings.tokensDir, warn: deps.warn ?? (() => {}) });
    fileStores.set(settings.tokensDir, file);
  }
  return { keychain: deps.keychain ?? new KeychainStore(), file };
}

export function profileLock(settings: CliSettings, deps: SessionDeps = {}): ProfileLock {
  return deps.lock ?? new FileProfileLock({ dir: path.join(settings.stateDir, 'locks') });
}

export function loginGenerations(settings: CliSettings): LoginGenerations {
  return new LoginGenerations(settings.stateDir);
}

/** The store a profile's login lives in: its --insecure-storage file when there is one, else the keychain. */
export function activeStore(settings: CliSettings, deps: SessionDeps = {}): TokenStore {
  const { keychain, file } = stores(settings, deps);
  return traced(existsSync(file.fileFor(settings.profile)) ? file : keychain, deps.debug);
}

/** What gprxy token and the tunnel draw access tokens from. */
export interface AccessTokenSource {
  getAccessToken(): Promise<AccessToken>;
}

/**
 * GPRXY_TOKEN, else client credentials (GPRXY_CLIENT_ID + GPRXY_CLIENT_SECRET), else a CI job token the
 * environment offers (GitHub Actions, GitLab CI), else the stored login. `ci`: the job token or an error
 * naming what the job lacks (--ci).
 */
export function createTokenSource(settings: CliSettings, deps: SessionDeps = {}, options: { readonly ci?: boolean } = {}): TokenSource | CiTokenSource {
  const logger = { warn: deps.warn ?? (() => {}) };
  const job = settings.ciJob;
  if (options.ci) {
    if (job.kind === 'none') throw noCiJob(job);
    return new CiTokenSource({ job, audience: settings.audience, fetch: deps.fetch ?? fetchWithCa(settings.caPem), ...(deps.now ? { now: deps.now } : {}) });
  }
  if (settings.staticToken) return new TokenSource({ profile: settings.profile, mode: { kind: 'static', token: settings.staticToken }, now: deps.now, logger });
  const client = clientFactory(settings, deps);
  if (settings.clientCredentials) return new TokenSource({ profile: settings.profile, mode: { kind: 'client_credentials' }, client, now: deps.now, logger });
  if (job.kind !== 'none') return new CiTokenSource({ job, audience: settings.audience, fetch: deps.fetch ?? fetchWithCa(settings.caPem), ...(deps.now ? { now: deps.now } : {}) });
  const expected = settings.issuer && settings.clientId ? { issuer: settings.issuer, clientId: settings.clientId } : undefined;
  return new TokenSource({ profile: settings.profile, mode: { kind: 'stored', store: activeStore(settings, deps) }, client, expected, now: deps.now, logger, lock: profileLock(settings, deps) });
}

export interface DeviceCodePrompt {
  readonly verificationUri: string;
  readonly verificationUriComplete: string | undefined;
  readonly userCode: string;
  readonly expiresIn: number;
}

/** How login talks to the person; the command implements it (plain lines, spinner on a TTY). */
export interface LoginUi {
  deviceCode(prompt: DeviceCodePrompt, browserOpened: boolean): void;
  authorizationUrl(url: string, browserOpened: boolean): void;
  waiting(active: boolean): void;
}

export interface LoginOptions {
  readonly method: 'device' | 'browser';
  readonly insecureStorage: boolean;
  readonly ui: LoginUi;
  /** Opens a URL in a browser; absent when the command decided not to (--no-browser, headless). */
  readonly openBrowser?: (url: string) => Promise<boolean>;
  /** Ctrl+C. */
  readonly signal?: AbortSignal;
  /** Overrides the provider's device polling interval. */
  readonly pollIntervalSeconds?: number;
  readonly browserTimeoutMs?: number;
}

export interface LoginResult {
  readonly profile: string;
  readonly issuer: string;
  readonly identity: Identity;
  readonly expiresAt: number;
  readonly storage: TokenStoreKind;
  /** Where the tokens went, for the message (a file path, or keychain service/account). */
  readonly storedIn: string;
}

export async function login(settings: CliSettings, opts: LoginOptions, deps: SessionDeps = {}): Promise<LoginResult> {
  if (settings.staticToken || settings.clientCredentials) {
    throw new CliConfigError('invalid_config', `${settings.staticToken ? 'GPRXY_TOKEN is' : 'GPRXY_CLIENT_ID and GPRXY_CLIENT_SECRET are'} set, so gprxy uses ${settings.staticToken ? 'that token' : 'the client credentials grant'} and needs no login: unset ${settings.staticToken ? 'it' : 'them'} to log in as a person`);
  }
  const { issuer, clientId } = requireIssuer(settings);
  const { keychain, file } = stores(settings, deps);
  const store: TokenStore = opts.insecureStorage ? file : keychain;
  // Fail before the person approves anything, not after.
  if (!opts.insecureStorage) await keychain.assertAvailable();

  const client = await clientFactory(settings, deps)();
  let result: TokenResult;
  if (opts.method === 'browser') {
    result = await client.authorizeWithBrowser({
      signal: opts.signal,
      timeoutMs: opts.browserTimeoutMs,
      open: async (url) => {
        const opened = opts.openBrowser ? await opts.openBrowser(url) : false;
        opts.ui.authorizationUrl(url, opened);
        opts.ui.waiting(true);
      },
    }).finally(() => opts.ui.waiting(false));
  } else {
    const device = await client.startDeviceAuthorization();
    const opened = opts.openBrowser ? await opts.openBrowser(device.verificationUriComplete ?? device.verificationUri) : false;
    opts.ui.deviceCode({ verificationUri: device.verificationUri, verificationUriComplete: device.verificationUriComplete, userCode: device.userCode, expiresIn: device.expiresIn }, opened);
    opts.ui.waiting(true);
    try {
      result = await client.pollDeviceAuthorization(device, { signal: opts.signal, intervalSeconds: opts.pollIntervalSeconds });
    } finally {
      opts.ui.waiting(false);
    }
  }

  const record: StoredTokens = {
    issuer,
    clientId,
    refreshToken: result.refreshToken,
    accessToken: result.accessToken,
    accessTokenIssuedAt: result.issuedAt,
    accessTokenExpiresAt: result.expiresAt,
    scope: result.scope,
    idClaims: pickIdClaims(result.idClaims),
  };
  await profileLock(settings, deps).withLock(settings.profile, async () => {
    await store.save(settings.profile, record);
    // One login per profile: drop a copy left in the other store by an earlier login.
    const other = store === file ? keychain : file;
    await other.delete(settings.profile).catch(() => false);
    // Running tunnels of this profile pick up the new login (maybe someone else's) at once.
    await loginGenerations(settings).bump(settings.profile, 'login');
  });
  if (!result.refreshToken) deps.warn?.('the provider returned no refresh token (is offline_access among the scopes?): you will need to log in again when the access token expires');

  return Object.freeze({
    profile: settings.profile,
    issuer,
    identity: identityFromClaims(result.claims, result.idClaims),
    expiresAt: result.expiresAt,
    storage: store.kind,
    storedIn: store === file ? file.fileFor(settings.profile) : `OS keychain (service gprxy, account ${settings.profile})`,
  });
}

export interface LogoutResult {
  /** revoked: the provider revoked the refresh token; unsupported: it offers no revocation; offline: unreachable; none: nothing to revoke. */
  readonly revocation: 'revoked' | 'unsupported' | 'offline' | 'none';
  readonly deleted: boolean;
  /** Tunnels of this profile that were running; `stopped`: they confirmed they refuse new connections. */
  readonly tunnels: readonly { readonly pid: number; readonly listeners: readonly string[]; readonly stopped: boolean }[];
}

export interface LogoutOptions {
  /** How long to wait for running tunnels to confirm. Default 3 s. */
  readonly tunnelAckMs?: number;
}

export async function logout(settings: CliSettings, deps: SessionDeps = {}, opts: LogoutOptions = {}): Promise<LogoutResult> {
  const { keychain, file } = stores(settings, deps);
  const generations = loginGenerations(settings);
  // Under the lock: a refresh in flight finishes first, so the refresh token revoked is the newest one
  // and nothing saves the login again after it is deleted.
  const { revocation, deleted, generation } = await profileLock(settings, deps).withLock(settings.profile, async () => {
    const store = activeStore(settings, deps);
    let data: StoredTokens | undefined;
    try {
      data = await store.load(settings.profile);
    } catch {
      data = undefined; // unreadable: still delete it below
    }
    let revocation: LogoutResult['revocation'] = 'none';
    if (data?.refreshToken && settings.issuer && settings.clientId) {
      try {
        const client = await clientFactory(settings, deps)();
        revocation = (await client.revoke(data.refreshToken, 'refresh_token')) ? 'revoked' : 'unsupported';
      } catch (err) {
        if (!(err instanceof ProviderUnreachableError)) throw err;
        revocation = 'offline';
        deps.warn?.(`could not reach the provider to revoke the refresh token (${err.message.split(':')[0]}); deleted the local copy only`);
      }
    }
    const deletedFile = await file.delete(settings.profile);
    const deletedKeychain = await keychain.delete(settings.profile).catch(() => false);
    const mark = await generations.bump(settings.profile, 'logout');
    return { revocation, deleted: deletedFile || deletedKeychain, generation: mark.generation };
  });
  const running: TunnelRecord[] = (await generations.tunnels(settings.profile)).filter((t) => t.pid !== process.pid);
  const acked = running.length ? await generations.waitForTunnels(settings.profile, generation, running.map((t) => t.pid), opts.tunnelAckMs ?? 3000) : [];
  return Object.freeze({
    revocation,
    deleted,
    tunnels: Object.freeze(running.map((t) => Object.freeze({ pid: t.pid, listeners: t.listeners, stopped: acked.includes(t.pid) }))),
  });
}

export interface StatusReport {
  readonly profile: string;
  readonly issuer: string | null;
  readonly clientId: string | null;
  readonly audience: string | null;
  readonly proxy: string | null;
  /** login: tokens from gprxy login; client_credentials / token: the CI variables. */
  readonly mode: 'login' | 'client_credentials' | 'token';
  readonly storage: TokenStoreKind | 'none';
  readonly loggedIn: boolean;
  readonly identity: { readonly sub: string | null; readonly email: string | null; readonly name: string | null; readonly orgId: string | null };
  readonly roles: readonly string[];
  readonly accessToken: { readonly expiresAt: string | null; readonly expiresInSeconds: number | null; readonly expired: boolean } | null;
  readonly refreshToken: boolean;
}

/** Who am I, without changing anything (no refresh; client credentials fetch one token). */
export async function status(settings: CliSettings, deps: SessionDeps = {}): Promise<StatusReport> {
  const now = (deps.now ?? Date.now)();
  let mode: StatusReport['mode'] = 'login';
  let storage: StatusReport['storage'] = 'none';
  let accessToken: string | undefined;
  let expiresAt: number | undefined;
  let idClaims: Record<string, unknown> = {};
  let refreshToken = false;

  if (settings.staticToken || settings.clientCredentials) {
    mode = settings.staticToken ? 'token' : 'client_credentials';
    const token = await createTokenSource(settings, deps).getAccessToken();
    accessToken = token.accessToken;
    expiresAt = Number.isFinite(token.expiresAt) ? token.expiresAt : undefined;
  } else {
    const store = activeStore(settings, deps);
    storage = store.kind;
    const data = await store.load(settings.profile);
    if (data) {
      accessToken = data.accessToken;
      expiresAt = data.accessTokenExpiresAt;
      idClaims = { ...(data.idClaims ?? {}) };
      refreshToken = Boolean(data.refreshToken);
    }
  }
  const identity = identityFromClaims(decodeClaims(accessToken), idClaims);
  const loggedIn = accessToken !== undefined;
  return Object.freeze({
    profile: settings.profile,
    issuer: settings.issuer ?? null,
    clientId: settings.clientCredentials?.clientId ?? settings.clientId ?? null,
    audience: settings.audience ?? null,
    proxy: settings.proxy?.address ?? null,
    mode,
    storage,
    loggedIn,
    identity: { sub: identity.sub ?? null, email: identity.email ?? null, name: identity.name ?? null, orgId: identity.orgId ?? null },
    roles: identity.roles,
    accessToken: loggedIn
      ? {
          expiresAt: expiresAt !== undefined ? new Date(expiresAt).toISOString() : null,
          expiresInSeconds: expiresAt !== undefined ? Math.round((expiresAt - now) / 1000) : null,
          expired: expiresAt !== undefined && expiresAt <= now,
        }
      : null,
    refreshToken,
  });
}
