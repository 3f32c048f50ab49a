/**
 * The demo ends with whoever started it. `npm run demo` puts npm and a shell between the terminal and the demo;
 * a SIGTERM to npm ends npm (and the shell) but not the demo, which would keep PostgreSQL, the provider, the
 * proxy, their ports and temporary files alive as orphans. Node has no parent-death signal, so we look: the
 * parent changed (we were re-parented) or the parent or grandparent (npm behind `sh -c`) is gone.
 */
import { readFileSync } from 'node:fs';

/** The parent of `pid` from /proc (Linux), or undefined where there is no /proc. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return Number.isInteger(ppid) && ppid > 0 ? ppid : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Calls `onGone` once when the process that started us (or its parent) exits. Started as a daemon (parent 1),
 * nothing is watched. The timer does not keep the process alive. Returns a function that stops watching.
 */
export function watchParent(onGone: (description: string) => void, intervalMs = 500): () => void {
  const parent = process.ppid;
  if (parent <= 1) return () => {};
  const grandparent = parentOf(parent);
  const watched = [parent, ...(grandparent && grandparent > 1 ? [grandparent] : [])];
  const timer = setInterval(() => {
    const gone = process.ppid !== parent ? parent : watched.find((pid) => !alive(pid));
    if (gone === undefined) return;
    clearInterval(timer);
    onGone(`the process that started it (pid ${gone}) exited`);
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
