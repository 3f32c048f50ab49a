import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { exitCodeForChild, exitCodeForSignal } from '../cli/exit-codes.js';
import { resolveCliSettings } from '../config/cli-config.js';
import { createTokenSource } from '../oauth/cli-session.js';
import { TokenKeeper } from '../tunnel/token-keeper.js';
import { Tunnel } from '../tunnel/tunnel.js';

export default class Connect extends BaseCommand {
  static override description = `Open a local tunnel to a database behind the gprxy proxy: psql -h 127.0.0.1 just works, with no password.
The tunnel keeps your access token fresh and injects it upstream. With -- COMMAND it runs the command with PGHOST, PGPORT, PGDATABASE and PGUSER set and exits with its code.`;
  static override examples = [
    'gprxy connect mydb',
    'gprxy connect mydb otherdb --port 6543',
    "gprxy connect mydb -- psql -c 'select current_user'",
    'gprxy connect mydb --unix-socket ~/.gprxy/sock',
  ];
  static override strict = false;
  static override args = { databases: Args.string({ description: 'database name(s) as the proxy serves them', required: true }) };
  static override flags = {
    port: Flags.integer({ description: 'first local port (default 5432, or the next free one)', min: 0, max: 65535 }),
    'unix-socket': Flags.string({ description: 'listen on a Unix socket in this directory (made mode 0700) instead of TCP' }),
    profile: Flags.string({ char: 'p', description: 'profile to use (default: GPRXY_PROFILE or "default")' }),
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
    if (!settings.proxy) this.error('no proxy address: run gprxy configure --proxy HOST:PORT (or set GPRXY_PROXY)');
    const warn = (m: string) => this.logToStderr(`gprxy: ${m}`);
    const keeper = new TokenKeeper({
      source: createTokenSource(settings, { warn: (m) => warn(`warning: ${m}`) }),
      onLoginRequired: (e) => warn(`${e.message} (new connections are refused until then; open sessions stay up)`),
      onRefreshFailed: (e, retry) => warn(`token refresh failed (${e.message}); retrying in ${Math.round(retry / 1000)} s`),
    });
    // Fail fast at start when there is no usable login at all.
    await keeper.getAccessToken();
    const execMode = command.length > 0;
    const tunnel = new Tunnel({
      databases,
      proxy: { host: settings.proxy.host, port: settings.proxy.port, ...(settings.caPem ? { ca: settings.caPem } : {}) },
      tokens: keeper,
      port: flags.port ?? (execMode ? 0 : 5432),
      findFreePort: flags.port === undefined,
      ...(flags['unix-socket'] ? { unixSocketDir: flags['unix-socket'] } : {}),
      events: {
        onConnectionError: (e, db) => warn(`${db}: ${e.message}`),
      },
    });
    const listeners = await tunnel.start();
    const { accessToken: _t, claims } = await keeper.getAccessToken();
    const user = String(claims['https://gprxy.io/email'] ?? claims.email ?? claims.sub ?? '');

    if (execMode) {
      const first = listeners[0]!;
      const child = spawn(command[0]!, command.slice(1), {
        stdio: 'inherit',
        env: { ...process.env, PGHOST: first.host, PGPORT: String(first.port), PGDATABASE: first.database, PGUSER: user, PGSSLMODE: 'disable' },
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
      keeper.close();
      await tunnel.close();
      this.exit(code);
    }

    for (const l of listeners) {
      const where = l.socketPath ? `socket ${l.socketPath}` : `${l.host}:${l.port}`;
      this.log(`${l.database}: listening on ${where} as ${user}`);
      this.log(`  psql "host=${l.host} port=${l.port} dbname=${l.database} user=${user}"`);
    }
    this.log('Press Ctrl+C to stop.');
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
    });
    keeper.close();
    await tunnel.close();
    this.exit(exitCodeForSignal(signal));
  }
}
