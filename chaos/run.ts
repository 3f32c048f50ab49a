/**
 * `npm run chaos [-- scenario ...] [--short] [--seconds N] [--seed N]`: runs the reliability scenarios (all
 * of them, or those named), printing each one's figures and a PASS/FAIL line. Exit code 1 when any failed.
 * `npm run soak` is chaos/soak.ts. Every process a scenario starts is stopped at its end, and on Ctrl+C.
 */
import { cleanup, installSignalHandlers } from '../bench/processes.js';
import { formatResult, type Scenario, type ScenarioResult } from './lib/scenario.js';
import { SCENARIOS } from './scenarios/index.js';

function usage(): string {
  return `usage: npm run chaos -- [scenario ...] [--short] [--seconds N] [--seed N]\nscenarios:\n${SCENARIOS.map((s) => `  ${s.name.padEnd(14)} ${s.summary}`).join('\n')}`;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const names: string[] = [];
  let short = false;
  let seconds: number | undefined;
  let seed: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--short') short = true;
    else if (a === '--seconds') seconds = Number(args[++i]);
    else if (a === '--seed') seed = Number(args[++i]);
    else if (a === '--help' || a === '-h') {
      console.log(usage());
      return 0;
    } else names.push(a);
  }
  const unknown = names.filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) {
    console.error(`unknown scenario ${unknown.join(', ')}\n${usage()}`);
    return 2;
  }
  const chosen: Scenario[] = names.length ? SCENARIOS.filter((s) => names.includes(s.name)) : [...SCENARIOS];
  const results: ScenarioResult[] = [];
  for (const s of chosen) {
    console.log(`== ${s.name}: ${s.summary}`);
    const started = Date.now();
    let r: ScenarioResult;
    try {
      r = await s.run({ short, log: (l) => console.error(`  [${((Date.now() - started) / 1000).toFixed(1)} s] ${l}`), ...(seconds !== undefined ? { seconds } : {}), ...(seed !== undefined ? { seed } : {}) });
    } catch (e) {
      r = { name: s.name, figures: {}, failures: [`the scenario itself failed: ${(e as Error).stack ?? String(e)}`] };
    }
    await cleanup();
    results.push(r);
    console.log(formatResult(r));
  }
  const failed = results.filter((r) => r.failures.length);
  console.log(`\n${results.length - failed.length} of ${results.length} scenarios passed${failed.length ? `; failed: ${failed.map((r) => r.name).join(', ')}` : ''}`);
  return failed.length ? 1 : 0;
}

installSignalHandlers();
main().then(
  (code) => cleanup().then(() => process.exit(code)),
  (e: unknown) => {
    console.error(e);
    void cleanup().then(() => process.exit(1));
  },
);
