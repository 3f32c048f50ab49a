/**
 * The one base of gprxy's errors (jose's `JOSEError.code`): a literal `code` that callers and tests switch
 * on, and the standard `cause` chain. The message is for people and may change; the code is the contract.
 * Errors the proxy turns into an ErrorResponse also carry `sqlstate` (see `SqlStateError`).
 * Imports nothing of ours: every layer, protocol/ included, may use it.
 */
export abstract class GprxyError<C extends string = string> extends Error {
  abstract readonly code: C;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An error the proxy answers with an ErrorResponse: `sqlstate` is the SQLSTATE the client receives. */
export interface SqlStateError {
  readonly code: string;
  readonly sqlstate: string;
}

/** The `code` of one of our errors, or undefined for anything else (never read off a foreign object). */
export function errorCode(e: unknown): string | undefined {
  return e instanceof GprxyError ? e.code : undefined;
}
