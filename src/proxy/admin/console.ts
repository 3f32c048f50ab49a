/**
 * One admin console connection after its login: the greeting a PostgreSQL server sends, then the query
 * loop, answered by the proxy itself (no backend). Simple Query (what psql, node-postgres without
 * parameters, and PgBouncer-style scripts send) and the extended protocol without parameters (what JDBC,
 * pgx and prepared-statement clients send; PgBouncer's console refuses it). Every command is audited
 * (`admin_action`, with the admin's identity) whether it succeeded or not.
 *
 * Reads are bounded (64 KiB per message, 1 MiB buffered) and a malformed message ends this connection
 * with 08P01, never the process. The next message is read only after the answer to the previous one has
 * been taken by the socket, so a client that does not read cannot make the proxy buffer without end.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { FrontendCode } from '../../protocol/codes.js';
import { ProtocolError } from '../../protocol/errors.js';
import { FrameReader, type TaggedMessage } from '../../protocol/frame-reader.js';
import { parseBindMessage } from '../../protocol/bind-message.js';
import { closeComplete, parseComplete, parseExecutePortal, parseParseMessage, parseQueryText, parseTargetMessage } from '../../protocol/extended-messages.js';
import {
  authenticationOk,
  backendKeyData,
  bindComplete,
  commandComplete,
  dataRow,
  emptyQueryResponse,
  errorResponse,
  noData,
  noticeResponse,
  parameterDescription,
  parameterStatus,
  readyForQuery,
  rowDescription,
} from '../../protocol/server-messages.js';
import { SqlState } from '../../protocol/sqlstate.js';
import type { Identity } from '../../token/identity.js';
import { AdminCommandError, gprxyVersion, plan, splitStatements, type AdminContext, type AdminResult, type Plan, type Value } from './commands.js';

const MAX_MESSAGE = 65_536;
const MAX_BUFFERED = 1_048_576;

/** How an admin connection ended (rows of the disconnect table). */
export type ConsoleEnd = 'client_terminate' | 'client_closed' | 'client_error' | 'protocol_error' | 'killed_by_admin' | 'server_shutdown' | 'token_expired';

export interface ConsoleDeps {
  readonly ctx: AdminContext;
  readonly log: Logger;
  readonly identity: Identity;
  readonly sessionId: number;
  readonly applicationName?: string;
  /** The cancel key the client is given (nothing to cancel: answers are immediate). */
  readonly cancelKey: { processId: number; secretKey: Buffer };
}

function text(v: Value): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean') return v ? 't' : 'f';
  return String(v);
}

/** An empty statement (a lone ";" or whitespace) is answered with EmptyQueryResponse, as PostgreSQL does. */
const EMPTY: Plan = { command: '', run: () => ({ rows: [], tag: '' }) };

export class AdminConsole {
  private readonly reader = new FrameReader({ maxMessageLength: MAX_MESSAGE, maxBuffered: MAX_BUFFERED });
  private readonly statements = new Map<string, Plan>();
  private readonly portals = new Map<string, Plan>();
  /** After an error in an extended-protocol batch, messages are skipped until Sync (as PostgreSQL does). */
  private skipToSync = false;
  private busy = false;
  private ended: ConsoleEnd | undefined;
  private endText: string | undefined;
  private resolveDone!: (end: { reason: ConsoleEnd; error?: string }) => void;
  readonly done = new Promise<{ reason: ConsoleEnd; error?: string }>((resolve) => (this.resolveDone = resolve));

  constructor(
    private readonly socket: Socket,
    private readonly deps: ConsoleDeps,
  ) {}

  /** Greets the client and serves it until it leaves or is stopped. */
  start(pending: Buffer): void {
    const { identity, applicationName, cancelKey } = this.deps;
    const params: [string, string][] = [
      // psql parses the leading number (feature checks); the rest says what answers.
      ['server_version', `16.0 (gprxy ${gprxyVersion()} admin console)`],
      ['server_encoding', 'UTF8'],
      ['client_encoding', 'UTF8'],
      ['DateStyle', 'ISO, MDY'],
      ['TimeZone', 'UTC'],
      ['integer_datetimes', 'on'],
      ['standard_conforming_strings', 'on'],
      ['is_superuser', 'off'],
      ['session_authorization', identity.user],
      ['application_name', applicationName ?? ''],
    ];
    this.socket.write(Buffer.concat([authenticationOk(), ...params.map(([n, v]) => parameterStatus(n, v)), backendKeyData(cancelKey.processId, cancelKey.secretKey), readyForQuery('I')]));
    this.socket.on('data', this.onData);
    this.socket.on('end', this.onEnd);
    this.socket.on('close', this.onEnd);
    this.socket.on('error', this.onError);
    this.socket.resume();
    if (pending.length) this.onData(pending);
  }

