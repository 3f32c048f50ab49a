import { GprxyError } from '../shared/errors.js';
import { SqlState } from './sqlstate.js';

/**
 * The peer sent bytes that are not valid PostgreSQL protocol. The session answers with an
 * ErrorResponse carrying `sqlstate` (08P01) and closes; the message says what was wrong.
 */
export class ProtocolError extends GprxyError<'protocol_violation'> {
  readonly code = 'protocol_violation' as const;
  readonly sqlstate = SqlState.PROTOCOL_VIOLATION;
}

/**
 * A message longer than the reader's limit. Its own class so that a caller can tell an oversized password
 * (a wrong password: 28P01) from other violations by type and message type, not by the message's text.
 */
export class MessageTooLargeError extends ProtocolError {
  constructor(
    /** The message type byte (FrontendCode / BackendCode), or undefined for a startup packet. */
    readonly messageType: number | undefined,
    readonly length: number,
    readonly limit: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A writer was asked to encode a value the protocol cannot carry (a NUL inside a string, an
 * out-of-range integer). This is our bug or unsanitised data (e.g. a token claim), not the peer's.
 */
export class MessageEncodingError extends GprxyError<'message_encoding'> {
  readonly code = 'message_encoding' as const;
}
