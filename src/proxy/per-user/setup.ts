/**
 * Builds the per-user machinery of a proxy when its config has an `identity: per_user` database: the
 * group mapping (checked here, so a mapping that cannot be derived stops `serve` at start), the provisioner
 * over provisioning.admin_url and the login step.
 */
import type { Logger } from 'pino';
import type { ProxyConfig } from '../../config/proxy-config.js';
import { groupMapping } from '../../sql/user-groups.js';
import { PerUserRoles } from './per-user-login.js';
import { Provisioner } from './provisioner.js';

export function perUserRoles(config: ProxyConfig, logger: Logger): PerUserRoles | undefined {
  if (!config.provisioning || !Object.values(config.databases).some((d) => d.identity === 'per_user')) return undefined;
  const provisioner = new Provisioner({ config: config.provisioning, groups: groupMapping(config), logger });
  return new PerUserRoles(config, provisioner, logger);
}
