import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { resolveCliSettings } from '../config/cli-config.js';
import { createTokenSource } from '../oauth/cli-session.js';

export default class Token extends BaseCommand {
  static override description = 'Print a valid access token (refreshed if needed) on stdout, nothing else';
  static override examples = ['PGPASSWORD="$(gprxy token)" psql "host=proxy.example.com user=alice@example.com dbname=mydb sslmode=verify-full"'];
  static override flags = {
    profile: Flags.string({ char: 'p', description: 'profile to use (default: GPRXY_PROFILE or "default")' }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Token);
    const settings = resolveCliSettings({ profile: flags.profile, env: process.env });
    const source = createTokenSource(settings, { warn: (m) => this.logToStderr(`gprxy: warning: ${m}`) });
    const { accessToken } = await source.getAccessToken();
    process.stdout.write(`${accessToken}\n`);
  }
}
