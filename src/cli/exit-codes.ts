/**
 * The process exit codes of every gprxy command (DESIGN.md 2.6), decided here and nowhere else, so
 * scripts can rely on them: `gprxy token || gprxy login` on 4, retry on 1, fix the call on 2.
 * Commands and the base command map errors and signals through these functions; `--help` and the
 * README print EXIT_CODES_HELP.
 */
import { errorCode, GprxyError } from '../shared/errors.js';

export const ExitCode = Object.freeze({
  OK: 0,
  /** Anything that went wrong that is not one of the codes below. */
  ERROR: 1,
  /** The command line itself is wrong: unknown flag or command, missing or conflicting arguments. */
  USAGE: 2,
  /** Only `gprxy login` can help: never logged in, logged out, refresh token expired or revoked. */
  LOGIN_REQUIRED: 4,
  /** Ended by Ctrl+C (SIGINT), the shell convention 128 + 2. */
  SIGINT: 130,
  /** Ended by SIGTERM, 128 + 15. */
  SIGTERM: 143,
} as const);

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** Error `code`s (of any error class) that mean "run gprxy login". */
const LOGIN_REQUIRED_CODES: ReadonlySet<string> = new Set(['login_required']);
/** Error `code`s that mean "the person pressed Ctrl+C". */
const INTERRUPTED_CODES: ReadonlySet<string> = new Set(['login_aborted']);
/** Error `code`s that mean the command line is wrong. */
const USAGE_CODES: ReadonlySet<string> = new Set(['usage']);

/** A mistake in the command line (exit 2). */
export class UsageError extends GprxyError<'usage'> {
  readonly code = 'usage' as const;
}

/** The exit code for an error that ended a command. */
export function exitCodeForError(error: unknown): number {
  // Our errors only (GprxyError): a foreign object's `code` (an errno, an HTTP library's) decides nothing.
  const code = errorCode(error) ?? '';
  if (LOGIN_REQUIRED_CODES.has(code)) return ExitCode.LOGIN_REQUIRED;
  if (INTERRUPTED_CODES.has(code)) return ExitCode.SIGINT;
  if (USAGE_CODES.has(code)) return ExitCode.USAGE;
  return ExitCode.ERROR;
}

/** The exit code of a command that stopped because it received `signal`. */
export function exitCodeForSignal(signal: NodeJS.Signals): number {
  if (signal === 'SIGINT') return ExitCode.SIGINT;
  if (signal === 'SIGTERM') return ExitCode.SIGTERM;
  return ExitCode.ERROR;
}

/**
 * Exec mode (`gprxy connect DB -- COMMAND`) exits with the command's own code; a command killed by a
 * signal gives 128 + the signal's number, as a shell reports it.
 */
export function exitCodeForChild(code: number | null, signal: NodeJS.Signals | null, signalNumbers: Readonly<Record<string, number>>): number {
  if (code !== null) return code;
  if (signal && signalNumbers[signal] !== undefined) return 128 + (signalNumbers[signal] as number);
  return ExitCode.ERROR;
}

/** The table shown by every command's --help and in the README. */
export const EXIT_CODES_HELP = [
  `${ExitCode.OK}    success`,
  `${ExitCode.ERROR}    error (provider or proxy unreachable, refused, misconfigured, ...)`,
  `${ExitCode.USAGE}    usage error (unknown flag or command, missing or conflicting arguments)`,
  `${ExitCode.LOGIN_REQUIRED}    login required: run gprxy login (not logged in, logged out, login expired or revoked)`,
  `${ExitCode.SIGINT}  interrupted (SIGINT, Ctrl+C)`,
  `${ExitCode.SIGTERM}  terminated (SIGTERM)`,
  'connect DB -- COMMAND exits with COMMAND\'s own code.',
] as const;
