/**
 * The CLI's profiles (DESIGN.md 2.5) and the environment overrides (2.1), resolved into one frozen object.
 * Profiles hold no secrets: issuer, client id, audience, scopes, proxy address and CA path. They live in a `conf` JSON file under $XDG_CONFIG_HOME/gprxy
 * (or `configDir`). This module and src/commands are the only readers of process.env for the CLI.
 */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Conf from 'conf';
import { z } from 'zod';
import { GprxyError } from '../shared/errors.js';

export const DEFAULT_PROFILE = 'default';
export const DEFAULT_SCOPES = 'openid profile email offline_access';

export type CliConfigErrorCode = 'not_configured' | 'invalid_config' | 'ca_unreadable';

export class CliConfigError extends GprxyError<CliConfigErrorCode> {
  readonly code: CliConfigErrorCode;
  constructor(code: CliConfigErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const httpsUrl = z
  .string()
  .url()
  .refine((u) => new URL(u).protocol === 'https:', 'must be an https:// URL');

const proxyAddress = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/, 'must be HOST:PORT');

const storedProfileSchema = z.object({
  issuer: httpsUrl,
  clientId: z.string().min(1),
  audience: z.string().min(1).optional(),
  scopes: z.string().min(1).default(DEFAULT_SCOPES),
  proxy: proxyAddress.optional(),
  /** One PEM file, or several (several private CAs: the issuer's and the proxy's, say). */
  ca: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
});

export type StoredProfile = z.infer<typeof storedProfileSchema>;

export interface ProxyAddress {
  readonly host: string;
  readonly port: number;
  /** As written: host:port. */
  readonly address: string;
}

export function parseProxyAddress(value: string): ProxyAddress {
  const parsed = proxyAddress.safeParse(value);
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(value);
  const port = Number(m?.[3]);
  if (!parsed.success || !m || port < 1 || port > 65535) {
    throw new CliConfigError('invalid_config', `proxy address "${value}" is not HOST:PORT: pass e.g. --proxy proxy.example.com:6432`);
  }
  return Object.freeze({ host: (m[1] ?? m[2]) as string, port, address: value });
}

function checkProfileName(name: string): string {
  if (!PROFILE_NAME.test(name)) {
    throw new CliConfigError('invalid_config', `profile name "${name}" may only use letters, digits, ".", "_" and "-": pick another --profile`);
  }
  return name;
}

interface ConfShape {
  profiles?: Record<string, unknown>;
}

export interface ProfileStoreOptions {
  /** Directory of config.json; defaults to $XDG_CONFIG_HOME/gprxy (~/.config/gprxy). */
  readonly configDir?: string;
}

/** conf's own default location (env-paths), computed here so that reading never creates it. */
export function defaultConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  const home = os.homedir();
  if (process.platform === 'darwin') return path.join(home, 'Library', 'Preferences', 'gprxy');
  if (process.platform === 'win32') return path.join(env.APPDATA || path.join(home, 'AppData', 'Roaming'), 'gprxy', 'Config');
  return path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'gprxy');
}

/**
 * Reads and writes profiles. Writes validate; reads of a hand-edited, broken profile fail with its name.
 * Reading never creates anything on disk (CI runs with GPRXY_TOKEN or client credentials leave no trace).
 */
export class ProfileStore {
  /** The config file. */
  readonly path: string;
  readonly dir: string;
  #confInstance: Conf<ConfShape> | undefined;

  constructor(opts: ProfileStoreOptions = {}) {
    this.dir = opts.configDir ?? defaultConfigDir();
    this.path = path.join(this.dir, 'config.json');
  }

