/**
 * Protocol-level named prepared statements across backends in transaction pooling (PgBouncer ≥ 1.21's model).
 *
 * A client's named statement lives in the client's registry (name → text + parameter types). On a backend it
 * exists under a proxy name, `gprxy_<hash of text and types>`, shared by every client of the pool that prepares
 * the same text, in an LRU of `pool.prepared_statements` entries per backend whose evicted members are Closed.
 * The router rewrites the client's Parse/Bind/Describe('S')/Close('S') to backend names; when the client lands
 * on a backend that lacks a statement, it injects Close+Parse before the Bind/Describe and swallows their answers;
 * a Parse of a statement the backend already holds is answered with a synthesized ParseComplete, a Close('S')
 * with a synthesized CloseComplete (the shared backend statement stays).
 *
 * Exactness under pipelining: every client message that the backend answers adds an entry to a queue of expected
 * answers, so the router knows which ParseComplete/CloseComplete is its own (swallowed) and where a synthesized
 * one goes (when it reaches the head of the queue). Effects on the registries are applied in the client's stream
 * order, when the message passes, and undone when PostgreSQL skips or refuses the message (an error skips
 * everything up to the next Sync): so a failed Parse leaves no mapping, and a pipelined DEALLOCATE ALL clears
 * what was prepared before it and never what the client prepares after it.
 *
 * The backend cache is only ever wrong in one direction (a statement may exist that the cache does not list,
 * after a DEALLOCATE ALL that did not run, or an eviction Close that an error skipped): that is harmless because
 * every (re-)prepare is Close+Parse, and Close of a missing statement is no error.
 *
 * The unnamed statement follows its client too (pgx's describe-then-execute parses it in one transaction and binds
 * it in the next): a backend whose unnamed statement is not this client's gets it re-parsed before the Bind, and a
 * client never binds another client's.
 *
 * SQL-level PREPARE/EXECUTE are refused with 0A000 by the backend itself (statement-sql.ts), `DEALLOCATE name`
 * sent as a Query of its own (Rails) is tracked, DEALLOCATE ALL / DISCARD ALL clear the client's statements.
 *
 * Only transaction pooling uses this module: it parses message bodies, which session pooling's relay never does.
 */
import { createHash } from 'node:crypto';
import { BackendCode, FrontendCode, ReadyStatus } from '../../protocol/codes.js';
import {
  bindWithStatement,
  closeComplete,
  closeMessage,
  commandTag,
  describeMessage,
  parseBindHead,
  parseComplete,
  parseExecutePortal,
  parseMessage,
  parseParseMessage,
  parseQueryText,
  parseTargetMessage,
} from '../../protocol/extended-messages.js';
import { query as queryMessage } from '../../protocol/client-messages.js';
import { errorResponse } from '../../protocol/server-messages.js';
import { SqlState } from '../../protocol/sqlstate.js';
import { queryKinds, quoteIdentifier, refusalStatement, statementKind, type StatementKind } from './statement-sql.js';

/** PgBouncer's default for max_prepared_statements. */
export const DEFAULT_PREPARED_STATEMENTS = 200;
/**
 * What one client may hold at once, so that a client cannot grow the proxy's memory without bound (PostgreSQL
 * itself would hold them in the client's own backend; here the proxy holds the text): statements and bytes of text.
 */
export const MAX_CLIENT_STATEMENTS = 10_000;
export const MAX_CLIENT_STATEMENT_BYTES = 64 * 1024 * 1024;
export interface StatementLimits {
  readonly statements: number;
  readonly bytes: number;
}
const DEFAULT_LIMITS: StatementLimits = { statements: MAX_CLIENT_STATEMENTS, bytes: MAX_CLIENT_STATEMENT_BYTES };
/** Prefix of every statement name the proxy prepares on a backend. */
export const BACKEND_STATEMENT_PREFIX = 'gprxy_';

export interface StatementDef {
  readonly query: string;
  readonly paramTypes: Buffer;
  readonly backendName: string;
  readonly kind: StatementKind;
  /** Its Parse failed or was skipped: an undo must never bring it back. */
  dead?: boolean;
}

