/**
 * `npm run soak [-- --minutes N] [--plant-leak BYTES]`: the soak scenario alone (chaos/scenarios/soak.ts), 30 minutes
 * by default, writing chaos/results/soak.svg and soak-samples.json. Exit code 1 when it failed. `--plant-leak` makes
 * the proxy keep BYTES per accepted connection (chaos/lib/planted-leak.mjs), to show the RSS verdict catches a leak.
 */
import { cleanup, installSignalHandlers } from '../bench/processes.js';
import { formatResult } from './lib/scenario.js';
import { soak } from './scenarios/soak.js';

const args = process.argv.slice(2);
const at = args.indexOf('--minutes');
const minutes = at >= 0 ? Number(args[at + 1]) : 30;
const leakAt = args.indexOf('--plant-leak');
const plantLeakBytes = leakAt >= 0 ? Number(args[leakAt + 1]) : undefined;
installSignalHandlers();
const started = Date.now();
soak
  .run({ short: false, seconds: Math.round(minutes * 60), ...(plantLeakBytes ? { plantLeakBytes } : {}), log: (l) => console.error(`  [${((Date.now() - started) / 1000).toFixed(0)} s] ${l}`) })
  .then(
    async (r) => {
      await cleanup();
      console.log(formatResult(r));
      process.exit(r.failures.length ? 1 : 0);
    },
    async (e: unknown) => {
      console.error(e);
      await cleanup();
      process.exit(1);
    },
  );
