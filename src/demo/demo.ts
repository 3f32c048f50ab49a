/**
 * `gprxy demo` as a library: the whole system on this machine, wired exactly as a real deployment is.
 *
 *   embedded PostgreSQL 18 (TLS) ── `gprxy db init` + examples/multitenant.sql
 *   dev OIDC provider over HTTPS (alice, bob, sathwick; real device-flow pages)
 *   the proxy from a real config file (gprxy.yaml, secrets through ${VARS}), TLS on a generated certificate
 *   a CLI profile, a device-flow login, and the `gprxy connect` tunnel for database `demo`
 *
 * Everything the demo writes lives in one temporary directory (plus the cluster's own), removed by
 * `stop()`. The CLI side is isolated from the person's own setup: profiles go to that directory, and
 * tokens to an in-memory keychain, so the demo never reads or writes the OS keychain or ~/.config/gprxy.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { configureProfile, resolveCliSettings, type CliSettings } from '../config/cli-config.js';
import { loadProxyConfig, type ProxyConfig } from '../config/proxy-config.js';
import { createTokenSource, login, type DeviceCodePrompt } from '../oauth/cli-session.js';
import { identityFromClaims, type Identity } from '../oauth/identity.js';
import { KeychainStore } from '../oauth/token-store.js';
import { createLogger } from '../proxy/logger.js';
import { ProxyServer } from '../proxy/server.js';
import { runDbInit } from '../sql/db-init.js';
import { MULTITENANT_EXAMPLE_SQL } from '../sql/example.js';
import { openTunnel } from '../tunnel/open.js';
import { Tunnel } from '../tunnel/tunnel.js';
import { createCertificateAuthority } from './certificates.js';
import { DEV_AUDIENCE, DEV_CLI_CLIENT_ID, DEV_USERS, startDevProvider, type DevUser } from './oidc-provider.js';
import { DemoError } from './demo-error.js';
import { binaryCopyOf, startCluster, type Cluster } from './postgres-cluster.js';
import { buildValidatorModule, validatorBuildUnavailable, type BuiltValidator } from './validator-module.js';

export { DemoError, type DemoErrorCode } from './demo-error.js';

export { runTour, type TourOptions, type TourStep } from './tour.js';

/** The database the demo serves (key of `databases`, and the PostgreSQL database name). */
export const DEMO_DATABASE = 'demo';
/**
 * The same PostgreSQL database behind a transaction-pooling entry with a pool of 2 (README "Transaction
 * pooling"): the tour's step with many clients on a small pool. Not with --per-user (a config error there).
 */
export const DEMO_TX_DATABASE = 'demo_tx';
export const DEMO_PROFILE = 'demo';

export interface DemoOptions {
  /** First local port of the tunnel; default 5432. */
  readonly tunnelPort?: number;
  /** Probe upward when the port is taken (default: true unless tunnelPort is 0). */
  readonly findFreePort?: boolean;
  /** Approve the device login automatically as this dev user (`--yes` = alice); otherwise a person does, in a browser. */
  readonly autoApproveAs?: string;
  /** Ctrl+C during start-up: everything started so far is stopped, then `demo_aborted` (or login_aborted) is thrown. */
  readonly signal?: AbortSignal;
  /** One line per start-up phase. */
  readonly onProgress?: (line: string) => void;
  /**
   * The device-flow prompt to show a person (URL and code). `approvingAs` is set when it is approved
   * automatically; `caPath` is the demo CA that signed the provider's certificate (browsers warn about it).
   */
  readonly onDeviceCode?: (prompt: DeviceCodePrompt, info: { readonly approvingAs: string | undefined; readonly caPath: string }) => void;
  /** Warnings (token refresh failures, tunnel connection errors). */
  readonly onWarning?: (message: string) => void;
  /** PostgreSQL binaries; default the embedded PostgreSQL 18. */
  readonly binDir?: string;
  /**
   * Option 1 too (`gprxy demo --native`): PostgreSQL 18 with `oauth` in pg_hba and gprxy's validator module
   * (built with gcc), a role per demo user, and a second tunnel straight to PostgreSQL for the signed-in user.
   */
  readonly native?: boolean;
  /**
   * identity: per_user (`gprxy demo --per-user`): every person is a PostgreSQL role of her own, provisioned by
   * the proxy at login (README "Per-user roles"); the tour shows current_user being the person.
   */
  readonly perUser?: boolean;
}

