/**
 * docs/LOG-EVENTS.md is the operator's reference of the proxy's JSON log (what a SIEM receives): it must
 * list exactly the events src/ can write, each with exactly the fields the code puts on the line, and say
 * which are audit events. Read from the source text (test/support/log-events.ts), so a new event or field
 * without its row fails here, and so does a row for an event the code no longer writes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { documentedEvents, eventRows, ROOT, scanLogEvents } from '../support/log-events.js';

const DOC = readFileSync(join(ROOT, 'docs', 'LOG-EVENTS.md'), 'utf8');

/** DESIGN.md's audit events (sections 2 and 2.6): the doc must mark each of them as audit. */
const DESIGN_AUDIT = ['auth_success', 'auth_failure', 'session_end', 'service_account_tampered', 'service_account_login_failed', 'application_name_changed', 'admin_action', 'statement'];

describe('docs/LOG-EVENTS.md: every log event, with exactly its fields', () => {
  const { events: logged, notLogged } = scanLogEvents();
  const documented = documentedEvents(DOC);

  it('lists exactly the events the code logs', () => {
    expect(logged.size).toBeGreaterThanOrEqual(60);
    const missing = [...logged.keys()].filter((e) => !documented.has(e)).map((e) => `${e} (${logged.get(e)!.sites.join(', ')})`);
    const stale = [...documented.keys()].filter((e) => !logged.has(e));
    expect({ missing, stale }).toEqual({ missing: [], stale: [] });
  });

  it('gives each event exactly the fields the code writes', () => {
    for (const [event, { fields, sites }] of logged) {
      if (!documented.has(event)) continue; // reported by the test above
      expect([...documented.get(event)!].sort(), `${event} (${sites.join(', ')})`).toEqual([...fields].sort());
    }
  });

  it('gives each event the levels the code writes it at', () => {
    for (const row of eventRows(DOC)) {
      const event = row.get('event')!.replaceAll('`', '');
      const levels = new Set(row.get('level')!.match(/\b(?:trace|debug|info|warn|error|fatal)\b/g));
      if (logged.has(event)) expect([...levels].sort(), event).toEqual([...logged.get(event)!.levels].sort());
    }
  });

  it('marks every event audit or operational, DESIGN’s audit events as audit', () => {
    const kinds = new Map(eventRows(DOC).map((row) => [row.get('event')!.replaceAll('`', ''), row.get('kind')] as const));
    for (const [event, kind] of kinds) expect(['audit', 'operational'], event).toContain(kind);
    for (const event of DESIGN_AUDIT) expect(kinds.get(event), event).toBe('audit');
  });

  it('recognises every log line: the only `event` literals not logged are metric labels and rule tables', () => {
    // If a log line is built in a way the scan does not see as one, it shows up here: teach the scan
    // (test/support/log-events.ts), do not add it to this list.
    expect(notLogged.map((n) => `${n.site.replace(/:\d+$/, '')} ${n.text}`)).toEqual([
      'src/oauth/login-generation.ts { generation: randomUUID(), event, at: new Date().toISOString() }',
      "src/proxy/disconnect.ts { event: 'connection_refused', ...(sqlstate ? { sqlstate } : {}), ...(message ? { message } : {}) }",
      "src/proxy/disconnect.ts { event: 'auth_failure', sqlstate, ...(message ? { message } : {}) }",
      "src/proxy/disconnect.ts { event: 'auth_failure' }",
      "src/proxy/metrics.ts { pool, event: 'hit' }",
      "src/proxy/metrics.ts { pool, event: 'miss' }",
      "src/proxy/metrics.ts { pool, event: 'eviction' }",
      "src/proxy/metrics.ts { pool, event: 'tampered' }",
      "src/proxy/metrics.ts { pool, event: 'login_failed' }",
    ]);
  });

  it('is linked from the README', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readme.includes('(docs/LOG-EVENTS.md)'), 'README links docs/LOG-EVENTS.md').toBe(true);
  });
});
