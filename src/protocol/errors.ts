import { SqlState } from './sqlstate.js';

/**
 * The peer sent bytes that are not valid PostgreSQL protocol. The session answers with an
 * ErrorResponse carrying `sqlstate` (08P01) and closes; the message says what was wrong.
 */
export class ProtocolError extends Error {
  readonly code = 'protocol_violation' as const;
  readonly sqlstate = SqlState.PROTOCOL_VIOLATION;

  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/**
 * A writer was asked to encode a value the protocol cannot carry (a NUL inside a string, an
 * out-of-range integer). This is our bug or unsanitised data (e.g. a token claim), not the peer's.
 */
export class MessageEncodingError extends Error {
  readonly code = 'message_encoding' as const;

  constructor(message: string) {
    super(message);
    this.name = 'MessageEncodingError';
  }
}
