import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { exitCodeForSignal as exitCodeFor } from '../cli/exit-codes.js';
import type { Demo as RunningDemo } from '../demo/demo.js';
import { DEMO_PACKAGES, PROVIDER_PACKAGES, requireDemoPackages } from '../demo/optional-deps.js';
import { watchParent } from '../demo/parent-watch.js';

export default class Demo extends BaseCommand {
  static override summary = 'The whole system on this machine in one command: PostgreSQL 18, an OIDC provider, the proxy and a tunnel (--script: a guided tour)';
  static override description = `The whole system on this machine, in one command: embedded PostgreSQL 18 with the example multi-tenant schema and \`gprxy db init\` applied, a local OIDC provider over HTTPS (users alice, bob, sathwick), \`gprxy serve\` with TLS, a device-flow login and \`gprxy connect\` for the database "demo".
It prints what is running and the psql command to paste, then waits; Ctrl+C stops everything and removes its temporary files.
With --script it runs a short tour instead (alice writes, bob reads but cannot write, a forged identity shows nothing, sathwick sees every tenant, 12 clients share 2 backends per account with transaction pooling) and exits 0 when every step behaves as it must.
The demo never touches your OS keychain or your gprxy profiles: it keeps its own in a temporary directory and in memory.`;

  static override examples = ['gprxy demo', 'gprxy demo --yes', 'gprxy demo --script', 'gprxy demo --port 6543', 'gprxy demo --native --yes'];