/** A signed-in person with their own tunnel, as `gprxy login` + `gprxy connect demo` would give them. */
export interface DemoSession {
  readonly profile: string;
  readonly identity: Identity;
  /** The name psql connects as (the token's email): what the proxy's username_claims accept. */
  readonly user: string;
  readonly host: string;
  readonly port: number;
  /** The command `gprxy connect` prints. */
  readonly psqlCommand: string;
  /** libpq connection string of the tunnel, for psql. */
  readonly conninfo: string;
  /** A node-postgres client through the tunnel (no password: the tunnel injects the token). */
  client(applicationName?: string): pg.Client;
  /** The same through the tunnel's second listener, to DEMO_TX_DATABASE (transaction pooling); absent with --per-user. */
  txClient?(applicationName?: string): pg.Client;
  /** `--native`: the same person's tunnel straight to PostgreSQL 18 native OAuth (Option 1). */
  readonly native?: { readonly host: string; readonly port: number; readonly psqlCommand: string };
  close(): Promise<void>;
}

export interface Demo {
  /** The demo's temporary directory: config, certificates, profiles, proxy log. */
  readonly dir: string;
  readonly caPath: string;
  readonly proxyConfigPath: string;
  readonly proxyLogPath: string;
  readonly postgres: { readonly host: string; readonly port: number; readonly version: string; readonly dataDir: string; readonly superuser: string; readonly superuserPassword: string; readonly binDir: string };
  readonly provider: { readonly issuer: string; readonly devicePage: string; readonly users: readonly DevUser[] };
  readonly proxy: { readonly host: string; readonly port: number };
  readonly database: string;
  /** The demo database runs with identity: per_user (--per-user). */
  readonly perUser: boolean;
  /** The transaction-pooling entry of the same database (DEMO_TX_DATABASE); absent with --per-user. */
  readonly txDatabase?: string;
  /** The login of start-up (alice under --yes; whoever approved in the browser otherwise). */
  readonly session: DemoSession;
  /** Start-up time in milliseconds. */
  readonly startupMs: number;
  /** Another dev user, logged in by device flow approved automatically, with a tunnel on a free port. */
  signIn(username: string): Promise<DemoSession>;
  /** Stops everything in reverse order and removes every temporary file. Safe to call twice. */
  stop(): Promise<void>;
}

/** A keychain that lives in this process only (the person's real keychain is never touched). */
function memoryKeychain(): KeychainStore {
  const secrets = new Map<string, string>();
  return new KeychainStore({
    service: 'gprxy-demo',
    entry: (service, account) => {
      const key = `${service}\n${account}`;
      return {
        getPassword: async () => secrets.get(key) ?? null,
        setPassword: async (password: string) => void secrets.set(key, password),
        deleteCredential: async () => secrets.delete(key),
      };
    },
  });
}

