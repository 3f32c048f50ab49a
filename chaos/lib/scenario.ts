/**
 * What every chaos scenario is: a name, a run that takes the short or long settings, and a result made of
 * figures (printed as they are) and failures (each one sentence; none means pass). `npm run chaos` prints
 * them with one PASS/FAIL line per scenario; the short versions run in `npm test` and assert no failures.
 */
export interface ScenarioOptions {
  /** The npm test version: seconds, not minutes. */
  readonly short: boolean;
  /** Progress lines (stderr for the CLI, nothing in tests unless asked). */
  readonly log: (line: string) => void;
  /** Overrides the scenario's duration, where it has one. */
  readonly seconds?: number;
  /** Seed of the pseudo-random choices (fuzzers), so a run can be repeated. */
  readonly seed?: number;
  /** Soak only: plant a leak of this many bytes per accepted connection in the proxy (chaos/lib/planted-leak.mjs). */
  readonly plantLeakBytes?: number;
}

export type Figure = number | string | boolean;

export interface ScenarioResult {
  readonly name: string;
  readonly figures: Record<string, Figure>;
  readonly failures: string[];
}

export interface Scenario {
  readonly name: string;
  readonly summary: string;
  run(options: ScenarioOptions): Promise<ScenarioResult>;
}

/** Collects figures and failures as a scenario goes. */
export class Verdict {
  readonly figures: Record<string, Figure> = {};
  readonly failures: string[] = [];
  constructor(readonly name: string) {}

  figure(name: string, value: Figure): void {
    this.figures[name] = typeof value === 'number' && !Number.isInteger(value) ? Math.round(value * 100) / 100 : value;
  }

  /** Records a failure unless `ok`. */
  check(ok: boolean, failure: string): boolean {
    if (!ok) this.failures.push(failure);
    return ok;
  }

  fail(failure: string): void {
    this.failures.push(failure);
  }

  result(): ScenarioResult {
    return { name: this.name, figures: this.figures, failures: this.failures };
  }
}

/** The printed form: one line per figure, then `PASS chaos <name>` or `FAIL chaos <name>: ...`. */
export function formatResult(r: ScenarioResult): string {
  const width = Math.max(0, ...Object.keys(r.figures).map((k) => k.length));
  const lines = Object.entries(r.figures).map(([k, v]) => `  ${k.padEnd(width)}  ${String(v)}`);
  lines.push(r.failures.length === 0 ? `PASS chaos ${r.name}` : `FAIL chaos ${r.name}: ${r.failures.join('; ')}`);
  return lines.join('\n');
}

export function mb(bytes: number): number {
  return Math.round((bytes / 1048576) * 10) / 10;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
