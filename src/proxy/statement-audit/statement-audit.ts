/**
 * The statement audit of one session (issue 22, DESIGN.md 2.6 `audit` / event `statement`): a tap on both
 * directions of the audited relay that follows the protocol far enough to say, for every statement the
 * backend executed (or refused), who ran it, its text, its command tag and row count or its SQLSTATE, and
 * how long it took, and writes one `statement` event per statement.
 *
 * How responses are matched to requests: every client message that the backend answers (Query, Parse,
 * Bind, Describe, Execute, Close, Sync, FunctionCall) is queued in order; backend messages complete the
 * queue's head. After an error in the extended protocol the backend skips to the next Sync, and so does
 * the queue. Parse, Bind and Close take effect when the backend confirms them (ParseComplete, ...), so a
 * prepared statement's text is the one the backend really holds. A simple Query may hold several
 * statements: one event per CommandComplete (or the error), with the statement's index and its own text.
 *
 * What is not read: row data, COPY data, parameter values (unless `bind_values`). The header-only relay
 * stays in use for `statements: none`; this class only exists for sessions of audited databases.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { StatementAuditConfig } from '../../config/proxy-config.js';
import { parseErrorFields, parseParameterStatus } from '../../protocol/backend-messages.js';
import { classify, firstWord, keeps, rowsOf, type StatementClass } from './classify.js';
import { MessageTap } from './message-tap.js';
import { leadingKeyword, redactLiterals, splitStatements } from './sql-lexer.js';
import { BackendCode, FrontendCode } from '../../protocol/codes.js';
import { GprxyError } from '../../shared/errors.js';

/** Statement text beyond this many bytes is not kept (its length still is); the hash covers what is kept. */
export const MAX_BUFFERED_STATEMENT = 1024 * 1024;
/** Bind bodies read when parameter values are not logged: enough for the portal and statement names. */
const MAX_BIND_NAMES = 64 * 1024;
/** Requests awaiting a response; a client pipelining more without reading ends its session (fail closed). */
export const MAX_PENDING = 100_000;
/** Named prepared statements remembered per session; beyond, executions are logged as untracked. */
export const MAX_PREPARED = 10_000;
const MAX_PARAM_CHARS = 1024;

// Client message types (protocol/codes.ts).
const { QUERY: Q, PARSE: P, BIND: B, EXECUTE: E, CLOSE, DESCRIBE: D, SYNC, FUNCTION_CALL: F } = FrontendCode;
// Backend message types.
const { COMMAND_COMPLETE, ERROR_RESPONSE: ERROR, READY_FOR_QUERY: READY, PARAMETER_STATUS: PARAM_STATUS, PARSE_COMPLETE, BIND_COMPLETE, CLOSE_COMPLETE } = BackendCode;
const { EMPTY_QUERY_RESPONSE: EMPTY_QUERY, PORTAL_SUSPENDED: SUSPENDED, ROW_DESCRIPTION, NO_DATA, COPY_IN_RESPONSE: COPY_IN, COPY_OUT_RESPONSE: COPY_OUT, COPY_BOTH_RESPONSE: COPY_BOTH } = BackendCode;

// Requests without data to remember: one shared object each, no allocation per message.
const DESCRIBE: Pending = { k: 'describe' };
const SYNC_ITEM: Pending = { k: 'sync' };
const CALL: Pending = { k: 'call' };

export interface AuditSessionIdentity {
  readonly session: number;
  readonly client: string;
  readonly issuer?: string;
  readonly user: string;
  readonly email?: string;
  readonly tenant?: string | null;
  readonly account: string;
  readonly database: string;
  readonly backendPid: number;
}

export class StatementAuditError extends GprxyError<'statement_audit_failed'> {
  readonly code = 'statement_audit_failed' as const;
}

/** A statement's text as logged: redacted if asked, cut at max_statement_length with its length and hash. */
interface Reduced {
  readonly text: string;
  readonly truncated: boolean;
  readonly length: number;
  readonly sha256?: string;
}