function proxyYaml(cluster: Cluster, validatorSocket?: string, perUser = false): string {
  return `# The proxy config of \`gprxy demo\` (the README's "The proxy: gprxy serve" explains every key). \`gprxy serve --config\` reads the same file;
# secrets come from the environment (\${VAR}), here set by the demo process.
listen: "127.0.0.1:0"              # 0: any free port (the demo prints the one it got)
tls: { cert: proxy.crt, key: proxy.key }
providers:
  - issuer: "\${GPRXY_DEMO_ISSUER}"
    audience: "${DEV_AUDIENCE}"
    algorithms: [RS256]
    roles_claim: "https://gprxy.io/roles"
    username_claims: ["https://gprxy.io/email", "email", "sub"]
    email_verified_claim: "https://gprxy.io/email_verified"   # set by the provider (an Auth0 Action): e-mails are used only when verified
    ca: ca.pem                      # the demo provider's certificate comes from the demo CA
role_mapping:
  - { role: pg_admin,  account: app_admin }
  - { role: pg_writer, account: app_writer }
  - { role: pg_reader, account: app_reader }
accounts:
  app_admin:  { password: "\${PG_ADMIN_PASSWORD}" }
  app_writer: { password: "\${PG_WRITER_PASSWORD}" }
  app_reader: { password: "\${PG_READER_PASSWORD}" }
databases:
  ${DEMO_DATABASE}: { host: ${cluster.host}, port: ${cluster.port}, dbname: ${DEMO_DATABASE}, sslmode: verify-full, ca: ca.pem, pool: { size: 5 }${perUser ? ', identity: per_user' : ''} }
${
  perUser
    ? ''
    : `  # The same database, transaction pooling: a backend per transaction, not per client (many clients, 2 backends per account).
  ${DEMO_TX_DATABASE}: { host: ${cluster.host}, port: ${cluster.port}, dbname: ${DEMO_DATABASE}, sslmode: verify-full, ca: ca.pem, pool: { mode: transaction, size: 2 } }
`
}${
  perUser
    ? `# --per-user: a PostgreSQL role per person, created and kept in line by the proxy at each login over this admin
# connection (here the demo's superuser; a CREATEROLE role is enough: README "Per-user roles"). The secret derives
# each role's password; replicas share it and nothing else.
provisioning:
  admin_url: "\${GPRXY_PROVISIONING_URL}"
  secret: "\${GPRXY_PROVISIONING_SECRET}"
`
    : ''
}context:
  secret: "\${GPRXY_CONTEXT_SECRET}"
  settings:
    app.user_id: "https://gprxy.io/user_id"
    app.tenant_id: "https://gprxy.io/org_id"
    app.roles: "https://gprxy.io/roles"
    app.email: "https://gprxy.io/email"
limits: { login_timeout: 10s, pool_wait_timeout: 10s }
log: { level: info, file: proxy.log }
${
  validatorSocket
    ? `# --native: the endpoint PostgreSQL 18's gprxy_oauth_validator module asks (validator/README.md); 0666 because
# PostgreSQL runs as another user here. Production: 0660 and a group both share.
validator: { socket: ${validatorSocket}, socket_mode: "0666" }
`
    : ''
}`;
}

function secret(): string {
  return randomBytes(24).toString('base64url');
}

