/**
 * A worker of `gprxy serve --workers N`: one ProxyServer on the listener the primary shares, with its
 * share of each pool (src/config/workers.ts) and cancel keys naming its slot. Its log lines go to the
 * primary (one stream), its metrics are read by the primary's aggregator, a CancelRequest it cannot match
 * goes to the primary to reach the owner. It drains on the primary's SIGTERM/SIGINT (or its own), and on an
 * uncaught exception it ends its sessions with 57P01 (a clean FATAL, not a reset) before exiting, so the
 * primary logs the crash and forks a replacement.
 */
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import type { ProxyConfig } from '../../config/proxy-config.js';
import { batchingDestination, createLogger } from '../logger.js';
import { ConfigReloader } from '../reload.js';
import { ProxyServer } from '../server.js';
import { IpcEndpoint, type IpcTransport } from './ipc.js';
import { killLocal, localRows, pauseLocal } from '../admin/commands.js';
import { statusAnswer, statusText } from '../admin/status-page.js';

export interface WorkerOptions {
  readonly slot: number;
  readonly workers: number;
  readonly replica: number;
  readonly drainMs: number;
  /** The config file and environment, for SIGHUP reloads (and --watch-config: every worker polls it). */
  readonly configFile?: string;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly watchIntervalMs?: number;
}

/** The primary asks each worker within 2 s; this covers the round trip to the primary around that. */
const ADMIN_IPC_TIMEOUT_MS = 5000;

/** A RELOAD waits this long for every worker (each may fetch a new provider's keys first). */
const RELOAD_IPC_TIMEOUT_MS = 60_000;

/** Exit code of a worker that crashed (EX_SOFTWARE). */
const CRASH_EXIT = 70;

/**
 * What a worker does when an exception reaches the top: log it (fatal), end every session with a FATAL 57P01
 * at a message boundary (as a shutdown does, so clients get a clean error, not a reset), then exit with 70
 * within 3 s whatever happens; the primary logs the exit and forks a replacement.
 */
export function onCrash(deps: { proxy: ProxyServer; logger: Logger; slot: number; flush: () => void; exit: (code: number) => void }): (e: Error) => void {
  let crashed = false;
  return (e: Error) => {
    deps.logger.fatal({ event: 'worker_crash', err: e }, `worker ${deps.slot} crashed: ${e.message}; ending its sessions`);
    deps.flush();
    if (crashed) return;
    crashed = true;
    const cut = setTimeout(() => deps.exit(CRASH_EXIT), 3000);
    cut.unref();
    void deps.proxy.close(0).finally(() => {
      clearTimeout(cut);
      deps.flush();
      deps.exit(CRASH_EXIT);
    });
  };
}

