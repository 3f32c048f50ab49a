/**
 * Short version of `npm run soak` (chaos/scenarios/soak.ts): a few seconds of the mixed load (sessions,
 * long sessions, cancels, abrupt disconnects, garbage, 6-second tokens ending sessions) with the proxy's
 * memory, handles and sessions sampled every second: no unexpected error, no hang, no leaked handle.
 */
import { afterAll, expect, it } from 'vitest';
import { cleanup } from '../../bench/processes.js';
import { soak } from '../../chaos/scenarios/soak.js';

afterAll(() => cleanup());

it('mixed load leaves no unexpected error, hang, session or socket behind', async () => {
  const r = await soak.run({ short: true, log: () => undefined });
  // RSS growth over seconds is noise, not a trend: the bound applies to the 30-minute run.
  // Joined, so a failure prints the harness's own words (an array of strings is shown as "[ Array(1) ]").
  expect(r.failures.filter((f) => !f.startsWith('RSS grew')).join('\n')).toBe('');
}, 90_000);
