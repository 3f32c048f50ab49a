import { BaseCommand } from '../cli/base-command.js';
import { resolveCliSettings } from '../config/cli-config.js';
import { logout } from '../oauth/cli-session.js';
import { profileFlag } from '../cli/flags.js';

export default class Logout extends BaseCommand {
  static override description = 'Revoke the refresh token at the provider (RFC 7009) and delete the local tokens; running tunnels of the profile refuse new connections from then on (open sessions stay until they end)';
  static override flags = {
    profile: profileFlag('to log out'),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Logout);
    const settings = resolveCliSettings({ profile: flags.profile, env: process.env });
    const result = await logout(settings, { warn: (m) => this.logToStderr(`gprxy: warning: ${m}`) });
    const revoked = {
      revoked: 'refresh token revoked at the provider',
      unsupported: 'the provider offers no revocation, so the refresh token stays valid there until it expires',
      offline: 'the provider was unreachable, so the refresh token was not revoked',
      none: 'nothing to revoke',
    }[result.revocation];
    this.log(`Logged out of profile "${settings.profile}": ${revoked}; ${result.deleted ? 'local tokens deleted' : 'no local tokens were stored'}.`);
    if (result.tunnels.length === 0) this.log('No running gprxy connect tunnels for this profile.');
    for (const t of result.tunnels) {
      const where = t.listeners.join(', ');
      this.log(
        t.stopped
          ? `Tunnel pid ${t.pid} (${where}) now refuses new connections ("run gprxy login"); its open sessions stay until they end.`
          : `Tunnel pid ${t.pid} (${where}) did not confirm within 3 s; it refuses new connections once it notices the logout.`,
      );
    }
  }
}
