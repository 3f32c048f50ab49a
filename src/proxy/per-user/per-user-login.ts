/**
 * The login step of an `identity: per_user` database (issue 12): the user's role name (role-name.ts), the
 * provisioner's transaction (create, repair, groups, last login), then a backend from the user's own pool,
 * logged in as that role with the derived password. A backend login refused for the password (the user
 * changed it, or the admin cannot read pg_authid to compare) gets the verifier set again and one retry.
 * The session then runs as usual: the identity context still carries the claims, `account` is the role.
 */
import type { Logger } from 'pino';
import type { DatabaseConfig, ProxyConfig } from '../../config/proxy-config.js';
import type { Identity } from '../../token/identity.js';
import { BackendError, type Backend } from '../backend.js';
import { Refusal } from '../disconnect.js';
import type { BackendPool } from '../pool.js';
import type { PoolManager } from '../pools.js';
import { ProvisioningError, type Provisioner } from './provisioner.js';
import { providerOf, userRoleName } from './role-name.js';

export interface PerUserLogin {
  readonly identity: Identity;
  readonly pool: BackendPool;
  readonly backend: Backend;
}

export class PerUserRoles {
  constructor(
    private readonly config: Pick<ProxyConfig, 'providers' | 'provisioning'>,
    readonly provisioner: Provisioner,
    private readonly logger: Logger,
  ) {}

  /** The provisioner's error as the login's refusal; the operator's log gets the details the client does not. */
  private refusal(e: unknown, database: DatabaseConfig, role: string): unknown {
    if (!(e instanceof ProvisioningError)) return e;
    this.logger.warn({ event: 'provisioning_failed', code: e.code, role, database: database.name, reason: e.message }, `provisioning role ${role} failed: ${e.message}`);
    return new Refusal(e.code, e.message, undefined, { cause: e });
  }

  roleFor(identity: Identity): string {
    return userRoleName(identity, providerOf(this.config.providers, identity)?.prefix, this.config.provisioning?.roleName ?? 'email');
  }

  async login(database: DatabaseConfig, identity: Identity, pools: PoolManager, acquire: (pool: BackendPool) => Promise<Backend>): Promise<PerUserLogin> {
    const role = this.roleFor(identity);
    let password: string;
    try {
      ({ password } = await this.provisioner.ensure(database, role, identity));
    } catch (e) {
      throw this.refusal(e, database, role);
    }
    const asRole: Identity = { ...identity, account: role };
    const pool = pools.getUser(database, role, password);
    try {
      return { identity: asRole, pool, backend: await acquire(pool) };
    } catch (e) {
      if (!(e instanceof BackendError && e.code === 'backend_auth_failed' && e.fields?.code === '28P01')) throw e;
    }
    try {
      await this.provisioner.repairPassword(database, role);
    } catch (e) {
      throw this.refusal(e, database, role);
    }
    return { identity: asRole, pool, backend: await acquire(pool) };
  }

  close(): Promise<void> {
    return this.provisioner.close();
  }
}
