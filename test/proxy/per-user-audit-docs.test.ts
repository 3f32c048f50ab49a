/**
 * The README's table of per-user audit events ("Audit events of per-user roles") is the operator's reference:
 * it must list exactly the events src/proxy/per-user/ logs, each with exactly the fields the code puts on
 * the line. Read from the source text (test/support/log-events.ts, which also holds docs/LOG-EVENTS.md to
 * every event of src/), so a new event or field without its row fails here.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { documentedEvents, eventRows, ROOT, scanLogEvents } from '../support/log-events.js';

/** The events logged from src/proxy/per-user/. */
function loggedEvents() {
  const { events } = scanLogEvents();
  return new Map([...events].filter(([, e]) => e.sites.some((s) => s.startsWith('src/proxy/per-user/'))));
}

/** The README's table (its lines). */
function table(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('**Audit events of per-user roles**');
  expect(start).toBeGreaterThan(0);
  // The table: the first run of lines starting with '|' after the heading.
  const lines = readme.slice(start).split('\n');
  const first = lines.findIndex((l) => l.startsWith('|'));
  const end = lines.findIndex((l, i) => i > first && !l.startsWith('|'));
  return lines.slice(first, end).join('\n');
}

describe('README: audit events of per-user roles', () => {
  it('lists every event src/proxy/per-user logs, with exactly its fields', () => {
    const logged = loggedEvents();
    expect(logged.size).toBeGreaterThanOrEqual(5);
    const documented = documentedEvents(table());
    expect([...documented.keys()].sort()).toEqual([...logged.keys()].sort());
    for (const [event, { fields }] of logged) expect([...documented.get(event)!].sort(), event).toEqual([...fields].sort());
  });

  it('gives each event the level the code writes it at', () => {
    const logged = loggedEvents();
    for (const row of eventRows(table())) {
      const event = row.get('event')!.replaceAll('`', '');
      expect([row.get('level')], event).toEqual([...logged.get(event)!.levels]);
    }
  });
});
