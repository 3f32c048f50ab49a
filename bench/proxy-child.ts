/**
 * `gprxy serve` for the benchmark, in its own process so that the driver's work (pgbench bookkeeping,
 * opening thousands of idle connections) never competes with the proxy's event loop. It loads a config
 * file exactly as `gprxy serve --config` does, starts ProxyServer and reports the bound port over IPC.
 *
 * IPC requests: { type: 'stats' } → memory, sessions, pools, open handles by kind; { type: 'gc' } → the same after a full GC
 * (when started with --expose-gc); { type: 'heap-snapshot', dir } → a V8 heap snapshot written to `dir`;
 * { type: 'stop' } → graceful close, then exit.
 */
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { loadProxyConfig } from '../src/config/proxy-config.js';
import { createLogger } from '../src/proxy/logger.js';
import { ProxyServer } from '../src/proxy/server.js';
import { TRANSACTION_RESET } from '../src/proxy/txpool/tx-reset.js';

// bench:txpool's before/after: GPRXY_BENCH_UNPIPELINED_RESET=1 runs transaction pooling's release reset as its
// own round trip at every release (the behaviour before the reset was pipelined into the next client's write).
if (process.env.GPRXY_BENCH_UNPIPELINED_RESET === '1') delete (TRANSACTION_RESET as { pipelined?: unknown }).pipelined;

let proxy: ProxyServer | undefined;
let stopping = false;

function snapshot() {
  return {
    memory: process.memoryUsage(),
    sessions: proxy?.activeSessions ?? 0,
    pools: proxy?.pools.stats() ?? {},
    verifier: proxy?.verifier.stats(),
    // Open handles by kind (TCPSocketWrap, Timeout, ...): the chaos soak checks that none leak.
    handles: process.getActiveResourcesInfo().reduce<Record<string, number>>((acc, kind) => ((acc[kind] = (acc[kind] ?? 0) + 1), acc), {}),
  };
}

async function stop(code = 0): Promise<never> {
  if (!stopping) {
    stopping = true;
    await proxy?.close(0).catch(() => {});
  }
  process.exit(code);
}

process.on('message', (raw: unknown) => {
  const m = raw as { type: 'init' | 'gc' | 'stats' | 'heap-snapshot' | 'stop'; id?: number; configPath?: string; dir?: string };
  void (async () => {
    try {
      switch (m.type) {
        case 'init': {
          const config = loadProxyConfig(m.configPath!, {});
          const logger = createLogger({ level: config.log.level, ...(config.log.file ? { file: config.log.file } : {}) });
          proxy = new ProxyServer(config, { logger });
          await proxy.start();
          process.send!({ type: 'ready', port: proxy.address.port, pid: process.pid });
          break;
        }
        case 'gc':
          (globalThis as { gc?: () => void }).gc?.();
          process.send!({ id: m.id, ...snapshot() });
          break;
        case 'stats':
          process.send!({ id: m.id, ...snapshot() });
          break;
        case 'heap-snapshot':
          // For memory investigations: a V8 heap snapshot in `dir`.
          process.send!({ id: m.id, file: writeHeapSnapshot(join(m.dir!, `gprxy-${Date.now()}.heapsnapshot`)) });
          break;
        case 'stop':
          await stop(0);
      }
    } catch (e) {
      process.send!({ type: 'error', id: m.id, error: (e as Error).stack ?? String(e) });
    }
  })();
});

// The driver went away (crash, kill -9): do not outlive it.
process.on('disconnect', () => void stop(0));
process.on('SIGINT', () => void stop(130));
process.on('SIGTERM', () => void stop(143));
