/** Runs the built `gprxy` CLI (bin/run.js) as a user would, with a controlled environment. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/run.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliProcess {
  child: ChildProcess;
  result: Promise<CliResult>;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `pattern` in the stream; rejects if the process ends first. */
  waitFor(pattern: RegExp, stream?: 'stdout' | 'stderr'): Promise<RegExpMatchArray>;
}

/**
 * The child gets PATH, HOME and `options.env` only (an `undefined` value removes a variable), so nothing
 * of the developer's keychain, DISPLAY or GPRXY_* leaks in. stdin is /dev/null: the CLI must never wait
 * for input.
 */
export function startCli(args: string[], options: { env?: Record<string, string | undefined>; cwd?: string } = {}): CliProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, OCLIF_DISABLE_ENGINE_WARNING: '1', ...options.env },
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let ended = false;
  const listeners = new Set<() => void>();
  const notify = () => listeners.forEach((l) => l());
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    notify();
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    notify();
  });
  const result = new Promise<CliResult>((resolve) =>
    child.on('close', (code, signal) => {
      ended = true;
      resolve({ code, signal, stdout, stderr });
      notify();
    }),
  );
  return {
    child,
    result,
    stdout: () => stdout,
    stderr: () => stderr,
    waitFor(pattern, stream = 'stderr') {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = (stream === 'stderr' ? stderr : stdout).match(pattern);
          if (m) {
            listeners.delete(check);
            resolve(m);
          } else if (ended) {
            listeners.delete(check);
            reject(new Error(`gprxy ${args.join(' ')} ended without printing ${pattern}\nstdout: ${stdout}\nstderr: ${stderr}`));
          }
        };
        listeners.add(check);
        check();
      });
    },
  };
}

export function runCli(args: string[], options: { env?: Record<string, string | undefined>; cwd?: string } = {}): Promise<CliResult> {
  return startCli(args, options).result;
}
