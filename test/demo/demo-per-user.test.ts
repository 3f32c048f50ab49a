/**
 * `gprxy demo --per-user` (issue 12): the same demo with identity: per_user; the scripted tour passes with
 * each person as her own PostgreSQL role, including the step where bob can neither read alice's query
 * text nor cancel her backend. In-process (startDemo + runTour), so it costs one demo start.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { runTour, startDemo, type Demo } from '../../src/demo/demo.js';
import { appendRunLog } from '../support/run-log.js';

let demo: Demo | undefined;

afterAll(async () => {
  await demo?.stop();
});

describe('gprxy demo --per-user', () => {
  it('runs the tour with current_user being the person', { timeout: 120_000 }, async () => {
    demo = await startDemo({ autoApproveAs: 'alice', tunnelPort: 0, perUser: true });
    expect(demo.perUser).toBe(true);
    const lines: string[] = [];
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PG')));
    const steps = await runTour(demo, { out: (l) => lines.push(l), psql: { env } });
    appendRunLog(lines.join('\n'));
    expect(steps).toHaveLength(5);
    const text = lines.join('\n');
    expect(text).toMatch(/alice@example\.com\s*\|\s*auth0\|alice0001\s*\|\s*tenant-a/);
    expect(text).toContain('bob cannot cancel alice’s backend (42501)');
  });
});