const TOO_MANY_STATEMENTS = errorResponse({
  severity: 'ERROR',
  code: SqlState.PROGRAM_LIMIT_EXCEEDED,
  message: `too many prepared statements for one client with transaction pooling (at most ${MAX_CLIENT_STATEMENTS} statements or ${MAX_CLIENT_STATEMENT_BYTES / 1024 / 1024} MiB of their text)`,
  hint: 'Close (or DEALLOCATE) statements the client no longer uses.',
});

/** The backend name of a statement: a hash of its text and parameter types (identical statements share it). */
export function backendStatementName(query: string, paramTypes: Buffer): string {
  const h = createHash('sha256').update(query, 'utf8').update('\0').update(paramTypes).digest('hex');
  return BACKEND_STATEMENT_PREFIX + h.slice(0, 32);
}

/** Counters per pool, read by the metrics at scrape time. */
export class PreparedStatementStats {
  /** A client's Parse answered from a backend that already held the statement. */
  hits = 0;
  /** A statement prepared on a backend (the client's Parse, or a re-prepare before its Bind/Describe). */
  misses = 0;
  /** Statements Closed on a backend to keep its cache within pool.prepared_statements. */
  evictions = 0;
}

/** The statements prepared on one backend connection under proxy names, least recently used first. */
export class BackendStatements {
  private readonly lru = new Map<string, StatementDef>();
  /** md5 of the sorted names, as gprxy.prepared_statements_state() computes it on the backend; undefined: changed since. */
  private digestCache: string | undefined;
  /** Names whose Parse was sent and not yet answered: they may still fail, so nothing is answered from them. */
  private readonly pending = new Set<string>();
  /** Whose unnamed statement the backend holds (the client's definition object), if anyone's. */
  unnamed: StatementDef | undefined;

  constructor(readonly capacity: number = DEFAULT_PREPARED_STATEMENTS) {}

  get size(): number {
    return this.lru.size;
  }

  has(name: string): boolean {
    return this.lru.has(name);
  }

  /** Prepared and confirmed by ParseComplete. */
  confirmed(name: string): boolean {
    return this.lru.has(name) && !this.pending.has(name);
  }

  names(): string[] {
    return [...this.lru.keys()];
  }

  /**
   * The md5 of the names this cache lists, sorted and comma-joined (names are ASCII: `gprxy_` and hex), the form
   * the release reset reads from the backend: a difference means the backend lost a statement the proxy would
   * Bind without re-preparing (a DEALLOCATE hidden in a DO block), or holds one the cache forgot.
   */
  digest(): string {
    this.digestCache ??= createHash('md5').update([...this.lru.keys()].sort().join(',')).digest('hex');
    return this.digestCache;
  }

  /** Marks `name` most recently used. */
  touch(name: string): void {
    const def = this.lru.get(name);
    if (!def) return;
    this.lru.delete(name);
    this.lru.set(name, def);
  }

  /** Adds `def` (pending); returns the names evicted to stay within capacity (the caller Closes them on the backend). */
  add(def: StatementDef): string[] {
    this.digestCache = undefined;
    this.lru.delete(def.backendName);
    this.lru.set(def.backendName, def);
    this.pending.add(def.backendName);
    const evicted: string[] = [];
    for (const name of this.lru.keys()) {
      if (this.lru.size <= this.capacity) break;
      if (name === def.backendName) continue;
      this.delete(name);
      evicted.push(name);
    }
    return evicted;
  }

  /** The Parse of `def` succeeded. */
  confirm(def: StatementDef): void {
    if (this.lru.get(def.backendName) === def) this.pending.delete(def.backendName);
  }

  /** Removes `name` if it still maps to `def` (an undo must not remove a later re-prepare). */
  removeIf(name: string, def: StatementDef): void {
    if (this.lru.get(name) === def) this.delete(name);
  }

  delete(name: string): void {
    this.digestCache = undefined;
    this.lru.delete(name);
    this.pending.delete(name);
  }

  clear(): void {
    this.digestCache = undefined;
    this.lru.clear();
    this.pending.clear();
  }
}

const BACKEND_STATEMENTS = 'txprep.statements';

