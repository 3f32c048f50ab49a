/**
 * Scenario fuzz-codec: the structure-aware, outcome-guided mutation loop over every codec target in
 * process. Figures: inputs per target, outcomes found, inputs per second, the slowest input, heap growth.
 * Pass: no crash (an exception other than ProtocolError, or a broken invariant), no input slower than
 * 250 ms (a hang, in process), heap bounded.
 */
import { CODEC_TARGETS, type CodecTarget } from '../fuzz/codec-targets.js';
import { loadCorpus, saveCorpus, saveCrasher } from '../fuzz/corpus.js';
import { mutate } from '../fuzz/mutate.js';
import { Rng } from '../lib/rng.js';
import { mb, Verdict, type Scenario, type ScenarioOptions, type ScenarioResult } from '../lib/scenario.js';

const SLOW_INPUT_MS = 250;

export interface FuzzStats {
  inputs: number;
  outcomes: number;
  crashes: { input: Buffer; error: string }[];
  slowestMs: number;
  slowestInput?: Buffer;
}

/** Fuzzes one target until `deadline` (ms since epoch) or `maxInputs`. */
export function fuzzTarget(target: CodecTarget, rng: Rng, deadline: number, maxInputs = Infinity): FuzzStats & { corpus: Buffer[] } {
  const corpus = [...target.seeds(), ...loadCorpus(target.name)];
  const seen = new Set<string>();
  const stats: FuzzStats = { inputs: 0, outcomes: 0, crashes: [], slowestMs: 0 };
  for (const seed of corpus) seen.add(target.run(seed, rng));
  stats.outcomes = seen.size;
  while (stats.inputs < maxInputs && (stats.inputs & 255 || Date.now() < deadline)) {
    const input = mutate(rng, rng.pick(corpus), corpus, target.framing);
    stats.inputs++;
    const started = performance.now();
    let outcome: string;
    try {
      outcome = target.run(input, rng);
    } catch (e) {
      const error = e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e);
      if (stats.crashes.length < 20 && !stats.crashes.some((c) => c.error === error)) stats.crashes.push({ input, error });
      continue;
    }
    const ms = performance.now() - started;
    if (ms > stats.slowestMs) {
      stats.slowestMs = ms;
      stats.slowestInput = input;
    }
    if (!seen.has(outcome)) {
      seen.add(outcome);
      corpus.push(input);
    }
  }
  stats.outcomes = seen.size;
  return { ...stats, corpus };
}

export const fuzzCodec: Scenario = {
  name: 'fuzz-codec',
  summary: 'mutation fuzzing of src/protocol in process (startup, frames, auth messages, OAUTHBEARER, relay scanner, backend messages, SASLprep)',
  async run(o: ScenarioOptions): Promise<ScenarioResult> {
    const v = new Verdict('fuzz-codec');
    const seconds = o.seconds ?? (o.short ? 4 : 240);
    const seed = o.seed ?? Date.now() & 0xffffffff;
    v.figure('seed', seed);
    const rng = new Rng(seed);
    const rssBefore = process.memoryUsage().rss;
    let total = 0;
    let slowest = 0;
    const started = Date.now();
    for (const target of CODEC_TARGETS) {
      const deadline = Date.now() + (seconds * 1000) / CODEC_TARGETS.length;
      const r = fuzzTarget(target, rng, deadline);
      total += r.inputs;
      // On a busy machine the process can be descheduled mid-input: the slowest input is timed again, alone,
      // and the best of three counts (a real hang is slow every time).
      if (r.slowestInput) {
        let best = Infinity;
        for (let i = 0; i < 3; i++) {
          const t0 = performance.now();
          try {
            target.run(r.slowestInput, rng);
          } catch {
            // a crash was recorded by the loop already
          }
          best = Math.min(best, performance.now() - t0);
        }
        slowest = Math.max(slowest, best);
      }
      v.figure(`${target.name}: inputs / outcomes`, `${r.inputs} / ${r.outcomes}`);
      o.log(`fuzz-codec ${target.name}: ${r.inputs} inputs, ${r.outcomes} outcomes, ${r.crashes.length} crashes`);
      for (const c of r.crashes) {
        const where = o.short ? `input ${c.input.subarray(0, 64).toString('hex')}` : `saved as chaos/crashers/${saveCrasher(target.name, c.input)}`;
        v.fail(`${target.name} crashed: ${c.error.slice(0, 200)} (${where})`);
      }
      if (!o.short) saveCorpus(target.name, r.corpus);
      await new Promise((r) => setImmediate(r)); // let progress lines out
    }
    const elapsed = (Date.now() - started) / 1000;
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    v.figure('inputs', total);
    v.figure('seconds', elapsed);
    v.figure('inputs per second', Math.round(total / elapsed));
    v.figure('slowest input, timed again alone (ms)', slowest);
    v.figure('RSS growth (MB)', mb(rssGrowth));
    v.check(slowest < SLOW_INPUT_MS, `an input took ${slowest.toFixed(0)} ms (over ${SLOW_INPUT_MS} ms: a hang in the codec)`);
    v.check(rssGrowth < 256 * 1048576, `RSS grew by ${mb(rssGrowth)} MB while fuzzing`);
    return v.result();
  },
};
