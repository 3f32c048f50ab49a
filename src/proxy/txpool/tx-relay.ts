/**
 * The relay of a transaction-pooling client (pool.mode: transaction): the client keeps its connection to
 * the proxy, and a backend is attached only while the client has something in flight.
 *
 *   detached ──client message──► attaching (FIFO wait in the pool, limits.pool_wait_timeout)
 *       ▲                              │ setup (identity context, settings) + the client's messages,
 *       │                              ▼ pipelined in one write
 *       └──ReadyForQuery 'I', nothing ── attached ── relays both ways
 *          outstanding, client at a message boundary: release (tx-reset.ts), never DISCARD ALL
 *
 * Unlike session mode's relay (relay.ts, headers only), this one frames every client message: it must see
 * Query and Parse text (session-state.ts), statement names, and Sync, to know where a transaction can end.
 * From the backend it reads headers only, plus the ReadyForQuery status byte: the setup's answers are
 * swallowed (the client never sees them), and a refused message's error is put in place of the backend's.
 *
 * A refused message (0A000) never runs: while detached the proxy answers it itself; while attached it is
 * replaced by a statement that fails to parse, so the backend's transaction fails as PostgreSQL's would
 * after an error, and the proxy's 0A000 replaces the backend's syntax error on the way back.
 *
 * Hooks for prepared statements across backends (txprep, src/proxy/txpool/prepared-statements.ts):
 * - `TxRelayDeps.attached(backend)` / `released(backend)`: a backend became this client's / stopped being;
 * - `forward()`, "HOOK: client message": the one place where a client message (already checked by
 *   session-state.ts, named statements refused below) is about to be written to the attached backend;
 *   a rewrite (renamed statement, a Parse re-sent before a Bind) goes there, and answers to messages the
 *   proxy added are dropped in `backendHeader()`/`backendEnd()` (see `Unit`).
 */
import type { Socket } from 'node:net';
import { BackendCode, FrontendCode, ReadyStatus } from '../../protocol/codes.js';
import { errorResponse, readyForQuery } from '../../protocol/server-messages.js';
import { SqlState } from '../../protocol/sqlstate.js';
import { parseErrorFields } from '../../protocol/backend-messages.js';
import type { Backend } from '../backend.js';
import type { RelayEndReason } from '../relay.js';
import type { RelayProbe } from '../session-registry.js';
import { checkSql, type Refused } from './session-state.js';
import { backendStatementsOf, StatementRouter, type PreparedStatementStats, type RouterOutput } from './prepared-statements.js';
import { isTrackedDeallocate } from './statement-sql.js';

/** Client messages larger than this end the session (PostgreSQL's own limit for most messages is 1 GB). */
export const MAX_CLIENT_MESSAGE = 256 * 1024 * 1024;
/** Bytes of a swallowed ErrorResponse kept for the log line. */
const MAX_CAPTURE = 8192;

const { QUERY, PARSE, BIND, DESCRIBE, CLOSE, EXECUTE, SYNC, FLUSH, FUNCTION_CALL, TERMINATE } = FrontendCode;
const READY = BackendCode.READY_FOR_QUERY;
const COMMAND_COMPLETE = BackendCode.COMMAND_COMPLETE;
/** A command tag the router checks (DEALLOCATE ALL, DISCARD ALL) is short. */
const MAX_TAG = 64;
const ERROR = BackendCode.ERROR_RESPONSE;
const STATEMENT = 0x53; // 'S' in Describe / Close: a prepared statement (not a portal)
const IDLE = ReadyStatus.IDLE;

