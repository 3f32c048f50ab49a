/**
 * Flags several commands share, defined once so their letter, wording and default stay the same everywhere.
 */
import { Flags } from '@oclif/core';

/** `--profile` / `-p`: which CLI profile the command works on; `purpose` completes "profile …". */
export function profileFlag(purpose: string) {
  return Flags.string({ char: 'p', description: `profile ${purpose} (default: GPRXY_PROFILE or "default")` });
}
