/**
 * A private, headless Secret Service for tests (NOTES.md): a temporary HOME and XDG_RUNTIME_DIR (0700),
 * a dbus session (dbus-run-session) and gnome-keyring-daemon unlocked with a throwaway password.
 * Commands run with `env`, which points them at that session bus and nothing of the real user's.
 * `startKeyringSession({ secretService: false })` gives the same temporary HOME with no bus at all.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** Only PATH plus the session's variables: the real user's bus, keychain and DISPLAY stay out. */
function sessionEnv(vars: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, LANG: 'C.UTF-8' };
  for (const [k, v] of Object.entries(vars)) if (v !== undefined) env[k] = v;
  return env;
}

export interface KeyringSession {
  readonly home: string;
  /** HOME, XDG_RUNTIME_DIR, XDG_CONFIG_HOME, XDG_DATA_HOME and (with a Secret Service) DBUS_SESSION_BUS_ADDRESS. */
  readonly env: Readonly<Record<string, string>>;
  /** Runs `command args` inside the session; resolves with its output. */
  run(command: string, args: readonly string[], extraEnv?: Record<string, string | undefined>): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Reads the secret stored under service/account through @napi-rs/keyring in a child process. */
  readSecret(service: string, account: string): Promise<string | null>;
  /** Every regular file under HOME with its mode (e.g. to prove no file holds a token). */
  files(): Promise<{ path: string; mode: number; content: Buffer }[]>;
  close(): Promise<void>;
}

export async function startKeyringSession(opts: { secretService?: boolean } = {}): Promise<KeyringSession> {
  const home = await mkdtemp(path.join(os.tmpdir(), 'gprxy-home-'));
  const runtime = path.join(home, 'run');
  await mkdir(runtime, { mode: 0o700 });
  const env: Record<string, string> = {
    HOME: home,
    XDG_RUNTIME_DIR: runtime,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_DATA_HOME: path.join(home, '.local', 'share'),
  };

  let session: ChildProcess | undefined;
  if (opts.secretService !== false) {
    // The shell prints the bus address, then stays alive so the bus and the keyring daemon do too.
    // Any failure here is loud: a missing or failing daemon ends the shell with a message naming the fix,
    // instead of leaving the tests to meet "no usable OS keychain" later.
    const script = [
      'command -v gnome-keyring-daemon >/dev/null || { echo "gnome-keyring-daemon is not installed; npm test installs it (scripts/system-deps.sh), or: apt-get install -y --no-install-recommends gnome-keyring" >&2; exit 127; }',
      'out=$(printf pw | gnome-keyring-daemon --unlock --components=secrets) || { echo "gnome-keyring-daemon --unlock failed" >&2; exit 1; }',
      'eval "$out"',
      // It prints GNOME_KEYRING_CONTROL only when the control socket is not at its default place.
      '[ -S "${GNOME_KEYRING_CONTROL:-$XDG_RUNTIME_DIR/keyring}/control" ] || { echo "gnome-keyring-daemon started no keyring (no control socket; it printed: $out)" >&2; exit 1; }',
      'echo "BUS=$DBUS_SESSION_BUS_ADDRESS"',
      'exec sleep 86400',
    ].join('\n');
    session = spawn('dbus-run-session', ['--', 'sh', '-c', script], { env: sessionEnv(env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const address = await new Promise<string>((resolve, reject) => {
      let out = '';
      let err = '';
      session!.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const m = /BUS=(\S+)/.exec(out);
        if (m) resolve(m[1] as string);
      });
      session!.stderr!.setEncoding('utf8').on('data', (d: string) => {
        err += d;
      });
      session!.once('exit', (code) => reject(new Error(`the test keychain did not start (dbus-run-session exited ${code}): ${err.trim()}`)));
      session!.once('error', (e: NodeJS.ErrnoException) =>
        reject(e.code === 'ENOENT' ? new Error('dbus-run-session is not installed; npm test installs it (scripts/system-deps.sh), or: apt-get install -y --no-install-recommends dbus') : e),
      );
    });
    env.DBUS_SESSION_BUS_ADDRESS = address;
  }

  const run: KeyringSession['run'] = (command, args, extraEnv = {}) =>
    new Promise((resolve, reject) => {
      const child = spawn(command, args, { env: sessionEnv({ ...env, ...extraEnv }), stdio: ['pipe', 'pipe', 'pipe'] });
      child.stdin.end();
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.once('error', reject);
      child.once('close', (code) => resolve({ code, stdout, stderr }));
    });

  return {
    home,
    env,
    run,
    async readSecret(service, account) {
      const script = `import { AsyncEntry } from '@napi-rs/keyring'; const v = await new AsyncEntry(${JSON.stringify(service)}, ${JSON.stringify(account)}).getPassword(); process.stdout.write(JSON.stringify(v ?? null));`;
      const { code, stdout, stderr } = await run(process.execPath, ['--input-type=module', '-e', script], {});
      if (code !== 0) throw new Error(`reading the keychain failed: ${stderr}`);
      return JSON.parse(stdout) as string | null;
    },
    async files() {
      const out: { path: string; mode: number; content: Buffer }[] = [];
      const walk = async (dir: string): Promise<void> => {
        for (const entry of await readdir(dir, { withFileTypes: true })) {
          const p = path.join(dir, entry.name);
          if (entry.isDirectory()) await walk(p);
          else if (entry.isFile()) out.push({ path: p, mode: (await stat(p)).mode & 0o777, content: await readFile(p) });
        }
      };
      await walk(home);
      return out;
    },
    async close() {
      if (session && session.exitCode === null && session.pid) {
        const exited = new Promise((resolve) => session!.once('exit', resolve));
        // The whole process group: dbus-run-session, dbus-daemon, gnome-keyring-daemon and the shell.
        process.kill(-session.pid, 'SIGTERM');
        await exited;
      }
      // gnome-keyring-daemon may still be writing its keyring file as it exits: retry ENOTEMPTY briefly.
      await rm(home, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
    },
  };
}