interface Statement {
  /** The text as received (a view of the socket's chunk), decoded only when needed; undefined once decoded. */
  buf: Buffer | undefined;
  /** The decoded text ('' until decoded, and again once reduced). */
  raw: string;
  /** Bytes of the text as the client sent it. */
  readonly bytes: number;
  /** The client's text was longer than MAX_BUFFERED_STATEMENT. */
  readonly cut: boolean;
  keyword?: string;
  reduced?: Reduced;
}

interface Portal {
  readonly statement: Statement | undefined;
  readonly statementName: string;
  readonly params: (string | null)[] | undefined;
  /** First Execute of a portal run in several (PortalSuspended), for the duration. */
  started?: number;
}

type Copy = 'in' | 'out' | 'both';

type Pending =
  | { k: 'query'; statement: Statement; pieces?: string[]; index: number; started: number; copy?: Copy; failed?: boolean }
  | { k: 'parse'; name: string; statement: Statement }
  | { k: 'bind'; portal: string; statementName: string; params: (string | null)[] | undefined }
  | { k: 'describe' }
  | { k: 'execute'; portal: string; started: number; copy?: Copy }
  | { k: 'close'; what: number; name: string }
  | { k: 'sync' }
  | { k: 'call' };

export interface StatementAuditOptions {
  readonly config: StatementAuditConfig;
  readonly identity: AuditSessionIdentity;
  /** The backend's parameters at hand-over (standard_conforming_strings, application_name). */
  readonly parameters: ReadonlyMap<string, string>;
  /** Where `statement` events go (the proxy log, or the database's audit.file). */
  readonly logger: Logger;
  /** Milliseconds, monotonic (a seam for tests). */
  readonly clock?: () => number;
}

export class StatementAudit {
  private readonly config: StatementAuditConfig;
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly clientTap: MessageTap;
  private readonly backendTap: MessageTap;
  private readonly pending: Pending[] = [];
  private head = 0;
  private readonly statements = new Map<string, Statement>();
  private readonly portals = new Map<string, Portal>();
  private scs: boolean;
  private application: string | undefined;
  /** When the backend last finished something: a pipelined request starts no earlier. */
  private lastDone: number;
  /** Events written by this session (tests and the session_end line). */
  events = 0;

  constructor(o: StatementAuditOptions) {
    this.config = o.config;
    this.clock = o.clock ?? (() => performance.now());
    this.lastDone = this.clock();
    this.scs = o.parameters.get('standard_conforming_strings') !== 'off';
    this.application = o.parameters.get('application_name');
    const id = o.identity;
    // Bound once: pino serialises a child's fields once, not per event.
    this.log = o.logger.child({
      event: 'statement',
      session: id.session,
      client: id.client,
      ...(id.issuer ? { issuer: id.issuer } : {}),
      user: id.user,
      ...(id.email ? { email: id.email } : {}),
      tenant: id.tenant ?? null,
      account: id.account,
      database: id.database,
      backend_pid: id.backendPid,
    });
    const bindCap = o.config.bindValues ? MAX_BUFFERED_STATEMENT : MAX_BIND_NAMES;
    this.clientTap = new MessageTap([Q, P, B, E, CLOSE], [D, SYNC, F], (t) => (t === B ? bindCap : t === Q || t === P ? MAX_BUFFERED_STATEMENT : 4096), (t, body, len) =>
      this.onClient(t, body, len),
    );
    this.backendTap = new MessageTap(
      [COMMAND_COMPLETE, ERROR, READY, PARAM_STATUS],
      [PARSE_COMPLETE, BIND_COMPLETE, CLOSE_COMPLETE, EMPTY_QUERY, SUSPENDED, ROW_DESCRIPTION, NO_DATA, COPY_IN, COPY_OUT, COPY_BOTH],
      () => 4096,
      (t, body) => this.onBackend(t, body),
    );
  }

