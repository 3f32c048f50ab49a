import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { loadProxyConfig } from '../config/proxy-config.js';
import { checkBackends, describeCheck } from '../proxy/backend-check.js';
import { checkWorkerShares, parseWorkers, replicaIdFromEnv, workerSlotFromEnv } from '../config/workers.js';
import { Primary } from '../proxy/cluster/primary.js';
import { runWorker } from '../proxy/cluster/worker.js';
import { runProxy } from '../proxy/run.js';

export default class Serve extends BaseCommand {
  static override description = 'Run the central proxy: verify OAuth tokens, map roles to service accounts, relay to PostgreSQL';
  static override examples = ['gprxy serve --config gprxy.yaml', 'gprxy serve --config gprxy.yaml --check', 'gprxy serve --config gprxy.yaml --check --connect', 'gprxy serve --config gprxy.yaml --workers auto'];
  static override flags = {
    config: Flags.string({ char: 'c', description: 'proxy config file (YAML or JSON)', required: true, env: 'GPRXY_CONFIG' }),
    check: Flags.boolean({ description: 'validate the config and exit', default: false }),
    connect: Flags.boolean({ description: 'with --check: also log in to every database as every mapped account (exit 1 if any fails)', default: false, dependsOn: ['check'] }),
    'drain-timeout': Flags.integer({ description: 'seconds to let sessions finish after SIGTERM', default: 30 }),
    workers: Flags.string({
      description: 'worker processes sharing the listener: a number, or auto (one per core). Pool sizes and max_client_connections are divided among them',
      env: 'GPRXY_WORKERS',
    }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Serve);
    const config = loadProxyConfig(flags.config, process.env);
    const workers = parseWorkers(flags.workers);
    checkWorkerShares(config, workers);
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
    const drainMs = flags['drain-timeout'] * 1000;
    const slot = workerSlotFromEnv(process.env);
    let exitCode: number;
    if (slot !== undefined) exitCode = await runWorker(config, { slot, workers, replica: replicaIdFromEnv(process.env), drainMs });
    else if (workers >= 1) exitCode = await new Primary(config, { workers, drainMs }).run();
    else exitCode = await runProxy(config, { drainMs });
    this.exit(exitCode);
  }
}