/** The digest of what the proxy believes a backend holds (no cache yet: none). */
export function backendStatementsDigest(backend: { readonly attributes: Map<string, unknown> }): string {
  const statements = backend.attributes.get(BACKEND_STATEMENTS) as BackendStatements | undefined;
  return statements?.digest() ?? EMPTY_DIGEST;
}
export const EMPTY_DIGEST = createHash('md5').update('').digest('hex');
/** Stands for an unnamed statement on a backend that is nobody's we know of. */
const FOREIGN_UNNAMED: StatementDef = { query: '', paramTypes: Buffer.alloc(2), backendName: '', kind: { kind: 'other' } };

/** The statement cache of a backend connection (kept in its attributes: it lives and dies with the connection). */
export function backendStatementsOf(backend: { readonly attributes: Map<string, unknown> }, capacity: number): BackendStatements {
  let statements = backend.attributes.get(BACKEND_STATEMENTS) as BackendStatements | undefined;
  if (!statements) {
    statements = new BackendStatements(capacity);
    backend.attributes.set(BACKEND_STATEMENTS, statements);
  }
  return statements;
}

/** One client's statements, as it named them: they follow the client from backend to backend. */
export class ClientStatements {
  constructor(private readonly limits: StatementLimits = DEFAULT_LIMITS) {}

  readonly byName = new Map<string, StatementDef>();
  /** Bytes of statement text held in byName. */
  private bytes = 0;
  /** The client's unnamed statement (pgx's describe-then-execute binds it in a later transaction). */
  unnamed: StatementDef | undefined;
  /** Portals bound to a DEALLOCATE ALL / DISCARD ALL statement (the only ones whose Execute matters here). */
  readonly deallocatingPortals = new Set<string>();

  /** Sets name → def (or deletes with undefined); returns the undo, which only applies if nothing changed it since. */
  set(name: string, def: StatementDef | undefined): () => void {
    const before = this.byName.get(name);
    this.put(name, def);
    return () => {
      if (this.byName.get(name) !== def) return;
      this.put(name, before && !before.dead ? before : undefined);
    };
  }

  /** Room for one more statement of `query`'s size. */
  hasRoomFor(query: string): boolean {
    return this.byName.size < this.limits.statements && this.bytes + query.length <= this.limits.bytes;
  }

  private put(name: string, def: StatementDef | undefined): void {
    const old = this.byName.get(name);
    if (old) this.bytes -= old.query.length;
    if (def) {
      this.byName.set(name, def);
      this.bytes += def.query.length;
    } else this.byName.delete(name);
  }

  /** Forgets every statement; returns the undo (restores the names the client has not reused since). */
  clear(): () => void {
    const before = new Map(this.byName);
    this.byName.clear();
    this.bytes = 0;
    return () => {
      for (const [name, def] of before) if (!this.byName.has(name) && !def.dead) this.put(name, def);
    };
  }
}

/** What the backend will answer to a message, in order. */
type Expect = 'parse' | 'bind' | 'describe' | 'execute' | 'close' | 'sync' | 'query' | 'function';

interface Entry {
  readonly expect: Expect;
  /** Injected by the proxy: its answer is not the client's. */
  readonly swallow?: boolean;
  /** Answered by the proxy, not the backend: sent to the client when the entry reaches the head of the queue. */
  readonly synthesized?: Buffer;
  /** Reverts the entry's effect when PostgreSQL refuses the message (failed) or skips it after an earlier error. */
  undo?: (failed: boolean) => void;
  /** Runs when the backend answered the message without an error. */
  onSuccess?: () => void;
  /** The proxy's own ErrorResponse, sent instead of the backend's (whose message is made to fail on purpose). */
  readonly replaceError?: Buffer;
  /** The command tags this entry must see for its effect to stand (DEALLOCATE ALL...); else undo at its end. */
  confirmTags?: readonly string[];
  confirmed?: boolean;
}

/** Output of the router for one message: bytes for the backend, bytes for the client (in order). */
export interface RouterOutput {
  readonly toBackend: Buffer[];
  readonly toClient: Buffer[];
}

/**
 * One client's traffic while it is attached to a backend: rewrites what it sends, filters and completes what the
 * backend answers. Created per client; attach() at each checkout, detach() at release (nothing outstanding then).
 */
export class StatementRouter {
  readonly statements: ClientStatements;
  private backend: BackendStatements | undefined;
  private readonly queue: Entry[] = [];
  /** PostgreSQL skips client messages until Sync after an error that came when no Sync was queued. */
  private skipping = false;
  private lastStatus: number = ReadyStatus.IDLE;

