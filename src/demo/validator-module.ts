/**
 * Builds validator/gprxy_oauth_validator.c (PostgreSQL 18's OAuth validator module that asks gprxy's
 * verification endpoint) with gcc into a directory the PostgreSQL server's user can read, for the tests and
 * `gprxy demo --native`. Operators build it once the same way (validator/README.md); no server headers needed.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GprxyError } from '../shared/errors.js';

export class ValidatorBuildError extends GprxyError<'validator_build_failed'> {
  readonly code = 'validator_build_failed' as const;
}

export interface BuiltValidator {
  /** Directory (mode 0755) holding the module; the endpoint's socket can live here too. */
  readonly dir: string;
  /** The value for oauth_validator_libraries: the module's absolute path without ".so". */
  readonly library: string;
  dispose(): void;
}

/** The C source shipped with the package (validator/ at the package root). */
export function validatorSourcePath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, 'validator', 'gprxy_oauth_validator.c');
    if (existsSync(candidate)) return candidate;
    dir = resolve(dir, '..');
  }
  throw new ValidatorBuildError('validator/gprxy_oauth_validator.c is not in this installation');
}

/** Why the module cannot be built here (no gcc), or undefined. */
export function validatorBuildUnavailable(): string | undefined {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'gcc is not installed (apt-get install gcc): it builds the PostgreSQL 18 OAuth validator module';
  }
}

/**
 * Compiles the module into a fresh directory under `parent` (default /var/tmp: a per-run TMPDIR may be
 * private to root, and PostgreSQL runs as the `postgres` user when we are root).
 */
export function buildValidatorModule(parent = '/var/tmp'): BuiltValidator {
  const dir = mkdtempSync(join(parent, 'gprxy-validator-'));
  chmodSync(dir, 0o755);
  const output = join(dir, 'gprxy_oauth_validator.so');
  try {
    execFileSync('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-o', output, validatorSourcePath()], { stdio: 'pipe' });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    const err = e as { stderr?: Buffer; message: string };
    throw new ValidatorBuildError(`could not build the OAuth validator module: ${err.stderr?.toString().trim() || err.message}`);
  }
  chmodSync(output, 0o755);
  return { dir, library: output.replace(/\.so$/, ''), dispose: () => rmSync(dir, { recursive: true, force: true }) };
}