  fromClient(chunk: Buffer): void {
    this.clientTap.push(chunk);
  }

  fromBackend(chunk: Buffer): void {
    this.backendTap.push(chunk);
  }

  // ---- client side: queue what the backend will answer -------------------------------------------------

  private onClient(type: number, body: Buffer, length: number): void {
    switch (type) {
      case Q: {
        const cut = length - 1 > body.length;
        const end = cut ? body.length : Math.max(0, body.length - 1);
        this.enqueue({ k: 'query', statement: { buf: body.subarray(0, end), raw: '', bytes: Math.max(0, length - 1), cut }, index: 0, started: this.clock() });
        return;
      }
      case P: {
        const nameEnd = body.indexOf(0);
        if (nameEnd < 0) throw new StatementAuditError('Parse without a statement name terminator');
        const textEnd = body.indexOf(0, nameEnd + 1);
        const cut = textEnd < 0;
        const bytes = cut ? length - nameEnd - 1 : textEnd - nameEnd - 1;
        const buf = body.subarray(nameEnd + 1, cut ? body.length : textEnd);
        this.enqueue({ k: 'parse', name: name(body, 0, nameEnd), statement: { buf, raw: '', bytes, cut } });
        return;
      }
      case B: {
        const portalEnd = body.indexOf(0);
        const nameEnd = portalEnd < 0 ? -1 : body.indexOf(0, portalEnd + 1);
        if (nameEnd < 0) throw new StatementAuditError('Bind without portal and statement names');
        const params = this.config.bindValues ? bindValues(body, nameEnd + 1, length > body.length) : undefined;
        this.enqueue({ k: 'bind', portal: name(body, 0, portalEnd), statementName: name(body, portalEnd + 1, nameEnd), params });
        return;
      }
      case E: {
        const end = body.indexOf(0);
        this.enqueue({ k: 'execute', portal: name(body, 0, end < 0 ? body.length : end), started: this.clock() });
        return;
      }
      case CLOSE: {
        const end = body.indexOf(0, 1);
        this.enqueue({ k: 'close', what: body[0] ?? 0, name: body.toString('utf8', 1, end < 0 ? body.length : end) });
        return;
      }
      case D:
        this.enqueue(DESCRIBE);
        return;
      case SYNC:
        this.enqueue(SYNC_ITEM);
        return;
      case F:
        this.enqueue(CALL);
        return;
    }
  }

  private enqueue(p: Pending): void {
    if (this.pending.length - this.head >= MAX_PENDING) {
      throw new StatementAuditError(`more than ${MAX_PENDING} requests pipelined without reading the results; the statement audit cannot follow (send a Sync and read the results)`);
    }
    this.pending.push(p);
  }

  private get front(): Pending | undefined {
    return this.pending[this.head];
  }

  private shift(): void {
    this.pending[this.head++] = undefined as unknown as Pending;
    if (this.head > 1024 && this.head * 2 > this.pending.length) {
      this.pending.splice(0, this.head);
      this.head = 0;
    }
  }

  /** After an error in the extended protocol the backend ignores everything up to the next Sync. */
  private skipToSync(): void {
    while (this.head < this.pending.length) {
      const k = this.front!.k;
      if (k === 'sync' || k === 'query' || k === 'call') return;
      this.shift();
    }
  }

  // ---- backend side: complete the head of the queue --------------------------------------------------

