/**
 * The primary ↔ worker message layer of `gprxy serve --workers`: typed one-way messages and requests with
 * replies over Node's IPC channel (cluster's process.send). Every kind is declared once in `IpcKinds` with
 * its body and reply; to add one (e.g. the admin console's KILL USER across workers), add an entry there and
 * register a handler on the side that answers it. Messages of others on the same channel (prom-client's
 * AggregatorRegistry uses it too) are ignored: ours carry `gprxy: 1`.
 */
import { GprxyError } from '../../shared/errors.js';
import type { KeyOwner } from '../cancel-key.js';
import type { ReloadOutcome, ReloadTrigger } from '../reload.js';
import type { KillOutcome, KillTarget, LocalShow, PauseOutcome, PauseRequest, ShowParts, Value } from '../admin/commands.js';
import type { SessionSnapshot } from '../session-registry.js';
import type { StatusAnswer, StatusRequest, StatusSnapshot } from '../admin/status-page.js';

/** body: what the sender sends; reply: what a request resolves with (void: one-way message). */
export interface IpcKinds {
  /** worker → primary: a CancelRequest that matched nothing in that worker; `hops` counts the forwards so far. */
  'cancel.forward': { body: { owner: KeyOwner; processId: number; secretKey: string; hops: number }; reply: void };
  /** primary → worker: deliver a cancel to this worker's registry; `via` says where it came from (audit log). */
  'cancel.deliver': { body: { processId: number; secretKey: string; via: string }; reply: { matched: boolean } };
  /** worker → primary: listening (address as bound) and ready to serve. */
  'worker.listening': { body: { host: string; port: number }; reply: void };
  /** primary → worker: a signal the primary received (SIGTERM/SIGINT: drain and exit; SIGHUP: reload). */
  'worker.signal': { body: { signal: 'SIGTERM' | 'SIGINT' | 'SIGHUP' }; reply: void };
  /** primary → worker: is this worker ready (for /readyz: src/proxy/readiness.ts), and why not? */
  'worker.health': { body: Record<string, never>; reply: { ready: boolean; sessions: number; problems: readonly string[] } };
  /** worker → primary: the admin console's RELOAD, for every worker (the primary asks each: worker.reload). */
  'config.reload.all': { body: { trigger: ReloadTrigger }; reply: ReloadOutcome };
  /** primary → worker: re-read the config file and apply it to new logins; the outcome comes back. */
  'worker.reload': { body: { trigger: ReloadTrigger }; reply: ReloadOutcome };
  /** worker → primary: JSON log lines (whole lines, batched) for the one log stream the primary writes. */
  'log.lines': { body: { text: string }; reply: void };
  /** worker → primary: the admin console's SHOW SESSIONS, for every worker (the primary asks each). */
  'admin.sessions.all': { body: Record<string, never>; reply: { sessions: SessionSnapshot[]; unreachable: number } };
  /** primary → worker: this worker's sessions. */
  'admin.sessions': { body: Record<string, never>; reply: { sessions: SessionSnapshot[] } };
  /** worker → primary: KILL SESSION / KILL USER on every worker. */
  'admin.kill.all': { body: KillTarget; reply: KillOutcome };
  /** primary → worker: end this worker's sessions matching the target. */
  'admin.kill': { body: KillTarget; reply: { killed: { id: number; user: string | null }[] } };
  /** worker → primary: PAUSE / RESUME on every worker (the primary remembers the paused set: replica-pause.ts). */
  'admin.pause.all': { body: PauseRequest; reply: PauseOutcome };
  /** primary → worker: apply PAUSE / RESUME to this worker's pools; the databases whose state changed. */
  'admin.pause': { body: PauseRequest; reply: { changed: string[] } };
  /** worker → primary, before it listens: the databases the replica holds paused (a new worker comes up paused). */
  'admin.paused': { body: Record<string, never>; reply: { databases: string[] } };
  /** worker → primary: SHOW POOLS / DATABASES / STATS of every worker (the primary asks each: admin.show). */
  'admin.show.all': { body: { what: LocalShow }; reply: ShowParts };
  /** primary → worker: this worker's rows of that SHOW. */
  'admin.show': { body: { what: LocalShow }; reply: { rows: Value[][] } };
  /** worker → primary: one more session of identity `key`, unless the replica holds `max` (> 0) already (identity-ledger.ts). */
  'identity.acquire': { body: { lease: number; key: string; max: number }; reply: { granted: boolean } };
  /** worker → primary: that session ended (or its grant never arrived in time). */
  'identity.release': { body: { lease: number }; reply: void };
  /** primary → worker: answer a GET /status the primary's metrics listener received (the worker verifies the token). */
  'status.http': { body: StatusRequest; reply: StatusAnswer };
  /** worker → primary: the status page's data of every worker, merged (the primary asks each: status.local). */
  'status.all': { body: Record<string, never>; reply: StatusSnapshot };
  /** primary → worker: this worker's part of the status page. */
  'status.local': { body: Record<string, never>; reply: StatusSnapshot };
}

