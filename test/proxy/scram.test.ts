import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backend } from '../../src/proxy/backend.js';
import { scramVerifier } from '../../src/sql/scram.js';
import { startTestPostgres, type Cluster } from '../support/postgres.js';

let cluster: Cluster;
beforeAll(async () => {
  cluster = await startTestPostgres();
});
afterAll(async () => {
  await cluster?.stop();
});

describe("the proxy's SCRAM client", () => {
  // A non-breaking space and a soft hyphen: SASLprep maps them, plain NFKC alone would not.
  const password = 'pass\u00A0wo\u00ADrd-ünïcode';

  for (const [how, setPassword] of [
    ['set by PostgreSQL itself', (role: string) => cluster.query(`create role ${role} login password '${password}'`)],
    ['set as a verifier by gprxy db init', (role: string) => cluster.query(`create role ${role} login password '${scramVerifier(password)}'`)],
  ] as const) {
    it(`logs in with a non-ASCII password ${how}`, async () => {
      const role = how.includes('db init') ? 'scram_verifier' : 'scram_server';
      await setPassword(role);
      const backend = await Backend.connect({ host: cluster.host, port: cluster.port, dbname: 'postgres', sslmode: 'disable', user: role, password });
      expect(backend.processId).toBeGreaterThan(0);
      backend.close();
    });
  }
});
