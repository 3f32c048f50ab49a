/**
 * The soak's RSS verdict (chaos/lib/memory-trend.ts): a swing of freed-and-retaken memory is not growth, a leak is.
 */
import { describe, expect, it } from 'vitest';
import { rssTrend, type MemorySample } from '../../chaos/lib/memory-trend.js';

/** Samples every 10 s for 30 minutes: `f(t)` MB. */
const series = (f: (t: number) => number): MemorySample[] => Array.from({ length: 181 }, (_, i) => ({ t: i * 10, rssMb: f(i * 10) }));

describe('rssTrend', () => {
  it('reads a swing between 105 and 140 MB on a flat plateau as no growth, wherever the samples fall', () => {
    // A low point at the start of the first window and a high one at the end: the median-of-3 check read +28 % here.
    const swing = series((t) => (t >= 300 && t < 330 ? 105 : t % 90 === 0 ? 105 : 138 + (t % 20 === 0 ? 2 : 0)));
    const r = rssTrend(swing, 300, 300)!;
    expect(r.first).toBe(140);
    expect(r.last).toBe(140);
    expect(r.growth).toBe(0);
    expect(r.peaks).toHaveLength(5);
  });

  it('reads a steady climb as growth, even under the swing', () => {
    // 0.5 MB a minute: a leak of about 10 % over the 25 minutes after warm-up.
    const leak = series((t) => 120 + (t / 60) * 0.5 - (t % 90 === 0 ? 15 : 0));
    const r = rssTrend(leak, 300, 300)!;
    expect(r.growth).toBeGreaterThan(0.05);
    expect(r.peaks).toEqual([...r.peaks].sort((a, b) => a - b));
  });

  it('takes the last window as the one that ends with the last sample', () => {
    const s = series((t) => (t === 1790 ? 150 : 100));
    const r = rssTrend(s.slice(0, 180), 300, 300)!;
    expect(r.last).toBe(150);
    expect(rssTrend(s.slice(0, 10), 300, 300)).toBeUndefined();
  });

  it('skips a window without samples (a stalled sampler) instead of reading it as -Infinity', () => {
    const gap = series(() => 100).filter((x) => x.t < 600 || x.t >= 900);
    expect(rssTrend(gap, 300, 300)!.peaks).toEqual([100, 100, 100, 100]);
  });
});