/** Fails to parse, so the backend's (implicit or explicit) transaction fails like PostgreSQL's after an error. */
const POISON_SQL = 'GPRXY REFUSED THIS STATEMENT';
function poisonQuery(): Buffer {
  const sql = Buffer.from(POISON_SQL + '\0');
  const m = Buffer.allocUnsafe(5 + sql.length);
  m[0] = QUERY;
  m.writeInt32BE(4 + sql.length, 1);
  sql.copy(m, 5);
  return m;
}
function poisonParse(): Buffer {
  const sql = Buffer.from('\0' + POISON_SQL + '\0\0\0');
  const m = Buffer.allocUnsafe(5 + sql.length);
  m[0] = PARSE;
  m.writeInt32BE(4 + sql.length, 1);
  sql.copy(m, 5);
  return m;
}
const POISON_QUERY = poisonQuery();
const POISON_PARSE = poisonParse();
const READY_IDLE = readyForQuery('I');

export function refusalError(r: Refused): Buffer {
  return errorResponse({
    severity: 'ERROR',
    code: SqlState.FEATURE_NOT_SUPPORTED,
    message: `${r.what} is not supported with transaction pooling (this database has pool.mode: transaction): ${r.instead}`,
  });
}

const NAMED_STATEMENT: Refused = {
  what: 'a named prepared statement',
  instead: 'this database has pool.prepared_statements: 0; set it above 0 (default 200), use unnamed statements (e.g. pgbench -M extended), or a database with pool.mode: session',
};

/** One Sync-terminated group of messages sent to the backend, answered by one ReadyForQuery. */
interface Unit {
  /** setup: the proxy's own (every answer swallowed); client: the client's. */
  readonly kind: 'setup' | 'client';
  /** The previous client's release reset, sent ahead of this client's setup (its error closes the backend after). */
  readonly reset?: boolean;
  /** The proxy refused a message of this unit: its ErrorResponse replaces the backend's first one. */
  replace?: Buffer | undefined;
  /** Messages sent so far that wait for a Sync (the open unit only). */
  count: number;
}

export interface TxRelayDeps {
  readonly acquire: () => Promise<Backend>;
  /** The bytes that set this client's identity and settings on a newly attached backend (ending in one Sync). */
  readonly setup: (backend: Backend) => Buffer;
  /**
   * The release reset the previous client's transaction left for this attach to send (one simple Query, in
   * the same write as the setup and the client's messages; pool.ts PENDING_RESET), or undefined.
   */
  readonly pendingReset?: (backend: Backend) => Buffer | undefined;
  /**
   * Gives a backend back after a transaction. `touched`: settings the client's SQL may have changed at
   * session level (read back and kept before the reset); `resetAll`: the client ran RESET ALL / DISCARD ALL.
   * Resolves when the client's kept settings are up to date (the next attach waits for it).
   */
  readonly release: (backend: Backend, how: { touched: readonly string[]; resetAll: boolean; reusable: boolean; ms: number }) => Promise<void>;
  /**
   * A backend's setup failed (logged; the backend is closed at release, the transaction runs without
   * identity), or the pipelined release reset ahead of it did (`reset`: the backend is closed at release).
   */
  readonly setupFailed: (backend: Backend, message: string, reset: boolean) => void;
  /** Checking out a backend failed (pool timeout, database down): the error the client is told. */
  readonly acquireFailed: (e: unknown) => Buffer;
  readonly now: () => number;
  /**
   * Named prepared statements across backends (pool.prepared_statements > 0): the pool's counters and the LRU
   * size per backend. Absent: named statements are refused with 0A000.
   */
  readonly preparedStatements?: { readonly stats: PreparedStatementStats; readonly capacity: number };
}

export interface TxRelayResult {
  readonly reason: RelayEndReason;
  readonly bytesFromClient: number;
  readonly bytesFromBackend: number;
  readonly transactions: number;
  readonly error?: string;
}

