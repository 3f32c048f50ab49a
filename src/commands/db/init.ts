import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { loadProxyConfig } from '../../config/proxy-config.js';
import { runDbInit } from '../../sql/db-init.js';
import { parseLevel, type AccessLevel } from '../../sql/levels.js';

export default class DbInit extends BaseCommand {
  static override summary = 'Create the service accounts, grants and the gprxy SQL schema (or print the SQL)';
  static override description = `Prepares each oauth database of the proxy config (or the one named by --database): the service accounts of \`accounts\` with SCRAM passwords (hashed here: the cleartext never reaches the server), NOLOGIN groups gprxy_admin / gprxy_writer / gprxy_reader with their grants and default privileges, pgcrypto, and schema gprxy with the functions row-level security policies use: gprxy.claims(), gprxy.user_id(), gprxy.tenant_id(), gprxy.email(), gprxy.roles(), gprxy.has_role(text). They verify the proxy's signed identity context with context.secret, stored in a table only the NOLOGIN owner gprxy_owner can read, and return NULL for a missing, forged, expired or copied context.

An account's level comes from the token roles role_mapping maps to it (pg_admin → admin, pg_writer → writer, pg_reader → reader), else from its name (app_admin, ...); --level ACCOUNT=LEVEL decides explicitly.

Safe to re-run: a second run changes nothing and says so. Everything for one database happens in one transaction.

Rotating context.secret without breaking running sessions:
  1. put the new secret in the config (the proxies keep running with the old one);
  2. gprxy db init --config FILE --rotate-secret   (new secret current, old one still accepted);
  3. restart or redeploy the proxies (they now sign with the new secret);
  4. gprxy db init --config FILE                   (drops the old secret).
A run without --rotate-secret whose secret differs from the stored one is refused.

Shared service accounts (every user of an account is that PostgreSQL role; README "Threat model"): db init also
  - owns the accounts' role settings: removes whatever a user set with ALTER ROLE CURRENT_USER SET, and sets
    log_parameter_max_length = 0 (bind values out of statement logs; needs a superuser) and, on 14+,
    client_connection_check_interval;
  - revokes CREATE on schema public from PUBLIC where the server still grants it (--keep-public-create);
  - revokes EXECUTE from PUBLIC on the functions that let users of one account read each other's query text,
    cancel or terminate each other's backends and read each other's large objects (--keep-peer-access);
  - reports schemas the accounts can create in, RLS tables they own without FORCE (--force-rls fixes), accounts
    that bypass RLS, and prints the pg_hba.conf lines for certificate authentication of the accounts.
It says exactly what it changed, why, and what that breaks.

Databases with identity: per_user (a PostgreSQL role per SSO user, README "Per-user roles"): db init also creates
the NOLOGIN marker group gprxy_users and gprxy.user_login (last logins), gives gprxy_users the activity and signal
functions back (PostgreSQL's own per-role rules isolate users), grants a non-superuser provisioning role
(provisioning.admin_url) ADMIN OPTION on the groups, and prints the pg_hba.conf lines that admit per-user roles
only from the proxies. On PostgreSQL 13-15 it warns that CREATEROLE is close to superuser.`;

  static override examples = [
    'GPRXY_ADMIN_URL=postgresql://postgres:PASSWORD@db.internal:5432/ gprxy db init --config gprxy.yaml',
    'gprxy db init --config gprxy.yaml --print > gprxy-init.sql',
    'gprxy db init --config gprxy.yaml --admin-url postgresql://postgres@db.internal/ --rotate-secret',
  ];

  static override flags = {
    config: Flags.string({ char: 'c', description: 'proxy config file (YAML or JSON)', required: true, env: 'GPRXY_CONFIG' }),
    'admin-url': Flags.string({
      description: 'a superuser (or equivalent) connection URL; the database name is taken from the config. Not needed with --print',
      env: 'GPRXY_ADMIN_URL',
    }),
    database: Flags.string({ char: 'd', description: 'only this key of databases (default: every oauth database)' }),
    print: Flags.boolean({ description: 'print the SQL instead of applying it (reads the catalogs if an admin URL is given, changes nothing)', default: false }),
    'rotate-secret': Flags.boolean({ description: "make context.secret current and keep the stored one accepted as previous", default: false }),
    schema: Flags.string({ description: 'schema whose objects the groups get privileges on (repeatable; default: public)', multiple: true }),
    level: Flags.string({ description: 'privilege level of an account, ACCOUNT=admin|writer|reader (repeatable)', multiple: true }),
    'keep-public-create': Flags.boolean({
      description: 'leave CREATE on schema public to PUBLIC where the server grants it (PostgreSQL 13/14 defaults); by default db init revokes it and grants it to the database owner',
      default: false,
    }),
    'keep-peer-access': Flags.boolean({
      description:
        "leave pg_stat_activity's query text, pg_cancel_backend/pg_terminate_backend and the large-object functions to PUBLIC; by default db init revokes them so users of one service account cannot read, signal or share with each other",
      default: false,
    }),
    'force-rls': Flags.boolean({ description: 'FORCE ROW LEVEL SECURITY on RLS tables a service account owns (it skips its own policies otherwise)', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(DbInit);
    const config = loadProxyConfig(flags.config, process.env);
    const levels: Record<string, AccessLevel> = {};
    for (const text of flags.level ?? []) {
      const { account, level } = parseLevel(text);
      levels[account] = level;
    }
    await runDbInit(config, {
      ...(flags['admin-url'] ? { adminUrl: flags['admin-url'], adminUrlSource: this.argv.some((a) => a === '--admin-url' || a.startsWith('--admin-url=')) ? '--admin-url' : 'GPRXY_ADMIN_URL' } : {}),
      ...(flags.database ? { database: flags.database } : {}),
      ...(flags.schema?.length ? { schemas: flags.schema } : {}),
      levels,
      print: flags.print,
      rotateSecret: flags['rotate-secret'],
      keepPublicCreate: flags['keep-public-create'],
      keepPeerAccess: flags['keep-peer-access'],
      forceRls: flags['force-rls'],
      out: (text) => (flags.print ? process.stdout.write(text) : this.log(text)),
    });
  }
}
