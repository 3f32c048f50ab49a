/**
 * Every byte code of the PostgreSQL wire protocol that gprxy reads or writes, in one place (pg-protocol's
 * `MessageCodes`, pgcat's constants). Message types are ASCII letters; the comments give the letter, so a
 * reader can match them against the protocol documentation.
 */

/** Message types a client (frontend) sends. */
export const FrontendCode = {
  /** 'p': PasswordMessage, SASLInitialResponse and SASLResponse share it. */
  PASSWORD: 0x70,
  QUERY: 0x51, // 'Q'
  PARSE: 0x50, // 'P'
  BIND: 0x42, // 'B'
  EXECUTE: 0x45, // 'E'
  DESCRIBE: 0x44, // 'D'
  CLOSE: 0x43, // 'C'
  SYNC: 0x53, // 'S'
  FLUSH: 0x48, // 'H'
  FUNCTION_CALL: 0x46, // 'F'
  COPY_DATA: 0x64, // 'd'
  COPY_DONE: 0x63, // 'c'
  COPY_FAIL: 0x66, // 'f'
  TERMINATE: 0x58, // 'X'
} as const;

/** Message types a server (backend) sends. */
export const BackendCode = {
  AUTHENTICATION: 0x52, // 'R'
  PARAMETER_STATUS: 0x53, // 'S'
  BACKEND_KEY_DATA: 0x4b, // 'K'
  READY_FOR_QUERY: 0x5a, // 'Z'
  ERROR_RESPONSE: 0x45, // 'E'
  NOTICE_RESPONSE: 0x4e, // 'N'
  NEGOTIATE_PROTOCOL_VERSION: 0x76, // 'v'
  DATA_ROW: 0x44, // 'D'
  COMMAND_COMPLETE: 0x43, // 'C'
  PARSE_COMPLETE: 0x31, // '1'
  BIND_COMPLETE: 0x32, // '2'
  CLOSE_COMPLETE: 0x33, // '3'
  EMPTY_QUERY_RESPONSE: 0x49, // 'I'
  PORTAL_SUSPENDED: 0x73, // 's'
  ROW_DESCRIPTION: 0x54, // 'T'
  NO_DATA: 0x6e, // 'n'
  PARAMETER_DESCRIPTION: 0x74, // 't'
  FUNCTION_CALL_RESPONSE: 0x56, // 'V'
  COPY_IN_RESPONSE: 0x47, // 'G'
  COPY_OUT_RESPONSE: 0x48, // 'H'
  COPY_BOTH_RESPONSE: 0x57, // 'W'
} as const;

/** The int32 that opens an Authentication ('R') message: which step of which method. */
export const AuthCode = { OK: 0, CLEARTEXT_PASSWORD: 3, MD5_PASSWORD: 5, SASL: 10, SASL_CONTINUE: 11, SASL_FINAL: 12 } as const;

/** ReadyForQuery's transaction status byte. */
export const ReadyStatus = { IDLE: 0x49 /* 'I' */, IN_TRANSACTION: 0x54 /* 'T' */, FAILED: 0x45 /* 'E' */ } as const;

/** The one-byte answer to SSLRequest and GSSENCRequest. */
export const EncryptionAnswer = { ACCEPT: 0x53 /* 'S' */, REJECT: 0x4e /* 'N' */ } as const;

/** Field types inside ErrorResponse and NoticeResponse. */
export const ErrorField = {
  SEVERITY: 0x53, // 'S' (localized)
  SEVERITY_NONLOCALIZED: 0x56, // 'V'
  CODE: 0x43, // 'C': the SQLSTATE
  MESSAGE: 0x4d, // 'M'
  DETAIL: 0x44, // 'D'
  HINT: 0x48, // 'H'
} as const;
