/**
 * A small SVG line chart (no chart dependency): one or more panels sharing the time axis, each with its
 * own y axis and series. Enough for RSS and latency over a soak.
 */
export interface Series {
  readonly name: string;
  readonly color: string;
  readonly points: readonly (readonly [number, number])[];
}

export interface Panel {
  readonly title: string;
  readonly unit: string;
  readonly series: readonly Series[];
}

const W = 900;
const PANEL_H = 220;
const M = { left: 70, right: 20, top: 30, bottom: 40 };

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function lineChart(title: string, xLabel: string, panels: readonly Panel[]): string {
  const height = M.top + panels.length * (PANEL_H + M.bottom) + 10;
  const allX = panels.flatMap((p) => p.series.flatMap((s) => s.points.map(([x]) => x)));
  const xMax = niceMax(Math.max(1, ...allX));
  const plotW = W - M.left - M.right;
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" font-family="sans-serif" font-size="12">`, `<rect width="100%" height="100%" fill="white"/>`, `<text x="${W / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`];
  panels.forEach((panel, i) => {
    const top = M.top + i * (PANEL_H + M.bottom);
    const yMax = niceMax(Math.max(0, ...panel.series.flatMap((s) => s.points.map(([, y]) => y))));
    const x = (v: number) => M.left + (v / xMax) * plotW;
    const y = (v: number) => top + PANEL_H - (v / yMax) * PANEL_H;
    out.push(`<rect x="${M.left}" y="${top}" width="${plotW}" height="${PANEL_H}" fill="none" stroke="#999"/>`);
    for (let k = 0; k <= 4; k++) {
      const yv = (yMax * k) / 4;
      out.push(`<line x1="${M.left}" x2="${M.left + plotW}" y1="${y(yv)}" y2="${y(yv)}" stroke="#eee"/>`, `<text x="${M.left - 6}" y="${y(yv) + 4}" text-anchor="end">${+yv.toFixed(2)}</text>`);
      const xv = (xMax * k) / 4;
      out.push(`<text x="${x(xv)}" y="${top + PANEL_H + 16}" text-anchor="middle">${+xv.toFixed(1)}</text>`);
    }
    out.push(`<text x="14" y="${top + PANEL_H / 2}" transform="rotate(-90 14 ${top + PANEL_H / 2})" text-anchor="middle">${esc(`${panel.title} (${panel.unit})`)}</text>`);
    out.push(`<text x="${M.left + plotW / 2}" y="${top + PANEL_H + 32}" text-anchor="middle">${esc(xLabel)}</text>`);
    panel.series.forEach((s, j) => {
      if (s.points.length) out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${s.points.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(' ')}"/>`);
      out.push(`<rect x="${M.left + 10 + j * 160}" y="${top + 8}" width="12" height="3" fill="${s.color}"/>`, `<text x="${M.left + 26 + j * 160}" y="${top + 13}">${esc(s.name)}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
