/**
 * The session's entry point to the statement audit: for a database with `audit.statements` other than
 * `none`, a StatementAudit tap for the relay, writing to the proxy log or to the database's `audit.file`
 * ('-' for stdout). For `none` nothing is built and the relay stays header-only.
 */
import type { Logger } from 'pino';
import type { DatabaseConfig } from '../../config/proxy-config.js';
import { createLogger } from '../logger.js';
import { StatementAudit, type AuditSessionIdentity } from './statement-audit.js';

export { StatementAudit } from './statement-audit.js';
export { tapStats } from './message-tap.js';

/** One pino destination per audit file, shared by the sessions of every database that names it. */
const fileLoggers = new Map<string, Logger>();

function sink(file: string | undefined, main: Logger): Logger {
  if (!file) return main;
  let logger = fileLoggers.get(file);
  if (!logger) {
    logger = createLogger({ level: 'info', ...(file === '-' ? {} : { file }) });
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

/** Writes what the audit files hold (at shutdown, and for tests that read a file). */
export function flushStatementAuditFiles(): void {
  for (const logger of fileLoggers.values()) logger.flush();
}