  private onBackend(type: number, body: Buffer): void {
    const front = this.front;
    switch (type) {
      case COMMAND_COMPLETE: {
        const tag = body.toString('utf8', 0, Math.max(0, body.indexOf(0) < 0 ? body.length : body.indexOf(0)));
        const now = this.clock();
        if (front?.k === 'query') {
          this.queryEvent(front, now, tag, undefined);
          front.index++;
          front.copy = undefined;
        } else if (front?.k === 'execute') {
          this.executeEvent(front, now, tag, undefined);
          this.shift();
        }
        this.lastDone = now;
        // DISCARD ALL and DEALLOCATE ALL drop the protocol-level prepared statements too.
        if (tag === 'DISCARD ALL' || tag === 'DEALLOCATE ALL') this.statements.clear();
        return;
      }
      case ERROR: {
        const now = this.clock();
        const fields = parseErrorFields(body);
        if (front?.k === 'query') {
          this.queryEvent(front, now, undefined, fields);
          front.failed = true;
        } else if (front) {
          if (front.k === 'execute') this.executeEvent(front, now, undefined, fields);
          else if (front.k === 'parse') this.emit('extended', front.statement, { name: front.name }, now, now, undefined, fields, undefined, undefined);
          else if (front.k === 'bind') {
            this.emit('extended', this.statements.get(front.statementName), { name: front.statementName }, now, now, undefined, fields, undefined, front.params);
          }
          if (front.k !== 'sync' && front.k !== 'call') {
            this.shift();
            this.skipToSync();
          }
        }
        this.lastDone = now;
        return;
      }
      case READY: {
        while (this.head < this.pending.length) {
          const k = this.front!.k;
          this.shift();
          if (k === 'sync' || k === 'query' || k === 'call') break;
        }
        this.lastDone = this.clock();
        // Portals live until the end of their transaction.
        if (body[0] === 0x49) this.portals.clear();
        if (this.head === this.pending.length && this.head > 0) {
          this.pending.length = 0;
          this.head = 0;
        }
        return;
      }
      case PARSE_COMPLETE:
        if (front?.k === 'parse') {
          this.shift();
          if (front.name === '' || this.statements.size < MAX_PREPARED || this.statements.has(front.name)) {
            // A named statement is reduced now and its raw text dropped: the session may hold thousands.
            if (front.name !== '') this.reduce(front.statement);
            this.statements.set(front.name, front.statement);
          }
        }
        return;
      case BIND_COMPLETE:
        if (front?.k === 'bind') {
          this.shift();
          this.portals.set(front.portal, { statement: this.statements.get(front.statementName), statementName: front.statementName, params: front.params });
        }
        return;
      case CLOSE_COMPLETE:
        if (front?.k === 'close') {
          this.shift();
          if (front.what === 0x53) this.statements.delete(front.name);
          else this.portals.delete(front.name);
        }
        return;
      case ROW_DESCRIPTION:
      case NO_DATA:
        // The end of a Describe's answer (a RowDescription in a simple Query belongs to the query).
        if (front?.k === 'describe') this.shift();
        return;
      case EMPTY_QUERY:
        if (front?.k === 'execute') this.shift();
        return;
      case SUSPENDED:
        if (front?.k === 'execute') {
          const portal = this.portals.get(front.portal);
          if (portal) portal.started ??= Math.max(front.started, this.lastDone);
          this.shift();
        }
        this.lastDone = this.clock();
        return;
      case COPY_IN:
      case COPY_OUT:
      case COPY_BOTH:
        if (front?.k === 'query' || front?.k === 'execute') front.copy = type === COPY_IN ? 'in' : type === COPY_OUT ? 'out' : 'both';
        return;
      case PARAM_STATUS: {
        const { name, value } = parseParameterStatus(body);
        if (name === 'standard_conforming_strings') this.scs = value !== 'off';
        else if (name === 'application_name') this.application = value;
        return;
      }
    }
  }

  private queryEvent(q: Extract<Pending, { k: 'query' }>, now: number, tag: string | undefined, error: ReturnType<typeof parseErrorFields> | undefined): void {
    if (q.failed) return;
    const started = Math.max(q.started, this.lastDone);
    this.emit('simple', q.statement, { index: q.index, query: q }, started, now, tag, error, q.copy, undefined);
  }