export async function runWorker(config: ProxyConfig, options: WorkerOptions): Promise<number> {
  const transport: IpcTransport = {
    send: (m) => process.send!(m),
    on: (e, l) => process.on(e, l),
    off: (e, l) => process.off(e, l),
    isConnected: () => process.connected,
  };
  const ipc = new IpcEndpoint(transport);
  const destination = batchingDestination((text) => ipc.send('log.lines', { text }));
  const logger = createLogger({ level: config.log.level, destination, base: { worker: options.slot } });
  const proxy = new ProxyServer(config, {
    logger,
    cluster: {
      owner: { replica: options.replica, worker: options.slot },
      workers: options.workers,
      metricsElsewhere: true,
      primaryAnnounces: true,
      // The status page shows the replica: every worker's part, merged by the primary.
      statusSnapshot: () => ipc.request('status.all', {}, ADMIN_IPC_TIMEOUT_MS),
      forwardCancel: (owner, processId, secretKey) => {
        ipc.send('cancel.forward', { owner, processId, secretKey: secretKey.toString('base64'), hops: 1 });
        return true;
      },
      // limits.max_sessions_per_identity holds for the replica: the primary counts (identity-ledger.ts).
      identitySlots: {
        acquire: (body, timeoutMs) => ipc.request('identity.acquire', body, timeoutMs),
        release: (body) => ipc.send('identity.release', body),
      },
      // The admin console sees and ends the sessions of every worker, through the primary.
      admin: {
        sessions: () => ipc.request('admin.sessions.all', {}, ADMIN_IPC_TIMEOUT_MS),
        kill: (target) => ipc.request('admin.kill.all', target, ADMIN_IPC_TIMEOUT_MS),
        pause: (request) => ipc.request('admin.pause.all', request, ADMIN_IPC_TIMEOUT_MS),
        show: (what) => ipc.request('admin.show.all', { what }, ADMIN_IPC_TIMEOUT_MS),
      },
    },
  });
  ipc.handle('admin.sessions', () => ({ sessions: proxy.registry.list((db) => proxy.pools.gate.isPaused(db)) }));
  ipc.handle('admin.kill', (target) => ({ killed: killLocal(proxy.registry, target) }));
  ipc.handle('admin.pause', (request) => ({ changed: pauseLocal(proxy.pools.gate, request) }));
  ipc.handle('admin.show', ({ what }) => {
    if (!proxy.admin) throw new Error('this worker has no admin console configured');
    return { rows: localRows(what, proxy.admin.context) };
  });
  ipc.handle('status.local', () => {
    const local = proxy.localStatus();
    if (!local) throw new Error('this worker has no admin console configured');
    return local;
  });
  ipc.handle('status.http', (request) => {
    const page = proxy.statusPageDeps();
    return page ? statusAnswer(page, request) : statusText(404, 'not found');
  });
  // prom-client answers the primary's aggregator over the same channel.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([proxy.metrics.registry]);

  let stop!: (signal: 'SIGTERM' | 'SIGINT') => void;
  const stopped = new Promise<'SIGTERM' | 'SIGINT'>((resolve) => (stop = resolve));
  ipc.handle('cancel.deliver', ({ processId, secretKey, via }) => ({ matched: proxy.deliverCancel(processId, Buffer.from(secretKey, 'base64'), via) }));
  ipc.handle('worker.health', async () => ({ ...(await proxy.readiness.check()), sessions: proxy.activeSessions }));
  // SIGHUP (forwarded by the primary): each worker re-reads the config file, as a lone process does (reload.ts).
  const reloader = options.configFile ? new ConfigReloader({ file: options.configFile, env: options.env ?? {}, target: proxy, logger }) : undefined;
  ipc.handle('worker.reload', ({ trigger }) =>
    reloader ? reloader.reload(trigger) : { ok: false as const, code: 'reload_unavailable', error: 'this worker was started without a config file' },
  );
  // RELOAD in this worker's admin console reloads every worker (through the primary), not just this one:
  // otherwise the workers would serve different configs until the next SIGHUP.
  proxy.reloader = reloader ? { reload: (trigger) => ipc.request('config.reload.all', { trigger }, RELOAD_IPC_TIMEOUT_MS) } : undefined;
  ipc.handle('worker.signal', ({ signal }) => {
    if (signal === 'SIGTERM' || signal === 'SIGINT') stop(signal);
    else void reloader?.reload('sighup');
  });
  // The primary forwards SIGHUP; one sent to the whole process group must not end the worker (Node's default).
  process.on('SIGHUP', () => undefined);
  // A terminal's Ctrl+C reaches the whole process group: the worker drains as if the primary had asked.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // The primary is gone (killed): nobody accepts for this worker any more; end the sessions cleanly.
  process.on('disconnect', () => stop('SIGTERM'));
  process.on('uncaughtException', onCrash({ proxy, logger, slot: options.slot, flush: () => destination.flush(), exit: (code) => process.exit(code) }));

  // A worker that starts while a database is PAUSEd (it replaces one that exited) comes up paused: the
  // primary remembers the set. The handler above exists already, so a PAUSE sent meanwhile reaches it too.
  for (const database of (await ipc.request('admin.paused', {}, ADMIN_IPC_TIMEOUT_MS)).databases) proxy.pools.gate.pause(database);
  await proxy.start();
  if (reloader && options.watchIntervalMs) reloader.watch(config, options.watchIntervalMs);
  ipc.send('worker.listening', proxy.address);
  const signal = await stopped;
  logger.info({ event: 'signal', signal }, `worker ${options.slot} draining`);
  reloader?.close();
  await proxy.close(options.drainMs);
  destination.flush();
  ipc.close();
  return 0;
}