  constructor(
    private readonly stats: PreparedStatementStats,
    limits: StatementLimits = DEFAULT_LIMITS,
  ) {
    this.statements = new ClientStatements(limits);
  }

  attach(backend: BackendStatements): void {
    this.backend = backend;
    // Between two clients the backend ran the proxy's own statements (setup, reset), which may use the unnamed
    // statement: whatever it holds now is not this client's.
    backend.unnamed = FOREIGN_UNNAMED;
    this.queue.length = 0;
    this.skipping = false;
    this.lastStatus = ReadyStatus.IDLE;
  }

  /** True when every message sent has been answered: the backend may be released. */
  get idle(): boolean {
    return this.queue.length === 0;
  }

  detach(): void {
    // Released with answers still expected (should not happen): what the cache says may be wrong. Clearing it is
    // safe, since every later prepare on that backend is Close+Parse.
    if (this.queue.length && this.backend) {
      this.backend.clear();
      this.backend.unnamed = FOREIGN_UNNAMED;
    }
    this.backend = undefined;
    this.queue.length = 0;
    this.statements.deallocatingPortals.clear();
  }

  /** One complete client message (type byte and body; `raw` is the whole message as received). */
  fromClient(type: number, body: Buffer, raw: Buffer, out: RouterOutput): void {
    const backend = this.backend;
    if (!backend) throw new Error('StatementRouter.fromClient without a backend attached');
    if (this.skipping && type !== FrontendCode.SYNC) {
      out.toBackend.push(raw); // PostgreSQL ignores it until Sync; so do we.
      return;
    }
    switch (type) {
      case FrontendCode.PARSE:
        return this.parse(body, raw, backend, out);
      case FrontendCode.BIND:
        return this.bind(body, raw, backend, out);
      case FrontendCode.DESCRIBE: {
        const t = parseTargetMessage(body, 'Describe');
        const name = t.kind === 'S' ? this.use(t.name, backend, out) : t.name;
        out.toBackend.push(name === t.name ? raw : describeMessage('S', name));
        return this.expect({ expect: 'describe' }, out);
      }
      case FrontendCode.CLOSE: {
        const t = parseTargetMessage(body, 'Close');
        if (t.kind === 'S' && t.name !== '') {
          // The shared backend statement stays; the client's name goes (no error for an unknown one, as in PostgreSQL).
          const undo = this.statements.set(t.name, undefined);
          return this.expect({ expect: 'close', synthesized: closeComplete(), undo }, out);
        }
        if (t.kind === 'P') {
          this.statements.deallocatingPortals.delete(t.name);
          out.toBackend.push(raw);
          return this.expect({ expect: 'close' }, out);
        }
        // Close of the unnamed statement: gone for the client and on the backend (unless PostgreSQL skips it).
        const before = { client: this.statements.unnamed, backend: backend.unnamed };
        this.statements.unnamed = undefined;
        backend.unnamed = undefined;
        out.toBackend.push(raw);
        const undo = () => {
          if (this.statements.unnamed === undefined) this.statements.unnamed = before.client;
          if (backend.unnamed === undefined) backend.unnamed = before.backend;
        };
        return this.expect({ expect: 'close', undo }, out);
      }
      case FrontendCode.EXECUTE: {
        const portal = parseExecutePortal(body);
        out.toBackend.push(raw);
        if (this.statements.deallocatingPortals.has(portal)) {
          backend.clear();
          return this.expect({ expect: 'execute', undo: this.statements.clear() }, out);
        }
        return this.expect({ expect: 'execute' }, out);
      }
      case FrontendCode.SYNC:
        this.skipping = false;
        out.toBackend.push(raw);
        return this.expect({ expect: 'sync' }, out);
      case FrontendCode.QUERY:
        return this.query(body, raw, backend, out);
      case FrontendCode.FUNCTION_CALL:
        out.toBackend.push(raw);
        return this.expect({ expect: 'function' }, out);
      default:
        // Flush, CopyData/CopyDone/CopyFail, Terminate: nothing the backend answers on its own.
        out.toBackend.push(raw);
    }
  }

