/**
 * What every gprxy command shares: a `--debug` flag, and errors printed as one line with the next step,
 * stack traces only with --debug. Library errors carry their own actionable messages. The exit code of
 * an error is decided by exit-codes.ts: 1 by default (oclif's own default would be 2), 2 for a wrong
 * command line, 4 when only `gprxy login` helps.
 */
import { Command, Flags, type Interfaces } from '@oclif/core';
import { ExitCode, exitCodeForError, UsageError } from './exit-codes.js';

// oclif's own (unexported) parser output types.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type FlagOutput = { [name: string]: any };
type ArgOutput = FlagOutput;

export abstract class BaseCommand extends Command {
  static override baseFlags = {
    debug: Flags.boolean({ description: 'print stack traces and debug logs', default: false, helpGroup: 'GLOBAL' }),
  };

  protected debugEnabled(): boolean {
    return this.argv.includes('--debug') || process.env.GPRXY_DEBUG === '1';
  }

  /** A line on stderr with --debug (or GPRXY_DEBUG=1) only. */
  protected debugLog(message: string): void {
    if (this.debugEnabled()) process.stderr.write(`gprxy: debug: ${message}\n`);
  }

  /** A mistake in the command line: exit 2. */
  protected usageError(message: string): never {
    throw new UsageError(message);
  }

  /** oclif's `this.error` exits 2 unless told otherwise; here an error is an error (1). */
  override error(input: string | Error, options: { code?: string; exit: false } & Record<string, unknown>): void;
  override error(input: string | Error, options?: { code?: string; exit?: number } & Record<string, unknown>): never;
  override error(input: string | Error, options: { code?: string; exit?: number | false } & Record<string, unknown> = {}): void {
    if (options.exit === false) return super.error(input, { ...options, exit: false });
    return super.error(input, { ...options, exit: options.exit ?? ExitCode.ERROR });
  }

  /** Whatever fails while parsing the command line is a usage error (2), including a flag's own parser. */
  protected override async parse<F extends FlagOutput, B extends FlagOutput, A extends ArgOutput>(
    options?: Interfaces.Input<F, B, A>,
    argv?: string[],
  ): Promise<Interfaces.ParserOutput<F, B, A>> {
    try {
      return await super.parse<F, B, A>(options, argv);
    } catch (err) {
      const e = err as Error & { oclif?: { exit?: number } };
      e.oclif = { ...e.oclif, exit: ExitCode.USAGE };
      throw e;
    }
  }

  protected override async catch(err: Error & { code?: string; oclif?: { exit?: number } }): Promise<unknown> {
    // oclif's own errors (parsing, this.error, this.exit) carry their exit code.
    if (err.oclif?.exit !== undefined || /^(EEXIT|EEXITCODE)/.test(String(err.code))) return super.catch(err);
    if (this.debugEnabled()) process.stderr.write(`${err.stack ?? err.message}\n`);
    else process.stderr.write(`gprxy: ${err.message}\n`);
    process.exitCode = exitCodeForError(err);
    return undefined;
  }
}
