/**
 * Short version of `npm run chaos -- pg-restart` (chaos/scenarios/pg-restart.ts): PostgreSQL stopped fast and
 * immediately under write load through the proxy and started again; clean errors only, no hang, recovery
 * within 5 s, no leaked backends, every acknowledged write kept.
 */
import { afterAll, expect, it } from 'vitest';
import { cleanup } from '../../bench/processes.js';
import { pgRestart } from '../../chaos/scenarios/pg-restart.js';

afterAll(() => cleanup());

it('PostgreSQL restarts under load: clean errors, recovery within 5 s, nothing acknowledged lost', async () => {
  const r = await pgRestart.run({ short: true, log: () => undefined });
  expect(r.failures.join('\n')).toBe(''); // joined: vitest shows a long array as "[ Array(1) ]"
  expect(r.figures['acknowledged writes found after the restarts']).toMatch(/^(\d+) of \1$/);
}, 90_000);