  #conf(): Conf<ConfShape> {
    this.#confInstance ??= new Conf<ConfShape>({
      projectName: 'gprxy',
      cwd: this.dir,
      configName: 'config',
      accessPropertiesByDotNotation: false,
      configFileMode: 0o600,
    });
    return this.#confInstance;
  }

  #profiles(): Record<string, unknown> {
    if (!existsSync(this.path)) return {};
    return { ...(this.#conf().get('profiles') ?? {}) };
  }

  names(): string[] {
    return Object.keys(this.#profiles());
  }

  get(name: string): StoredProfile | undefined {
    const raw = this.#profiles()[checkProfileName(name)];
    if (raw === undefined) return undefined;
    const parsed = storedProfileSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new CliConfigError('invalid_config', `profile "${name}" in ${this.path} is invalid (${issue?.path.join('.') ?? '?'}: ${issue?.message ?? '?'}): run gprxy configure --profile ${name}`);
    }
    return parsed.data;
  }

  set(name: string, profile: StoredProfile): StoredProfile {
    const parsed = storedProfileSchema.safeParse(profile);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new CliConfigError('invalid_config', `invalid ${issue?.path.join('.') ?? 'profile'}: ${issue?.message ?? 'invalid value'}`);
    }
    const profiles = { ...this.#profiles(), [checkProfileName(name)]: parsed.data };
    this.#conf().set('profiles', profiles);
    return parsed.data;
  }

  delete(name: string): boolean {
    const profiles = this.#profiles();
    if (!(checkProfileName(name) in profiles)) return false;
    delete profiles[name];
    this.#conf().set('profiles', profiles);
    return true;
  }
}

export interface ConfigureInput {
  readonly profile?: string;
  readonly issuer?: string;
  readonly clientId?: string;
  readonly audience?: string;
  readonly scopes?: string;
  readonly proxy?: string;
  /** Path(s) to PEM files; stored absolute. Several are trusted together (for the issuer and the proxy). */
  readonly ca?: string | readonly string[];
}

/**
 * Writes a profile: given fields replace the stored ones, the rest are kept, so
 * `gprxy configure --proxy host:port` alone updates an existing profile.
 */
export function configureProfile(input: ConfigureInput, opts: ProfileStoreOptions & { cwd?: string } = {}): { profile: string; stored: StoredProfile; path: string } {
  const name = checkProfileName(input.profile ?? DEFAULT_PROFILE);
  const store = new ProfileStore(opts);
  let existing: StoredProfile | undefined;
  try {
    existing = store.get(name);
  } catch {
    existing = undefined; // a broken profile is being rewritten
  }
  const issuer = input.issuer ?? existing?.issuer;
  const clientId = input.clientId ?? existing?.clientId;
  if (!issuer || !clientId) {
    throw new CliConfigError('not_configured', `a new profile needs --issuer and --client-id: run gprxy configure${name === DEFAULT_PROFILE ? '' : ` --profile ${name}`} --issuer https://YOUR-TENANT/ --client-id ID`);
  }
  if (input.proxy !== undefined) parseProxyAddress(input.proxy);
  let ca = existing?.ca;
  if (input.ca !== undefined) {
    const files = (typeof input.ca === 'string' ? [input.ca] : [...input.ca]).map((f) => path.resolve(opts.cwd ?? process.cwd(), f));
    readCaFiles(files);
    ca = files.length === 1 ? files[0] : files;
  }
  const stored = store.set(name, {
    issuer,
    clientId,
    audience: input.audience ?? existing?.audience,
    scopes: input.scopes ?? existing?.scopes ?? DEFAULT_SCOPES,
    proxy: input.proxy ?? existing?.proxy,
    ca,
  });
  return { profile: name, stored, path: store.path };
}

/**
 * Several PEM files as one bundle. Each is ended with a newline before the next: a file without a trailing
 * newline would otherwise glue its END line to the next BEGIN line and hide that certificate.
 */
function readCaFiles(files: readonly string[]): string {
  return files.map((f) => readCa(f).trimEnd() + '\n').join('');
}

/** GPRXY_CA holds one path, or several separated like PATH (':' on Unix). */
function caFilesFromEnv(value: string): string[] {
  return value
    .split(path.delimiter)
    .map((f) => f.trim())
    .filter(Boolean)
    .map((f) => path.resolve(f));
}

