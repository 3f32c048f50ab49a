/**
 * PAUSE / RESUME of the admin console across the workers of `gprxy serve --workers` (held by the primary).
 * The primary remembers which databases are paused, so a worker that starts later (replacing one that
 * crashed) asks for that set before it listens and comes up paused; and it passes each command to every
 * worker. A listening worker that does not answer in time is named in the outcome (the command is then an
 * error for the operator). A worker still starting is not waited for: it has either registered its handler
 * (IPC is ordered, so the command reaches it) or will read the remembered set before it listens.
 */
import type { PauseOutcome, PauseRequest } from '../admin/commands.js';

/** One worker slot as the primary sees it. */
export interface PauseTarget {
  readonly slot: number;
  readonly listening: boolean;
  /** Applies the command in that worker; the databases whose state changed there. */
  request(body: PauseRequest): Promise<{ readonly changed: readonly string[] }>;
}

export class ReplicaPause {
  private readonly paused = new Set<string>();

  /** The paused databases, in the order they were paused (what a starting worker applies). */
  list(): string[] {
    return [...this.paused];
  }

  /** Records the command, then applies it in every worker; `changed` in the order of the request. */
  async apply(request: PauseRequest, targets: readonly PauseTarget[]): Promise<PauseOutcome> {
    const names = request.verb === 'RESUME' && request.all ? [...new Set([...request.databases, ...this.paused])] : [...request.databases];
    const changed = new Set<string>();
    for (const n of names) {
      if (request.verb === 'PAUSE' ? !this.paused.has(n) : this.paused.has(n)) changed.add(n);
      if (request.verb === 'PAUSE') this.paused.add(n);
      else this.paused.delete(n);
    }
    const body: PauseRequest = { verb: request.verb, databases: names };
    const answers = await Promise.all(
      targets.map((t) =>
        t.request(body).then(
          (a) => ({ slot: t.slot, listening: t.listening, changed: a.changed }),
          () => ({ slot: t.slot, listening: t.listening, changed: undefined }),
        ),
      ),
    );
    for (const a of answers) for (const n of a.changed ?? []) changed.add(n);
    return {
      changed: names.filter((n) => changed.has(n)),
      unreachable: answers.filter((a) => a.changed === undefined && a.listening).map((a) => a.slot),
    };
  }
}