export class TxRelay {
  /** Renames the client's named statements per backend (prepared-statements.ts); undefined when they are refused. */
  private readonly router: StatementRouter | undefined;
  /** Answers the router made up while a backend message was half relayed: sent after that message. */
  private pendingToClient: Buffer[] = [];
  /** The body of a CommandComplete the router asked to see. */
  private tag: Buffer | undefined;
  private tagFill = 0;
  private backend: Backend | undefined;
  private backendSocket: Socket | undefined;
  private attaching = false;
  private attachedAt = 0;
  private queued: Buffer[] = [];
  private units: Unit[] = [];
  private open: Unit = { kind: 'client', count: 0 };
  private lastStatus: number = IDLE;
  private setupError: string | undefined;
  private touched = new Set<string>();
  private resetAll = false;
  /** After a refusal answered locally in the extended protocol: drop messages until Sync, as PostgreSQL does. */
  private localSkip = false;
  /** The previous release is still reading back the client's settings. */
  private releasing: Promise<void> = Promise.resolve();
  private ended = false;
  private bytesFromClient = 0;
  private bytesFromBackend = 0;
  private transactions = 0;

  // Client framing: a message split across chunks is carried until complete.
  private carry: Buffer[] = [];
  private carryLength = 0;
  private carryNeed = 0;

  // Backend framing, headers only.
  private readonly header = Buffer.alloc(5);
  private headerFill = 0;
  private bodyLeft = 0;
  private inBody = false;
  private type = 0;
  private pass = true;
  private statusPending = false;
  private status: number = IDLE;
  private capture: Buffer | undefined;
  private captureFill = 0;

  private resolveDone!: (r: TxRelayResult) => void;
  readonly done = new Promise<TxRelayResult>((resolve) => (this.resolveDone = resolve));

  constructor(
    private readonly client: Socket,
    private readonly deps: TxRelayDeps,
  ) {
    const prepared = deps.preparedStatements;
    this.router = prepared && prepared.capacity > 0 ? new StatementRouter(prepared.stats) : undefined;
  }

  start(pending?: Buffer): void {
    if (this.client.destroyed || this.client.readableEnded) return this.finish('client_closed');
    this.client.on('data', this.onClientData);
    this.client.on('end', this.onClientEnd);
    this.client.on('close', this.onClientEnd);
    this.client.on('error', this.onClientError);
    this.client.resume();
    if (pending?.length) this.onClientData(pending);
  }

  /** The backend this client's statements run on now, if any (cancel requests go there, and only there). */
  get current(): Backend | undefined {
    return this.backend;
  }

  /** For SHOW SESSIONS: between transactions a client is idle (and holds no backend). */
  probe(): RelayProbe {
    const busy = this.attaching || this.units.length > 0 || this.open.count > 0;
    const activity = !this.backend && !this.attaching ? 'idle' : busy ? 'active' : this.lastStatus === ReadyStatus.FAILED ? 'idle in transaction (aborted)' : this.lastStatus === IDLE ? 'idle' : 'idle in transaction';
    return { bytesFromClient: this.bytesFromClient, bytesFromBackend: this.bytesFromBackend, activity };
  }

  /** A message may be injected toward the client now without splitting one of the backend's. */
  get clientAtBoundary(): boolean {
    return !this.backend || (this.headerFill === 0 && !this.inBody);
  }

  stop(): void {
    this.finish('stopped');
  }

  /**
   * The state of the attached backend when the relay ended: `idle` (nothing outstanding, at a boundary,
   * 'I'), `open` (a transaction is open but nothing outstanding: a ROLLBACK makes it reusable), or `busy`.
   */
  detachAtEnd(): { backend: Backend; state: 'idle' | 'open' | 'busy' } | undefined {
    const backend = this.backend;
    if (!backend) return undefined;
    this.unlistenBackend();
    this.backend = undefined;
    const quiet = this.units.length === 0 && this.open.count === 0 && this.headerFill === 0 && !this.inBody && (this.router?.idle ?? true);
    this.router?.detach();
    return { backend, state: !quiet ? 'busy' : this.lastStatus === IDLE ? 'idle' : 'open' };
  }

  private readonly onClientEnd = () => this.finish('client_closed');
  private readonly onClientError = (e: Error) => this.finish('client_error', e.message);
  private readonly onBackendEnd = () => this.finish('backend_closed');
  private readonly onBackendError = (e: Error) => this.finish('backend_error', e.message);
  private readonly resumeClient = () => this.client.resume();
  private readonly resumeBackend = () => this.backendSocket?.resume();

