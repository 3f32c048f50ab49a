import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { loadProxyConfig } from '../../config/proxy-config.js';
import { parseDuration } from '../../config/duration.js';
import { listUserRoles, pruneUserRoles, renderUserRoles } from '../../sql/db-users.js';

export default class DbUsers extends BaseCommand {
  static override summary = 'List the per-user PostgreSQL roles with their last login; lock or drop idle ones';
  static override description = `For databases with identity: per_user: the roles the proxy created (members of gprxy_users), whether they may log in, their last login through the proxy (recorded by the provisioning connection in gprxy.user_login; users cannot write it) and their groups.

--prune --idle 90d locks (NOLOGIN) every role without a login for that long; the user's next login through the proxy unlocks it. With --drop --reassign-to ROLE the roles are dropped instead: in every database of the cluster, REASSIGN OWNED BY the role TO ROLE and DROP OWNED BY it, then DROP ROLE. Each role is pruned under the same lock the proxy takes to provision it, with its last login read again, so a login at that moment wins. Running it again changes nothing more.

The admin connection is --admin-url (or GPRXY_ADMIN_URL), else provisioning.admin_url from the config.`;

  static override examples = [
    'gprxy db users --config gprxy.yaml',
    'gprxy db users --config gprxy.yaml --prune --idle 90d',
    'gprxy db users --config gprxy.yaml --prune --idle 180d --drop --reassign-to app_owner',
  ];

  static override flags = {
    config: Flags.string({ char: 'c', description: 'proxy config file (YAML or JSON)', required: true, env: 'GPRXY_CONFIG' }),
    'admin-url': Flags.string({ description: 'admin connection URL (default: provisioning.admin_url of the config)', env: 'GPRXY_ADMIN_URL' }),
    database: Flags.string({ char: 'd', description: 'only this key of databases (default: every per_user database)' }),
    prune: Flags.boolean({ description: 'lock (or with --drop, drop) roles idle for longer than --idle', default: false }),
    idle: Flags.string({ description: 'with --prune: how long without a login makes a role idle, e.g. 90d' }),
    drop: Flags.boolean({ description: 'with --prune: drop the roles instead of locking them (needs --reassign-to)', default: false }),
    'reassign-to': Flags.string({ description: 'with --drop: the role that receives the objects the dropped roles own' }),
    json: Flags.boolean({ description: 'print JSON', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(DbUsers);
    if ((flags.idle || flags.drop) && !flags.prune) this.usageError('--idle and --drop go with --prune');
    if (flags.prune && !flags.idle) this.usageError('--prune needs --idle (e.g. --idle 90d)');
    if (flags.drop && !flags['reassign-to']) this.usageError('--drop needs --reassign-to ROLE: the objects the dropped roles own must go to someone');
    const config = loadProxyConfig(flags.config, process.env);
    const adminUrl = flags['admin-url'] ?? config.provisioning?.adminUrl;
    if (!adminUrl) this.usageError('no admin connection: pass --admin-url, set GPRXY_ADMIN_URL, or configure provisioning.admin_url');
    const base = { adminUrl, ...(flags.database ? { database: flags.database } : {}) };
    if (flags.prune) {
      let idleMs: number;
      try {
        idleMs = parseDuration(flags.idle!);
      } catch (e) {
        this.usageError(`--idle: ${(e as Error).message}`);
      }
      const results = await pruneUserRoles(config, { ...base, idleMs, ...(flags.drop ? { dropReassignTo: flags['reassign-to']! } : {}) });
      if (flags.json) this.log(JSON.stringify(results, null, 2));
      else if (results.length === 0) this.log(`nothing to prune: no role idle for ${flags.idle} that is not already ${flags.drop ? 'dropped' : 'locked'}`);
      else for (const r of results) this.log(`${r.action} ${r.role}${r.why ? ` (${r.why})` : ''}`);
      return;
    }
    const roles = await listUserRoles(config, base);
    this.log(flags.json ? JSON.stringify(roles, null, 2) : renderUserRoles(roles));
  }
}
