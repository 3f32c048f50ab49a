import { describe, expect, it } from 'vitest';
import { EpochSource } from '../../src/proxy/identity-context.js';

describe('checkout epochs', () => {
  it('grow strictly, in microseconds, even when calls share a millisecond or the clock steps back', () => {
    let clock = 1_730_000_000_000;
    const epochs = new EpochSource(() => clock);
    const a = epochs.next();
    const b = epochs.next();
    expect([a, b]).toEqual([1_730_000_000_000_000, 1_730_000_000_000_001]);
    clock -= 60_000; // NTP steps the clock back a minute
    expect(epochs.next()).toBe(b + 1);
    clock += 120_000;
    expect(epochs.next()).toBe(clock * 1000);
    expect(Number.isSafeInteger(epochs.next())).toBe(true);
  });
});
