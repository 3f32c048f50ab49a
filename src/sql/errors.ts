/**
 * Every reason `gprxy db init` refuses, as a coded error. Messages say what to do next; they never
 * contain a password or the context secret.
 */
import { GprxyError } from '../shared/errors.js';

export type DbInitErrorCode =
  | 'unknown_level'
  | 'ambiguous_level'
  | 'unknown_account'
  | 'unknown_database'
  | 'no_oauth_database'
  | 'no_admin_url'
  | 'invalid_admin_url'
  | 'admin_connect_failed'
  | 'invalid_identifier'
  | 'secret_mismatch';

export class DbInitError extends GprxyError<DbInitErrorCode> {
  override readonly name = 'DbInitError';
  readonly code: DbInitErrorCode;

  constructor(code: DbInitErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
