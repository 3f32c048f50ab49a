/**
 * Which NOLOGIN groups a per-user role belongs to: every group the token's roles map to (not only the
 * first rule's, as for shared accounts: a person holding pg_writer and pg_reader is in both groups).
 * Explicit `provisioning.groups`, or derived from role_mapping: the level of each rule (its role's name,
 * else its account's: pg_writer / app_writer → writer) gives db init's group for it (gprxy_writer).
 * Groups are cluster-wide, so these are never service accounts: granting a LOGIN role would let a user
 * become that account (the config refuses service-account names, the provisioner checks NOLOGIN).
 */
import type { ProxyConfig } from '../config/proxy-config.js';
import { classifyName } from './levels.js';
import { GROUP_ROLES } from './roles.js';
import { GprxyError } from '../shared/errors.js';

export class GroupMappingError extends GprxyError<'invalid_group_mapping'> {
  readonly code = 'invalid_group_mapping' as const;
}

export interface GroupMapping {
  /** Every group the proxy manages: memberships in these (and only these) are granted. */
  readonly all: readonly string[];
  /** The groups a token's (namespaced) roles map to, sorted, without duplicates. */
  groupsFor(roles: readonly string[]): string[];
}

export function groupMapping(config: Pick<ProxyConfig, 'roleMapping' | 'provisioning'>): GroupMapping {
  const rules: { role: string; group: string }[] = config.provisioning?.groups
    ? [...config.provisioning.groups]
    : config.roleMapping.map((rule, i) => {
        const level = classifyName(rule.role) ?? classifyName(rule.account);
        if (!level) {
          throw new GroupMappingError(
            `role_mapping[${i}] (${rule.role} → ${rule.account}) names no level (admin, writer, reader), so no group can be derived for per-user roles: list the groups in provisioning.groups ({ role, group })`,
          );
        }
        return { role: rule.role, group: GROUP_ROLES[level] };
      });
  const all = [...new Set(rules.map((r) => r.group))].sort();
  return {
    all,
    groupsFor: (roles) => [...new Set(rules.filter((r) => roles.includes(r.role)).map((r) => r.group))].sort(),
  };
}
