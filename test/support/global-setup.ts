/**
 * Runs once per `vitest run`: builds dist/ and the oclif manifest (incremental, seconds when nothing
 * changed) so CLI tests run `bin/run.js` exactly as users do. Type errors do not stop the build here
 * (tsc still emits); `npm run typecheck` is where they fail CI.
 */
import { spawnSync } from 'node:child_process';

export default function setup(): void {
  const tsc = spawnSync('npx', ['tsc', '-b'], { encoding: 'utf8' });
  if (tsc.status !== 0) process.stderr.write(`warning: tsc -b reported errors (tests use what it emitted):\n${tsc.stdout.slice(0, 2000)}\n`);
  const manifest = spawnSync('npx', ['oclif', 'manifest'], { encoding: 'utf8', env: { ...process.env, NODE_ENV: 'production' } });
  if (manifest.status !== 0) throw new Error(`oclif manifest failed: ${manifest.stderr}`);
}
