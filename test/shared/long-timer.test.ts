/** setLongTimeout fires at its deadline however far away (setTimeout alone fires at once past ~24.8 days). */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MAX_TIMER_DELAY_MS, setLongTimeout } from '../../src/shared/long-timer.js';

const DAY = 86_400_000;

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('setLongTimeout', () => {
  it('fires a 30-day timer after 30 days, not after 1 ms', () => {
    const fired = vi.fn();
    setLongTimeout(fired, 30 * DAY);
    vi.advanceTimersByTime(1);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(30 * DAY - 2);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(100 * DAY);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it('fires exactly at the limit and just past it', () => {
    for (const delay of [MAX_TIMER_DELAY_MS, MAX_TIMER_DELAY_MS + 1, 2 * MAX_TIMER_DELAY_MS + 5]) {
      const fired = vi.fn();
      setLongTimeout(fired, delay);
      vi.advanceTimersByTime(delay - 1);
      expect(fired, String(delay)).not.toHaveBeenCalled();
      vi.advanceTimersByTime(1);
      expect(fired, String(delay)).toHaveBeenCalledTimes(1);
    }
  });

  it('never fires once cleared, between steps too', () => {
    const fired = vi.fn();
    const timer = setLongTimeout(fired, 60 * DAY);
    vi.advanceTimersByTime(40 * DAY);
    timer.clear();
    vi.advanceTimersByTime(40 * DAY);
    expect(fired).not.toHaveBeenCalled();
  });

  it('fires negative and NaN delays on the next tick and never fires Infinity', () => {
    const soon = vi.fn();
    const never = vi.fn();
    setLongTimeout(soon, -5);
    setLongTimeout(soon, NaN);
    setLongTimeout(never, Infinity);
    vi.advanceTimersByTime(1);
    expect(soon).toHaveBeenCalledTimes(2);
    vi.advanceTimersByTime(1000 * DAY);
    expect(never).not.toHaveBeenCalled();
  });
});
