/** Parses durations such as "10s", "24h", "500ms", "1h30m" or a plain number of seconds into milliseconds. */
import { GprxyError } from '../shared/errors.js';

export class DurationError extends GprxyError<'invalid_duration'> {
  readonly code = 'invalid_duration' as const;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw new DurationError(`duration ${input} must be a non-negative number of seconds`);
    return Math.round(input * 1000);
  }
  const text = input.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) {
    throw new DurationError(`"${input}" is not a duration: use a number with a unit, e.g. 500ms, 10s, 5m, 24h`);
  }
  return Math.round(parts.reduce((sum, p) => sum + Number(p[1]) * UNIT_MS[p[2]!]!, 0));
}