export type IpcKind = keyof IpcKinds;
type Body<K extends IpcKind> = IpcKinds[K]['body'];
type Reply<K extends IpcKind> = IpcKinds[K]['reply'];

interface Envelope {
  readonly gprxy: 1;
  readonly kind: string;
  readonly body?: unknown;
  /** Set on requests: the reply carries it back as `replyTo`. */
  readonly id?: number;
  readonly replyTo?: number;
  readonly error?: string;
}

/** Where messages go and come from: a cluster Worker (at the primary) or `process` (in a worker). */
export interface IpcTransport {
  send(message: unknown): unknown;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
  isConnected(): boolean;
}

/** A request got no answer: the other process is gone, busy past the timeout, or has no handler. */
export class IpcRequestError extends GprxyError<'ipc_request_failed'> {
  readonly code = 'ipc_request_failed' as const;
}

type Handler<K extends IpcKind> = (body: Body<K>) => Reply<K> | Promise<Reply<K>>;

/** One end of one primary ↔ worker link. */
export class IpcEndpoint {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly handlers = new Map<string, (body: unknown) => unknown>();
  private readonly listener = (m: unknown) => this.receive(m);

  constructor(private readonly transport: IpcTransport) {
    transport.on('message', this.listener);
  }

  /** Answers messages of `kind` (one handler per kind; a request's reply is the handler's result). */
  handle<K extends IpcKind>(kind: K, handler: Handler<K>): void {
    this.handlers.set(kind, handler as (body: unknown) => unknown);
  }

  /** A one-way message; dropped when the other end is gone. */
  send<K extends IpcKind>(kind: K, body: Body<K>): void {
    if (!this.transport.isConnected()) return;
    try {
      this.transport.send({ gprxy: 1, kind, body } satisfies Envelope);
    } catch {
      // The channel closed between the check and the send: the other end is gone, as above.
    }
  }

  /** A request; rejects after `timeoutMs` or when the other end answers with an error. */
  request<K extends IpcKind>(kind: K, body: Body<K>, timeoutMs = 2000): Promise<Reply<K>> {
    const id = this.nextId++;
    return new Promise<Reply<K>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new IpcRequestError(`no answer to ${kind} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      if (!this.transport.isConnected()) {
        this.settle(id, undefined, 'the other process is gone');
        return;
      }
      this.transport.send({ gprxy: 1, kind, body, id } satisfies Envelope);
    });
  }

  /** Stops listening and fails the requests still waiting. */
  close(): void {
    this.transport.off('message', this.listener);
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, 'channel closed');
  }

  private settle(id: number, value: unknown, error?: string): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (error !== undefined) p.reject(new IpcRequestError(error));
    else p.resolve(value);
  }

  private receive(m: unknown): void {
    if (typeof m !== 'object' || m === null || (m as Envelope).gprxy !== 1) return;
    const message = m as Envelope;
    if (message.replyTo !== undefined) {
      this.settle(message.replyTo, message.body, message.error);
      return;
    }
    const handler = this.handlers.get(message.kind);
    const reply = (body: unknown, error?: string) => {
      if (message.id === undefined || !this.transport.isConnected()) return;
      try {
        this.transport.send({ gprxy: 1, kind: message.kind, replyTo: message.id, body, ...(error !== undefined ? { error } : {}) } satisfies Envelope);
      } catch {
        // gone
      }
    };
    if (!handler) {
      reply(undefined, `no handler for ${message.kind}`);
      return;
    }
    Promise.resolve()
      .then(() => handler(message.body))
      .then(
        (v) => reply(v),
        (e: unknown) => reply(undefined, e instanceof Error ? e.message : String(e)),
      );
  }
}
