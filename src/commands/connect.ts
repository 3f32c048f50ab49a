import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { exitCodeForChild, exitCodeForSignal } from '../cli/exit-codes.js';
import { caFixHint, CliConfigError, DEFAULT_PROFILE, proxyFixHint, resolveCliSettings } from '../config/cli-config.js';
import { decodeClaims } from '../oauth/identity.js';
import { createTokenSource, loginGenerations } from '../oauth/cli-session.js';
import { CiTokenSource } from '../oauth/ci-token-source.js';
import { openTunnel } from '../tunnel/open.js';
import { usernameFromClaims } from '../tunnel/tunnel.js';
import { profileFlag } from '../cli/flags.js';

/** PostgreSQL's own port, so that psql -h 127.0.0.1 needs no -p. */
const DEFAULT_TUNNEL_PORT = 5432;

export default class Connect extends BaseCommand {
  static override description = `Open a local tunnel to a database behind the gprxy proxy: psql -h 127.0.0.1 just works, with no password.
The tunnel keeps your access token fresh and injects it upstream. It connects as you, to the databases it serves: a startup that asks for another user or database is refused, never rewritten.
With -- COMMAND it runs the command with PGHOST, PGPORT, PGDATABASE, PGUSER and a one-time PGPASSWORD set (only that command can use the tunnel) and exits with its code.
After gprxy logout (or a login as someone else) a running tunnel refuses new connections within seconds; open sessions stay until they end.`;
  static override examples = [
    'gprxy connect mydb',
    'gprxy connect mydb otherdb --port 6543',
    "gprxy connect mydb -- psql -c 'select current_user'",
    'gprxy connect mydb --local-password   # prints a one-time password that psql must give',
    'gprxy connect mydb --unix-socket ~/.gprxy/sock',
    "GPRXY_AUDIENCE=https://gprxy.example GPRXY_PROXY=proxy.example:6432 gprxy connect mydb --ci -- psql -c 'select 1'   # in a CI job",
  ];
  static override strict = false;
  static override args = { databases: Args.string({ description: 'database name(s) as the proxy serves them', required: true }) };
  static override flags = {
    port: Flags.integer({ description: 'first local port (default 5432, or the next free one)', min: 0, max: 65535 }),
    'unix-socket': Flags.string({ description: 'listen on a Unix socket in this directory (made mode 0700) instead of TCP' }),
    'local-password': Flags.boolean({ description: 'require a random one-time password (printed) from local clients, so other local users and processes cannot use your identity; exec mode always does', default: false }),
    profile: profileFlag('to use'),
    ci: Flags.boolean({ description: "use this CI job's OIDC token (GitHub Actions: needs permissions: id-token: write; GitLab: an id_tokens variable, GPRXY_ID_TOKEN or the name in GPRXY_CI_TOKEN_VAR); detected without the flag when no other credentials are set", default: false }),
  };

