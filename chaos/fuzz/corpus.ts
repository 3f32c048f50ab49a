/**
 * The fuzz corpus and crashers kept in the repo: chaos/corpus/<target>.json (hex strings, capped so the
 * files stay small) and chaos/crashers/<target>-<hash>.hex (one input each, replayed by npm test).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const CHAOS_DIR = join(import.meta.dirname, '..');
const CORPUS_DIR = join(CHAOS_DIR, 'corpus');
const CRASHERS_DIR = join(CHAOS_DIR, 'crashers');
/** Entries kept per target, and the largest kept (bytes): the corpus is a guide, not an archive. */
const MAX_ENTRIES = 48;
const MAX_ENTRY_BYTES = 1024;

export function loadCorpus(target: string): Buffer[] {
  const file = join(CORPUS_DIR, `${target}.json`);
  if (!existsSync(file)) return [];
  return (JSON.parse(readFileSync(file, 'utf8')) as string[]).map((h) => Buffer.from(h, 'hex'));
}

/** Keeps the smallest entries per outcome first (they are the cheapest to mutate), up to the cap. */
export function saveCorpus(target: string, entries: readonly Buffer[]): number {
  const kept = entries.filter((b) => b.length <= MAX_ENTRY_BYTES).slice(0, MAX_ENTRIES);
  mkdirSync(CORPUS_DIR, { recursive: true });
  writeFileSync(join(CORPUS_DIR, `${target}.json`), JSON.stringify(kept.map((b) => b.toString('hex')), null, 1) + '\n');
  return kept.length;
}

export function saveCrasher(target: string, input: Buffer): string {
  mkdirSync(CRASHERS_DIR, { recursive: true });
  const name = `${target}-${createHash('sha256').update(input).digest('hex').slice(0, 12)}.hex`;
  writeFileSync(join(CRASHERS_DIR, name), input.toString('hex') + '\n');
  return name;
}

export function loadCrashers(): { target: string; name: string; input: Buffer }[] {
  if (!existsSync(CRASHERS_DIR)) return [];
  return readdirSync(CRASHERS_DIR)
    .filter((f) => f.endsWith('.hex'))
    .map((name) => ({ target: name.replace(/-[0-9a-f]{12}\.hex$/, ''), name, input: Buffer.from(readFileSync(join(CRASHERS_DIR, name), 'utf8').trim(), 'hex') }));
}