export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const started = Date.now();
  const progress = options.onProgress ?? (() => {});
  const warn = options.onWarning ?? (() => {});
  const signal = options.signal;
  const checkAbort = () => {
    if (signal?.aborted) throw new DemoError('demo_aborted', 'stopped during start-up');
  };
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      for (const cleanup of cleanups.reverse()) {
        try {
          await cleanup();
        } catch (e) {
          warn(`while stopping: ${(e as Error).message}`);
        }
      }
    })();
    return stopped;
  };
  const timed = async <T>(what: string, fn: () => Promise<T>, describe: (value: T) => string): Promise<T> => {
    checkAbort();
    const t0 = Date.now();
    const value = await fn();
    progress(`${what}: ${describe(value)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return value;
  };

  try {
    const dir = mkdtempSync(join(tmpdir(), 'gprxy-demo-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const configDir = join(dir, 'cli');
    const caPath = join(dir, 'ca.pem');

    const ca = await createCertificateAuthority('gprxy demo CA');
    writeFileSync(caPath, ca.cert);
    const [pgLeaf, proxyLeaf] = await Promise.all([ca.issue(['localhost', '127.0.0.1']), ca.issue(['localhost', '127.0.0.1'])]);
    writeFileSync(join(dir, 'proxy.crt'), proxyLeaf.cert);
    writeFileSync(join(dir, 'proxy.key'), proxyLeaf.key, { mode: 0o600 });

    // PostgreSQL and the provider do not depend on each other: start them together.
    // PostgreSQL and the provider do not depend on each other: start them together. Each registers its
    // cleanup as soon as it is up, so a failure of the other one still stops it.
    // --native: the validator module is built first (gcc), and PostgreSQL's pg_hba names the provider's issuer.
    let validator: BuiltValidator | undefined;
    if (options.native) {
      const missing = validatorBuildUnavailable();
      if (missing) throw new DemoError('demo_native_unavailable', `gprxy demo --native needs ${missing}`);
      validator = buildValidatorModule();
      const built = validator;
      cleanups.push(() => built.dispose());
    }
    const [cluster, provider] = await timed(
      'PostgreSQL and the OIDC provider',
      async () => {
        // One-hour access tokens, like a typical API: sessions end when their token does (end_session_at_token_expiry).
        const providerStart = startDevProvider({ ca, accessTokenTtlSeconds: 3600, deviceIntervalSeconds: options.autoApproveAs ? 0.2 : 1 });
        const nativeOptions = async () => {
          if (!validator) return {};
          const { issuer } = await providerStart;
          return {
            settings: { oauth_validator_libraries: validator.library, 'gprxy.validator_socket': join(validator.dir, 'validator.sock') },
            hba: [`hostssl ${DEMO_DATABASE} +oauth_users 127.0.0.1/32 oauth issuer="${issuer}" scope="openid"`],
          };
        };
        const [c, p] = await Promise.allSettled([
          nativeOptions().then((native) => startCluster({ tls: pgLeaf, ...native, ...(options.binDir ? { binDir: options.binDir } : {}) })),
          providerStart,
        ]);
        if (c.status === 'fulfilled') cleanups.push(() => c.value.stop());
        if (p.status === 'fulfilled') cleanups.push(() => p.value.close());
        if (c.status === 'rejected') throw c.reason;
        if (p.status === 'rejected') throw p.reason;
        return [c.value, p.value] as const;
      },
      ([c, p]) => `PostgreSQL ${c.majorVersion} on ${c.host}:${c.port}, provider ${p.issuer}`,
    );
    const version = String((await cluster.query<{ v: string }>(`select current_setting('server_version') as v`)).rows[0]?.v ?? cluster.majorVersion).split(' ')[0]!;
    const dataDir = String((await cluster.query<{ d: string }>(`select current_setting('data_directory') as d`)).rows[0]?.d ?? '');

    // The proxy config, as an operator would write it; the secrets only in this process's memory.
    const proxyConfigPath = join(dir, 'gprxy.yaml');
    writeFileSync(proxyConfigPath, proxyYaml(cluster, validator ? join(validator.dir, 'validator.sock') : undefined, options.perUser === true));
    const env = {
      GPRXY_DEMO_ISSUER: provider.issuer,
      PG_ADMIN_PASSWORD: secret(),
      PG_WRITER_PASSWORD: secret(),
      PG_READER_PASSWORD: secret(),
      GPRXY_CONTEXT_SECRET: secret(),
      ...(options.perUser ? { GPRXY_PROVISIONING_URL: cluster.url(), GPRXY_PROVISIONING_SECRET: `${secret()}${secret()}` } : {}),
    };
    const config: ProxyConfig = loadProxyConfig(proxyConfigPath, env);

    await timed(
      `gprxy db init + examples/multitenant.sql`,
      async () => {
        await cluster.createDatabase(DEMO_DATABASE);
        const results = await runDbInit(config, { adminUrl: cluster.url(), database: DEMO_DATABASE, out: () => {} });
        await cluster.query(MULTITENANT_EXAMPLE_SQL, undefined, DEMO_DATABASE);
        return results;
      },
      (results) => `database ${DEMO_DATABASE}: service accounts ${Object.keys(config.accounts).join(', ')}${results.length ? '' : ' (unchanged)'}; schema gprxy; tables users, posts with row-level security`,
    );

    if (validator) {
      await timed(
        'PostgreSQL 18 native OAuth (--native)',
        async () => {
          // Option 1: each person is their own role; pg_hba sends the group to OAuth, the validator asks gprxy.
          await cluster.query('create role oauth_users nologin');
          for (const u of DEV_USERS) await cluster.query(`create role ${quoteIdent(u.email)} login in role oauth_users`);
          return DEV_USERS.map((u) => u.email);
        },
        (roles) => `roles ${roles.join(', ')} in oauth_users; pg_hba: hostssl ${DEMO_DATABASE} +oauth_users … oauth; validator ${validator!.library}.so`,
      );
    }

    const proxyLogPath = config.log.file ?? join(dir, 'proxy.log');
    const logDestination = pino.destination({ dest: proxyLogPath, sync: true, mkdir: true });
    // Ended last (cleanups run in reverse): backends released or drained while the proxy stops still log
    // until PostgreSQL is gone, and a write to an ended destination throws.
    cleanups.unshift(() => logDestination.end());
    const proxy = await timed(
      'gprxy serve',
      async () => {
        const server = new ProxyServer(config, { logger: createLogger({ level: config.log.level, destination: logDestination }) });
        await server.start();
        cleanups.push(() => server.close(0));
        return server;
      },
      (s) => `${s.address.host}:${s.address.port} (TLS), config ${proxyConfigPath}`,
    );
    const proxyAddress = { host: '127.0.0.1', port: proxy.address.port };

    const keychain = memoryKeychain();
    const sessions = new Set<DemoSession>();
    cleanups.push(() => Promise.all([...sessions].map((s) => s.close())));

    const openSession = async (profile: string, approveAs: string | undefined, port: number, findFreePort: boolean, ui?: DemoOptions['onDeviceCode']): Promise<DemoSession> => {
      checkAbort();
      configureProfile(
        { profile, issuer: provider.issuer, clientId: DEV_CLI_CLIENT_ID, audience: DEV_AUDIENCE, proxy: `${proxyAddress.host}:${proxyAddress.port}`, ca: caPath },
        { configDir },
      );
      // An empty environment: the person's GPRXY_TOKEN or GPRXY_PROFILE must not leak into the demo.
      const settings: CliSettings = resolveCliSettings({ profile, env: {}, configDir });
      const deps = { keychain, warn: (m: string) => warn(m) };
      // An automatic approval that fails would leave the poll waiting for minutes: it aborts the login.
      const approval = new AbortController();
      let approvalError: Error | undefined;
      const loginSignal = signal ? AbortSignal.any([signal, approval.signal]) : approval.signal;
      try {
        await login(
          settings,
          {
            method: 'device',
            insecureStorage: false,
            signal: loginSignal,
            ...(approveAs ? { pollIntervalSeconds: 0.2 } : {}),
            ui: {
              deviceCode: (prompt) => {
                ui?.(prompt, { approvingAs: approveAs, caPath });
                if (approveAs) {
                  provider.approveDevice(prompt.userCode, approveAs).catch((e: Error) => {
                    approvalError = e;
                    approval.abort();
                  });
                }
              },
              authorizationUrl: () => {},
              waiting: () => {},
            },
          },
          deps,
        );
      } catch (e) {
        if (approvalError) throw new DemoError('demo_approval_failed', `approving the device login as ${approveAs} failed: ${approvalError.message}`, { cause: approvalError });
        throw e;
      }
      const opened = await openTunnel(
        { databases: options.perUser ? [DEMO_DATABASE] : [DEMO_DATABASE, DEMO_TX_DATABASE], proxy: { ...proxyAddress, ca: ca.cert }, port, findFreePort },
        { source: createTokenSource(settings, deps), warn: (m) => warn(`${profile}: ${m}`) },
      );
      const { keeper, claims, user } = opened;
      const [listener] = opened.listeners;
      const txListener = opened.listeners.find((l) => l.database === DEMO_TX_DATABASE);
      let nativeTunnel: Tunnel | undefined;
      const close = async () => {
        await opened.close();
        await nativeTunnel?.close();
        sessions.delete(session);
      };
      let session!: DemoSession;
      try {
        // --native: the same token keeper answers PostgreSQL 18's own OAUTHBEARER exchange.
        let native: DemoSession['native'];
        if (options.native) {
          const direct = new Tunnel({ databases: [DEMO_DATABASE], proxy: { host: cluster.host, port: cluster.port, ca: ca.cert }, tokens: keeper, port: 0 });
          nativeTunnel = direct;
          const [l] = await direct.start();
          native = { host: l!.host, port: l!.port, psqlCommand: `psql "host=${l!.host} port=${l!.port} dbname=${DEMO_DATABASE} user=${user}"` };
        }
        const conninfo = `host=${listener!.host} port=${listener!.port} dbname=${DEMO_DATABASE} user=${user}`;
        session = {
          profile,
          identity: identityFromClaims(claims),
          user,
          host: listener!.host,
          port: listener!.port,
          conninfo,
          psqlCommand: `psql "${conninfo}"`,
          ...(native ? { native } : {}),
          client: (applicationName = 'gprxy demo') =>
            new pg.Client({ host: listener!.host, port: listener!.port, database: DEMO_DATABASE, user, application_name: applicationName, ssl: false }),
          ...(txListener
            ? {
                txClient: (applicationName = 'gprxy demo') =>
                  new pg.Client({ host: txListener.host, port: txListener.port, database: DEMO_TX_DATABASE, user, application_name: applicationName, ssl: false }),
              }
            : {}),
          close,
        };
        sessions.add(session);
        return session;
      } catch (e) {
        await close();
        throw e;
      }
    };

    const tunnelPort = options.tunnelPort ?? 5432;
    const session = await timed(
      'device-flow login and gprxy connect',
      () => openSession(DEMO_PROFILE, options.autoApproveAs, tunnelPort, options.findFreePort ?? tunnelPort !== 0, options.onDeviceCode),
      (s) => `${s.user} (${s.identity.roles.join(', ')}) on ${s.host}:${s.port}`,
    );

    return {
      dir,
      caPath,
      proxyConfigPath,
      proxyLogPath,
      postgres: { host: cluster.host, port: cluster.port, version, dataDir, superuser: cluster.superuser, superuserPassword: cluster.superuserPassword, binDir: cluster.binDir },
      provider: { issuer: provider.issuer, devicePage: new URL('device', provider.issuer).toString(), users: DEV_USERS },
      proxy: proxyAddress,
      database: DEMO_DATABASE,
      perUser: options.perUser === true,
      ...(options.perUser ? {} : { txDatabase: DEMO_TX_DATABASE }),
      session,
      startupMs: Date.now() - started,
      signIn: (username) => openSession(`${DEMO_PROFILE}-${username}`, username, 0, false),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}


function pad(text: string, width: number): string {
  return text.padEnd(width);
}

/** What is running, for a person: addresses, users and passwords, the psql command to paste. */
export function describeDemo(demo: Demo): string[] {
  const s = demo.session;
  const roleOf = (u: DevUser) => u.roles.join(',');
  const col = 25;
  const binaryCopy = binaryCopyOf(demo.postgres.binDir);
  return [
    '',
    `gprxy demo is running (ready in ${(demo.startupMs / 1000).toFixed(1)} s).`,
    '',
    `  PostgreSQL ${pad(demo.postgres.version, 9)} ${pad(`${demo.postgres.host}:${demo.postgres.port}`, col)} database ${demo.database}: gprxy db init + examples/multitenant.sql; TLS${demo.perUser ? '; identity: per_user (a role per person)' : ''}`,
    `  ${pad('', 20)} ${pad('', col)} superuser ${demo.postgres.superuser} / ${demo.postgres.superuserPassword}`,
    `  OIDC provider        ${pad(demo.provider.issuer, col)} device page ${demo.provider.devicePage}`,
    `  gprxy serve          ${pad(`${demo.proxy.host}:${demo.proxy.port}`, col)} TLS; config ${demo.proxyConfigPath}`,
    `  ${pad('', 20)} ${pad('', col)} audit log ${demo.proxyLogPath}`,
    `  gprxy connect ${pad(demo.database, 6)} ${pad(`${s.host}:${s.port}`, col)} as ${s.user} (${s.identity.roles.join(', ') || 'no roles'}), profile "${s.profile}"`,
    ...(s.native
      ? [
          `  native OAuth tunnel  ${pad(`${s.native.host}:${s.native.port}`, col)} straight to PostgreSQL 18 (Option 1): ${s.user} is its own role, validated by the gprxy validator`,
          `  ${pad('', 20)} ${pad('', col)} ${s.native.psqlCommand} -c "select current_user, system_user"`,
        ]
      : []),
    '',
    '  Users of the demo provider (sign in at the device page):',
    ...demo.provider.users.map((u) => `    ${pad(u.username, 9)} password ${pad(u.password, 12)} role ${pad(roleOf(u), 10)} tenant ${u.orgId ?? '-'}`),
    '',
    `  Temporary files: ${demo.dir} and ${demo.postgres.dataDir.replace(/\/data$/, '')} (removed on exit); certificates from the demo CA ${demo.caPath}.`,
    ...(binaryCopy
      ? [`  PostgreSQL's binaries were copied to ${binaryCopy} (the postgres user it runs as cannot reach them where npm put them): kept and reused by the next runs; delete it any time.`]
      : []),
    '  Tokens are kept in memory only: the demo does not touch your OS keychain or ~/.config/gprxy.',
  ];
}

/** A role name from a demo user's e-mail, as a quoted SQL identifier. */
function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
