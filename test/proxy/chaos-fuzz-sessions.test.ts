/**
 * The socket half of the fuzz smoke (`npm run chaos -- fuzz-sessions`, chaos/scenarios/fuzz-sessions.ts):
 * a few seconds of mutated session scripts against the proxy (plaintext and TLS) and a tunnel's listener.
 * Every connection ends, the proxy logs no internal error and still serves a normal login.
 */
import { afterAll, expect, it } from 'vitest';
import { cleanup } from '../../bench/processes.js';
import { fuzzSessions } from '../../chaos/scenarios/fuzz-sessions.js';

afterAll(() => cleanup());

it('mutated session scripts end cleanly at the proxy and the tunnel', async () => {
  const r = await fuzzSessions.run({ short: true, seconds: 4, log: () => undefined });
  expect(r.failures.join('\n')).toBe(''); // joined: vitest shows a long array as "[ Array(1) ]"
  expect(r.figures['proxy: connections'] as number).toBeGreaterThan(10);
}, 90_000);
