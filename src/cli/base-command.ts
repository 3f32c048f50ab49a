/**
 * What every gprxy command shares: a `--debug` flag, and errors printed as one line with the next step
 * (exit 1), stack traces only with --debug. Library errors carry their own actionable messages.
 */
import { Command, Flags } from '@oclif/core';

export abstract class BaseCommand extends Command {
  static override baseFlags = {
    debug: Flags.boolean({ description: 'print stack traces and debug logs', default: false, helpGroup: 'GLOBAL' }),
  };

  protected debugEnabled(): boolean {
    return this.argv.includes('--debug') || process.env.GPRXY_DEBUG === '1';
  }

  protected override async catch(err: Error & { code?: string; oclif?: { exit?: number } }): Promise<unknown> {
    // oclif's own flag/arg parsing errors and exits keep their behaviour.
    if (err.oclif?.exit !== undefined || /^(EEXIT|EEXITCODE)/.test(String(err.code))) return super.catch(err);
    if (this.debugEnabled()) process.stderr.write(`${err.stack ?? err.message}\n`);
    else process.stderr.write(`gprxy: ${err.message}\n`);
    process.exitCode = typeof (err as { exitCode?: number }).exitCode === 'number' ? (err as unknown as { exitCode: number }).exitCode : 1;
    return undefined;
  }
}
