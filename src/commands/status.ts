import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { resolveCliSettings } from '../config/cli-config.js';
import { status } from '../oauth/cli-session.js';
import { profileFlag } from '../cli/flags.js';

export default class Status extends BaseCommand {
  static override description = 'Who am I: identity, roles, token expiry, profile and token storage';
  static override flags = {
    profile: profileFlag('to show'),
    json: Flags.boolean({ description: 'print JSON', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Status);
    const settings = resolveCliSettings({ profile: flags.profile, env: process.env });
    const report = await status(settings, { warn: (m) => this.logToStderr(`gprxy: warning: ${m}`) });
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return;
    }
    const who = report.identity.email ?? report.identity.sub;
    const token = report.accessToken;
    const lines: [string, string][] = [
      ['profile', report.profile],
      ['issuer', report.issuer ?? '(not configured)'],
      ['audience', report.audience ?? '(none)'],
      ['proxy', report.proxy ?? '(none)'],
      ['mode', { login: 'interactive login', client_credentials: 'client credentials (GPRXY_CLIENT_ID)', token: 'GPRXY_TOKEN' }[report.mode]],
      ['storage', report.storage === 'file' ? 'file (--insecure-storage)' : report.storage === 'keychain' ? 'OS keychain' : 'none'],
      ['identity', report.loggedIn ? `${who ?? '(unknown)'}${report.identity.email && report.identity.sub ? ` (${report.identity.sub})` : ''}` : 'not logged in'],
      ['tenant', report.identity.orgId ?? '(none)'],
      ['roles', report.roles.length ? report.roles.join(', ') : '(none)'],
      ['token', token ? (token.expiresAt ? `${token.expired ? 'expired' : 'valid until'} ${token.expiresAt}${token.expired ? '' : ` (${token.expiresInSeconds} s)`}` : 'no expiry') : '(none)'],
    ];
    if (report.mode === 'login') lines.push(['refresh', report.refreshToken ? 'stored' : 'none']);
    for (const [k, v] of lines) this.log(`${k.padEnd(9)} ${v}`);
    if (!report.loggedIn && report.mode === 'login') this.log(`Next: gprxy login${report.profile === 'default' ? '' : ` --profile ${report.profile}`}`);
  }
}
