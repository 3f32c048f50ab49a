/**
 * Refused logins over the last hour, per minute, for the status page's chart: 60 counters in a ring, one
 * per wall-clock minute, with the reasons of the hour kept as totals. O(1) per refusal, fixed memory.
 */
const MINUTE_MS = 60_000;
export const HISTORY_MINUTES = 60;

export class RefusalHistory {
  private readonly counts = new Array<number>(HISTORY_MINUTES).fill(0);
  /** The minute (ms epoch / 60000) each slot of `counts` belongs to. */
  private readonly minutes = new Array<number>(HISTORY_MINUTES).fill(-1);
  private readonly reasons = new Map<string, { minute: number; count: number }[]>();

  constructor(private readonly now: () => number = Date.now) {}

  record(reason: string): void {
    const minute = Math.floor(this.now() / MINUTE_MS);
    const slot = minute % HISTORY_MINUTES;
    if (this.minutes[slot] !== minute) {
      this.minutes[slot] = minute;
      this.counts[slot] = 0;
    }
    this.counts[slot]!++;
    const list = this.reasons.get(reason) ?? [];
    const last = list[list.length - 1];
    if (last?.minute === minute) last.count++;
    else list.push({ minute, count: 1 });
    while (list.length && list[0]!.minute <= minute - HISTORY_MINUTES) list.shift();
    this.reasons.set(reason, list);
  }

  /** Refusals per minute, oldest first, the current minute last (HISTORY_MINUTES values). */
  perMinute(): number[] {
    const current = Math.floor(this.now() / MINUTE_MS);
    const out: number[] = [];
    for (let m = current - HISTORY_MINUTES + 1; m <= current; m++) {
      const slot = m % HISTORY_MINUTES;
      out.push(this.minutes[slot] === m ? this.counts[slot]! : 0);
    }
    return out;
  }

  /** Refusals of the last hour by reason, most frequent first. */
  byReason(): { reason: string; count: number }[] {
    const since = Math.floor(this.now() / MINUTE_MS) - HISTORY_MINUTES;
    const out: { reason: string; count: number }[] = [];
    for (const [reason, list] of this.reasons) {
      const count = list.filter((e) => e.minute > since).reduce((n, e) => n + e.count, 0);
      if (count > 0) out.push({ reason, count });
    }
    return out.sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));
  }
}