  static override flags = {
    script: Flags.boolean({ description: 'run the scripted tour, then stop and exit (0 when every step behaves as expected)', default: false }),
    yes: Flags.boolean({ char: 'y', description: 'approve the device login automatically as alice instead of in a browser', default: false }),
    native: Flags.boolean({
      description: 'also show Option 1: PostgreSQL 18 native OAuth (oauth in pg_hba, the gprxy validator module built with gcc) and a tunnel straight to it',
      default: false,
    }),
    'per-user': Flags.boolean({
      description: 'identity: per_user: every person is a PostgreSQL role of her own, created by the proxy at login (current_user is the person)',
      default: false,
      exclusive: ['native'],
    }),
    'provider-only': Flags.boolean({ description: 'start only the local OIDC provider (HTTPS), to try your own PostgreSQL and gprxy serve; prints issuer, CA file, client ids', default: false, exclusive: ['script', 'yes'] }),
    'provider-port': Flags.integer({ description: 'with --provider-only: the provider\'s port (default: a free one)', min: 1, max: 65535, dependsOn: ['provider-only'] }),
    port: Flags.integer({ description: 'local port of the tunnel, exactly (as in gprxy connect); default 5432, or the next free one', min: 0, max: 65535 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Demo);
    if (flags['provider-only']) return this.providerOnly(flags['provider-port']);
    // The demo's packages are optional dependencies: check them before loading any module that imports them.
    requireDemoPackages(DEMO_PACKAGES);
    const { describeDemo, runTour, startDemo } = await import('../demo/demo.js');
    // Signals are caught from the very start, so Ctrl+C during start-up (e.g. while waiting for the
    // browser approval) also stops whatever already runs and removes the temporary files.
    const abort = new AbortController();
    let received: NodeJS.Signals | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) return;
      received = signal;
      abort.abort();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const signalled = new Promise<void>((resolve) => abort.signal.addEventListener('abort', () => resolve(), { once: true }));
    const warn = (m: string) => this.logToStderr(`gprxy demo: ${m}`);
    // `kill` on `npm run demo` ends npm, not us: stop as on SIGTERM when our parent goes away.
    watchParent((why) => {
      warn(`${why}; stopping as on SIGTERM`);
      onSignal('SIGTERM');
    });

    this.log('gprxy demo: starting the whole system on this machine…');
    let demo: RunningDemo;
    try {
      demo = await startDemo({
        // An explicit --port is that port or an error, as in gprxy connect; without it, 5432 or the next free one.
        ...(flags.port !== undefined ? { tunnelPort: flags.port, findFreePort: false } : flags.script ? { tunnelPort: 0 } : {}),
        ...(flags.script || flags.yes ? { autoApproveAs: 'alice' } : {}),
        ...(flags.native ? { native: true } : {}),
        ...(flags['per-user'] ? { perUser: true } : {}),
        signal: abort.signal,
        onProgress: (line) => this.log(`  ✓ ${line}`),
        onWarning: warn,
        onDeviceCode: (prompt, { approvingAs, caPath }) => {
          const url = prompt.verificationUriComplete ?? prompt.verificationUri;
          if (approvingAs) {
            this.log(`  … device login: code ${prompt.userCode} at ${url}; approving it as ${approvingAs} (--${flags.script ? 'script' : 'yes'})`);
            return;
          }
          this.log('');
          this.log('  Sign in as a person would (device flow). Open this URL in a browser on this machine:');
          this.log('');
          this.log(`    ${url}`);
          this.log('');
          this.log(`  and check that it shows the code ${prompt.userCode}. Sign in as alice / alice-pw (or bob / bob-pw, sathwick / sathwick-pw).`);
          this.log(`  The browser will warn about the certificate: it comes from the demo's throwaway CA (${caPath}).`);
          this.log('  (gprxy demo --yes approves as alice for you.)');
          this.log('  Waiting for the approval… (Ctrl+C to stop)');
        },
      });
    } catch (e) {
      if (received) {
        this.log(`gprxy demo: stopped by ${received}; everything it started is stopped and its temporary files are removed`);
        return this.exit(exitCodeFor(received));
      }
      warn((e as Error).message);
      return this.exit(1);
    }

    const lines = describeDemo(demo);
    if (received) {
      await demo.stop();
      return this.exit(exitCodeFor(received));
    }

    if (flags.script) {
      for (const line of lines) this.log(line);
      const psqlEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PG')));
      let failure: Error | undefined;
      try {
        await Promise.race([runTour(demo, { out: (line) => this.log(line), psql: { env: psqlEnv } }), signalled]);
      } catch (e) {
        failure = e as Error;
      }
      await demo.stop();
      if (received) return this.exit(exitCodeFor(received));
      if (failure) {
        warn(failure.message);
        return this.exit(1);
      }
      this.log('Stopped everything and removed the temporary files.');
      return this.exit(0);
    }

    for (const line of lines) this.log(line);
    this.log('');
    this.log('  Connect (no password: the tunnel injects a fresh access token):');
    this.log('');
    this.log(`    ${demo.session.psqlCommand}`);
    this.log('');
    this.log('  and try:');
    this.log('    select current_user, gprxy.user_id(), gprxy.tenant_id(), gprxy.roles();');
    this.log('    select tenant_id, title from posts;');
    // The SQL fits whoever signed in: a reader's insert would only be refused.
    if (demo.session.identity.roles.some((r) => r === 'pg_writer' || r === 'pg_admin')) this.log("    insert into posts (title) values ('hello from psql');");
    else this.log("    insert into posts (title) values ('hello from psql');   -- refused (42501): a reader may only read");;
    this.log("    set app.tenant_id = 'tenant-b';  select tenant_id, title from posts;   -- a plain SET changes nothing");
    this.log('');
    this.log('Press Ctrl+C to stop everything.');
    await signalled;
    this.log(`\ngprxy demo: ${received} received, stopping…`);
    await demo.stop();
    this.log('Stopped everything and removed the temporary files.');
    return this.exit(exitCodeFor(received ?? 'SIGINT'));
  }

  /** --provider-only: the provider alone, until a signal (or the parent's exit). */
  private async providerOnly(port: number | undefined): Promise<void> {
    requireDemoPackages(PROVIDER_PACKAGES);
    const { describeProviderOnly, startProviderOnly } = await import('../demo/provider-only.js');
    const provider = await startProviderOnly(port ? { port } : {});
    for (const line of describeProviderOnly(provider)) this.log(line);
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
      watchParent(() => resolve('SIGTERM'));
    });
    await provider.stop();
    this.log('Stopped the provider and removed its files.');
    return this.exit(exitCodeFor(signal));
  }
}
