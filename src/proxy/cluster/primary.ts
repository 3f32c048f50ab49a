/**
 * The primary of `gprxy serve --workers N`: forks N workers (Node's cluster module; on Node 20 the primary
 * accepts connections and hands them round-robin to the workers, as Node ≥ 22.12's `reusePort` is not
 * available), and owns what must exist once per replica:
 *  - the one log stream: workers send batched JSON lines over IPC, the primary writes them;
 *  - metrics.listen: /metrics aggregates every worker's registry (prom-client's AggregatorRegistry),
 *    /healthz, /readyz (every worker slot has a live, ready worker);
 *  - cancel routing between workers (a CancelRequest lands on any worker; the key names its owner) and,
 *    with `cluster:` configured, to and from the other replicas (peers.ts);
 *  - worker crashes: logged, the slot re-forked (same slot: same pool share, same cancel-key worker id);
 *  - signals: SIGTERM/SIGINT are forwarded to the workers (each drains), the primary exits when they have.
 *    Other signals a worker must see go through `forwardSignal` (the place for SIGHUP reload).
 */
import cluster, { type Worker } from 'node:cluster';
import { createServer, type Server } from 'node:http';
import { randomInt } from 'node:crypto';
import { AggregatorRegistry, type PrometheusContentType } from 'prom-client';
import type { Logger } from 'pino';
import type { ProxyConfig } from '../../config/proxy-config.js';
import { REPLICA_ID_ENV, WORKER_SLOT_ENV } from '../../config/workers.js';
import { checkBackends, describeCheck } from '../backend-check.js';
import { ownerOf, type KeyOwner } from '../cancel-key.js';
import { createLogger, fileDestination, type LogDestination } from '../logger.js';
import { IpcEndpoint } from './ipc.js';
import type { KillOutcome, KillTarget, LocalShow, PauseOutcome, PauseRequest, ShowParts } from '../admin/commands.js';
import type { SessionSnapshot } from '../session-registry.js';
import { CancelPeers, MAX_CANCEL_HOPS } from './peers.js';
import { IdentityLedger } from './identity-ledger.js';
import { ReplicaPause } from './replica-pause.js';
import { mergeStatus, statusRequestOf, statusText, writeStatusAnswer, type StatusAnswer, type StatusRequest, type StatusSnapshot } from '../admin/status-page.js';
import type { ReloadOutcome, ReloadTrigger } from '../reload.js';

export interface PrimaryOptions {
  readonly workers: number;
  readonly drainMs: number;
}

interface Slot {
  worker?: Worker;
  ipc?: IpcEndpoint;
  listening: boolean;
  startedAt: number;
  fastFailures: number;
}

/** A worker answering GET /status may fetch provider keys and asks every worker for its part (2 s each). */
const STATUS_IPC_TIMEOUT_MS = 15_000;

/** A worker that dies within this long of its start counts as a fast failure (re-forked with backoff). */
const FAST_FAILURE_MS = 5000;

export class Primary {
  private readonly slots: Slot[];
  private readonly log: Logger;
  private readonly destination: LogDestination;
  private stopping = false;
  /** Which worker answers the next GET /status. */
  private nextStatusWorker = 0;
  /** The signal that began the drain (SIGTERM/SIGINT), for workers that were still starting when it came. */
  private stopSignal: 'SIGTERM' | 'SIGINT' | undefined;
  private announced = false;
  private metricsServer: Server | undefined;
  private peers: CancelPeers | undefined;
  /** limits.max_sessions_per_identity across the workers of this replica. */
  private readonly identities = new IdentityLedger();
  /** The admin console's PAUSE / RESUME across workers, and the paused set a new worker starts with. */
  private readonly pause = new ReplicaPause();
  readonly replica: number;

  constructor(
    private readonly config: ProxyConfig,
    private readonly options: PrimaryOptions,
  ) {
    this.destination = fileDestination(config.log.file);
    this.log = createLogger({ level: config.log.level, destination: this.destination, base: { role: 'primary' } });
    this.slots = Array.from({ length: options.workers }, () => ({ listening: false, startedAt: 0, fastFailures: 0 }));
    this.replica = config.cluster?.replicaId ?? randomInt(0, 256);
  }