  private executeEvent(x: Extract<Pending, { k: 'execute' }>, now: number, tag: string | undefined, error: ReturnType<typeof parseErrorFields> | undefined): void {
    const portal = this.portals.get(x.portal);
    const started = portal?.started ?? Math.max(x.started, this.lastDone);
    if (portal) portal.started = undefined;
    this.emit('extended', portal?.statement, { name: portal?.statementName ?? '', portal: x.portal }, started, now, tag, error, x.copy, portal?.params);
  }

  // ---- events ------------------------------------------------------------------------------------------

  private emit(
    protocol: 'simple' | 'extended',
    statement: Statement | undefined,
    where: { index?: number; query?: Extract<Pending, { k: 'query' }>; name?: string; portal?: string },
    started: number,
    ended: number,
    tag: string | undefined,
    error: ReturnType<typeof parseErrorFields> | undefined,
    copy: Copy | undefined,
    params: (string | null)[] | undefined,
  ): void {
    const mode = this.config.statements;
    let cls: StatementClass;
    if (tag !== undefined) {
      const word = firstWord(tag);
      if (word === 'SELECT') {
        // SELECT is DDL only as CREATE TABLE … AS; `all` keeps it anyway, so do not look.
        const target = mode === 'all' || !statement ? undefined : where.query && where.index !== 0 ? this.piece(where.query) : statement;
        cls = target && startsWithCreate(target) ? 'ddl' : 'read';
      } else cls = classify(word, copy);
    } else {
      const target = where.query && statement ? this.piece(where.query) : statement;
      cls = classify(target ? this.keyword(target) : '', copy);
    }
    if (!keeps(mode, cls)) return;
    // The text this event is about: one statement of a multi-statement Query, or the whole text.
    const target = where.query && statement ? this.piece(where.query) : statement;
    const reduced = target ? this.reduce(target) : undefined;
    this.events++;
    const e: Record<string, unknown> = { protocol };
    if (where.index !== undefined) e.statement_index = where.index;
    if (where.name !== undefined) e.statement_name = where.name;
    if (where.portal) e.portal = where.portal;
    e.statement = reduced ? reduced.text : null;
    if (reduced?.truncated) {
      e.statement_truncated = true;
      e.statement_length = reduced.length;
      e.statement_sha256 = reduced.sha256;
    }
    if (protocol === 'extended' && !statement) e.statement_untracked = true;
    e.class = cls;
    if (tag !== undefined) {
      e.tag = tag;
      const rows = rowsOf(tag);
      if (rows !== undefined) e.rows = rows;
    }
    if (copy) e.copy = copy;
    if (error) {
      e.sqlstate = error.code;
      if (!this.config.redactLiterals) e.error = error.message;
    }
    if (params) e.params = params;
    if (this.application !== undefined) e.application = this.application;
    e.duration_ms = Math.round((ended - started) * 1000) / 1000;
    this.log.info(e);
  }

  /** The statement of a Query at its current index, split lazily (most Queries hold one statement). */
  private piece(q: Extract<Pending, { k: 'query' }>): Statement {
    if (!q.pieces) {
      const t = textOf(q.statement);
      const semi = t.indexOf(';');
      // No semicolon but a trailing one: one statement, and the lexer is not needed to know it.
      q.pieces = semi < 0 || t.slice(semi + 1).trim() === '' ? [t.slice(0, semi < 0 ? t.length : semi).trim()] : splitStatements(t, { standardConformingStrings: this.scs });
    }
    if (q.pieces.length <= 1) {
      if (q.pieces.length === 1 && q.statement.raw.length !== q.pieces[0]!.length && !q.statement.cut) {
        q.statement.raw = q.pieces[0]!;
      }
      return q.statement;
    }
    const piece = q.pieces[q.index];
    // More completions than pieces: the split was wrong (it cannot be, short of a lexer bug); log it all.
    if (piece === undefined) return q.statement;
    return { buf: undefined, raw: piece, bytes: Buffer.byteLength(piece), cut: q.statement.cut && q.index === q.pieces.length - 1 };
  }

  private keyword(s: Statement): string {
    s.keyword ??= leadingKeyword(textOf(s));
    return s.keyword;
  }

