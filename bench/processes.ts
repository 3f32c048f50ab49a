/**
 * Everything the benchmark starts is registered here (child processes, temporary directories, async
 * stoppers such as the PostgreSQL cluster), so one `cleanup()` ends all of it: at the normal end, on an
 * error, and on Ctrl+C / SIGTERM. Child processes are ended by their own pid, never by name.
 */
import { fork, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';

type Stopper = () => Promise<void> | void;

const children = new Set<ChildProcess>();
const stoppers: { name: string; stop: Stopper }[] = [];
const dirs = new Set<string>();
let cleaning: Promise<void> | undefined;

export function trackDir(dir: string): string {
  dirs.add(dir);
  return dir;
}

/** Registers an async stopper; they run in reverse order of registration. */
export function onCleanup(name: string, stop: Stopper): void {
  stoppers.push({ name, stop });
}

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function spawnTracked(command: string, args: string[], options: SpawnOptions): ChildProcess {
  return track(spawn(command, args, options));
}

/** Ends one child: `signal`, then SIGKILL after `graceMs`. Resolves when it has exited. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export interface NodeChild<Ready> {
  readonly child: ChildProcess;
  readonly ready: Ready;
  /** Sends a request and waits for the reply with the same `id`. */
  request<T>(message: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

let nextRequestId = 1;

/**
 * Starts `node --import tsx <script>` with an IPC channel and waits for its `{ type: 'ready' }` message.
 * The child gets `init` as its first message (secrets travel over IPC, never argv or the environment).
 */
export async function startNodeChild<Ready>(script: string, init: Record<string, unknown>, opts: { execArgv?: string[]; env?: NodeJS.ProcessEnv; timeoutMs?: number; onStderr?: (line: string) => void } = {}): Promise<NodeChild<Ready>> {
  const child = track(
    fork(script, [], {
      execArgv: ['--import', 'tsx', ...(opts.execArgv ?? [])],
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    }),
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (stderr.length > 20_000) stderr = stderr.slice(-10_000);
    opts.onStderr?.(d.toString());
  });
  const ready = await new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not report ready within ${(opts.timeoutMs ?? 30_000) / 1000} s\n${stderr}`)), opts.timeoutMs ?? 30_000);
    const onMessage = (m: { type?: string; error?: string }) => {
      if (m.type === 'ready') {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(m as Ready);
      } else if (m.type === 'error') {
        clearTimeout(timer);
        reject(new Error(`${script}: ${m.error}`));
      }
    };
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited with code ${code} before it was ready\n${stderr}`));
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send({ type: 'init', ...init });
  });
  return {
    child,
    ready,
    request<T>(message: Record<string, unknown>, timeoutMs = 60_000): Promise<T> {
      const id = nextRequestId++;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          child.off('message', onMessage);
          reject(new Error(`${script} did not answer ${String(message.type)} within ${timeoutMs / 1000} s`));
        }, timeoutMs);
        const onMessage = (m: { id?: number; error?: string }) => {
          if (m.id !== id) return;
          clearTimeout(timer);
          child.off('message', onMessage);
          if (m.error) reject(new Error(`${script}: ${m.error}`));
          else resolve(m as T);
        };
        child.on('message', onMessage);
        child.send({ ...message, id });
      });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      if (child.connected) child.send({ type: 'stop' }, (e) => e && child.kill('SIGTERM'));
      else child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Stops everything that is still running and deletes the temporary directories. Idempotent. */
export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    }
    const deadline = Date.now() + 5000;
    while ([...children].some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const { name, stop } of stoppers.splice(0).reverse()) {
      try {
        await stop();
      } catch (e) {
        console.error(`cleanup of ${name} failed: ${(e as Error).message}`);
      }
    }
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    dirs.clear();
  })();
  return cleaning;
}

let interrupted = false;

/** A signal arrived: failures from here on are the interruption's doing, not worth a stack trace. */
export function wasInterrupted(): boolean {
  return interrupted;
}

/** Ctrl+C and SIGTERM: clean up, then exit 130 / 143 (the conventional codes). */
export function installSignalHandlers(): void {
  const handle = (signal: NodeJS.Signals, code: number) => {
    process.once(signal, () => {
      interrupted = true;
      console.error(`\n${signal}: stopping every process the benchmark started...`);
      void cleanup().finally(() => process.exit(code));
    });
  };
  handle('SIGINT', 130);
  handle('SIGTERM', 143);
}