  private readonly onClientData = (data: Buffer) => {
    this.bytesFromClient += data.length;
    let chunk = data;
    if (this.carryLength > 0) {
      this.carry.push(data);
      this.carryLength += data.length;
      if (this.carryLength < this.carryNeed) return;
      chunk = Buffer.concat(this.carry, this.carryLength);
      this.carry = [];
      this.carryLength = 0;
    }
    const n = chunk.length;
    let i = 0;
    while (n - i >= 5) {
      const length = chunk.readUInt32BE(i + 1);
      if (length < 4 || length > MAX_CLIENT_MESSAGE) {
        this.finish('protocol_error', length < 4 ? 'client sent a message with an invalid length' : `client sent a message of ${length} bytes (limit ${MAX_CLIENT_MESSAGE})`);
        return;
      }
      if (n - i < 1 + length) {
        this.carryNeed = 1 + length;
        break;
      }
      this.message(chunk.subarray(i, i + 1 + length));
      if (this.ended) return;
      i += 1 + length;
    }
    if (i < n) {
      if (n - i < 5) this.carryNeed = 5;
      this.carry = [chunk.subarray(i)];
      this.carryLength = n - i;
    }
  };

  /** One complete client message (header included). */
  private message(m: Buffer): void {
    const type = m[0]!;
    if (type === TERMINATE) return this.finish('client_terminate');
    if (this.localSkip) {
      if (type === SYNC) {
        this.localSkip = false;
        this.client.write(READY_IDLE);
      }
      return;
    }
    if (this.backend) return this.forward(m);
    if (this.attaching) {
      this.queued.push(m);
      return;
    }
    // Detached: a lone Sync or Flush needs no backend.
    if (type === SYNC) {
      this.client.write(READY_IDLE);
      return;
    }
    if (type === FLUSH) return;
    const refused = this.inspect(m);
    if (refused) return this.failLocally(type, refusalError(refused));
    this.queued.push(m);
    this.attach();
  }

  /** Answers the first message of a unit with an error, without a backend, as PostgreSQL would. */
  private failLocally(type: number, error: Buffer): void {
    if (type === QUERY || type === FUNCTION_CALL) this.client.write(Buffer.concat([error, READY_IDLE]));
    else {
      this.client.write(error);
      this.localSkip = true;
    }
  }

  /** Checks out a backend for the queued messages (the first starts a transaction). */
  private attach(): void {
    this.attaching = true;
    // Nothing more is read while the client waits for a backend: its queue stays bounded.
    this.client.pause();
    const waitForRelease = this.releasing;
    this.deps
      .acquire()
      .then(
        async (backend) => {
          await waitForRelease;
          return backend;
        },
        (e: unknown) => {
          this.attaching = false;
          if (this.ended) return undefined;
          const queued = this.queued;
          this.queued = [];
          this.failLocally(queued[0]![0]!, this.deps.acquireFailed(e));
          this.client.resume();
          for (const m of queued.slice(1)) {
            this.message(m);
            if (this.ended) break;
          }
          return undefined;
        },
      )
      .then((backend) => {
        if (!backend) return;
        this.attaching = false;
        if (this.ended) {
          // The client left while it waited: the backend goes back unused (the pool re-attaches its reader).
          let reusable = true;
          try {
            backend.detach();
          } catch {
            reusable = false;
          }
          void this.deps.release(backend, { touched: [], resetAll: false, reusable, ms: 0 });
          return;
        }
        let socket: Socket;
        try {
          socket = backend.detach();
        } catch {
          // It sent something while idle in the pool: not reusable; try another.
          void this.deps.release(backend, { touched: [], resetAll: false, reusable: false, ms: 0 });
          this.attach();
          return;
        }
        this.backend = backend;
        this.backendSocket = socket;
        this.router?.attach(backendStatementsOf(backend, this.deps.preparedStatements!.capacity));
        this.attachedAt = this.deps.now();
        this.setupError = undefined;
        this.lastStatus = IDLE;
        socket.on('data', this.onBackendData);
        socket.on('end', this.onBackendEnd);
        socket.on('close', this.onBackendEnd);
        socket.on('error', this.onBackendError);
        socket.resume();
        const reset = this.deps.pendingReset?.(backend);
        socket.cork();
        if (reset) {
          this.units.push({ kind: 'setup', reset: true, count: 1 });
          socket.write(reset);
        }
        this.units.push({ kind: 'setup', count: 1 });
        socket.write(this.deps.setup(backend));
        const queued = this.queued;
        this.queued = [];
        for (const m of queued) {
          if (this.ended) break;
          this.message(m);
        }
        socket.uncork();
        if (!this.ended) this.client.resume();
      })
      .catch((e: unknown) => this.finish('backend_error', (e as Error).message));
  }

