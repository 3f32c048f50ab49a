/**
 * Runs once per `vitest run`: builds dist/ and the oclif manifest (incremental, seconds when nothing
 * changed) so CLI tests run `bin/run.js` exactly as users do. A type error in src/ stops the run here
 * (`npm run typecheck` also covers the tests).
 * The teardown greps every log line of the run for tokens (test/support/run-log.ts), and checks that every line of
 * gprxy serve names its event and repeats no key (test/support/log-lines.ts).
 * First it checks the system programs the tests use (test/system-packages.txt): `npm test` installed them in
 * its pretest step; a direct `npx vitest run` on a machine without them stops here with the command to run.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { logLineProblems } from './log-lines.js';
import { SECRET_PATTERNS } from './run-log.js';

export default function setup(): () => void {
  const deps = spawnSync('sh', [fileURLToPath(new URL('../../scripts/system-deps.sh', import.meta.url)), '--check'], { encoding: 'utf8' });
  if (deps.status !== 0) throw new Error(deps.stderr.trim() || `scripts/system-deps.sh --check failed (${deps.status})`);
  const tsc = spawnSync('npx', ['tsc', '-b'], { encoding: 'utf8' });
  // A type error stops the run: tests must not pass on whatever tsc managed to emit.
  if (tsc.status !== 0) throw new Error(`tsc -b reported errors; fix them (npm run typecheck) before the tests run:\n${tsc.stdout.slice(0, 4000)}`);
  const manifest = spawnSync('npx', ['oclif', 'manifest'], { encoding: 'utf8', env: { ...process.env, NODE_ENV: 'production' } });
  if (manifest.status !== 0) throw new Error(`oclif manifest failed: ${manifest.stderr}`);

  const dir = mkdtempSync(join(tmpdir(), 'gprxy-test-logs-'));
  const logPath = join(dir, 'run.log');
  process.env.GPRXY_TEST_RUN_LOG = logPath;
  return () => {
    const text = existsSync(logPath) ? readFileSync(logPath, 'utf8') : '';
    rmSync(dir, { recursive: true, force: true });
    for (const pattern of SECRET_PATTERNS) {
      const hit = pattern.exec(text);
      if (hit) throw new Error(`a token-shaped secret appeared in the logs of this test run: ${hit[0].slice(0, 12)}…`);
    }
    const problems = logLineProblems(text);
    if (problems.length) throw new Error(`${problems.length} log lines of gprxy serve in this run break the log contract (docs/LOG-EVENTS.md):\n${[...new Set(problems)].slice(0, 10).join('\n')}`);
    process.stdout.write(`log scan: ${text.split('\n').length - 1} log lines of this run hold no token; every line of gprxy serve has an event and no repeated key\n`);
  };
}