function readCa(file: string): string {
  try {
    const pem = readFileSync(file, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it');
    return pem;
  } catch (err) {
    throw new CliConfigError('ca_unreadable', `cannot read CA file ${file} (${(err as Error).message}): pass a PEM file with --ca or GPRXY_CA`);
  }
}

/** The GitLab CI variable holding the job's ID token when GPRXY_CI_TOKEN_VAR does not name another. */
export const DEFAULT_CI_TOKEN_VAR = 'GPRXY_ID_TOKEN';

/**
 * A CI job token this environment offers (issue 19): GitHub Actions' request endpoint (the job has
 * `permissions: id-token: write`), or a GitLab `id_tokens` variable. `none` carries what is missing when
 * the environment looks like a CI job that could have one.
 */
export type CiJobEnvironment =
  | { readonly kind: 'github_actions'; readonly requestUrl: string; readonly requestToken: string }
  | { readonly kind: 'gitlab'; readonly variable: string; readonly token: string }
  | { readonly kind: 'none'; readonly missing?: string };

function detectCiJob(env: NodeJS.ProcessEnv): CiJobEnvironment {
  const url = nonEmpty(env.ACTIONS_ID_TOKEN_REQUEST_URL);
  const requestToken = nonEmpty(env.ACTIONS_ID_TOKEN_REQUEST_TOKEN);
  if (url && requestToken) return Object.freeze({ kind: 'github_actions', requestUrl: url, requestToken });
  const variable = nonEmpty(env.GPRXY_CI_TOKEN_VAR) ?? DEFAULT_CI_TOKEN_VAR;
  const token = nonEmpty(env[variable]);
  if (token) return Object.freeze({ kind: 'gitlab', variable, token });
  if (env.GITHUB_ACTIONS === 'true') {
    return Object.freeze({
      kind: 'none',
      missing: 'this GitHub Actions job has no ID token: ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set; give the job (or workflow) `permissions: id-token: write`',
    });
  }
  if (env.GITLAB_CI === 'true') {
    return Object.freeze({
      kind: 'none',
      missing: `this GitLab CI job has no ID token in $${variable}: add \`id_tokens: { ${variable}: { aud: <the proxy's audience> } }\` to the job${env.GPRXY_CI_TOKEN_VAR ? '' : ' (or set GPRXY_CI_TOKEN_VAR to the name of your id_tokens variable)'}`,
    });
  }
  return Object.freeze({ kind: 'none' });
}

export interface CliSettings {
  readonly profile: string;
  /** Whether the profile exists in the config file (env variables alone can also make a usable setup). */
  readonly profileExists: boolean;
  readonly issuer: string | undefined;
  readonly clientId: string | undefined;
  readonly audience: string | undefined;
  readonly scopes: string;
  readonly proxy: ProxyAddress | undefined;
  /** The CA file(s), for messages: several are joined with ", ". */
  readonly caPath: string | undefined;
  readonly caPaths: readonly string[];
  /** The CA PEM bundle, read from caPaths. */
  readonly caPem: string | undefined;
  /** GPRXY_CLIENT_ID + GPRXY_CLIENT_SECRET: client credentials, nothing stored. */
  readonly clientCredentials: { readonly clientId: string; readonly clientSecret: string } | undefined;
  /** GPRXY_TOKEN: used as is. */
  readonly staticToken: string | undefined;
  /** A CI job token the environment offers (GitHub Actions, GitLab CI): used when nothing above is set, or with --ci. */
  readonly ciJob: CiJobEnvironment;
  /** Where the proxy address and the CA came from, so messages name the place to fix them. */
  readonly sources: { readonly proxy: SettingSource; readonly ca: SettingSource };
  readonly configPath: string;
  /** Where --insecure-storage keeps token files (mode 0700). */
  readonly tokensDir: string;
  /** Non-secret CLI state (mode 0700): per-profile locks, login generation markers, running tunnels. */
  readonly stateDir: string;
}

export interface ResolveOptions extends ProfileStoreOptions {
  /** --profile; GPRXY_PROFILE otherwise; then "default". */
  readonly profile?: string;
  readonly env?: NodeJS.ProcessEnv;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/** The environment variable, the stored profile, or nowhere (not set). */
export type SettingSource = 'env' | 'profile' | 'none';

/** `gprxy configure [--profile X]`, for messages. */
export function configureCommand(profile: string): string {
  return `gprxy configure${profile === DEFAULT_PROFILE ? '' : ` --profile ${profile}`}`;
}

/** The next step for a wrong proxy address, naming where it was set. */
export function proxyFixHint(s: Pick<CliSettings, 'profile' | 'sources'>): string {
  return s.sources.proxy === 'env'
    ? 'check GPRXY_PROXY (it overrides the profile)'
    : `check the proxy address of profile "${s.profile}" (${configureCommand(s.profile)} --proxy HOST:PORT)`;
}

/** The next step for a proxy certificate that does not verify, naming where the CA was set. */
export function caFixHint(s: Pick<CliSettings, 'profile' | 'sources'>): string {
  if (s.sources.ca === 'env') return 'check GPRXY_CA (it overrides the profile)';
  if (s.sources.ca === 'profile') return `check the CA of profile "${s.profile}" (${configureCommand(s.profile)} --ca FILE)`;
  return `no CA is set, so the system store decides: set GPRXY_CA or run ${configureCommand(s.profile)} --ca FILE`;
}

/** Profile + environment → the settings every CLI command works from. */
export function resolveCliSettings(opts: ResolveOptions = {}): Readonly<CliSettings> {
  const env = opts.env ?? process.env;
  const name = checkProfileName(opts.profile ?? nonEmpty(env.GPRXY_PROFILE) ?? DEFAULT_PROFILE);
  const store = new ProfileStore(opts);
  const stored = store.get(name);

  const issuer = nonEmpty(env.GPRXY_ISSUER) ?? stored?.issuer;
  if (issuer !== undefined && !httpsUrl.safeParse(issuer).success) {
    throw new CliConfigError('invalid_config', `issuer "${issuer}" must be an https:// URL: fix GPRXY_ISSUER or run gprxy configure --issuer`);
  }
  const ciId = nonEmpty(env.GPRXY_CLIENT_ID);
  const ciSecret = nonEmpty(env.GPRXY_CLIENT_SECRET);
  if (ciSecret && !ciId) {
    throw new CliConfigError('invalid_config', 'GPRXY_CLIENT_SECRET is set without GPRXY_CLIENT_ID: set both for the client credentials grant');
  }
  const proxyText = nonEmpty(env.GPRXY_PROXY) ?? stored?.proxy;
  const envCa = nonEmpty(env.GPRXY_CA);
  const caPaths = envCa ? caFilesFromEnv(envCa) : stored?.ca === undefined ? [] : typeof stored.ca === 'string' ? [stored.ca] : stored.ca;

  return Object.freeze({
    profile: name,
    profileExists: stored !== undefined,
    issuer,
    clientId: ciId ?? stored?.clientId,
    audience: nonEmpty(env.GPRXY_AUDIENCE) ?? stored?.audience,
    scopes: stored?.scopes ?? DEFAULT_SCOPES,
    proxy: proxyText ? parseProxyAddress(proxyText) : undefined,
    caPath: caPaths.length ? caPaths.join(', ') : undefined,
    caPaths: Object.freeze([...caPaths]),
    caPem: caPaths.length ? readCaFiles(caPaths) : undefined,
    clientCredentials: ciId && ciSecret ? Object.freeze({ clientId: ciId, clientSecret: ciSecret }) : undefined,
    staticToken: nonEmpty(env.GPRXY_TOKEN),
    ciJob: detectCiJob(env),
    sources: Object.freeze({
      proxy: nonEmpty(env.GPRXY_PROXY) ? 'env' : stored?.proxy ? 'profile' : 'none',
      ca: envCa ? 'env' : caPaths.length ? 'profile' : 'none',
    } as const),
    configPath: store.path,
    tokensDir: path.join(store.dir, 'tokens'),
    stateDir: path.join(store.dir, 'state'),
  });
}

/** The error for commands that need an issuer and client id the settings lack. */
export function requireIssuer(settings: CliSettings): { issuer: string; clientId: string } {
  if (!settings.issuer || !settings.clientId) {
    const flag = settings.profile === DEFAULT_PROFILE ? '' : ` --profile ${settings.profile}`;
    throw new CliConfigError('not_configured', `profile "${settings.profile}" is not configured: run gprxy configure${flag} --issuer https://YOUR-TENANT/ --client-id ID --audience AUD`);
  }
  return { issuer: settings.issuer, clientId: settings.clientId };
}
