/**
 * The codec half of the fuzz smoke (`npm run chaos -- fuzz-codec`, chaos/scenarios/fuzz-codec.ts, a few
 * seconds here), and every crasher ever found (chaos/crashers/) replayed: each must now end in a
 * ProtocolError or a parse, never another exception.
 */
import { describe, expect, it } from 'vitest';
import { CODEC_TARGETS } from '../../chaos/fuzz/codec-targets.js';
import { loadCorpus, loadCrashers } from '../../chaos/fuzz/corpus.js';
import { Rng } from '../../chaos/lib/rng.js';
import { fuzzCodec } from '../../chaos/scenarios/fuzz-codec.js';

describe('codec fuzzing', () => {
  it('a 4-second mutation run over every codec target finds no crash and no slow input', async () => {
    const r = await fuzzCodec.run({ short: true, seconds: 4, log: () => undefined });
    expect(r.failures.join('\n')).toBe(''); // joined: vitest shows a long array as "[ Array(1) ]"
    expect(r.figures.inputs as number).toBeGreaterThan(1000);
  }, 30_000);

  it('the kept corpus and every kept crasher run clean', () => {
    const rng = new Rng(7);
    for (const target of CODEC_TARGETS) for (const input of loadCorpus(target.name)) expect(() => target.run(input, rng)).not.toThrow();
    for (const c of loadCrashers()) {
      const target = CODEC_TARGETS.find((t) => t.name === c.target);
      expect(target, c.name).toBeDefined();
      expect(() => target!.run(c.input, rng), c.name).not.toThrow();
    }
  });
});
