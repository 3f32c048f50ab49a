import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { configureProfile } from '../config/cli-config.js';
import { profileFlag } from '../cli/flags.js';

export default class Configure extends BaseCommand {
  static override description = 'Write a CLI profile: the OIDC issuer, client id, API audience, proxy address and CA';
  static override examples = [
    'gprxy configure --issuer https://your-tenant.us.auth0.com/ --client-id abc123 --audience https://gprxy.io --proxy proxy.example.com:6432',
    'gprxy configure --profile staging --proxy staging-proxy.example.com:6432 --ca ./staging-ca.pem',
    'gprxy configure --ca ./issuer-ca.pem --ca ./proxy-ca.pem',
  ];
  static override flags = {
    profile: profileFlag('to write'),
    issuer: Flags.string({ description: 'OIDC issuer URL, e.g. https://YOUR-TENANT.us.auth0.com/' }),
    'client-id': Flags.string({ description: 'the CLI\'s OAuth client id (a public client: device flow / PKCE)' }),
    audience: Flags.string({ description: 'API audience the access tokens are for, e.g. https://gprxy.io' }),
    scopes: Flags.string({ description: 'scopes to request (default "openid profile email offline_access")' }),
    proxy: Flags.string({ description: 'central proxy address, HOST:PORT' }),
    ca: Flags.string({ description: 'PEM file of a CA to trust for the issuer and the proxy; repeat it for several (e.g. the issuer\'s and the proxy\'s private CAs)', multiple: true }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Configure);
    const { profile, stored, path } = configureProfile({
      profile: flags.profile ?? (process.env.GPRXY_PROFILE || undefined),
      issuer: flags.issuer,
      clientId: flags['client-id'],
      audience: flags.audience,
      scopes: flags.scopes,
      proxy: flags.proxy,
      ca: flags.ca,
    });
    this.log(`Profile "${profile}" written to ${path}`);
    this.log(`  issuer    ${stored.issuer}`);
    this.log(`  client id ${stored.clientId}`);
    this.log(`  audience  ${stored.audience ?? '(none)'}`);
    this.log(`  scopes    ${stored.scopes}`);
    this.log(`  proxy     ${stored.proxy ?? '(none)'}`);
    if (stored.ca) this.log(`  ca        ${typeof stored.ca === 'string' ? stored.ca : stored.ca.join(', ')}`);
    this.log(`Next: gprxy login${profile === 'default' ? '' : ` --profile ${profile}`}`);
  }
}
