import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { caFixHint, CliConfigError, DEFAULT_PROFILE, proxyFixHint, resolveCliSettings } from '../config/cli-config.js';
import { createTokenSource } from '../oauth/cli-session.js';
import { profileFlag } from '../cli/flags.js';
import { listSessions, type SessionRow } from '../tunnel/admin-sessions.js';

const COLUMNS: readonly [keyof SessionRow, string][] = [
  ['id', 'ID'],
  ['user', 'USER'],
  ['database', 'DATABASE'],
  ['account', 'ACCOUNT'],
  ['client_addr', 'CLIENT'],
  ['application_name', 'APPLICATION'],
  ['since', 'SINCE'],
  ['state', 'STATE'],
  ['wait', 'WAIT'],
  ['bytes_in', 'IN'],
  ['bytes_out', 'OUT'],
];

export default class Sessions extends BaseCommand {
  static override description = `Who is connected to the proxy: the admin console's SHOW SESSIONS, through a tunnel with your profile's token.
Needs a token with one of the proxy's admin.roles, from one of its admin.networks.`;
  static override examples = ['gprxy sessions', 'gprxy sessions --json | jq -r ".[] | select(.user == \\"alice@example.com\\") | .id"'];
  static override flags = {
    profile: profileFlag('to use'),
    json: Flags.boolean({ description: 'print JSON (an array of sessions)', default: false }),
    database: Flags.string({ description: "the proxy's admin database (its admin.database)", default: 'gprxy' }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Sessions);
    const settings = resolveCliSettings({ profile: flags.profile, env: process.env });
    if (!settings.proxy) {
      const flag = settings.profile === DEFAULT_PROFILE ? '' : ` --profile ${settings.profile}`;
      throw new CliConfigError('not_configured', `no proxy address in profile "${settings.profile}": run gprxy configure${flag} --proxy HOST:PORT (or set GPRXY_PROXY)`);
    }
    const warn = (m: string) => this.logToStderr(`gprxy: ${m}`);
    const rows = await listSessions(
      {
        database: flags.database,
        proxy: { host: settings.proxy.host, port: settings.proxy.port, ...(settings.caPem ? { ca: settings.caPem } : {}), hints: { address: proxyFixHint(settings), ca: caFixHint(settings) } },
      },
      { source: createTokenSource(settings, { warn: (m) => warn(`warning: ${m}`), debug: (m) => this.debugLog(m) }), warn },
    );
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      return;
    }
    const cells = rows.map((r) => COLUMNS.map(([key]) => (r[key] === null ? '' : String(r[key]))));
    const widths = COLUMNS.map(([, title], i) => Math.max(title.length, ...cells.map((c) => c[i]!.length)));
    const line = (values: readonly string[]) => values.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
    this.log(line(COLUMNS.map(([, title]) => title)));
    for (const c of cells) this.log(line(c));
    this.log(`${rows.length} session${rows.length === 1 ? '' : 's'}`);
  }
}
