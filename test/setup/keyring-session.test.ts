/**
 * The test keychain (test/support/keyring.ts) fails loudly: without gnome-keyring-daemon the session refuses to
 * start with a message naming the fix, instead of the tests meeting "no usable OS keychain" much later.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startKeyringSession } from '../support/keyring.js';

const originalPath = process.env.PATH;
afterEach(() => {
  process.env.PATH = originalPath;
});

describe('the test keychain session', () => {
  it('starts with gnome-keyring installed', async () => {
    const session = await startKeyringSession();
    try {
      expect(session.env.DBUS_SESSION_BUS_ADDRESS).toMatch(/^unix:/);
    } finally {
      await session.close();
    }
  });

  it('refuses loudly when gnome-keyring-daemon is not on PATH', async () => {
    // A PATH with dbus and a shell but no gnome-keyring-daemon: a machine that lacks the package.
    const bin = mkdtempSync(join(tmpdir(), 'gprxy-nokeyring-'));
    try {
      for (const tool of ['dbus-run-session', 'dbus-daemon', 'sh', 'sleep']) {
        symlinkSync(spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim(), join(bin, tool));
      }
      process.env.PATH = bin;
      await expect(startKeyringSession()).rejects.toThrow(/gnome-keyring-daemon is not installed; npm test installs it/);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});
