/**
 * `gprxy serve` as a process: start the proxy, then on SIGTERM stop accepting and drain (exit 143), on
 * SIGINT stop the same way (exit 130), as cloud-sql-proxy and other well-behaved daemons do. With
 * `cluster:` configured, this process is a replica with a peer channel for cancels (src/proxy/cluster/peers.ts).
 * `--workers` runs src/proxy/cluster/primary.ts instead.
 */
import { randomInt } from 'node:crypto';
import type { ProxyConfig } from '../config/proxy-config.js';
import { checkBackends, describeCheck } from './backend-check.js';
import { CancelPeers } from './cluster/peers.js';
import { createLogger } from './logger.js';
import { ProxyServer } from './server.js';

export async function runProxy(config: ProxyConfig, options: { drainMs: number }): Promise<number> {
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
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  logger.info({ event: 'signal', signal }, `received ${signal}, draining`);
  // A second signal ends the drain at once.
  const hurry = () => void proxy.close(0);
  process.once('SIGTERM', hurry);
  process.once('SIGINT', hurry);
  await proxy.close(options.drainMs);
  await peers?.close();
  logger.flush();
  return signal === 'SIGTERM' ? 143 : 130;
}
