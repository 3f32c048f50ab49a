/**
 * `gprxy serve` as a process: start the proxy, then on SIGTERM stop accepting and drain (exit 143; the
 * command turns it into 0 with --exit-zero-on-sigterm), on SIGINT stop the same way (exit 130),
 * as cloud-sql-proxy and other well-behaved daemons do. SIGHUP (and, opt-in, a change of the config file
 * or a file it names) reloads the config for new logins (reload.ts).
 * With `cluster:` configured, this process is a replica with a peer channel for cancels
 * (src/proxy/cluster/peers.ts). `--workers` runs src/proxy/cluster/primary.ts instead.
 */
import { randomInt } from 'node:crypto';
import type { ProxyConfig } from '../config/proxy-config.js';
import { checkBackends, describeCheck } from './backend-check.js';
import { CancelPeers } from './cluster/peers.js';
import { createLogger } from './logger.js';
import { ConfigReloader } from './reload.js';
import { ProxyServer } from './server.js';

export interface RunOptions {
  /** How long open sessions may go on after SIGTERM/SIGINT before they are ended with 57P01. */
  readonly drainMs: number;
  /** The config file and environment it was read with: SIGHUP re-reads them. Absent: SIGHUP is ignored. */
  readonly configFile?: string;
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Poll the config file (and the files it names) every this many ms and reload on a change. */
  readonly watchIntervalMs?: number;
}

export async function runProxy(config: ProxyConfig, options: RunOptions): Promise<number> {
  const logger = createLogger({ level: config.log.level, ...(config.log.file ? { file: config.log.file } : {}) });
  for (const warning of config.warnings) logger.warn({ event: 'config_warning' }, warning);
  let peers: CancelPeers | undefined;
  const replica = config.cluster?.replicaId ?? randomInt(0, 256);
  const proxy = new ProxyServer(config, {
    logger,
    ...(config.cluster
      ? {
          cluster: {
            owner: { replica, worker: 0 },
            workers: 1,
            forwardCancel: (owner, processId, secretKey) => {
              if (!peers || owner.replica === replica) return false;
              void peers.forward(owner, processId, secretKey, 1);
              return true;
            },
          },
        }
      : {}),
  });
  if (config.cluster) {
    peers = new CancelPeers(config.cluster, config.tls!, replica, logger, (processId, secretKey, via) => proxy.deliverCancel(processId, secretKey, via));
    await peers.listen();
  }
  await proxy.start();
  // Every database × account is tried once now: a wrong password or a database that is down shows in the
  // log at start, not at the first client's login. Failures are warnings; the proxy serves the others.
  void checkBackends(config).then((checks) => {
    for (const c of checks) {
      const fields = { event: 'backend_check', database: c.database, account: c.account, target: c.target, outcome: c.outcome, ...(c.sqlstate ? { sqlstate: c.sqlstate } : {}) };
      if (c.outcome === 'ok') logger.info(fields, describeCheck(c));
      else logger.warn(fields, describeCheck(c));
    }
  });
  const reloader = options.configFile ? new ConfigReloader({ file: options.configFile, env: options.env ?? {}, target: proxy, logger }) : undefined;
  proxy.reloader = reloader;
  // A listener replaces Node's default for SIGHUP (exit): a reload never stops the proxy.
  const hangup = () => void reloader?.reload('sighup');
  process.on('SIGHUP', hangup);
  if (reloader && options.watchIntervalMs) reloader.watch(config, options.watchIntervalMs);

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  logger.info({ event: 'signal', signal, grace_ms: options.drainMs }, `received ${signal}, draining`);
  reloader?.close();
  // A second signal ends the drain at once.
  const hurry = () => void proxy.close(0);
  process.once('SIGTERM', hurry);
  process.once('SIGINT', hurry);
  await proxy.close(options.drainMs);
  await peers?.close();
  process.off('SIGHUP', hangup);
  logger.flush();
  return signal === 'SIGTERM' ? 143 : 130;
}
