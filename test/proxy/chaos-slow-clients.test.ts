/**
 * Short version of `npm run chaos -- slow-clients` (chaos/scenarios/slow-clients.ts): a client that never
 * reads 200 MB of results (proxy memory bounded), 300 idle TLS connections (memory per connection reported),
 * a storm of 200 logins; another user's session keeps working throughout.
 */
import { afterAll, expect, it } from 'vitest';
import { cleanup } from '../../bench/processes.js';
import { slowClients } from '../../chaos/scenarios/slow-clients.js';

afterAll(() => cleanup());

it('slow and abusive clients: memory bounded, every storm login ends, other users keep working', async () => {
  const r = await slowClients.run({ short: true, log: () => undefined });
  expect(r.failures).toEqual([]);
}, 120_000);
