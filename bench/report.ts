/** Medians, ratios and the printed table. */

export type Target = 'direct' | 'pgbouncer' | 'pipe' | 'gprxy';
/** The three the issue compares; 'pipe' (a bare Node.js relay) is a reference for the relay rows. */
export const TARGETS = ['direct', 'pgbouncer', 'gprxy'] as const;

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Samples of one scenario, per target. */
export type Samples = Partial<Record<Target, number[]>>;

export interface Row {
  readonly label: string;
  readonly unit: string;
  readonly values: Partial<Record<Target, number>>;
  /** Shown in the target column, with a check mark when met. */
  readonly target?: { text: string; met: boolean | undefined };
  /** Lower is better (latency, memory): ratios are still gprxy/other. */
  readonly lowerIsBetter?: boolean;
  readonly note?: string;
}

function fmt(n: number | undefined, unit: string): string {
  if (n === undefined || Number.isNaN(n)) return '—';
  if (unit === 'µs') return `${n >= 0 ? '+' : ''}${n.toFixed(0)}`;
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString('en-US');
  return n.toFixed(1);
}

function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || Number.isNaN(a) || Number.isNaN(b) || b === 0) return '—';
  return (a / b).toFixed(2);
}

const HEADER = ['metric', 'unit', 'direct', 'PgBouncer', 'Node pipe', 'gprxy', 'gprxy/direct', 'gprxy/PgBouncer', 'gprxy/pipe', 'target'];

function cells(r: Row, check: string): string[] {
  const noRatio = r.unit === 'µs';
  return [
    r.label,
    r.unit,
    fmt(r.values.direct, r.unit),
    fmt(r.values.pgbouncer, r.unit),
    fmt(r.values.pipe, r.unit),
    fmt(r.values.gprxy, r.unit),
    noRatio ? '—' : ratio(r.values.gprxy, r.values.direct),
    noRatio ? '—' : ratio(r.values.gprxy, r.values.pgbouncer),
    noRatio ? '—' : ratio(r.values.gprxy, r.values.pipe),
    r.target ? `${r.target.text}${r.target.met === undefined ? '' : r.target.met ? `${check}✓` : `${check}✗`}` : '',
  ];
}

export function renderTable(rows: readonly Row[]): string {
  const lines = rows.map((r) => cells(r, '  '));
  const all = [HEADER, ...lines];
  const widths = HEADER.map((_, i) => Math.max(...all.map((l) => [...l[i]!].length)));
  const last = HEADER.length - 1;
  const pad = (c: string[]) => c.map((x, i) => (i <= 1 || i === last ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join('  ').trimEnd();
  return [pad(HEADER), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.map(pad)].join('\n');
}

/** The same rows as a Markdown table, for RESULTS.md. */
export function renderMarkdown(rows: readonly Row[]): string {
  const out = [`| ${HEADER.join(' | ')} |`, `|---|---|${'--:|'.repeat(HEADER.length - 3)}---|`];
  for (const r of rows) out.push(`| ${cells(r, ' ').join(' | ')} |`);
  return out.join('\n');
}
