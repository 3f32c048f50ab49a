/**
 * The tour as a library, in-process: it must fail (demo_step_failed, naming the step) when the system does
 * not behave as described. Here a reader is given a write grant behind gprxy's back, so bob's write succeeds.
 * Without a psql option, step 1 goes through node-postgres instead.
 */
import { existsSync } from 'node:fs';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { runTour, startDemo } from '../../src/demo/demo.js';

describe('runTour', () => {
  it('stops with demo_step_failed at the first step that does not behave as expected', { timeout: 90_000 }, async () => {
    const demo = await startDemo({ tunnelPort: 0, autoApproveAs: 'alice' });
    const lines: string[] = [];
    let error: unknown;
    try {
      const admin = new pg.Client({ host: demo.postgres.host, port: demo.postgres.port, user: demo.postgres.superuser, password: demo.postgres.superuserPassword, database: demo.database });
      await admin.connect();
      await admin.query('grant insert on public.posts to gprxy_reader');
      await admin.end();
      error = await runTour(demo, { out: (l) => lines.push(l) }).then(
        () => undefined,
        (e: unknown) => e,
      );
    } finally {
      await demo.stop();
    }
    const out = lines.join('\n');
    expect(out).toContain('(psql not used: the same query through node-postgres and the same tunnel)');
    expect(out).toContain('✓ alice sees her tenant only');
    expect(error).toMatchObject({ code: 'demo_step_failed' });
    expect((error as Error).message).toBe(
      `tour step "as bob (pg_reader, tenant-b): read, then try to write" did not behave as expected: insert into posts (title) values ('Hello from bob') succeeded, but it must be refused`,
    );
    expect(out).not.toContain('[3/5]');
    expect(existsSync(demo.dir)).toBe(false);
    expect(existsSync(demo.postgres.dataDir)).toBe(false);
  });
});
