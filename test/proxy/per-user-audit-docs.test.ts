/**
 * The README's table of per-user audit events ("Audit events of per-user roles") is the operator's reference:
 * it must list exactly the events src/proxy/per-user/ logs, each with exactly the fields the code puts on
 * the line. Read from the source text (test/support/log-events.ts, which also holds docs/LOG-EVENTS.md to
 * every event of src/), so a new event or field without its row fails here.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { documentedEvents, ROOT, scanLogEvents } from '../support/log-events.js';

/** event → field names of the events logged from src/proxy/per-user/. */
function loggedEvents(): Map<string, Set<string>> {
  const { events } = scanLogEvents();
  return new Map([...events].filter(([, e]) => e.sites.some((s) => s.startsWith('src/proxy/per-user/'))).map(([name, e]) => [name, e.fields]));
}

/** event → field names as the README's table has them. */
function documented(): Map<string, Set<string>> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('**Audit events of per-user roles**');
  expect(start).toBeGreaterThan(0);
  // The table: the first run of lines starting with '|' after the heading.
  const lines = readme.slice(start).split('\n');
  const first = lines.findIndex((l) => l.startsWith('|'));
  const end = lines.findIndex((l, i) => i > first && !l.startsWith('|'));
  return documentedEvents(lines.slice(first, end).join('\n'));
}

describe('README: audit events of per-user roles', () => {
  it('lists every event src/proxy/per-user logs, with exactly its fields', () => {
    const logged = loggedEvents();
    expect(logged.size).toBeGreaterThanOrEqual(5);
    const table = documented();
    expect([...table.keys()].sort()).toEqual([...logged.keys()].sort());
    for (const [event, fields] of logged) expect([...table.get(event)!].sort(), event).toEqual([...fields].sort());
  });
});
