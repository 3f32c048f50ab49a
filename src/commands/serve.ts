import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { loadProxyConfig } from '../config/proxy-config.js';
import { checkBackends, describeCheck } from '../proxy/backend-check.js';
import { runProxy } from '../proxy/run.js';

export default class Serve extends BaseCommand {
  static override description = 'Run the central proxy: verify OAuth tokens, map roles to service accounts, relay to PostgreSQL';
  static override examples = ['gprxy serve --config gprxy.yaml', 'gprxy serve --config gprxy.yaml --check', 'gprxy serve --config gprxy.yaml --check --connect'];
  static override flags = {
    config: Flags.string({ char: 'c', description: 'proxy config file (YAML or JSON)', required: true, env: 'GPRXY_CONFIG' }),
    check: Flags.boolean({ description: 'validate the config and exit', default: false }),
    connect: Flags.boolean({ description: 'with --check: also log in to every database as every mapped account (exit 1 if any fails)', default: false, dependsOn: ['check'] }),
    'drain-timeout': Flags.integer({ description: 'seconds to let sessions finish after SIGTERM', default: 30 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Serve);
    const config = loadProxyConfig(flags.config, process.env);
    if (flags.check) {
      const dbs = Object.entries(config.databases).map(([n, d]) => `${n} → ${d.host}:${d.port}/${d.dbname} (${d.mode})`);
      for (const w of config.warnings) this.logToStderr(`gprxy: warning: ${w}`);
      this.log(`config OK: listen ${config.listen.host}:${config.listen.port}, ${config.providers.length} provider(s), databases: ${dbs.join('; ')}`);
      if (flags.connect) {
        const checks = await checkBackends(config);
        for (const c of checks) this.log(`  ${c.outcome === 'ok' ? '✓' : '✗'} ${describeCheck(c)}`);
        const failed = checks.filter((c) => c.outcome !== 'ok').length;
        if (failed > 0) this.error(`${failed} of ${checks.length} database connection check(s) failed (above)`, { exit: 1 });
        this.log(`all ${checks.length} database connection check(s) passed`);
      }
      return;
    }
    const exitCode = await runProxy(config, { drainMs: flags['drain-timeout'] * 1000 });
    this.exit(exitCode);
  }
}