  /**
   * The client's statements and settings in a message: a refusal, or undefined (settings it may change are
   * remembered for the release).
   */
  private inspect(m: Buffer): Refused | undefined {
    const type = m[0]!;
    switch (type) {
      case QUERY: {
        const sql = cstring(m, 5);
        // `DEALLOCATE name` of a protocol-level statement (PHP PDO, Rails): the router keeps it per client.
        if (this.router && isTrackedDeallocate(sql)) return undefined;
        return this.checkText(sql);
      }
      case PARSE: {
        const nameEnd = m.indexOf(0, 5);
        if (nameEnd < 0) return undefined; // malformed: the backend says so
        // Named statements are renamed per backend by the router; without it they are refused.
        if (nameEnd > 5 && !this.router) return NAMED_STATEMENT;
        return this.checkText(cstring(m, nameEnd + 1));
      }
      case BIND: {
        const portalEnd = m.indexOf(0, 5);
        if (portalEnd < 0 || this.router) return undefined;
        return m[portalEnd + 1] === 0 ? undefined : NAMED_STATEMENT;
      }
      case DESCRIBE:
      case CLOSE:
        return !this.router && m[5] === STATEMENT && m.length > 6 && m[6] !== 0 ? NAMED_STATEMENT : undefined;
      default:
        return undefined;
    }
  }

  private checkText(sql: string): Refused | undefined {
    const check = checkSql(sql);
    if (check.refused) return check.refused;
    for (const s of check.settings) this.touched.add(s);
    if (check.resetAll) {
      this.resetAll = true;
      this.touched.clear();
    }
    return undefined;
  }

  /** HOOK: client message. `m` is about to be written to the attached backend. */
  private forward(m: Buffer): void {
    const type = m[0]!;
    const refused = this.inspect(m);
    let out = m;
    if (refused) {
      out = type === QUERY ? POISON_QUERY : POISON_PARSE;
      this.open.replace ??= refusalError(refused);
    }
    // Messages that are answered only after a Sync; COPY data belongs to its Query, Flush asks for nothing.
    if (type === PARSE || type === BIND || type === DESCRIBE || type === CLOSE || type === EXECUTE) this.open.count++;
    if (type === QUERY || type === SYNC || type === FUNCTION_CALL) {
      this.units.push(this.open);
      this.open = { kind: 'client', count: 0 };
    }
    if (this.router) {
      const routed: RouterOutput = { toBackend: [], toClient: [] };
      try {
        this.router.fromClient(out[0]!, out.subarray(5), out, routed);
      } catch (e) {
        this.finish('protocol_error', (e as Error).message);
        return;
      }
      if (routed.toClient.length) {
        if (this.headerFill === 0 && !this.inBody) this.client.write(Buffer.concat(routed.toClient));
        else this.pendingToClient.push(...routed.toClient);
      }
      if (routed.toBackend.length === 0) return;
      out = routed.toBackend.length === 1 ? routed.toBackend[0]! : Buffer.concat(routed.toBackend);
    }
    if (!this.backendSocket!.write(out)) {
      this.client.pause();
      this.backendSocket!.once('drain', this.resumeClient);
    }
  }

