/**
 * `gprxy demo --native`: Option 1 next to Option 2 in one demo. The signed-in person gets a second tunnel
 * straight to PostgreSQL 18, which validates the token with gprxy's validator module; psql 15 logs in as the
 * person's own role, while the usual tunnel still reaches the pooled service account through the proxy.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeDemo, startDemo, type Demo } from '../../src/demo/demo.js';
import { validatorBuildUnavailable } from '../../src/demo/validator-module.js';

const run = promisify(execFile);
const skip = validatorBuildUnavailable();
if (skip) console.warn(`skipping gprxy demo --native: ${skip}`);

describe.skipIf(!!skip)('gprxy demo --native', () => {
  let demo: Demo;
  beforeAll(async () => {
    demo = await startDemo({ native: true, autoApproveAs: 'alice', tunnelPort: 0 });
  });
  afterAll(async () => {
    await demo?.stop();
  });

  const psql = (port: number, sql: string) =>
    run('psql', ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(port), '-d', 'demo', '-U', 'alice@example.com', '-c', sql], {
      env: { PATH: process.env.PATH!, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' },
    });

  it('Option 1: the native tunnel logs alice in as her own role, validated by PostgreSQL 18', async () => {
    const native = demo.session.native!;
    expect(describeDemo(demo).join('\n')).toContain(native.psqlCommand);
    const { stdout } = await psql(native.port, 'select current_user, system_user');
    expect(stdout.trim()).toBe('alice@example.com|oauth:alice@example.com');
  });

  it('Option 2 still works next to it: the proxy maps alice to the pooled app_writer', async () => {
    const { stdout } = await psql(demo.session.port, 'select current_user, gprxy.user_id()');
    expect(stdout.trim()).toBe('app_writer|auth0|alice0001');
  });
});
