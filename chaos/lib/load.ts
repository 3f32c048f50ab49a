/**
 * Client load through the proxy with node-postgres: workers that each hold one connection and run a
 * statement in a loop, reconnecting after any error. Every statement and connect is timed against a hang
 * bound; every error is classified by SQLSTATE (a connection that ended without one counts as 08006, as
 * libpq reports it), and every acknowledged write is remembered, so a scenario can check that PostgreSQL
 * kept all of them.
 */
import pg from 'pg';

export interface LoadOptions {
  readonly workers: number;
  /** Client options for a new connection (a fresh token each time, if the caller likes). */
  config(worker: number): Promise<pg.ClientConfig> | pg.ClientConfig;
  /** One unit of work on a connected client; resolves when PostgreSQL acknowledged it. */
  step(client: pg.Client, worker: number, seq: number): Promise<void>;
  /** An operation not settled after this long is a hang (default 15 s). */
  readonly hangMs?: number;
  /** Pause after an error before reconnecting (default 50 ms). */
  readonly retryMs?: number;
  /** Reconnect after this many steps (0: keep the connection). */
  readonly stepsPerConnection?: number;
  /** What the worker was doing, for the error examples (e.g. the soak's action). */
  label?(worker: number): string;
}

export interface LoadStats {
  steps: number;
  connects: number;
  errors: Record<string, number>;
  /** The first few errors of each kind, with time, worker and message: to trace them in the proxy's log. */
  examples: Record<string, string[]>;
  hangs: number;
  latenciesMs: number[];
  /** Steps completed per second, per whole second since start. */
  readonly timeline: number[];
}

export class HangError extends Error {}

/** Classifies an error as a SQLSTATE, or 08006 for a connection that ended or failed without one. */
export function sqlstateOf(e: unknown): string {
  const err = e as { code?: string; message?: string };
  if (typeof err.code === 'string' && /^[0-9A-Z]{5}$/.test(err.code)) return err.code;
  if (e instanceof HangError) return 'hang';
  if (/terminated|ECONNRESET|EPIPE|ECONNREFUSED|socket hang up|Connection ended|not queryable|closed/i.test(String(err.message ?? err.code ?? e))) return '08006';
  return `other:${String(err.code ?? err.message ?? e).slice(0, 60)}`;
}

function bounded<T>(p: Promise<T>, ms: number, onHang: () => void): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => {
        onHang();
        reject(new HangError(`no answer within ${ms} ms`));
      }, ms);
    }),
  ]);
}

export class Load {
  readonly stats: LoadStats = { steps: 0, connects: 0, errors: {}, examples: {}, hangs: 0, latenciesMs: [], timeline: [] };
  private running = true;
  private readonly done: Promise<void>[] = [];
  private readonly started = Date.now();
  private readonly clients = new Set<pg.Client>();

  constructor(private readonly o: LoadOptions) {
    for (let w = 0; w < o.workers; w++) this.done.push(this.worker(w));
  }

  private count(key: string): void {
    this.stats.errors[key] = (this.stats.errors[key] ?? 0) + 1;
  }

  private async worker(w: number): Promise<void> {
    const hangMs = this.o.hangMs ?? 15_000;
    let seq = 0;
    while (this.running) {
      const client = new pg.Client(await this.o.config(w));
      // The server's FATAL arrives as an 'error' event; the call that fails next only says "not queryable".
      let fatal: unknown;
      client.on('error', (e) => (fatal ??= e));
      this.clients.add(client);
      let connected = false;
      try {
        await bounded(client.connect(), hangMs, () => this.stats.hangs++);
        connected = true;
        this.stats.connects++;
        for (let n = 0; this.running && (!this.o.stepsPerConnection || n < this.o.stepsPerConnection); n++) {
          const t0 = performance.now();
          await bounded(this.o.step(client, w, seq++), hangMs, () => this.stats.hangs++);
          const ms = performance.now() - t0;
          this.stats.steps++;
          if (this.stats.latenciesMs.length < 2_000_000) this.stats.latenciesMs.push(ms);
          const second = Math.floor((Date.now() - this.started) / 1000);
          this.stats.timeline[second] = (this.stats.timeline[second] ?? 0) + 1;
        }
      } catch (e) {
        if (this.running) {
          const key = sqlstateOf(e) === '08006' && fatal ? sqlstateOf(fatal) : sqlstateOf(e);
          this.count(key);
          const seen = (this.stats.examples[key] ??= []);
          if (seen.length < 5) {
            const what = (x: unknown) => (x instanceof Error ? x.message : String(x));
            seen.push(`${new Date().toISOString()} worker ${w}${this.o.label ? ` ${this.o.label(w)}` : ''} ${connected ? 'in session' : 'logging in'}: ${what(e)}${fatal && fatal !== e ? ` (FATAL: ${what(fatal)})` : ''}`);
          }
          await new Promise((r) => setTimeout(r, this.o.retryMs ?? 50));
        }
      } finally {
        this.clients.delete(client);
        await bounded(client.end(), 5000, () => undefined).catch(() => undefined);
      }
    }
  }

  /** Stops the workers (each finishes its current step) and waits for them. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.done);
  }

  /** Error counts whose SQLSTATE is not in `allowed`. */
  unexpected(allowed: readonly string[]): Record<string, number> {
    return Object.fromEntries(Object.entries(this.stats.errors).filter(([k]) => !allowed.includes(k)));
  }
}