  /** Runs until SIGTERM/SIGINT and the workers' drain; returns the exit code (143 / 130). */
  async run(): Promise<number> {
    for (const warning of this.config.warnings) this.log.warn({ event: 'config_warning' }, warning);
    const aggregator = new AggregatorRegistry<PrometheusContentType>();
    if (this.config.cluster) {
      this.peers = new CancelPeers(this.config.cluster, this.config.tls!, this.replica, this.log, (processId, secretKey, via) => this.deliverToWorkers(processId, secretKey, via, ownerOf(processId).worker));
      await this.peers.listen();
    }
    for (let slot = 0; slot < this.slots.length; slot++) this.fork(slot);
    if (this.config.metrics) await this.serveMetrics(aggregator);
    void checkBackends(this.config).then((checks) => {
      for (const c of checks) {
        const fields = { event: 'backend_check', database: c.database, account: c.account, target: c.target, outcome: c.outcome, ...(c.sqlstate ? { sqlstate: c.sqlstate } : {}) };
        if (c.outcome === 'ok') this.log.info(fields, describeCheck(c));
        else this.log.warn(fields, describeCheck(c));
      }
    });
    // SIGHUP: every worker reloads the config for its new logins (the primary's own settings — listen,
    // log, metrics, cluster — take a restart).
    const hangup = () => {
      this.log.info({ event: 'signal', signal: 'SIGHUP' }, 'received SIGHUP, asking every worker to reload the config');
      this.forwardSignal('SIGHUP');
    };
    process.on('SIGHUP', hangup);
    const signal = await new Promise<'SIGTERM' | 'SIGINT'>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'));
      process.once('SIGINT', () => resolve('SIGINT'));
    });
    this.stopping = true;
    this.stopSignal = signal;
    this.log.info({ event: 'signal', signal, workers: this.slots.length }, `received ${signal}, draining ${this.slots.length} workers`);
    const exited = Promise.all(this.slots.map((s) => (s.worker && !s.worker.isDead() ? new Promise<void>((r) => s.worker!.once('exit', () => r())) : Promise.resolve())));
    this.forwardSignal(signal);
    // A second signal ends the drain at once; past the drain time (plus the workers' own 2 s), workers are killed.
    const hurry = () => this.forwardSignal(signal);
    process.once('SIGTERM', hurry);
    process.once('SIGINT', hurry);
    const killer = setTimeout(() => {
      for (const s of this.slots) s.worker?.process.kill('SIGKILL');
    }, this.options.drainMs + 10_000);
    await exited;
    clearTimeout(killer);
    process.off('SIGHUP', hangup);
    await this.peers?.close();
    await new Promise<void>((r) => (this.metricsServer ? this.metricsServer.close(() => r()) : r()));
    this.log.info({ event: 'stopped' }, 'gprxy stopped');
    this.destination.flushSync();
    return signal === 'SIGTERM' ? 143 : 130;
  }

  /** Sends a signal to every live worker (SIGTERM/SIGINT: drain and exit; the place for SIGHUP reload). */
  forwardSignal(signal: 'SIGTERM' | 'SIGINT' | 'SIGHUP'): void {
    for (const s of this.slots) s.ipc?.send('worker.signal', { signal });
  }

  private fork(slot: number): void {
    const worker = cluster.fork({ [WORKER_SLOT_ENV]: String(slot), [REPLICA_ID_ENV]: String(this.replica) });
    const ipc = new IpcEndpoint(worker);
    const state = this.slots[slot]!;
    Object.assign(state, { worker, ipc, listening: false, startedAt: Date.now() });
    ipc.handle('log.lines', ({ text }) => void this.destination.write(text));
    ipc.handle('worker.listening', ({ host, port }) => {
      state.listening = true;
      this.log.info({ event: 'worker_listening', worker: slot, pid: worker.process.pid, host, port }, `worker ${slot} (pid ${worker.process.pid}) listening on ${host}:${port}`);
      if (this.stopSignal) {
        // It was still starting when the drain began: the forwarded signal reached no handler (its IPC
        // handlers did not exist yet), and the drain would wait for it until the SIGKILL. Tell it again.
        ipc.send('worker.signal', { signal: this.stopSignal });
        return;
      }
      if (!this.announced && this.slots.every((s) => s.listening)) {
        this.announced = true;
        this.log.info({ event: 'listening', host, port, workers: this.slots.length, replica: this.replica, tls: !!this.config.tls, databases: Object.keys(this.config.databases) }, `gprxy listening on ${host}:${port} with ${this.slots.length} workers`);
      }
    });
    ipc.handle('admin.sessions.all', () => this.adminSessions());
    ipc.handle('config.reload.all', ({ trigger }) => this.reloadWorkers(trigger));
    ipc.handle('admin.kill.all', (target) => this.adminKill(target));
    ipc.handle('admin.pause.all', (request) => this.adminPause(request));
    ipc.handle('admin.paused', () => ({ databases: this.pause.list() }));
    ipc.handle('admin.show.all', ({ what }) => this.adminShow(what));
    ipc.handle('status.all', () => this.statusAll());
    ipc.handle('identity.acquire', ({ lease, key, max }) => ({ granted: this.identities.acquire(slot, lease, key, max) }));
    ipc.handle('identity.release', ({ lease }) => this.identities.release(slot, lease));
    ipc.handle('cancel.forward', (body) => this.routeCancel(body.owner, body.processId, Buffer.from(body.secretKey, 'base64'), body.hops, slot));
    worker.on('exit', (code, signal) => {
      ipc.close();
      // Its sessions are gone with it, however it died: their identity slots are free again.
      const released = this.identities.releaseWorker(slot);
      state.listening = false;
      state.worker = undefined;
      state.ipc = undefined;
      if (this.stopping) return;
      const lived = Date.now() - state.startedAt;
      state.fastFailures = lived < FAST_FAILURE_MS ? state.fastFailures + 1 : 0;
      const delay = state.fastFailures === 0 ? 0 : Math.min(10_000, 250 * 2 ** (state.fastFailures - 1));
      this.log.error(
        { event: 'worker_exit', worker: slot, pid: worker.process.pid, code, signal, lived_ms: lived, restart_in_ms: delay, identity_slots_released: released },
        `worker ${slot} (pid ${worker.process.pid}) exited (${signal ?? `code ${code}`}); starting a new one${delay ? ` in ${delay} ms` : ''}`,
      );
      setTimeout(() => {
        if (!this.stopping) this.fork(slot);
      }, delay);
    });
  }

  /** The admin console's SHOW SESSIONS across workers: each live worker's list; the silent ones counted. */
  private async adminSessions(): Promise<{ sessions: SessionSnapshot[]; unreachable: number }> {
    // A slot without a worker (exited, being re-forked) holds no session: not counted as silent.
    const answers = await Promise.all(this.slots.map((s) => (s.ipc ? s.ipc.request('admin.sessions', {}).catch(() => undefined) : Promise.resolve({ sessions: [] }))));
    return { sessions: answers.flatMap((a) => a?.sessions ?? []), unreachable: answers.filter((a) => a === undefined).length };
  }

  /** KILL SESSION / KILL USER across workers: every live worker ends its matching sessions. */
  private async adminKill(target: KillTarget): Promise<KillOutcome> {
    const answers = await Promise.all(this.slots.map((s) => (s.ipc ? s.ipc.request('admin.kill', target).catch(() => undefined) : Promise.resolve({ killed: [] }))));
    return { killed: answers.flatMap((a) => a?.killed ?? []), unreachable: answers.filter((a) => a === undefined).length };
  }

  /** SHOW POOLS / DATABASES / STATS across workers: each live worker's rows, with its slot; the silent ones counted. */
  private async adminShow(what: LocalShow): Promise<ShowParts> {
    const answers = await Promise.all(this.slots.map((s, worker) => (s.ipc ? s.ipc.request('admin.show', { what }).then((a) => ({ worker, rows: a.rows }), () => undefined) : Promise.resolve(null))));
    // A slot without a worker (exited, being re-forked) holds nothing: not counted as silent (as SHOW SESSIONS).
    return { parts: answers.filter((a) => a !== null && a !== undefined), unreachable: answers.filter((a) => a === undefined).length };
  }

  /** PAUSE / RESUME across workers: recorded for workers that start later, applied by every live worker. */
  private adminPause(request: PauseRequest): Promise<PauseOutcome> {
    return this.pause.apply(
      request,
      this.slots.flatMap((s, slot) => {
        const ipc = s.ipc;
        return ipc ? [{ slot, listening: s.listening, request: (body: PauseRequest) => ipc.request('admin.pause', body) }] : [];
      }),
    );
  }

  /**
   * A CancelRequest a worker could not match: to the replica its key names (over the peer channel), or to
   * the worker its key names, then (pass-through keys are the backend's own, naming no worker) the others.
   */
  private async routeCancel(owner: KeyOwner, processId: number, secretKey: Buffer, hops: number, from: number): Promise<void> {
    if (hops > MAX_CANCEL_HOPS) return;
    if (owner.replica !== this.replica) {
      if (this.peers) await this.peers.forward(owner, processId, secretKey, hops);
      else this.log.info({ event: 'cancel_request', outcome: 'no_match', owner }, 'cancel request names another replica, and no cluster peers are configured');
      return;
    }
    await this.deliverToWorkers(processId, secretKey, `worker ${from}`, owner.worker, from);
  }

  /** Tries the named worker first, then the others (never `except`); true when one matched. */
  private async deliverToWorkers(processId: number, secretKey: Buffer, via: string, first?: number, except?: number): Promise<boolean> {
    const order = [...(first !== undefined && first < this.slots.length ? [first] : []), ...this.slots.keys()].filter((s, i, all) => s !== except && all.indexOf(s) === i);
    for (const slot of order) {
      const ipc = this.slots[slot]?.ipc;
      if (!ipc) continue;
      const answer = await ipc.request('cancel.deliver', { processId, secretKey: secretKey.toString('base64'), via }).catch(() => ({ matched: false }));
      if (answer.matched) return true;
    }
    return false;
  }

  private async serveMetrics(aggregator: AggregatorRegistry<PrometheusContentType>): Promise<void> {
    const { host, port } = this.config.metrics!;
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics') {
        aggregator.clusterMetrics().then(
          (text: string) => res.writeHead(200, { 'content-type': aggregator.contentType }).end(text),
          (e: Error) => res.writeHead(500).end(e.message),
        );
      } else if (path === '/status' && this.config.admin?.statusPage) {
        void this.statusPage(statusRequestOf(req)).then((answer) => writeStatusAnswer(res, answer));
      } else if (path === '/healthz') res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      else if (path === '/readyz') {
        void this.ready().then((problems) =>
          res.writeHead(problems.length ? 503 : 200, { 'content-type': 'text/plain' }).end(problems.length ? `not ready\n${problems.join('\n')}\n` : 'ready\n'),
        );
      } else res.writeHead(404).end();
    });
    server.on('clientError', (_e, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    server.on('error', () => undefined);
    this.metricsServer = server;
    const a = server.address() as { address: string; port: number };
    this.log.info({ event: 'metrics_listening', host: a.address, port: a.port }, `metrics on http://${a.address}:${a.port}/metrics`);
  }

  /**
   * RELOAD from a worker's admin console: every live worker re-reads the config file; the outcome is the
   * first refusal (naming its worker) or the first success (the workers run the same config).
   */
  private async reloadWorkers(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    const live = this.slots.flatMap((s, slot) => (s.ipc && s.listening ? [{ slot, ipc: s.ipc }] : []));
    const outcomes = await Promise.all(
      live.map(({ slot, ipc }) =>
        ipc.request('worker.reload', { trigger }, 60_000).then(
          (o): { slot: number; o: ReloadOutcome } => ({ slot, o }),
          (e: Error) => ({ slot, o: { ok: false as const, code: 'ipc_request_failed', error: e.message } }),
        ),
      ),
    );
    const refused = outcomes.find((x) => !x.o.ok);
    if (refused && !refused.o.ok) return { ...refused.o, error: `worker ${refused.slot}: ${refused.o.error}` };
    return outcomes[0]?.o ?? { ok: false, code: 'no_workers', error: 'no worker is running' };
  }

  /**
   * GET /status (admin.status_page): the primary has no token verifier (the workers hold the provider keys),
   * so a live worker answers it (the next one each time), with every worker's part merged (statusAll).
   */
  private async statusPage(request: StatusRequest): Promise<StatusAnswer> {
    const live = this.slots.filter((s) => s.ipc && s.listening);
    const slot = live[this.nextStatusWorker++ % Math.max(1, live.length)];
    if (!slot?.ipc) return statusText(503, 'no worker is running right now; try again shortly');
    return slot.ipc.request('status.http', request, STATUS_IPC_TIMEOUT_MS).catch(() => statusText(503, 'the worker asked for the status page did not answer; try again'));
  }

  /** The status page's data: every live worker's part, merged; the others counted as missing. */
  private async statusAll(): Promise<StatusSnapshot> {
    const answers = await Promise.all(this.slots.map((s) => (s.ipc && s.listening ? s.ipc.request('status.local', {}).catch(() => undefined) : Promise.resolve(undefined))));
    const parts = answers.filter((a): a is StatusSnapshot => a !== undefined);
    return mergeStatus(parts, answers.length - parts.length);
  }

  /** Why this replica is not ready (none: ready): stopping, a slot without a listening worker, or a worker's own reasons. */
  private async ready(): Promise<string[]> {
    if (this.stopping) return ['draining'];
    const answers = await Promise.all(
      this.slots.map((s, slot) =>
        s.ipc && s.listening
          ? s.ipc.request('worker.health', {}, 1000).then(
              (a) => a.problems.map((p) => `worker ${slot}: ${p}`),
              () => [`worker ${slot}: no answer`],
            )
          : Promise.resolve([`worker ${slot}: not running`]),
      ),
    );
    return answers.flat();
  }
}