  /** Ends the connection between two answers (every moment the console is not writing is a message boundary). */
  stop(reason: Extract<ConsoleEnd, 'killed_by_admin' | 'server_shutdown' | 'token_expired'>): void {
    this.finish(reason);
  }

  private readonly onData = (chunk: Buffer) => {
    try {
      this.reader.push(chunk);
    } catch (e) {
      this.socket.pause();
      this.finish('protocol_error', (e as Error).message);
      return;
    }
    void this.pump();
  };

  private readonly onEnd = () => this.finish('client_closed');
  private readonly onError = (e: Error) => this.finish('client_error', e.message);

  private finish(reason: ConsoleEnd, error?: string): void {
    if (this.ended) return;
    this.ended = reason;
    this.endText = error;
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    this.socket.pause();
    this.resolveDone({ reason, ...(this.endText ? { error: this.endText } : {}) });
  }

  /** Handles complete messages one at a time; waits for the socket to drain between answers. */
  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (;;) {
        if (this.ended) return;
        let message: TaggedMessage | null;
        try {
          message = this.reader.nextMessage();
        } catch (e) {
          this.finish('protocol_error', (e as Error).message);
          return;
        }
        if (!message) return;
        try {
          await this.handle(message);
        } catch (e) {
          if (e instanceof ProtocolError) {
            this.finish('protocol_error', e.message);
            return;
          }
          throw e;
        }
        if (this.socket.writableNeedDrain) await new Promise<void>((resolve) => this.socket.once('drain', resolve).once('close', resolve));
      }
    } finally {
      this.busy = false;
    }
  }

  private send(...messages: Buffer[]): void {
    if (!this.ended && !this.socket.destroyed) this.socket.write(messages.length === 1 ? messages[0]! : Buffer.concat(messages));
  }

  private async handle(message: TaggedMessage): Promise<void> {
    const { type, body } = message;
    if (type === FrontendCode.TERMINATE) return this.finish('client_terminate');
    if (type === FrontendCode.QUERY) return this.simpleQuery(parseQueryText(body));
    if (type === FrontendCode.SYNC) {
      this.skipToSync = false;
      this.portals.delete('');
      return this.send(readyForQuery('I'));
    }
    // Answers are written at once: a Flush has nothing to push.
    if (type === FrontendCode.FLUSH) return;
    if (this.skipToSync) return;
    try {
      switch (type) {
        case FrontendCode.PARSE: {
          const p = parseParseMessage(body);
          const statements = splitStatements(p.query);
          if (statements.length > 1) throw new AdminCommandError(SqlState.SYNTAX_ERROR, 'cannot insert multiple commands into a prepared statement');
          if (p.paramTypes.readInt16BE(0) > 0) throw new AdminCommandError(SqlState.FEATURE_NOT_SUPPORTED, 'admin console commands take no parameters');
          this.statements.set(p.name, statements.length === 0 ? EMPTY : this.planAudited(statements[0]!));
          return this.send(parseComplete());
        }
        case FrontendCode.BIND: {
          const b = parseBindMessage(body);
          const statement = this.statements.get(b.statement);
          if (!statement) throw new AdminCommandError(SqlState.INVALID_SQL_STATEMENT_NAME, `prepared statement "${b.statement}" does not exist`);
          if (b.parameterCount > 0) throw new ProtocolError(`bind message supplies ${b.parameterCount} parameters, but prepared statement "${b.statement}" requires 0`);
          if (b.resultFormats.some((f) => f !== 0)) throw new AdminCommandError(SqlState.FEATURE_NOT_SUPPORTED, 'the admin console answers in text format only');
          this.portals.set(b.portal, statement);
          return this.send(bindComplete());
        }
        case FrontendCode.DESCRIBE: {
          const d = parseTargetMessage(body, 'Describe');
          const target = (d.kind === 'S' ? this.statements : this.portals).get(d.name);
          if (!target) throw new AdminCommandError(d.kind === 'S' ? SqlState.INVALID_SQL_STATEMENT_NAME : SqlState.INVALID_CURSOR_NAME, `${d.kind === 'S' ? 'prepared statement' : 'portal'} "${d.name}" does not exist`);
          const shape = target.columns ? rowDescription(target.columns) : noData();
          return d.kind === 'S' ? this.send(parameterDescription([]), shape) : this.send(shape);
        }
        case FrontendCode.EXECUTE: {
          const name = parseExecutePortal(body);
          const portal = this.portals.get(name);
          if (!portal) throw new AdminCommandError(SqlState.INVALID_CURSOR_NAME, `portal "${name}" does not exist`);
          if (portal === EMPTY) return this.send(emptyQueryResponse());
          const result = await this.runAudited(portal);
          return this.sendResult(result, false);
        }
        case FrontendCode.CLOSE: {
          const c = parseTargetMessage(body, 'Close');
          (c.kind === 'S' ? this.statements : this.portals).delete(c.name);
          return this.send(closeComplete());
        }
        default:
          throw new ProtocolError(`the admin console does not take message type "${String.fromCharCode(type)}"`);
      }
    } catch (e) {
      if (!(e instanceof AdminCommandError)) throw e;
      this.skipToSync = true;
      this.send(errorResponse({ severity: 'ERROR', code: e.sqlstate, message: e.message, ...(e.hint ? { hint: e.hint } : {}) }));
    }
  }

  /** Simple Query: every statement in turn; an error stops the rest (as PostgreSQL's implicit transaction). */
  private async simpleQuery(sql: string): Promise<void> {
    const statements = splitStatements(sql);
    if (statements.length === 0) return this.send(emptyQueryResponse(), readyForQuery('I'));
    for (const statement of statements) {
      try {
        const result = await this.runAudited(this.planAudited(statement));
        this.sendResult(result, true);
      } catch (e) {
        if (!(e instanceof AdminCommandError)) throw e;
        this.send(errorResponse({ severity: 'ERROR', code: e.sqlstate, message: e.message, ...(e.hint ? { hint: e.hint } : {}) }));
        break;
      }
    }
    this.send(readyForQuery('I'));
  }

  private sendResult(result: AdminResult, withDescription: boolean): void {
    const out: Buffer[] = [];
    if (result.notice) out.push(noticeResponse({ severity: 'NOTICE', code: '00000', message: result.notice }));
    if (result.columns && withDescription) out.push(rowDescription(result.columns));
    for (const row of result.rows) out.push(dataRow(row.map(text)));
    out.push(commandComplete(result.tag));
    this.send(...out);
  }

  /** Plans a statement; a statement the console does not understand is audited as a refused command. */
  private planAudited(statement: string): Plan {
    try {
      return plan(statement, this.deps.ctx);
    } catch (e) {
      if (e instanceof AdminCommandError) this.audit(statement.split(/\s+/).slice(0, 2).join(' ').toUpperCase().slice(0, 40), 'error', { sqlstate: e.sqlstate, error: e.message });
      throw e;
    }
  }

  private async runAudited(p: Plan): Promise<AdminResult> {
    try {
      const result = await p.run(this.deps.sessionId);
      this.audit(p.command, 'ok', { ...result.audit, ...(result.columns ? { rows: result.rows.length } : {}) });
      return result;
    } catch (e) {
      if (e instanceof AdminCommandError) this.audit(p.command, 'error', { sqlstate: e.sqlstate, error: e.message });
      throw e;
    }
  }

  /** The audit event of every console command: who (the admin's verified identity), from where, what, outcome. */
  private audit(command: string, outcome: 'ok' | 'error', fields: Record<string, unknown>): void {
    const { identity, sessionId } = this.deps;
    const readOnly = command.startsWith('SHOW');
    this.deps.log[readOnly || outcome === 'error' ? 'info' : 'warn'](
      {
        event: 'admin_action',
        command,
        outcome,
        admin: identity.user,
        admin_sub: identity.subject,
        admin_issuer: identity.issuer,
        admin_roles: identity.roles,
        admin_session: sessionId,
        ...fields,
      },
      `admin ${identity.user}: ${command || '(empty)'} (${outcome})`,
    );
  }
}
