/**
 * oclif's help with one addition: every command's help (and the root help) ends with the exit codes
 * table from exit-codes.ts, so scripts' authors find it where they look first.
 */
import { Help, type Command } from '@oclif/core';
import { EXIT_CODES_HELP } from './exit-codes.js';

function section(): string {
  return ['EXIT CODES', ...EXIT_CODES_HELP.map((line) => `  ${line}`)].join('\n');
}

export default class GprxyHelp extends Help {
  protected override formatCommand(command: Command.Loadable): string {
    return `${super.formatCommand(command)}\n\n${section()}`;
  }

  override formatRoot(): string {
    return `${super.formatRoot()}\n\n${section()}`;
  }
}
