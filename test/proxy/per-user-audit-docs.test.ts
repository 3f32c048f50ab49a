/**
 * The README's table of per-user audit events ("Audit events of per-user roles") is the operator's reference:
 * it must list exactly the events src/proxy/per-user/ logs, each with exactly the fields the code puts on
 * the line. Read from the source text, so a new event or field without its row fails here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const SOURCE_DIR = join(ROOT, 'src', 'proxy', 'per-user');

/** event → field names (the keys of each `{ event: '…', … }` literal; all lines of one event merged). */
function loggedEvents(): Map<string, Set<string>> {
  const events = new Map<string, Set<string>>();
  for (const file of readdirSync(SOURCE_DIR).filter((f) => f.endsWith('.ts'))) {
    const text = readFileSync(join(SOURCE_DIR, file), 'utf8');
    for (const m of text.matchAll(/\{ event: '(\w+)'((?:[^{}]|\{[^{}]*\})*)\}/g)) {
      const fields = events.get(m[1]!) ?? new Set<string>();
      // Top-level keys: `name` or `name: value` (values here are plain expressions, arrays, or template-free calls).
      const body = m[2]!.replace(/\[[^\]]*\]/g, '[]').replace(/\([^)]*\)/g, '()');
      for (const part of body.split(',')) {
        const key = /^\s*(\w+)\s*(?::|$)/.exec(part)?.[1];
        if (key) fields.add(key);
      }
      events.set(m[1]!, fields);
    }
  }
  return events;
}

/** event → field names as the README's table has them (the backticked names of the fields column). */
function documentedEvents(): Map<string, Set<string>> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('**Audit events of per-user roles**');
  expect(start).toBeGreaterThan(0);
  // The table: the first run of lines starting with '|' after the heading.
  const lines = readme.slice(start).split('\n');
  const first = lines.findIndex((l) => l.startsWith('|'));
  const end = lines.findIndex((l, i) => i > first && !l.startsWith('|'));
  const rows = lines.slice(first, end).filter((l) => l.startsWith('| `'));
  const events = new Map<string, Set<string>>();
  for (const row of rows) {
    const [, event, , fields] = row.split('|').map((c) => c.trim());
    events.set(event!.replaceAll('`', ''), new Set([...fields!.matchAll(/`(\w+)`/g)].map((m) => m[1]!)));
  }
  return events;
}

describe('README: audit events of per-user roles', () => {
  it('lists every event src/proxy/per-user logs, with exactly its fields', () => {
    const logged = loggedEvents();
    expect(logged.size).toBeGreaterThanOrEqual(5);
    const documented = documentedEvents();
    expect([...documented.keys()].sort()).toEqual([...logged.keys()].sort());
    for (const [event, fields] of logged) expect([...documented.get(event)!].sort(), event).toEqual([...fields].sort());
  });
});
