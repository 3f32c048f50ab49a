/**
 * The SQLSTATE codes the proxy sends in ErrorResponse messages (DESIGN.md 2.3).
 * Values are PostgreSQL's own, so clients and drivers react to them as they would to the server.
 */
export const SqlState = {
  INVALID_AUTHORIZATION: '28000',
  INVALID_PASSWORD: '28P01',
  INVALID_CATALOG: '3D000',
  TOO_MANY_CONNECTIONS: '53300',
  PROTOCOL_VIOLATION: '08P01',
  CANNOT_CONNECT_NOW: '57P03',
  CONNECTION_FAILURE: '08006',
  /** The database server refused the proxy's own login (a service account's credentials). */
  SERVER_REJECTED_CONNECTION: '08004',
  QUERY_CANCELED: '57014',
  ADMIN_SHUTDOWN: '57P01',
  FEATURE_NOT_SUPPORTED: '0A000',
  /** A valid login without the privilege the target needs (PostgreSQL's "permission denied for database"). */
  INSUFFICIENT_PRIVILEGE: '42501',
  SYNTAX_ERROR: '42601',
  INVALID_SQL_STATEMENT_NAME: '26000',
  INVALID_CURSOR_NAME: '34000',
  UNDEFINED_OBJECT: '42704',
  OBJECT_NOT_IN_PREREQUISITE_STATE: '55000',
  /** RELOAD failed (PgBouncer's code for it): the running configuration stays. */
  CONFIG_FILE_ERROR: 'F0000',
  PROGRAM_LIMIT_EXCEEDED: '54000',
  INTERNAL: 'XX000',
} as const;

export type SqlStateCode = (typeof SqlState)[keyof typeof SqlState];