  private readonly onBackendData = (chunk: Buffer) => {
    this.bytesFromBackend += chunk.length;
    const out: Buffer[] = [];
    const socket = this.backendSocket;
    const stopped = this.scanBackend(chunk, out);
    if (out.length) {
      const ok = this.client.write(out.length === 1 ? out[0]! : Buffer.concat(out));
      if (!ok && this.backendSocket && this.backendSocket === socket) {
        socket.pause();
        this.client.once('drain', this.resumeBackend);
      }
    }
    if (stopped) this.release();
  };

  /**
   * Walks the backend's messages in `chunk`, appending what the client gets to `out`. Returns true when a
   * transaction ended (ReadyForQuery 'I', nothing outstanding, the client at a boundary): release then.
   */
  private scanBackend(chunk: Buffer, out: Buffer[]): boolean {
    const n = chunk.length;
    let i = 0;
    let passFrom = -1;
    const flush = (to: number) => {
      if (passFrom >= 0 && to > passFrom) out.push(chunk.subarray(passFrom, to));
      passFrom = -1;
    };
    while (i < n) {
      if (!this.inBody) {
        const headerStart = i;
        while (this.headerFill < 5 && i < n) this.header[this.headerFill++] = chunk[i++]!;
        if (this.headerFill < 5) {
          flush(headerStart);
          break;
        }
        this.headerFill = 0;
        this.type = this.header[0]!;
        const length = this.header.readUInt32BE(1);
        if (length < 4) {
          flush(headerStart);
          this.finish('protocol_error', 'database sent a message with an invalid length');
          return false;
        }
        this.bodyLeft = length - 4;
        this.inBody = true;
        this.pass = this.backendHeader(this.type);
        this.statusPending = this.type === READY;
        this.capture = !this.pass && this.type === ERROR ? Buffer.allocUnsafe(Math.min(this.bodyLeft, MAX_CAPTURE)) : undefined;
        this.captureFill = 0;
        this.tag = this.routed() && this.type === COMMAND_COMPLETE && this.router!.wantsBody(this.type) ? Buffer.allocUnsafe(Math.min(this.bodyLeft, MAX_TAG)) : undefined;
        this.tagFill = 0;
        if (this.pass) {
          if (i - headerStart === 5) {
            if (passFrom < 0) passFrom = headerStart;
          } else {
            flush(headerStart);
            out.push(Buffer.from(this.header));
          }
        } else flush(headerStart);
      } else {
        const take = Math.min(this.bodyLeft, n - i);
        if (take > 0) {
          if (this.statusPending) {
            this.status = chunk[i]!;
            this.statusPending = false;
          }
          if (this.capture && this.captureFill < this.capture.length) this.captureFill += chunk.copy(this.capture, this.captureFill, i, i + take);
          if (this.tag && this.tagFill < this.tag.length) this.tagFill += chunk.copy(this.tag, this.tagFill, i, i + take);
          if (this.pass && passFrom < 0) passFrom = i;
          i += take;
          this.bodyLeft -= take;
        }
      }
      if (this.inBody && this.bodyLeft === 0) {
        this.inBody = false;
        if (this.pendingToClient.length) {
          // Made up by the router while this message was half relayed (it had nothing outstanding then).
          flush(i);
          out.push(...this.pendingToClient);
          this.pendingToClient = [];
        }
        if (this.backendEnd(this.type, () => flush(i), out)) {
          flush(i);
          if (i < n) this.finish('backend_error', 'database sent data after the transaction ended');
          return !this.ended;
        }
      }
    }
    flush(i);
    return false;
  }

  /** The backend's message now belongs to the client's messages, which the router follows. */
  private routed(): boolean {
    return this.router !== undefined && (this.units[0] ?? this.open).kind === 'client';
  }

