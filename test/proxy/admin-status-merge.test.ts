/**
 * mergeStatus (src/proxy/admin/status-page.ts): the status page of `serve --workers` adds the workers' parts
 * up. Pools of the same key are summed (each worker holds its share), refusals are summed per minute aligned
 * on the current minute and per reason, a provider shows its worst worker (fewest keys, most failures), and
 * the page counts the workers that did not answer. The end-to-end page is in admin-workers.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { mergeStatus, renderStatusPage, type StatusSnapshot } from '../../src/proxy/admin/status-page.js';

function part(over: Partial<StatusSnapshot>): StatusSnapshot {
  return { now: 1_000_000, startedAt: 900_000, sessions: [], pools: [], perMinute: [0, 0, 0], reasons: [], providers: ['https://idp.example/'], jwks: {}, ...over };
}

const pool = { key: 'mydb/app_writer', size: 3, total: 2, active: 1, idle: 1, waiting: 0, draining: 0, paused: false };

describe('mergeStatus', () => {
  it('sums pools, refusals and reasons, lists every session, keeps the worst key state, counts the silent workers', () => {
    const merged = mergeStatus(
      [
        part({ sessions: [{ user: 'alice', database: 'mydb', state: 'idle' }], pools: [pool], perMinute: [1, 0, 2], reasons: [{ reason: 'token_expired', count: 3 }], jwks: { 'https://idp.example/': { keys: 2, failures: 0, fetchedAt: 5 } }, startedAt: 800_000 }),
        part({ sessions: [{ user: 'alice', database: 'mydb', state: 'active' }], pools: [{ ...pool, size: 2, active: 2, idle: 0, paused: true }], perMinute: [0, 4], reasons: [{ reason: 'token_expired', count: 1 }, { reason: 'unknown_database', count: 5 }], jwks: { 'https://idp.example/': { keys: 0, failures: 3, lastError: 'timeout', fetchedAt: 7 } } }),
      ],
      1,
    );
    expect(merged.sessions).toHaveLength(2);
    expect(merged.pools).toEqual([{ key: 'mydb/app_writer', size: 5, total: 4, active: 3, idle: 1, waiting: 0, draining: 0, paused: true }]);
    // The shorter history is aligned on the current (last) minute.
    expect(merged.perMinute).toEqual([1, 0, 6]);
    expect(merged.reasons).toEqual([
      { reason: 'unknown_database', count: 5 },
      { reason: 'token_expired', count: 4 },
    ]);
    expect(merged.jwks['https://idp.example/']).toEqual({ keys: 0, failures: 3, lastError: 'timeout', fetchedAt: 5 });
    expect(merged).toMatchObject({ workers: 3, unreachable: 1, startedAt: 800_000 });
    const page = renderStatusPage(merged);
    expect(page).toContain('3 workers (1 did not answer: their part is missing)');
    expect(page).toContain('<td class="user">alice</td><td>mydb</td><td class="n">2</td><td class="n">1</td><td class="n">1</td>');
  });
});
