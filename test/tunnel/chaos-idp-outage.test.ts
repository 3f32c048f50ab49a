/**
 * Short version of `npm run chaos -- idp-outage` (chaos/scenarios/idp-outage.ts): the OIDC provider down for
 * 8 s while a tunnel renews 6-second tokens under load. The last token is used while valid, the engineer is
 * told once (not once per retry and per connection, as before), the tunnel recovers by itself within 5 s.
 */
import { afterAll, expect, it } from 'vitest';
import { cleanup } from '../../bench/processes.js';
import { idpOutage } from '../../chaos/scenarios/idp-outage.js';

afterAll(() => cleanup());

it('an IdP outage during refresh: the last token kept, one message, recovery on its own', async () => {
  const r = await idpOutage.run({ short: true, log: () => undefined });
  expect(r.failures.join('\n')).toBe(''); // joined: vitest shows a long array as "[ Array(1) ]"
}, 90_000);