  /** Whether the message starting now goes to the client. */
  private backendHeader(type: number): boolean {
    const unit = this.units[0] ?? this.open;
    if (unit.kind === 'setup') return false;
    // The router drops answers to the messages it added (a re-prepare before a Bind), or replaces an error.
    const routerPasses = this.router ? this.router.backendHeader(type) : true;
    return !(type === ERROR && unit.replace) && routerPasses;
  }

  /** A backend message ended; true when the transaction is over and the backend can be released. */
  private backendEnd(type: number, flush: () => void, out: Buffer[]): boolean {
    const unit = this.units[0] ?? this.open;
    if (unit.kind === 'client' && this.router) {
      // Answers the router synthesizes (ParseComplete, CloseComplete) follow this message.
      flush();
      const body = type === READY ? Buffer.from([this.status]) : this.tag?.subarray(0, this.tagFill);
      this.tag = undefined;
      this.router.backendEnd(type, body, out);
    }
    if (type === ERROR) {
      if (unit.kind === 'setup') {
        const fields = parseErrorFields(this.capture!.subarray(0, this.captureFill));
        this.setupError = `${fields.code} ${fields.message}`;
        this.deps.setupFailed(this.backend!, this.setupError, unit.reset === true);
      } else if (unit.replace) {
        flush();
        out.push(unit.replace);
        unit.replace = undefined;
      }
      this.capture = undefined;
      return false;
    }
    if (type !== READY) return false;
    if (this.units.length === 0) {
      this.finish('protocol_error', 'database sent ReadyForQuery with no request outstanding');
      return false;
    }
    this.units.shift();
    if (unit.kind === 'client') this.lastStatus = this.status;
    return this.units.length === 0 && this.open.count === 0 && this.lastStatus === IDLE && this.carryLength === 0;
  }

  /** The transaction ended: the backend goes back to the pool (its reset runs there). */
  private release(): void {
    const backend = this.backend;
    if (!backend || this.ended) return;
    this.unlistenBackend();
    this.backend = undefined;
    this.router?.detach();
    this.transactions++;
    const touched = [...this.touched];
    const resetAll = this.resetAll;
    this.touched.clear();
    this.resetAll = false;
    this.releasing = this.deps.release(backend, { touched, resetAll, reusable: this.setupError === undefined, ms: this.deps.now() - this.attachedAt });
  }

  private unlistenBackend(): void {
    const socket = this.backendSocket;
    if (!socket) return;
    socket.off('data', this.onBackendData);
    socket.off('end', this.onBackendEnd);
    socket.off('close', this.onBackendEnd);
    socket.off('error', this.onBackendError);
    socket.off('drain', this.resumeClient);
    this.client.off('drain', this.resumeBackend);
    socket.pause();
    this.backendSocket = undefined;
    this.client.resume();
  }

  private finish(reason: RelayEndReason, error?: string): void {
    if (this.ended) return;
    this.ended = true;
    this.client.off('data', this.onClientData);
    this.client.off('end', this.onClientEnd);
    this.client.off('close', this.onClientEnd);
    this.client.off('error', this.onClientError);
    this.client.off('drain', this.resumeBackend);
    this.client.pause();
    if (this.backendSocket) {
      const socket = this.backendSocket;
      socket.off('data', this.onBackendData);
      socket.off('end', this.onBackendEnd);
      socket.off('close', this.onBackendEnd);
      socket.off('error', this.onBackendError);
      socket.off('drain', this.resumeClient);
      socket.pause();
    }
    this.resolveDone({
      reason,
      bytesFromClient: this.bytesFromClient,
      bytesFromBackend: this.bytesFromBackend,
      transactions: this.transactions,
      ...(error ? { error } : {}),
    });
  }

  /** The backend closed or failed under an attached client: the session ends (its backend is not reused). */
  get backendBroken(): boolean {
    return this.backend?.broken ?? false;
  }
}

function cstring(m: Buffer, start: number): string {
  const end = m.indexOf(0, start);
  return m.toString('utf8', start, end < 0 ? m.length : end);
}