  /** One complete backend message (a relay that frames the backend's messages whole). */
  fromBackend(type: number, body: Buffer, raw: Buffer, out: RouterOutput): void {
    if (this.backendHeader(type)) out.toClient.push(raw);
    this.backendEnd(type, body, out.toClient);
  }

  /**
   * A backend message starts: whether its bytes go to the client (a ParseComplete or CloseComplete answering a
   * message the proxy added does not). For relays that stream the backend's bytes and read headers only.
   */
  backendHeader(type: number): boolean {
    if (type === BackendCode.PARSE_COMPLETE || type === BackendCode.CLOSE_COMPLETE) return !this.queue[0]?.swallow;
    if (type === BackendCode.ERROR_RESPONSE) return !this.queue[0]?.replaceError;
    return true;
  }

  /** A streaming relay must pass the body of this message to backendEnd (a CommandComplete that confirms an effect). */
  wantsBody(type: number): boolean {
    return type === BackendCode.READY_FOR_QUERY || (type === BackendCode.COMMAND_COMPLETE && this.queue[0]?.confirmTags !== undefined);
  }

  /**
   * A backend message ended (after its bytes, if backendHeader said so, were queued for the client): the queue of
   * expected answers moves on, and synthesized answers whose turn has come are appended to `toClient`. `body`
   * only matters when wantsBody(type).
   */
  backendEnd(type: number, body: Buffer | undefined, toClient: Buffer[]): void {
    const head = this.queue[0];
    switch (type) {
      case BackendCode.PARSE_COMPLETE:
      case BackendCode.CLOSE_COMPLETE:
      case BackendCode.BIND_COMPLETE:
        if (!head) return;
        this.pop();
        head.onSuccess?.();
        break;
      case BackendCode.ROW_DESCRIPTION:
      case BackendCode.NO_DATA:
        if (head?.expect === 'describe') this.pop();
        break;
      case BackendCode.COMMAND_COMPLETE:
      case BackendCode.EMPTY_QUERY_RESPONSE:
      case BackendCode.PORTAL_SUSPENDED:
        if (head?.confirmTags && type === BackendCode.COMMAND_COMPLETE && body && head.confirmTags.includes(commandTag(body))) head.confirmed = true;
        if (head?.expect === 'execute') this.pop();
        break;
      case BackendCode.ERROR_RESPONSE:
        if (head?.replaceError) toClient.push(head.replaceError);
        if (head && head.expect !== 'query' && head.expect !== 'function' && head.expect !== 'sync') this.skipUntilSync();
        break;
      case BackendCode.READY_FOR_QUERY:
        this.lastStatus = body?.[0] ?? ReadyStatus.IDLE;
        if (head && (head.expect === 'sync' || head.expect === 'query' || head.expect === 'function')) this.pop();
        if (this.lastStatus === ReadyStatus.IDLE && this.queue.length === 0) this.statements.deallocatingPortals.clear();
        break;
      default:
        return;
    }
    this.flushSynthesized(toClient);
  }

  private pop(): void {
    const entry = this.queue.shift()!;
    if (entry.confirmTags && !entry.confirmed) entry.undo?.(true);
  }

  /** Synthesized answers whose turn has come. */
  private flushSynthesized(toClient: Buffer[]): void {
    while (this.queue.length && this.queue[0]!.synthesized) toClient.push(this.queue.shift()!.synthesized!);
  }

  private expect(entry: Entry, out: RouterOutput): void {
    this.queue.push(entry);
    if (this.queue.length === 1) this.flushSynthesized(out.toClient);
  }

  /** An error: PostgreSQL skips every message up to the next Sync; their effects are undone, newest first. */
  private skipUntilSync(): void {
    let n = 0;
    while (n < this.queue.length && this.queue[n]!.expect !== 'sync') n++;
    const skipped = this.queue.splice(0, n);
    for (let i = skipped.length - 1; i >= 0; i--) skipped[i]!.undo?.(i === 0);
    if (this.queue.length === 0) this.skipping = true;
  }

