import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { exitCodeForSignal } from '../cli/exit-codes.js';
import { resolveCliSettings } from '../config/cli-config.js';
import { createTokenSource } from '../oauth/cli-session.js';
import { profileFlag } from '../cli/flags.js';

export default class Token extends BaseCommand {
  static override description = 'Print a valid access token (refreshed if needed) on stdout, nothing else';
  static override examples = [
    'PGPASSWORD="$(gprxy token)" psql "host=proxy.example.com user=alice@example.com dbname=mydb sslmode=verify-full"',
    'gprxy token --json   # {"access_token": "...", "token_type": "Bearer", "expires_at": "2026-...Z", "expires_in": 3599}',
  ];
  static override flags = {
    profile: profileFlag('to use'),
    ci: Flags.boolean({ description: "print this CI job's OIDC token for the proxy's audience (GitHub Actions, GitLab CI); detected without the flag when no other credentials are set", default: false }),
    json: Flags.boolean({ description: 'print {access_token, token_type, expires_at, expires_in} as JSON (for applications and token caches)', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Token);
    const settings = resolveCliSettings({ profile: flags.profile, env: process.env });
    const source = createTokenSource(settings, { warn: (m) => this.logToStderr(`gprxy: warning: ${m}`), debug: (m) => this.debugLog(m) }, { ci: flags.ci });
    // Ctrl+C during a refresh waits for it to save the rotated refresh token (dying in between would leave a
    // used one behind, and the provider revokes the whole login when it is used again), then exits 130/143.
    let received: NodeJS.Signals | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      received ??= signal;
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const { accessToken, expiresAt: sourceExpiry, claims } = await source.getAccessToken();
    if (received) this.exit(exitCodeForSignal(received));
    if (flags.json) {
      // The token's own exp when it has one; null for a GPRXY_TOKEN whose lifetime is unknown (not a JWT).
      const expiresAt = typeof claims.exp === 'number' ? claims.exp * 1000 : sourceExpiry;
      const known = Number.isFinite(expiresAt);
      const body = {
        access_token: accessToken,
        token_type: 'Bearer',
        expires_at: known ? new Date(expiresAt).toISOString() : null,
        expires_in: known ? Math.max(0, Math.floor((expiresAt - Date.now()) / 1000)) : null,
      };
      process.stdout.write(`${JSON.stringify(body)}\n`);
      return;
    }
    process.stdout.write(`${accessToken}\n`);
  }
}
