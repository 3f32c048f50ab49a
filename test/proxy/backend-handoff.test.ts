/** Handing a backend's socket between the relay and the pool's own reader (detach/attach) at message boundaries. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backend } from '../../src/proxy/backend.js';
import { query } from '../../src/protocol/client-messages.js';
import { startTestPostgres, type Cluster } from '../support/postgres.js';

let cluster: Cluster;
beforeAll(async () => {
  cluster = await startTestPostgres();
});
afterAll(async () => {
  await cluster?.stop();
});

describe('Backend detach/attach', () => {
  it('attaching twice keeps one reader: each message is read once, errors included, and the backend stays usable', async () => {
    const backend = await Backend.connect({ host: cluster.host, port: cluster.port, dbname: 'postgres', sslmode: 'disable', user: cluster.superuser, password: cluster.superuserPassword });
    try {
      backend.detach();
      backend.attach();
      backend.attach();
      expect(backend.socket.listenerCount('data')).toBe(1);
      const result = await backend.run(query('select 1 as one; select 2 as two'), 5_000, 1);
      expect(result.error).toBeUndefined();
      expect(result.rows.map((r) => [...r])).toEqual([['1'], ['2']]);
      expect(result.status).toBe('I');
      const failed = await backend.run(query('select 1/0'), 5_000, 1);
      expect(failed.error?.code).toBe('22012');
      // The backend is still usable, with nothing left over for its next user.
      expect(backend.broken).toBe(false);
      const again = await backend.run(query('select 3'), 5_000, 1);
      expect(again.rows.map((r) => [...r])).toEqual([['3']]);
    } finally {
      backend.close();
    }
  });
});
