/**
 * Who may use the admin console and the status page (config `admin`): a client address inside
 * `admin.networks`, and a verified token whose user matches as for any login and that holds one of
 * `admin.roles`. The two refusals differ on purpose, as PostgreSQL's do:
 * - a failed login (bad, expired or foreign token, wrong user) is 28000/28P01 like every login, and a
 *   disallowed address is 28000 too, before any token is read (PostgreSQL's "no pg_hba.conf entry");
 * - a valid login without an admin role is 42501, PostgreSQL's "permission denied for database": the
 *   person is who they say, they may not come in here. Monitoring can tell "fix the token" from "ask for
 *   the role".
 */
import { BlockList, isIPv4 } from 'node:net';
import type { AdminConfig } from '../../config/proxy-config.js';
import { SqlState } from '../../protocol/sqlstate.js';
import { TokenError, quote } from '../../token/errors.js';
import { resolveIdentity, type Identity } from '../../token/identity.js';
import type { VerifiedToken } from '../../token/verifier.js';
import { Refusal } from '../disconnect.js';

/** The account name an admin identity carries: the console uses no service account. */
export const ADMIN_ACCOUNT = '(admin console)';

export class AdminAccess {
  private readonly networks = new BlockList();

  constructor(readonly config: AdminConfig) {
    for (const n of config.networks) this.networks.addSubnet(n.address, n.prefix, n.family);
  }

  get database(): string {
    return this.config.database;
  }

  /** Whether a client address is inside admin.networks (IPv4-mapped IPv6 addresses count as IPv4). */
  allowsAddress(address: string | undefined): boolean {
    if (!address) return false;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
    if (mapped) return this.networks.check(mapped, 'ipv4') || this.networks.check(address, 'ipv6');
    return this.networks.check(address, isIPv4(address) ? 'ipv4' : 'ipv6');
  }

  /** Refusal for an address outside admin.networks (28000, before the token is asked for). */
  networkRefusal(address: string | undefined): Refusal {
    return new Refusal(
      'admin_network_refused',
      `the admin console does not accept connections from ${address ?? 'an unknown address'}: connect from a network listed in admin.networks (or ask the operator to add yours)`,
    );
  }

  /**
   * The identity of a verified token for `user`, if it holds an admin role. Throws the token's own error
   * (28000) when the user does not match, and a 42501 refusal when the login is valid but has no admin role.
   */
  identify(verified: VerifiedToken, user: string): Identity {
    const missing = () =>
      new Refusal(
        'admin_role_missing',
        `user ${quote(user, 63)} may not use the admin console: it needs one of the roles ${this.config.roles.map((r) => quote(r, 60)).join(', ')} in the token (admin.roles)`,
        SqlState.INSUFFICIENT_PRIVILEGE,
      );
    let identity: Identity;
    try {
      identity = resolveIdentity(
        verified,
        user,
        this.config.roles.map((role) => ({ role, account: ADMIN_ACCOUNT })),
      );
    } catch (e) {
      if (e instanceof TokenError && e.code === 'token_no_role') throw missing();
      throw e;
    }
    // Admin rights come from an admin role in the token and nothing else. resolveIdentity picks an account
    // by a CI provider's rules without looking at roles (a rule admits a job for its account), so a job token
    // admitted by any rule would otherwise pass; and the account must be the console's own.
    if (identity.ci || identity.account !== ADMIN_ACCOUNT || !identity.roles.some((r) => this.config.roles.includes(r))) throw missing();
    return identity;
  }
}
