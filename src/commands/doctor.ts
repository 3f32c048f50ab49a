import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { ExitCode } from '../cli/exit-codes.js';
import { profileFlag } from '../cli/flags.js';
import { resolveCliSettings } from '../config/cli-config.js';
import { loadProxyConfig } from '../config/proxy-config.js';
import { clientDoctor } from '../doctor/client.js';
import { failed, formatCheck } from '../doctor/report.js';
import { serverDoctor } from '../doctor/server.js';

export default class Doctor extends BaseCommand {
  static override summary = 'Check a set-up end to end, one line per check with the fix (client side, or the proxy side with --config)';
  static override description = `Client side (a profile, or a CI job with --ci): the profile, a real access token (audience and roles; the token is never printed),
the issuer (discovery, signing keys and their types, this clock against the issuer's), the proxy's TLS certificate and name,
and with DATABASE a real login through the proxy.
Server side (--config): the config and its warnings, each provider (discovery, signing keys, clock), each database × account
login (as serve --check --connect), and whether gprxy db init prepared each oauth database.
Exit code: 0 when every check passed, 1 when any failed.`;
  static override examples = ['gprxy doctor mydb', 'gprxy doctor --ci mydb   # in a CI job', 'gprxy doctor --config gprxy.yaml --json'];
  static override args = { database: Args.string({ description: 'a database to log in to through the proxy (client side)', required: false }) };
  static override flags = {
    config: Flags.string({ char: 'c', description: 'check the proxy side of this proxy config instead' }),
    profile: profileFlag('to check'),
    ci: Flags.boolean({ description: "check with this CI job's token (GitHub Actions, GitLab CI)", default: false }),
    json: Flags.boolean({ description: 'print the checks as JSON', default: false }),
  };

  async run(): Promise<void> {
    const { flags, args } = await this.parse(Doctor);
    let checks;
    if (flags.config) {
      if (args.database || flags.ci || flags.profile) this.usageError('--config checks the proxy side: DATABASE, --ci and --profile are for the client side');
      checks = await serverDoctor(loadProxyConfig(flags.config, process.env), flags.config);
    } else {
      const settings = resolveCliSettings({ ...(flags.profile ? { profile: flags.profile } : {}), env: process.env });
      checks = await clientDoctor({ settings, ...(args.database ? { database: args.database } : {}), ci: flags.ci });
    }
    const bad = failed(checks);
    if (flags.json) process.stdout.write(`${JSON.stringify({ ok: bad === 0, failed: bad, checks }, null, 2)}\n`);
    else {
      for (const c of checks) this.log(formatCheck(c));
      this.log(bad === 0 ? `all ${checks.length} checks passed` : `${bad} of ${checks.length} checks failed`);
    }
    if (bad > 0) this.exit(ExitCode.ERROR);
  }
}
