/**
 * Runs once per `vitest run`: builds dist/ and the oclif manifest (incremental, seconds when nothing
 * changed) so CLI tests run `bin/run.js` exactly as users do.
 */
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
}
