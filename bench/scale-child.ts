/**
 * gprxy for bench/scale.ts's A/B of the cheap wins, in its own process: as bench/proxy-child.ts, plus two
 * switches that put back what was there before (issue 18): `unbatchedLog` (one write system call per log
 * line, pino's destination without minLength) and `randomBytesPerKey` (cancel keys from randomBytes calls
 * per session instead of the pre-filled pool).
 */
import pino from 'pino';
import { loadProxyConfig } from '../src/config/proxy-config.js';
import { RandomPool } from '../src/proxy/cancel-key.js';
import { createLogger } from '../src/proxy/logger.js';
import { ProxyServer } from '../src/proxy/server.js';

let proxy: ProxyServer | undefined;

process.on('message', (raw: unknown) => {
  const m = raw as { type: 'init' | 'stop'; configPath?: string; unbatchedLog?: boolean; randomBytesPerKey?: boolean };
  void (async () => {
    if (m.type === 'stop') {
      await proxy?.close(0).catch(() => {});
      process.exit(0);
    }
    const config = loadProxyConfig(m.configPath!, {});
    const logger = m.unbatchedLog
      ? createLogger({ level: config.log.level, destination: pino.destination({ dest: config.log.file!, sync: false, mkdir: true }) })
      : createLogger({ level: config.log.level, ...(config.log.file ? { file: config.log.file } : {}) });
    // blockSize 1: every take() is its own randomBytes call, as before the pool.
    proxy = new ProxyServer(config, { logger, ...(m.randomBytesPerKey ? { cancelRandom: new RandomPool(1) } : {}) });
    await proxy.start();
    process.send!({ type: 'ready', port: proxy.address.port, pid: process.pid });
  })();
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(143));
