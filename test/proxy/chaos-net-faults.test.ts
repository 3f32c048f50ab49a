/**
 * Short version of `npm run chaos -- net-faults` (chaos/scenarios/net-faults.ts): a TCP fault proxy between
 * gprxy and PostgreSQL resets every backend connection, stalls the path and blackholes new backend connects
 * (limits.backend_connect_timeout 1 s) under write load. Clients get
 * 08006 / 57P03 / 57P01, never a hang; logins work again within 5 s; the pools match PostgreSQL.
 */
import { afterAll, expect, it } from 'vitest';
import { cleanup } from '../../bench/processes.js';
import { netFaults } from '../../chaos/scenarios/net-faults.js';

afterAll(() => cleanup());

it('resets, stalls and blackholed connects between the proxy and PostgreSQL give clean errors and recover', async () => {
  const r = await netFaults.run({ short: true, log: () => undefined });
  expect(r.failures.join('\n')).toBe(''); // joined: vitest shows a long array as "[ Array(1) ]"
}, 90_000);
