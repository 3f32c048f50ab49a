import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { ExitCode } from '../cli/exit-codes.js';
import { parseDuration } from '../config/duration.js';
import { loadProxyConfig } from '../config/proxy-config.js';
import { checkBackends, describeCheck } from '../proxy/backend-check.js';
import { checkWorkerShares, parseWorkers, replicaIdFromEnv, workerSlotFromEnv } from '../config/workers.js';
import { Primary } from '../proxy/cluster/primary.js';
import { runWorker } from '../proxy/cluster/worker.js';
import { runProxy } from '../proxy/run.js';

export default class Serve extends BaseCommand {
  static override description = 'Run the central proxy: verify OAuth tokens, map roles to service accounts, relay to PostgreSQL';
  static override examples = ['gprxy serve --config gprxy.yaml', 'gprxy serve --config gprxy.yaml --check', 'gprxy serve --config gprxy.yaml --check --connect', 'gprxy serve --config gprxy.yaml --workers auto', 'gprxy serve --config gprxy.yaml --watch-config --exit-zero-on-sigterm'];
  static override flags = {
    config: Flags.string({ char: 'c', description: 'proxy config file (YAML or JSON)', required: true, env: 'GPRXY_CONFIG' }),
    check: Flags.boolean({ description: 'validate the config and exit', default: false }),
    connect: Flags.boolean({ description: 'with --check: also log in to every database as every mapped account (exit 1 if any fails)', default: false, dependsOn: ['check'] }),
    'drain-timeout': Flags.string({ description: 'how long open sessions may go on after SIGTERM before they end with 57P01 (seconds, or a duration such as 30s, 2m)', default: '30' }),
    'exit-zero-on-sigterm': Flags.boolean({ description: 'exit 0 (not 143) after a SIGTERM drain, for Kubernetes Jobs and sidecars', default: false }),
    'watch-config': Flags.boolean({ description: 'reload when the config file or a file it names (certificates, CAs) changes; SIGHUP always reloads', default: false }),
    'watch-interval': Flags.string({ description: 'with --watch-config: how often to check the files (e.g. 2s, 500ms)', default: '2s', dependsOn: ['watch-config'] }),
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
    const duration = (flag: 'drain-timeout' | 'watch-interval'): number => {
      try {
        return parseDuration(flags[flag]);
      } catch (e) {
        return this.error(`--${flag}: ${(e as Error).message}`, { exit: 2 });
      }
    };
    const drainMs = duration('drain-timeout');
    const watchIntervalMs = flags['watch-config'] ? Math.max(50, duration('watch-interval')) : undefined;
    const slot = workerSlotFromEnv(process.env);
    let exitCode: number;
    if (slot !== undefined) {
      exitCode = await runWorker(config, { slot, workers, replica: replicaIdFromEnv(process.env), drainMs, configFile: flags.config, env: process.env, ...(watchIntervalMs !== undefined ? { watchIntervalMs } : {}) });
    }
    else if (workers >= 1) exitCode = await new Primary(config, { workers, drainMs }).run();
    else {
      exitCode = await runProxy(config, {
        drainMs,
        configFile: flags.config,
        env: process.env,
        ...(watchIntervalMs !== undefined ? { watchIntervalMs } : {}),
      });
    }
    // SIGTERM's 143 becomes 0 for Kubernetes Jobs and sidecars, whichever mode ran.
    if (exitCode === ExitCode.SIGTERM && flags['exit-zero-on-sigterm']) exitCode = ExitCode.OK;
    this.exit(exitCode);
  }
}