  private parse(body: Buffer, raw: Buffer, backend: BackendStatements, out: RouterOutput): void {
    const msg = parseParseMessage(body);
    const kind = statementKind(msg.query);
    const refused = kind.kind === 'sql_prepare' || kind.kind === 'deallocate';
    const query = refused ? refusalStatement(kind.kind === 'deallocate' ? 'DEALLOCATE' : kind.keyword) : msg.query;
    if (msg.name === '') {
      // PostgreSQL drops the old unnamed statement first: a failed Parse leaves none, a skipped one changes nothing.
      const def: StatementDef = { query, paramTypes: msg.paramTypes, backendName: '', kind };
      const before = { client: this.statements.unnamed, backend: backend.unnamed };
      this.statements.unnamed = def;
      backend.unnamed = def;
      out.toBackend.push(refused ? parseMessage('', query, msg.paramTypes) : raw);
      const undo = (failed: boolean) => {
        if (this.statements.unnamed === def) this.statements.unnamed = failed ? undefined : before.client;
        if (backend.unnamed === def) backend.unnamed = failed ? undefined : before.backend;
      };
      return this.expect({ expect: 'parse', undo }, out);
    }
    const def: StatementDef = { query, paramTypes: msg.paramTypes, backendName: backendStatementName(query, msg.paramTypes), kind };
    const existing = this.statements.byName.get(msg.name);
    if (existing) {
      // PostgreSQL answers 42P05 (already exists) unless the earlier Parse of this name fails (it may still be in
      // flight): let the backend decide, by parsing the new text under the existing statement's backend name.
      const oldName = this.ensure(existing, backend, out);
      out.toBackend.push(parseMessage(oldName, query, msg.paramTypes));
      const undoName = this.statements.set(msg.name, def);
      const undo = () => {
        def.dead = true;
        undoName();
      };
      this.expect({ expect: 'parse', undo }, out);
      // Reached only if that succeeded (after an error PostgreSQL skips to Sync): put the name right again.
      backend.delete(oldName);
      out.toBackend.push(closeMessage('S', oldName));
      this.expect({ expect: 'close', swallow: true }, out);
      this.ensure(def, backend, out);
      return;
    }
    if (!this.statements.hasRoomFor(query)) {
      // The backend fails a Parse that cannot parse (so the pipeline skips to Sync as after any error); the
      // client is told why instead.
      out.toBackend.push(parseMessage('', 'GPRXY REFUSED THIS STATEMENT', Buffer.from([0, 0])));
      return this.expect({ expect: 'parse', replaceError: TOO_MANY_STATEMENTS }, out);
    }
    const undoName = this.statements.set(msg.name, def);
    if (backend.confirmed(def.backendName) && this.lastStatus !== ReadyStatus.FAILED) {
      this.stats.hits++;
      backend.touch(def.backendName);
      const undo = () => {
        def.dead = true;
        undoName();
      };
      return this.expect({ expect: 'parse', synthesized: parseComplete(), undo }, out);
    }
    const undoBackend = this.prepare(def, backend, out);
    out.toBackend.push(parseMessage(def.backendName, def.query, def.paramTypes));
    this.expect(
      {
        expect: 'parse',
        undo: () => {
          def.dead = true;
          undoBackend();
          undoName();
        },
        onSuccess: () => backend.confirm(def),
      },
      out,
    );
  }

  private bind(body: Buffer, raw: Buffer, backend: BackendStatements, out: RouterOutput): void {
    const head = parseBindHead(body);
    const kind = head.statement === '' ? this.statements.unnamed?.kind : this.statements.byName.get(head.statement)?.kind;
    if (kind?.kind === 'deallocate_all') this.statements.deallocatingPortals.add(head.portal);
    else this.statements.deallocatingPortals.delete(head.portal);
    const name = this.use(head.statement, backend, out);
    out.toBackend.push(name === head.statement ? raw : bindWithStatement(body, head, name));
    this.expect({ expect: 'bind' }, out);
  }

  /** The backend name for a client's statement name, preparing it on this backend first if needed. */
  private use(name: string, backend: BackendStatements, out: RouterOutput): string {
    if (name === '') return this.useUnnamed(backend, out);
    const def = this.statements.byName.get(name);
    // Unknown: PostgreSQL's own 26000 names it. A name in the proxy's namespace must not reach another client's statement.
    if (!def) return name.startsWith(BACKEND_STATEMENT_PREFIX) ? `${BACKEND_STATEMENT_PREFIX}unknown ${name}` : name;
    return this.ensure(def, backend, out);
  }