  private reduce(s: Statement): Reduced {
    if (s.reduced) return s.reduced;
    const original = textOf(s);
    s.keyword ??= leadingKeyword(original);
    let text = original;
    if (this.config.redactLiterals) text = redactLiterals(text, { standardConformingStrings: this.scs });
    const max = this.config.maxStatementLength;
    let reduced: Reduced;
    if (text.length > max || s.cut) {
      let cutAt = Math.min(max, text.length);
      const last = text.charCodeAt(cutAt - 1);
      if (last >= 0xd800 && last <= 0xdbff) cutAt--;
      reduced = { text: text.slice(0, cutAt), truncated: true, length: s.bytes, sha256: createHash('sha256').update(text).digest('hex') };
    } else reduced = { text, truncated: false, length: s.bytes };
    s.reduced = reduced;
    s.raw = '';
    return reduced;
  }
}

/** A statement or portal name; most are unnamed (''), which needs no decoding. */
function name(body: Buffer, start: number, end: number): string {
  return end <= start ? '' : body.toString('utf8', start, end);
}

/** A statement's text, decoded on first use. */
function textOf(s: Statement): string {
  if (s.buf) {
    s.raw = s.buf.toString('utf8');
    s.buf = undefined;
  }
  return s.raw;
}

/**
 * Does the text start with CREATE (after space and comments)? Decides, without decoding, whether a
 * statement tagged SELECT is CREATE TABLE … AS: the one case where `ddl` needs more than the tag.
 */
function startsWithCreate(s: Statement): boolean {
  const b = s.buf;
  if (!b) return (s.keyword ??= leadingKeyword(s.raw)) === 'CREATE';
  let i = 0;
  while (i < b.length && (b[i] === 0x20 || (b[i]! >= 0x09 && b[i]! <= 0x0d))) i++;
  const c = b[i];
  // A leading comment or a non-ASCII start: the full lexer decides.
  if (c === 0x2d || c === 0x2f || c === undefined || c >= 0x80) return (s.keyword ??= leadingKeyword(textOf(s))) === 'CREATE';
  if ((c | 0x20) !== 0x63 || b.length < i + 7) return false;
  for (let k = 1; k < 6; k++) if ((b[i + k]! | 0x20) !== 'create'.charCodeAt(k)) return false;
  const next = b[i + 6]!;
  return !((next | 0x20) >= 0x61 && (next | 0x20) <= 0x7a) && !(next >= 0x30 && next <= 0x39) && next !== 0x5f && next !== 0x24 && next < 0x80;
}

/** Bind's parameter values, text as text (capped), binary as hex, NULL as null. */
function bindValues(body: Buffer, at: number, cut: boolean): (string | null)[] | undefined {
  try {
    const nFormats = body.readInt16BE(at);
    at += 2;
    const formats: number[] = [];
    for (let i = 0; i < nFormats; i++, at += 2) formats.push(body.readInt16BE(at));
    const n = body.readInt16BE(at);
    at += 2;
    const values: (string | null)[] = [];
    for (let i = 0; i < n; i++) {
      const len = body.readInt32BE(at);
      at += 4;
      if (len < 0) {
        values.push(null);
        continue;
      }
      const binary = (nFormats === 1 ? formats[0] : formats[i]) === 1;
      const end = Math.min(at + len, body.length);
      const raw = binary ? `\\x${body.toString('hex', at, Math.min(end, at + MAX_PARAM_CHARS / 2))}` : body.toString('utf8', at, Math.min(end, at + MAX_PARAM_CHARS));
      values.push(len > (binary ? MAX_PARAM_CHARS / 2 : MAX_PARAM_CHARS) ? `${raw}…` : raw);
      at += len;
    }
    return values;
  } catch (e) {
    // A Bind longer than what was kept: the values that fit are gone with the rest; say so.
    if (cut && e instanceof RangeError) return ['[bind values longer than 1 MiB not logged]'];
    throw e;
  }
}