  async run(): Promise<void> {
    const { flags, argv } = await this.parse(Connect);
    const dashdash = process.argv.indexOf('--');
    const command = dashdash >= 0 ? process.argv.slice(dashdash + 1) : [];
    const positional = argv as string[];
    // oclif passes the words after `--` as positional arguments too: they are the command, not databases.
    const databases = positional.slice(0, positional.length - command.length);
    if (databases.length === 0) this.usageError('name the database to connect to, e.g. gprxy connect mydb');
    const settings = resolveCliSettings({ profile: flags.profile, env: process.env });
    if (!settings.proxy) {
      const flag = settings.profile === DEFAULT_PROFILE ? '' : ` --profile ${settings.profile}`;
      throw new CliConfigError('not_configured', `no proxy address in profile "${settings.profile}": run gprxy configure${flag} --proxy HOST:PORT (or set GPRXY_PROXY)`);
    }
    // The proxy verifies JWTs only, and the tunnel takes the user name from the token's claims.
    if (settings.staticToken && Object.keys(decodeClaims(settings.staticToken)).length === 0) {
      throw new CliConfigError('invalid_config', 'GPRXY_TOKEN is not a JWT (three base64url parts separated by dots): set it to an access token from your provider, or unset it and use GPRXY_CLIENT_ID and GPRXY_CLIENT_SECRET');
    }
    const warn = (m: string) => this.logToStderr(`gprxy: ${m}`);
    const execMode = command.length > 0;
    // A random one-time password for the local listener: exec mode always, interactive on request.
    const localPassword = execMode || flags['local-password'] ? randomBytes(18).toString('base64url') : undefined;
    const source = createTokenSource(settings, { warn: (m) => warn(`warning: ${m}`), debug: (m) => this.debugLog(m) }, { ci: flags.ci });
    // A CI job token: no login to watch, no tunnel registry, nothing written to disk.
    const ciJob = source instanceof CiTokenSource;
    const opened = await openTunnel(
      {
        databases,
        proxy: {
          host: settings.proxy.host,
          port: settings.proxy.port,
          ...(settings.caPem ? { ca: settings.caPem } : {}),
          hints: { address: proxyFixHint(settings), ca: caFixHint(settings) },
        },
        port: flags.port ?? (execMode ? 0 : DEFAULT_TUNNEL_PORT),
        findFreePort: flags.port === undefined,
        ...(flags['unix-socket'] ? { unixSocketDir: flags['unix-socket'] } : {}),
        ...(localPassword ? { localPassword } : {}),
      },
      { source, warn },
    );
    const { keeper, listeners, user } = opened;

    // Logout or a new login in another terminal reaches this tunnel through the profile's generation
    // marker (no keychain polling); the tunnel confirms in its registry entry, which logout reads.
    const generations = loginGenerations(settings);
    const describe = listeners.map((l) => `${l.database}@${l.socketPath ?? `${l.host}:${l.port}`}`);
    let seen = ciJob ? null : ((await generations.read(settings.profile))?.generation ?? null);
    const unregister = ciJob ? async () => {} : await generations.registerTunnel({ pid: process.pid, profile: settings.profile, listeners: describe, generation: seen });
    const unwatch = ciJob ? () => {} : await generations.watch(settings.profile, (mark) => {
      keeper.invalidate();
      seen = mark?.generation ?? null;
      void (async () => {
        if (mark?.event === 'logout') warn('logged out (gprxy logout): new connections are refused until gprxy login; open sessions stay until they end');
        else {
          try {
            const now = usernameFromClaims((await keeper.getAccessToken()).claims) ?? '';
            warn(now === user ? `logged in again as ${now}` : `logged in as ${now} now (was ${user}): new connections are ${now}'s${execMode ? `, and ${command[0]} was given ${user}: its new connections are refused` : ''}`);
          } catch {
            // The keeper already said "run gprxy login".
          }
        }
        await generations.updateTunnel({ pid: process.pid, profile: settings.profile, listeners: describe, generation: seen }).catch(() => undefined);
      })();
    });
    const stop = async () => {
      unwatch();
      await opened.close();
      await unregister().catch(() => undefined);
    };

    if (execMode) {
      const first = listeners[0]!;
      const child = spawn(command[0]!, command.slice(1), {
        stdio: 'inherit',
        env: { ...process.env, PGHOST: first.host, PGPORT: String(first.port), PGDATABASE: first.database, PGUSER: user, PGPASSWORD: localPassword, PGSSLMODE: 'disable' },
      });
      const forward = (signal: NodeJS.Signals) => child.kill(signal);
      process.on('SIGINT', forward);
      process.on('SIGTERM', forward);
      const code = await new Promise<number>((resolve) => {
        child.on('error', (e) => {
          warn(`cannot run ${command[0]}: ${e.message}`);
          resolve(127);
        });
        child.on('exit', (c, signal) => resolve(exitCodeForChild(c, signal, osConstants.signals)));
      });
      await stop();
      this.exit(code);
    }

    const first = listeners[0];
    if (flags.port === undefined && first && !first.socketPath && first.port !== DEFAULT_TUNNEL_PORT) {
      this.log(`Port ${DEFAULT_TUNNEL_PORT} is in use (a local PostgreSQL?): listening on ${first.port} instead (choose one with --port)`);
    }
    for (const l of listeners) {
      const where = l.socketPath ? `socket ${l.socketPath}` : `${l.host}:${l.port}`;
      this.log(`${l.database}: listening on ${where} as ${user}`);
      this.log(`  psql "host=${l.host} port=${l.port} dbname=${l.database} user=${user}"`);
    }
    if (localPassword) this.log(`Local password (one-time, for this tunnel only): ${localPassword}\n  e.g. PGPASSWORD=${localPassword} psql ...`);
    // The tunnel does not ask the proxy which databases it serves (that would need a login per name at start).
    this.log(`The proxy checks ${databases.length > 1 ? 'these database names' : 'the database name'} at the first connection: one it does not serve is refused then (3D000).`);
    this.log('Press Ctrl+C to stop.');
    // `on`, not `once`: libraries' exit hooks re-send the signal, which must not kill us mid-close.
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.on('SIGINT', () => resolve('SIGINT'));
      process.on('SIGTERM', () => resolve('SIGTERM'));
    });
    await stop();
    this.exit(exitCodeForSignal(signal));
  }
}