  /** The unnamed statement: the backend's must be this client's (pgx parses it in one transaction, binds in the next). */
  private useUnnamed(backend: BackendStatements, out: RouterOutput): string {
    const def = this.statements.unnamed;
    // None: PostgreSQL's own 26000, unless the backend holds someone else's, which this client must not run.
    if (!def) return backend.unnamed ? `${BACKEND_STATEMENT_PREFIX}unknown unnamed` : '';
    if (backend.unnamed === def) return '';
    const before = backend.unnamed;
    backend.unnamed = def;
    out.toBackend.push(parseMessage('', def.query, def.paramTypes));
    const undo = (failed: boolean) => {
      if (backend.unnamed === def) backend.unnamed = failed ? undefined : before;
    };
    this.expect({ expect: 'parse', swallow: true, undo }, out);
    return '';
  }

  private ensure(def: StatementDef, backend: BackendStatements, out: RouterOutput): string {
    // A pending Parse of it counts: it comes first on this connection, and if it fails, so does whatever uses it.
    if (backend.has(def.backendName)) {
      backend.touch(def.backendName);
      return def.backendName;
    }
    const undo = this.prepare(def, backend, out);
    out.toBackend.push(parseMessage(def.backendName, def.query, def.paramTypes));
    this.expect({ expect: 'parse', swallow: true, undo, onSuccess: () => backend.confirm(def) }, out);
    return def.backendName;
  }

  /**
   * Records `def` on the backend (evicting, with a Close each, beyond capacity) and sends Close of its name, so
   * the Parse that the caller sends next cannot collide with a statement the cache did not know about.
   */
  private prepare(def: StatementDef, backend: BackendStatements, out: RouterOutput): () => void {
    this.stats.misses++;
    for (const evicted of backend.add(def)) {
      this.stats.evictions++;
      out.toBackend.push(closeMessage('S', evicted));
      this.expect({ expect: 'close', swallow: true }, out);
    }
    out.toBackend.push(closeMessage('S', def.backendName));
    this.expect({ expect: 'close', swallow: true }, out);
    return () => backend.removeIf(def.backendName, def);
  }

  private query(body: Buffer, raw: Buffer, backend: BackendStatements, out: RouterOutput): void {
    const kinds = queryKinds(parseQueryText(body));
    // A simple Query destroys the unnamed statement.
    this.statements.unnamed = undefined;
    backend.unnamed = undefined;
    if (kinds.length === 0) {
      out.toBackend.push(raw);
      return this.expect({ expect: 'query' }, out);
    }
    const refused = kinds.find((k) => k.kind === 'sql_prepare' || (k.kind === 'deallocate' && kinds.length > 1));
    if (refused) {
      out.toBackend.push(queryMessage(refusalStatement(refused.kind === 'sql_prepare' ? refused.keyword : 'DEALLOCATE')));
      return this.expect({ expect: 'query' }, out);
    }
    const only = kinds[0]!;
    if (kinds.length === 1 && only.kind === 'deallocate') {
      const def = this.statements.byName.get(only.name);
      if (!def) {
        const name = only.name.startsWith(BACKEND_STATEMENT_PREFIX) ? `${BACKEND_STATEMENT_PREFIX}unknown ${only.name}` : only.name;
        out.toBackend.push(queryMessage(`DEALLOCATE ${quoteIdentifier(name)}`));
        return this.expect({ expect: 'query' }, out);
      }
      // Rails' SQL-level DEALLOCATE of a protocol-level statement: the backend deallocates its copy (other clients
      // re-prepare it when they need it), and the client's name goes once PostgreSQL confirms.
      const backendName = this.ensure(def, backend, out);
      backend.delete(backendName);
      out.toBackend.push(queryMessage(`DEALLOCATE ${quoteIdentifier(backendName)}`));
      return this.expect({ expect: 'query', undo: this.statements.set(only.name, undefined), confirmTags: ['DEALLOCATE'] }, out);
    }
    // DEALLOCATE ALL / DISCARD ALL (possibly among other statements): the backend's statements go too.
    out.toBackend.push(raw);
    backend.clear();
    this.expect({ expect: 'query', undo: this.statements.clear(), confirmTags: ['DEALLOCATE ALL', 'DISCARD ALL'] }, out);
  }
}
