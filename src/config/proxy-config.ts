/**
 * The central proxy's configuration (DESIGN.md 2.2): YAML or JSON, `${VAR}` expanded, validated once here
 * into a frozen, typed object. Unknown keys are errors that name the key's path. Relative file paths
 * (TLS certificates, CA files, the JWKS cache directory) resolve against the config file's directory.
 */
import { DEFAULT_USERNAME_CLAIMS } from './username-claims.js';
import { buildCiSettings, ciRuleSchema, type CiProviderSettings } from './ci-provider-config.js';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { closestKey, knownKeys, parseWithPositions, type LocateKey } from './config-hints.js';
import { parseDuration } from './duration.js';
import { expandEnv } from './expand-env.js';
import { GprxyError } from '../shared/errors.js';
import { deepFreeze } from '../shared/freeze.js';

export class ConfigError extends GprxyError<'invalid_config'> {
  readonly code = 'invalid_config' as const;
}

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const hostPort = z.string().transform((v, ctx) => {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(v.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not HOST:PORT (e.g. 0.0.0.0:6432)` });
    return z.NEVER;
  }
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
});

const stringList = z.union([z.string(), z.array(z.string()).min(1)]).transform((v) => (Array.isArray(v) ? v : [v]));

/**
 * The claim settings a provider gets when its config does not say (also for ProviderConfig objects built
 * by hand, where these fields are optional). E-mails are trusted only when `email_verified` is true.
 */
export const PROVIDER_CLAIM_DEFAULTS = Object.freeze({
  userClaim: 'sub',
  emailClaims: Object.freeze(['email', 'https://gprxy.io/email']),
  tenantClaims: Object.freeze(['org_id', 'https://gprxy.io/org_id', 'tenant_id', 'https://gprxy.io/tenant_id', 'tid']),
  emailVerifiedClaim: 'email_verified',
  emailsVerified: false,
});

/**
 * Sessions one identity may hold at once (0: no limit). Half of a default pool (pool.size 20): one person
 * can never take a whole default-sized pool from the others mapped to the same account, and 10 leaves room
 * for several psql windows, an IDE and a local app. Service identities that run pools raise it.
 */
export const DEFAULT_MAX_SESSIONS_PER_IDENTITY = 10;
/**
 * How long a new backend connection may take (TCP, TLS, authentication). Short enough that a backend host
 * that accepts and never answers (a dead host behind a load balancer) costs a login seconds, not half a minute;
 * long enough for TLS plus SCRAM on a busy server.
 */
export const DEFAULT_BACKEND_CONNECT_TIMEOUT_MS = 5_000;

const providerSchema = z.strictObject({
  // As gprxy configure demands: keys fetched over plain HTTP could be swapped by anyone on the path.
  issuer: z
    .string()
    .url()
    .refine((u) => new URL(u).protocol === 'https:', 'must be an https:// URL (as gprxy configure requires): keys fetched over http:// could be swapped on the way'),
  audience: stringList,
  jwks_uri: z.string().url().optional(),
  algorithms: z
    .array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']))
    .min(1)
    .default(['RS256']),
  roles_claim: z.string().min(1).default('https://gprxy.io/roles'),
  // Default: DEFAULT_USERNAME_CLAIMS, or `sub` for a CI provider (a job token names no person).
  username_claims: z.array(z.string().min(1)).min(1).optional(),
  // Providers of kind CI (issue 19, src/config/ci-provider-config.ts): job tokens admitted by rules over claims.
  kind: z.enum(['oauth', 'github_actions', 'gitlab']).default('oauth'),
  rules: z.array(ciRuleSchema).optional(),
  required_scopes: z.array(z.string().min(1)).default([]),
  ca: z.string().optional(),
  // Identity namespacing and claims (src/token/identity.ts; README "Several identity providers").
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/, 'a prefix is 1-32 letters, digits, "_", "." or "-" (no ":"; gprxy adds "prefix:" to user and tenant ids)')
    .optional(),
  user_claim: z.string().min(1).default(PROVIDER_CLAIM_DEFAULTS.userClaim),
  email_claims: z.array(z.string().min(1)).default([...PROVIDER_CLAIM_DEFAULTS.emailClaims]),
  tenant_claims: z.array(z.string().min(1)).default([...PROVIDER_CLAIM_DEFAULTS.tenantClaims]),
  email_verified_claim: z.string().min(1).default(PROVIDER_CLAIM_DEFAULTS.emailVerifiedClaim),
  emails_verified: z.boolean().default(PROVIDER_CLAIM_DEFAULTS.emailsVerified),
});

const poolSchema = z.strictObject({
  // transaction: a backend per transaction (README "Transaction pooling"); session: one per client session.
  mode: z.enum(['session', 'transaction']).default('session'),
  size: z.number().int().min(1).max(10_000).default(20),
  idle_timeout: duration.default(600_000),
  max_lifetime: duration.default(3_600_000),
  // Transaction pooling: named statements kept per backend under proxy names, LRU of this many (PgBouncer's
  // max_prepared_statements, same default); 0 refuses named statements.
  prepared_statements: z.number().int().min(0).max(100_000).default(200),
});

const databaseSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(1).max(65535).default(5432),
  dbname: z.string().min(1).optional(),
  sslmode: z.enum(['disable', 'require', 'verify-full']).default('disable'),
  ca: z.string().optional(),
  mode: z.enum(['oauth', 'passthrough']).default('oauth'),
  // How an oauth-mode database asks clients for their token (DESIGN.md 2.6); oauth_* shape the OAUTHBEARER discovery answer.
  client_auth: z.enum(['password', 'oauthbearer']).default('password'),
  oauth_issuer: z.string().url().optional(),
  oauth_scope: z.string().min(1).regex(/^[\x21-\x7e]+( [\x21-\x7e]+)*$/, 'scopes are printable ASCII separated by single spaces').optional(),
  pool: poolSchema.default({ mode: 'session', size: 20, idle_timeout: 600_000, max_lifetime: 3_600_000, prepared_statements: 200 }),
  // Who the database sees (issue 12): the mapped service account, or a PostgreSQL role per SSO user.
  identity: z.enum(['shared_account', 'per_user']).default('shared_account'),
  audit: z
    .strictObject({
      statements: z.enum(['none', 'ddl', 'write', 'all']).default('none'),
      redact_literals: z.boolean().default(false),
      bind_values: z.boolean().default(false),
      max_statement_length: z.number().int().min(64).max(1_048_576).default(4096),
      file: z.string().min(1).optional(),
    })
    .optional(),
});

const accountSchema = z.strictObject({
  password: z.string().min(1).optional(),
  /** A TLS client certificate and its key (files) for PostgreSQL `cert` authentication (DESIGN.md 2.6). */
  sslcert: z.string().min(1).optional(),
  sslkey: z.string().min(1).optional(),
  pool_size: z.number().int().min(1).max(10_000).optional(),
});

/** Per-user roles (databases.<name>.identity: per_user): the admin connection and the credential secret. */
const provisioningSchema = z.strictObject({
  admin_url: z.string().min(1).optional(),
  admin_url_file: z.string().min(1).optional(),
  secret: z.string().min(32, 'provisioning.secret must be at least 32 characters').optional(),
  secret_file: z.string().min(1).optional(),
  role_name: z.enum(['email', 'sub']).default('email'),
  groups: z
    .array(z.strictObject({ role: z.string().min(1), group: z.string().min(1).max(63) }))
    .optional(),
});

const fileSchema = z.strictObject({
  listen: hostPort.default({ host: '0.0.0.0', port: 6432 }),
  tls: z
    .strictObject({
      cert: z.string().optional(),
      key: z.string().optional(),
      allow_plaintext_loopback: z.boolean().default(false),
    })
    .optional(),
  providers: z.array(providerSchema).min(1),
  jwks: z
    .strictObject({ cache_ttl: duration.default(86_400_000), cache_dir: z.string().optional() })
    .default({ cache_ttl: 86_400_000 }),
  role_mapping: z.array(z.strictObject({ role: z.string().min(1), account: z.string().min(1) })).default([]),
  accounts: z.record(z.string().min(1), accountSchema).default({}),
  databases: z.record(z.string().min(1), databaseSchema).refine((d) => Object.keys(d).length > 0, 'at least one database is required'),
  context: z
    .strictObject({
      secret: z.string().min(32, 'context.secret must be at least 32 characters').optional(),
      settings: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_.]*$/, 'a custom setting needs a prefix, e.g. app.user_id'), z.string().min(1)).default({}),
    })
    .default({ settings: {} }),
  limits: z
    .strictObject({
      max_client_connections: z.number().int().min(1).default(10_000),
      login_timeout: duration.default(10_000),
      pool_wait_timeout: duration.default(30_000),
      backend_connect_timeout: duration.refine((ms) => ms > 0, 'limits.backend_connect_timeout must be more than 0 (e.g. 5s)').default(DEFAULT_BACKEND_CONNECT_TIMEOUT_MS),
      session_max_lifetime: duration.default(0),
      end_session_at_token_expiry: z.boolean().default(true),
      max_sessions_per_identity: z.number().int().min(0).default(DEFAULT_MAX_SESSIONS_PER_IDENTITY),
    })
    .default({
      max_client_connections: 10_000,
      login_timeout: 10_000,
      pool_wait_timeout: 30_000,
      backend_connect_timeout: DEFAULT_BACKEND_CONNECT_TIMEOUT_MS,
      session_max_lifetime: 0,
      end_session_at_token_expiry: true,
      max_sessions_per_identity: DEFAULT_MAX_SESSIONS_PER_IDENTITY,
    }),
  log: z
    .strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'), file: z.string().optional() })
    .default({ level: 'info' }),
  metrics: z.strictObject({ listen: hostPort }).optional(),
  provisioning: provisioningSchema.optional(),
  // The operator's console (a virtual database on the listener) and status page: src/proxy/admin/.
  admin: z
    .strictObject({
      database: z.string().min(1).max(63).default('gprxy'),
      roles: z.array(z.string().min(1)).min(1, 'name at least one role (a value of the roles claim) that may use the admin console'),
      networks: z.array(z.string().min(1)).min(1).default(['127.0.0.1/32', '::1/128']),
      status_page: z.boolean().default(false),
    })
    .optional(),
  // Cancel forwarding between replicas (src/proxy/cluster/peers.ts): TLS with the proxy's certificate + HMAC.
  cluster: z
    .strictObject({
      replica_id: z.number().int().min(0).max(255).optional(),
      listen: hostPort,
      secret: z.string().min(32, 'cluster.secret must be at least 32 characters (the same on every replica)'),
      peers: z.array(hostPort).default([]),
      peers_dns: hostPort.optional(),
      ca: z.string().optional(),
    })
    .optional(),
  // The Unix socket PostgreSQL 18's gprxy_oauth_validator module asks (validator/README.md).
  validator: z
    .strictObject({ socket: z.string().min(1), socket_mode: z.string().regex(/^0?[0-7]{3}$/, 'an octal file mode such as 0660').default('0660') })
    .optional(),
});

export type SslMode = 'disable' | 'require' | 'verify-full';
export type PoolMode = 'session' | 'transaction';

export interface ProviderConfig {
  readonly issuer: string;
  readonly audience: readonly string[];
  readonly jwksUri?: string;
  readonly algorithms: readonly string[];
  readonly rolesClaim: string;
  readonly usernameClaims: readonly string[];
  readonly requiredScopes: readonly string[];
  /** PEM of an extra CA to trust for discovery and JWKS fetches (a private provider). */
  readonly ca?: string;
  /**
   * Namespaces this provider's user and tenant ids as `prefix:value`; required and distinct when several
   * providers are configured, so two providers can never produce the same identity.
   */
  readonly prefix?: string;
  /** The claim that identifies the user (gprxy.user_id() before the prefix). */
  readonly userClaim?: string;
  /** Claims holding the e-mail address, first present wins; used only when the e-mail is verified. */
  readonly emailClaims?: readonly string[];
  /** Claims holding the tenant, first present wins (gprxy.tenant_id() before the prefix). */
  readonly tenantClaims?: readonly string[];
  /** The claim that must be `true` for the e-mail to be used (fail closed), unless emailsVerified. */
  readonly emailVerifiedClaim?: string;
  /** The operator declares every e-mail this provider issues verified. */
  readonly emailsVerified?: boolean;
  /** A CI provider (GitHub Actions, GitLab): its rules pick the account instead of role_mapping. */
  readonly ci?: CiProviderSettings;
}

export interface DatabaseConfig {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly dbname: string;
  readonly sslmode: SslMode;
  /** PEM contents of the CA that signed the server certificate (verify-full). */
  readonly ca?: string;
  readonly mode: 'oauth' | 'passthrough';
  /** What the proxy asks an oauth-mode client for: the token as a cleartext password, or SASL OAUTHBEARER. */
  readonly clientAuth: 'password' | 'oauthbearer';
  /** OAUTHBEARER only: the issuer and scope a discovery request is told about (PostgreSQL 18's JSON challenge). */
  readonly oauth?: { readonly issuer: string; readonly scope: string };
  readonly pool: { readonly mode: PoolMode; readonly size: number; readonly idleTimeoutMs: number; readonly maxLifetimeMs: number; readonly preparedStatements: number };
  /** Statement audit trail (DESIGN.md 2.6); `statements: 'none'` keeps the relay header-only. */
  readonly audit: StatementAuditConfig;
  /** shared_account: the mapped service account; per_user: a provisioned PostgreSQL role per user (issue 12). */
  readonly identity?: 'shared_account' | 'per_user';
}

/** provisioning (per_user databases): how the proxy creates and maintains the users' roles. */
export interface ProvisioningConfig {
  /** A superuser or CREATEROLE connection URL (its database name is replaced per database). */
  readonly adminUrl: string;
  /** Derives each role's password (HMAC); replicas share it, nothing else. */
  readonly secret: string;
  /** email: the verified e-mail, else the subject; sub: always the subject. */
  readonly roleName: 'email' | 'sub';
  /** Token role → NOLOGIN group; absent: derived from role_mapping (the level of the mapped account). */
  readonly groups?: readonly { readonly role: string; readonly group: string }[];
}

export type AuditStatements = 'none' | 'ddl' | 'write' | 'all';

export interface StatementAuditConfig {
  readonly statements: AuditStatements;
  /** Replace string and numeric constants with $n before the text is logged. */
  readonly redactLiterals: boolean;
  /** Log the values of Bind parameters (off: never). */
  readonly bindValues: boolean;
  /** Statement text longer than this (characters) is cut; its length and SHA-256 are logged instead. */
  readonly maxStatementLength: number;
  /** `statement` events go here instead of the main log: an absolute path, or '-' for stdout. */
  readonly file?: string;
}

export interface AdminConfig {
  /** The virtual database name clients connect to (never a key of databases). */
  readonly database: string;
  /** Token roles (namespaced like role_mapping roles) that may use the console and the status page. */
  readonly roles: readonly string[];
  /** Client networks (CIDR) the console and the page accept; others are refused before any token is read. */
  readonly networks: readonly AdminNetwork[];
  /** Serve GET /status on the metrics listener. */
  readonly statusPage: boolean;
}

export interface AdminNetwork {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

/** `10.0.0.0/8`, `::1/128` or a single address, checked here so the proxy can build its matcher without surprises. */
function parseNetwork(text: string, at: string, problems: string[]): AdminNetwork | undefined {
  const [address = '', bits, extra] = text.trim().split('/');
  const family = isIP(address);
  const max = family === 6 ? 128 : 32;
  const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
  if (family === 0 || extra !== undefined || !(prefix >= 0 && prefix <= max)) {
    problems.push(`${at}: "${text}" is not a network: write an address with a prefix length, e.g. 10.0.0.0/8, 127.0.0.1/32 or ::1/128`);
    return undefined;
  }
  return { address, prefix, family: family === 6 ? 'ipv6' : 'ipv4' };
}

export interface AccountConfig {
  readonly name: string;
  /** Absent when the account authenticates with a client certificate only. */
  readonly password?: string;
  /** PEM contents of the account's client certificate and key (PostgreSQL `cert` authentication). */
  readonly sslcert?: string;
  readonly sslkey?: string;
  readonly poolSize?: number;
}

export interface ProxyConfig {
  readonly listen: { readonly host: string; readonly port: number };
  /** PEM contents; absent when only plaintext loopback is allowed. */
  readonly tls?: { readonly cert: string; readonly key: string };
  readonly allowPlaintextLoopback: boolean;
  readonly providers: readonly ProviderConfig[];
  readonly jwks: { readonly cacheTtlMs: number; readonly cacheDir?: string };
  readonly roleMapping: readonly { readonly role: string; readonly account: string }[];
  readonly accounts: Readonly<Record<string, AccountConfig>>;
  readonly databases: Readonly<Record<string, DatabaseConfig>>;
  readonly context: { readonly secret?: string; readonly settings: Readonly<Record<string, string>> };
  readonly limits: {
    readonly maxClientConnections: number;
    readonly loginTimeoutMs: number;
    readonly poolWaitTimeoutMs: number;
    /** A new backend connection (TCP, TLS, authentication, up to ReadyForQuery) that takes longer is abandoned. */
    readonly backendConnectTimeoutMs: number;
    readonly sessionMaxLifetimeMs: number;
    /** End a session when the token it was opened with expires (the identity context expires then too). */
    readonly endSessionAtTokenExpiry: boolean;
    /** Sessions one identity (issuer + user id) may hold at once; 0 means no limit. */
    readonly maxSessionsPerIdentity: number;
  };
  readonly log: { readonly level: string; readonly file?: string };
  readonly metrics?: { readonly host: string; readonly port: number };
  readonly provisioning?: ProvisioningConfig;
  /** The admin console (virtual database) and the status page on the metrics listener. */
  readonly admin?: AdminConfig;
  /**
   * Replicas forwarding CancelRequests to each other. `replicaId` goes into every cancel key this replica
   * issues (random at start when not configured); peers come from the list and/or every address of `peersDns`
   * (a Kubernetes headless Service), resolved at each forward.
   */
  readonly cluster?: {
    readonly replicaId?: number;
    readonly listen: { readonly host: string; readonly port: number };
    readonly secret: string;
    readonly peers: readonly { readonly host: string; readonly port: number }[];
    readonly peersDns?: { readonly host: string; readonly port: number };
    /** PEM: when set, peers' certificates must chain to it (otherwise the HMAC alone authenticates). */
    readonly ca?: string;
  };
  /** Verification endpoint for PostgreSQL 18's native OAuth validator module. */
  readonly validator?: { readonly socket: string; readonly socketMode: number };
  /** Accepted but questionable settings (e.g. a CI rule pinning only mutable names): logged at start. */
  readonly warnings: readonly string[];
  /** Absolute paths of the files the config names and was read from (certificates, keys, CAs): a config file watch watches them too. */
  readonly files?: readonly string[];
}

function formatIssues(error: z.ZodError, locate?: LocateKey): string {
  return error.issues
    .map((issue) => {
      const at = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '');
      if (issue.code === 'unrecognized_keys') {
        const known = knownKeys(fileSchema, issue.path);
        return issue.keys
          .map((k) => {
            const line = locate?.([...issue.path, k]);
            const near = closestKey(k, known);
            const hints = [line !== undefined ? `line ${line}` : '', near ? `did you mean ${at ? `${at}.` : ''}${near}?` : ''].filter(Boolean);
            return `unknown key ${at ? `${at}.` : ''}${k}${hints.length ? ` (${hints.join('; ')})` : ''}`;
          })
          .join('\n');
      }
      return `${at || '(root)'}: ${issue.message}`;
    })
    .join('\n');
}

/** An object without a prototype, for maps keyed by names from outside. */
function dictionary<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

function auditConfig(a: z.infer<typeof databaseSchema>['audit'], baseDir: string): StatementAuditConfig {
  if (!a) return { statements: 'none', redactLiterals: false, bindValues: false, maxStatementLength: 4096 };
  return {
    statements: a.statements,
    redactLiterals: a.redact_literals,
    bindValues: a.bind_values,
    maxStatementLength: a.max_statement_length,
    ...(a.file ? { file: a.file === '-' ? '-' : resolve(baseDir, a.file) } : {}),
  };
}

/**
 * The discovery answer of an OAUTHBEARER database: its issuer must be one the proxy verifies tokens from
 * (default: the first provider's; a .well-known URL of it is accepted too, as in PostgreSQL 18's pg_hba).
 */
function oauthBearerSettings(
  name: string,
  d: { mode: string; client_auth: string; oauth_issuer?: string | undefined; oauth_scope?: string | undefined },
  providers: readonly { issuer: string }[],
  problems: string[],
): { oauth?: DatabaseConfig['oauth'] } {
  if (d.client_auth !== 'oauthbearer') {
    if (d.oauth_issuer !== undefined || d.oauth_scope !== undefined) problems.push(`databases.${name}: oauth_issuer and oauth_scope apply only with client_auth: oauthbearer`);
    return {};
  }
  if (d.mode === 'passthrough') {
    problems.push(`databases.${name}.client_auth: a passthrough database relays PostgreSQL's own login (OAUTHBEARER included); set client_auth only on mode: oauth databases`);
    return {};
  }
  const issuer = d.oauth_issuer ?? providers[0]?.issuer ?? '';
  const base = issuer.includes('/.well-known/') ? issuer.slice(0, issuer.indexOf('/.well-known/')) : issuer;
  const known = providers.some((p) => p.issuer === issuer || p.issuer.replace(/\/$/, '') === base.replace(/\/$/, ''));
  if (!known) problems.push(`databases.${name}.oauth_issuer: "${issuer}" is not the issuer of any entry in providers; tokens from it could not be verified`);
  return { oauth: { issuer, scope: d.oauth_scope ?? 'openid' } };
}

/**
 * The provisioning section: required (admin connection and secret, each inline or from a file) as soon as a
 * database is per_user. Groups must be plain group names: never a service account (granting it would hand
 * users the account's LOGIN identity), never a reserved pg_ role.
 */
function provisioningConfig(
  p: z.infer<typeof provisioningSchema> | undefined,
  databases: readonly DatabaseConfig[],
  accounts: Record<string, unknown>,
  load: (path: string, what: string) => string,
  problems: string[],
): ProvisioningConfig | undefined {
  const perUser = databases.filter((d) => d.identity === 'per_user').map((d) => d.name);
  if (!p) {
    if (perUser.length) problems.push(`provisioning: databases ${perUser.join(', ')} use identity: per_user, which needs provisioning.admin_url (or admin_url_file) and provisioning.secret (or secret_file): README "Per-user roles"`);
    return undefined;
  }
  const one = (inline: string | undefined, file: string | undefined, what: string): string => {
    if (inline !== undefined && file !== undefined) problems.push(`provisioning: set ${what} or ${what}_file, not both`);
    if (file !== undefined) return load(file, `provisioning.${what}_file`).trim();
    return inline ?? '';
  };
  const adminUrl = one(p.admin_url, p.admin_url_file, 'admin_url');
  const secret = one(p.secret, p.secret_file, 'secret');
  if (!adminUrl) problems.push('provisioning.admin_url: required (a superuser or CREATEROLE connection URL, e.g. "${GPRXY_PROVISIONING_URL}", or admin_url_file)');
  else if (!/^postgres(ql)?:\/\//.test(adminUrl)) problems.push('provisioning.admin_url: must be a postgresql:// URL');
  if (!secret) problems.push('provisioning.secret: required (at least 32 characters, e.g. "${GPRXY_PROVISIONING_SECRET}", or secret_file): it derives every per-user role\'s password');
  else if (secret.length < 32) problems.push('provisioning.secret: must be at least 32 characters');
  for (const [i, g] of (p.groups ?? []).entries()) {
    if (/^pg_/.test(g.group)) problems.push(`provisioning.groups[${i}].group: "${g.group}" is a reserved PostgreSQL role; name a NOLOGIN group (e.g. gprxy_writer)`);
    if (Object.hasOwn(accounts, g.group)) problems.push(`provisioning.groups[${i}].group: "${g.group}" is a service account (a LOGIN role); per-user roles are granted NOLOGIN groups only`);
  }
  return { adminUrl, secret, roleName: p.role_name, ...(p.groups ? { groups: p.groups } : {}) };
}

/** Validates an already parsed document. `baseDir` resolves relative paths; `readFile` is a seam for tests. */
export function buildProxyConfig(
  document: unknown,
  env: Readonly<Record<string, string | undefined>>,
  baseDir: string,
  readFile: (path: string) => string = (p) => readFileSync(p, 'utf8'),
  locate?: LocateKey,
): ProxyConfig {
  let expanded: unknown;
  try {
    expanded = expandEnv(document, env);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  const parsed = fileSchema.safeParse(expanded);
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error, locate));
  const f = parsed.data;
  const problems: string[] = [];
  const warnings: string[] = [];
  const files: string[] = [];
  const load = (path: string, what: string): string => {
    const full = resolve(baseDir, path);
    if (!files.includes(full)) files.push(full);
    try {
      return readFile(full);
    } catch (e) {
      problems.push(`${what}: cannot read ${full} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      return '';
    }
  };

  let tls: ProxyConfig['tls'];
  if (f.tls?.cert || f.tls?.key) {
    if (!f.tls.cert || !f.tls.key) problems.push('tls: both cert and key are required');
    else tls = { cert: load(f.tls.cert, 'tls.cert'), key: load(f.tls.key, 'tls.key') };
  }
  const allowPlaintextLoopback = f.tls?.allow_plaintext_loopback ?? false;
  if (!tls && !allowPlaintextLoopback) {
    problems.push('tls: clients must use TLS: set tls.cert and tls.key (or tls.allow_plaintext_loopback: true for local development)');
  }

  // Several providers: each needs its own prefix, or one provider could mint another's user and tenant ids.
  const issuers = new Map<string, number>();
  const prefixes = new Map<string, number>();
  for (const [i, p] of f.providers.entries()) {
    const sameIssuer = issuers.get(p.issuer);
    if (sameIssuer !== undefined) problems.push(`providers[${i}].issuer: "${p.issuer}" is already providers[${sameIssuer}]; list each issuer once`);
    issuers.set(p.issuer, i);
    if (f.providers.length > 1) {
      if (p.prefix === undefined) {
        problems.push(`providers[${i}].prefix: required when several providers are configured (e.g. prefix: corp), so that two providers can never produce the same user or tenant id`);
        continue;
      }
      const key = p.prefix.toLowerCase();
      const samePrefix = prefixes.get(key);
      if (samePrefix !== undefined) problems.push(`providers[${i}].prefix: "${p.prefix}" is already the prefix of providers[${samePrefix}]; each provider needs a distinct prefix`);
      prefixes.set(key, i);
    }
  }
  const ciSettings = f.providers.map((p, i) => {
    if (p.kind === 'oauth') {
      if (p.rules !== undefined) problems.push(`providers[${i}].rules: rules apply to CI providers; set kind: github_actions or kind: gitlab (or use role_mapping)`);
      return undefined;
    }
    return buildCiSettings(`providers[${i}]`, p.kind, p.rules, f.accounts, problems, warnings);
  });
  // With prefixes, token roles are `prefix:role` (src/token/identity.ts): a rule names the provider it trusts.
  const rolePrefixes = f.providers.flatMap((p) => (p.prefix === undefined ? [] : [p.prefix]));
  for (const [i, rule] of f.role_mapping.entries()) {
    if (!Object.hasOwn(f.accounts, rule.account)) problems.push(`role_mapping[${i}].account: "${rule.account}" is not a key of accounts`);
    if (rolePrefixes.length > 0 && !rolePrefixes.some((prefix) => rule.role.startsWith(`${prefix}:`))) {
      problems.push(
        `role_mapping[${i}].role: "${rule.role}" names no provider: with provider prefixes, token roles are prefix:role, so write the provider ` +
          `whose role this rule trusts (e.g. "${rolePrefixes[0]}:${rule.role}")`,
      );
    }
  }
  // Maps keyed by names (databases, accounts, settings) have no prototype: a lookup with a name a client
  // or an operator typed (`constructor`, `__proto__`, `toString`) finds nothing instead of Object's members.
  const databases = dictionary<DatabaseConfig>();
  for (const [name, d] of Object.entries(f.databases)) {
    databases[name] = {
      name,
      host: d.host,
      port: d.port,
      dbname: d.dbname ?? name,
      sslmode: d.sslmode,
      ...(d.ca ? { ca: load(d.ca, `databases.${name}.ca`) } : {}),
      mode: d.mode,
      clientAuth: d.client_auth,
      ...oauthBearerSettings(name, d, f.providers, problems),
      pool: { mode: d.pool.mode, size: d.pool.size, idleTimeoutMs: d.pool.idle_timeout, maxLifetimeMs: d.pool.max_lifetime, preparedStatements: d.pool.prepared_statements },
      audit: auditConfig(d.audit, baseDir),
      identity: d.identity,
    };
    if (d.identity === 'per_user') {
      if (d.mode !== 'oauth') problems.push(`databases.${name}.identity: per_user needs mode: oauth (a passthrough database logs in with PostgreSQL's own roles already)`);
      // Transaction pooling with per-user roles is not built yet: refuse rather than run a half-tested mix.
      if ((d.pool.mode as string) !== 'session') problems.push(`databases.${name}: identity: per_user works with pool.mode: session only (transaction pooling of per-user roles is not supported yet)`);
    }
    if (d.mode === 'passthrough' && databases[name]!.audit.statements !== 'none') {
      problems.push(`databases.${name}.audit.statements: statement auditing needs mode: oauth (a passthrough session has no verified identity to attribute statements to)`);
    }
    if (d.pool.mode === 'transaction' && d.mode === 'passthrough') {
      problems.push(
        `databases.${name}.pool.mode: transaction pooling needs mode: oauth (a passthrough client authenticates to PostgreSQL itself, so its connection cannot be shared between clients); use pool.mode: session`,
      );
    }
    if (d.pool.mode === 'transaction' && databases[name]!.audit.statements !== 'none') {
      problems.push(`databases.${name}.audit.statements: statement auditing is not available with pool.mode: transaction yet; use pool.mode: session for an audited database`);
    }
  }
  if (Object.values(databases).some((d) => d.mode === 'oauth') && f.role_mapping.length === 0 && f.providers.some((p) => p.kind === 'oauth')) {
    problems.push('role_mapping: an oauth database needs at least one rule mapping a token role to an account');
  }
  const accounts = dictionary<AccountConfig>();
  for (const [name, a] of Object.entries(f.accounts)) {
    if (/^pg_/.test(name)) problems.push(`accounts.${name}: PostgreSQL reserves role names beginning with pg_; use e.g. app_${name.slice(3)}`);
    if (!a.sslcert !== !a.sslkey) problems.push(`accounts.${name}: sslcert and sslkey go together (the account's client certificate and its private key)`);
    if (!a.password && !a.sslcert) problems.push(`accounts.${name}: needs a password, or sslcert + sslkey for certificate authentication (recommended: README)`);
    accounts[name] = {
      name,
      ...(a.password ? { password: a.password } : {}),
      ...(a.sslcert && a.sslkey ? { sslcert: load(a.sslcert, `accounts.${name}.sslcert`), sslkey: load(a.sslkey, `accounts.${name}.sslkey`) } : {}),
      ...(a.pool_size ? { poolSize: a.pool_size } : {}),
    };
  }
  const provisioning = provisioningConfig(f.provisioning, Object.values(databases), f.accounts, load, problems);
  const certAccounts = Object.values(accounts).filter((a) => a.sslcert).map((a) => a.name);
  for (const d of Object.values(databases)) {
    if (certAccounts.length && d.mode === 'oauth' && d.sslmode === 'disable') {
      problems.push(`databases.${d.name}.sslmode: accounts ${certAccounts.join(', ')} log in with client certificates, which need TLS: use require or verify-full`);
    }
  }
  let admin: AdminConfig | undefined;
  if (f.admin) {
    if (Object.hasOwn(f.databases, f.admin.database)) {
      problems.push(`admin.database: "${f.admin.database}" is also a key of databases; the admin console is a virtual database of its own: rename one of them`);
    }
    for (const [i, role] of f.admin.roles.entries()) {
      if (rolePrefixes.length > 0 && !rolePrefixes.some((prefix) => role.startsWith(`${prefix}:`))) {
        problems.push(`admin.roles[${i}]: "${role}" names no provider: with provider prefixes, token roles are prefix:role (e.g. "${rolePrefixes[0]}:${role}")`);
      }
    }
    if (f.admin.status_page && !f.metrics) problems.push('admin.status_page: the status page is served on the metrics listener: set metrics.listen too');
    const networks = f.admin.networks.flatMap((n, i) => parseNetwork(n, `admin.networks[${i}]`, problems) ?? []);
    admin = { database: f.admin.database, roles: f.admin.roles, networks, statusPage: f.admin.status_page };
  }
  if (f.cluster && !tls) problems.push('cluster: the peer channel runs over TLS with the proxy\'s certificate: set tls.cert and tls.key');
  if (problems.length) throw new ConfigError(problems.join('\n'));

  return deepFreeze({
    listen: f.listen,
    ...(tls ? { tls } : {}),
    allowPlaintextLoopback,
    providers: f.providers.map((p, i) => ({
      issuer: p.issuer,
      audience: p.audience,
      ...(p.jwks_uri ? { jwksUri: p.jwks_uri } : {}),
      algorithms: p.algorithms,
      rolesClaim: p.roles_claim,
      usernameClaims: p.username_claims ?? (p.kind === 'oauth' ? [...DEFAULT_USERNAME_CLAIMS] : ['sub']),
      requiredScopes: p.required_scopes,
      ...(p.ca ? { ca: load(p.ca, `providers[${i}].ca`) } : {}),
      ...(p.prefix !== undefined ? { prefix: p.prefix } : {}),
      userClaim: p.user_claim,
      emailClaims: p.email_claims,
      tenantClaims: p.tenant_claims,
      emailVerifiedClaim: p.email_verified_claim,
      emailsVerified: p.emails_verified,
      ...(ciSettings[i] ? { ci: ciSettings[i] } : {}),
    })),
    jwks: { cacheTtlMs: f.jwks.cache_ttl, ...(f.jwks.cache_dir ? { cacheDir: resolve(baseDir, f.jwks.cache_dir) } : {}) },
    roleMapping: f.role_mapping,
    accounts,
    databases,
    context: { ...(f.context.secret ? { secret: f.context.secret } : {}), settings: Object.assign(dictionary<string>(), f.context.settings) },
    limits: {
      maxClientConnections: f.limits.max_client_connections,
      loginTimeoutMs: f.limits.login_timeout,
      poolWaitTimeoutMs: f.limits.pool_wait_timeout,
      backendConnectTimeoutMs: f.limits.backend_connect_timeout,
      sessionMaxLifetimeMs: f.limits.session_max_lifetime,
      endSessionAtTokenExpiry: f.limits.end_session_at_token_expiry,
      maxSessionsPerIdentity: f.limits.max_sessions_per_identity,
    },
    log: { level: f.log.level, ...(f.log.file ? { file: resolve(baseDir, f.log.file) } : {}) },
    ...(f.metrics ? { metrics: f.metrics.listen } : {}),
    ...(provisioning ? { provisioning } : {}),
    ...(admin ? { admin } : {}),
    ...(f.cluster
      ? {
          cluster: {
            ...(f.cluster.replica_id !== undefined ? { replicaId: f.cluster.replica_id } : {}),
            listen: f.cluster.listen,
            secret: f.cluster.secret,
            peers: f.cluster.peers,
            ...(f.cluster.peers_dns ? { peersDns: f.cluster.peers_dns } : {}),
            ...(f.cluster.ca ? { ca: load(f.cluster.ca, 'cluster.ca') } : {}),
          },
        }
      : {}),
    ...(f.validator ? { validator: { socket: resolve(baseDir, f.validator.socket), socketMode: parseInt(f.validator.socket_mode, 8) } } : {}),
    warnings,
    files,
  });
}

/** Reads, parses (YAML is a superset of JSON) and validates a config file. */
export function loadProxyConfig(file: string, env: Readonly<Record<string, string | undefined>> = process.env): ProxyConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let parsed: ReturnType<typeof parseWithPositions>;
  try {
    parsed = parseWithPositions(text);
  } catch (e) {
    throw new ConfigError(`${file} is not valid YAML or JSON: ${(e as Error).message}`);
  }
  try {
    return buildProxyConfig(parsed.document, env, dirname(resolve(file)), undefined, parsed.locate);
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`${file}:\n${e.message}`);
    throw e;
  }
}

/** Every account a login can be mapped to: role_mapping's and the CI providers' rules', once each, in order. */
export function mappedAccounts(config: Pick<ProxyConfig, 'roleMapping' | 'providers'>): string[] {
  return [...new Set([...config.roleMapping.map((r) => r.account), ...config.providers.flatMap((p) => p.ci?.rules.map((r) => r.account) ?? [])])];
}
