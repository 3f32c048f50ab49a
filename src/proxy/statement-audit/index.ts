/**
 * The session's entry point to the statement audit: for a database with `audit.statements` other than
 * `none`, a StatementAudit tap for the relay. For `none` nothing is built and the relay stays header-only.
 *
 * Where events go: the proxy log's own stream (the same destination, so lines interleave with the login
 * lines), or the database's `audit.file` ('-' for stdout). Either way through a pino logger of the same
 * format but without the main logger's redaction paths: every field of a `statement` event is built here
 * and none is named like a secret, and at thousands of events per second redaction was a measurable
 * share of the cost (bench/RESULTS.md, "Statement audit"). An audit file is written in blocks of at least
 * 4 KiB, flushed every 200 ms and at exit, rather than one write per event.
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import type { DatabaseConfig } from '../../config/proxy-config.js';
import { StatementAudit, type AuditSessionIdentity } from './statement-audit.js';

export { StatementAudit } from './statement-audit.js';
export { tapStats } from './message-tap.js';

const FLUSH_EVERY_MS = 200;

function statementLogger(destination: DestinationStream): Logger {
  return pino(
    { level: 'info', base: { service: 'gprxy' }, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
    destination,
  );
}

/** One logger per audit file, shared by the sessions of every database that names it. */
const fileLoggers = new Map<string, Logger>();
/** One per main logger (per ProxyServer). */
const streamLoggers = new WeakMap<Logger, Logger>();

function sink(file: string | undefined, main: Logger): Logger {
  if (!file) {
    let logger = streamLoggers.get(main);
    if (!logger) {
      const stream = (main as unknown as Record<symbol, DestinationStream | undefined>)[pino.symbols.streamSym];
      // A logger without a reachable stream (not one of ours): use it as it is.
      logger = stream ? statementLogger(stream) : main;
      streamLoggers.set(main, logger);
    }
    return logger;
  }
  let logger = fileLoggers.get(file);
  if (!logger) {
    const boom = pino.destination({ dest: file === '-' ? 1 : file, sync: false, mkdir: true, minLength: 4096 });
    setInterval(() => boom.flush(), FLUSH_EVERY_MS).unref();
    logger = statementLogger(boom);
    fileLoggers.set(file, logger);
  }
  return logger;
}

export function statementAuditFor(
  database: DatabaseConfig,
  identity: AuditSessionIdentity,
  parameters: ReadonlyMap<string, string>,
  logger: Logger,
): StatementAudit | undefined {
  if (database.audit.statements === 'none') return undefined;
  return new StatementAudit({ config: database.audit, identity, parameters, logger: sink(database.audit.file, logger) });
}

/** Writes what the audit files hold now (tests that read a file; pino flushes them at exit by itself). */
export function flushStatementAuditFiles(): void {
  for (const logger of fileLoggers.values()) logger.flush();
}
