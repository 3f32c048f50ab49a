/**
 * RSS growth over a long run, judged by its high-water mark per window rather than by single samples.
 *
 * Why: the proxy's RSS under steady load swings by 20-30 % (105-140 MB in the 30-minute soaks) while its heap
 * after GC stays flat: glibc's malloc returns freed pages to the system (trim) and takes them again, and the
 * arenas of the libuv threads (WebCrypto's JWT verification, pbkdf2) fill and empty at their own pace. Comparing
 * the median of the first three samples after warm-up with the last three compares two random points of that
 * swing: the same build printed +1.2 %, +28.2 % and +17.1 %. A leak raises the high-water mark window after
 * window; a swing does not. So growth is the peak RSS of the last window over the peak of the first window after
 * warm-up, and every window's peak is kept so a reader sees the plateau (or the climb).
 */

export interface MemorySample {
  /** Seconds since the load started. */
  readonly t: number;
  readonly rssMb: number;
}

export interface RssTrend {
  /** Peak RSS (MB) of each window after warm-up, oldest first. */
  readonly peaks: readonly number[];
  /** Peak of the first window after warm-up, of the last window, and the relative growth between them. */
  readonly first: number;
  readonly last: number;
  readonly growth: number;
}

/**
 * Whole windows of `windowS` seconds from `warmupS` on; the last window is the one that ends with the last sample
 * (so it always spans `windowS` seconds, overlapping the one before when the run is not a multiple).
 * Undefined when there are no samples after warm-up.
 */
export function rssTrend(samples: readonly MemorySample[], warmupS: number, windowS: number): RssTrend | undefined {
  const after = samples.filter((s) => s.t >= warmupS);
  if (after.length === 0) return undefined;
  const peak = (from: number, to: number) => Math.max(...after.filter((s) => s.t >= from && s.t < to).map((s) => s.rssMb));
  const sampled = (from: number, to: number) => after.some((s) => s.t >= from && s.t < to);
  const end = after[after.length - 1]!.t;
  const last = peak(Math.max(warmupS, end - windowS), end + 1);
  // Whole windows only (a window of one sample at the end would be a point, not a peak), and sampled ones (a stalled
  // sampler leaves a gap).
  const peaks: number[] = [];
  for (let from = warmupS; from + windowS <= end; from += windowS) if (sampled(from, from + windowS)) peaks.push(peak(from, from + windowS));
  const first = peaks[0] ?? last;
  return { peaks, first, last, growth: (last - first) / first };
}
