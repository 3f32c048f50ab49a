/**
 * scripts/system-deps.sh, which runs before `npm test` and in .ci/run: silent when nothing is missing, and when
 * something is missing and it cannot install it (not root, no apt-get, or --check) it stops with the exact command.
 * The root + apt-get path was checked by hand (apt-get remove gnome-keyring, then npm test: notes/first-hour.md);
 * here the list is a temporary one naming a program no machine has, so nothing is installed.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const SCRIPT = fileURLToPath(new URL('../../scripts/system-deps.sh', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'gprxy-sysdeps-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function list(name: string, lines: string[]): string {
  const file = join(dir, name);
  writeFileSync(file, ['# program package', ...lines, ''].join('\n'));
  return file;
}

function run(args: string[], env: Record<string, string>) {
  const r = spawnSync('sh', [SCRIPT, ...args], { env: { PATH: process.env.PATH!, ...env }, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('scripts/system-deps.sh', () => {
  it('the real list is satisfied on this machine (the pretest already ran it): silent, exit 0', () => {
    const r = run(['--check'], {});
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
  });

  it('--check names every missing package once and the exact command, and installs nothing', () => {
    const file = list('missing', ['sh dash', 'gprxy-no-such-program-a gprxy-absent-pkg', 'gprxy-no-such-program-b gprxy-absent-pkg', 'gprxy-no-such-program-c other-pkg']);
    const r = run(['--check'], { GPRXY_SYSTEM_PACKAGES: file });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain("apt-get update && apt-get install -y --no-install-recommends gprxy-absent-pkg other-pkg'");
  });

  it('without apt-get on PATH it stops and says which programs to provide', () => {
    const bin = join(dir, 'bin');
    spawnSync('mkdir', ['-p', bin]);
    for (const tool of ['sh', 'dirname', 'id']) symlinkSync(spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim(), join(bin, tool));
    const file = list('no-apt', ['gprxy-no-such-program gprxy-absent-pkg']);
    const r = spawnSync(join(bin, 'sh'), [SCRIPT], { env: { PATH: bin, GPRXY_SYSTEM_PACKAGES: file }, encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('missing: gprxy-absent-pkg');
    expect(r.stderr).toContain('no apt-get');
  });

  it.runIf(process.getuid?.() === 0)('not root: stops before installing, with the sudo command to run', () => {
    const file = list('not-root', ['gprxy-no-such-program gprxy-absent-pkg']);
    // A copy the other user can read: a fresh clone may sit in a 0700 directory.
    const script = join(dir, 'system-deps.sh');
    copyFileSync(SCRIPT, script);
    spawnSync('chmod', ['-R', 'a+rX', dir]);
    const r = spawnSync('runuser', ['-u', 'nobody', '--', 'sh', script], { env: { PATH: process.env.PATH!, GPRXY_SYSTEM_PACKAGES: file }, encoding: 'utf8' });
    expect(r.stderr).not.toContain('Permission denied');
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain("run this, then npm test again: sudo sh -c 'apt-get update && apt-get install -y --no-install-recommends gprxy-absent-pkg'");
  });
});
