// The training curve written to <runDir>/loss.png at the end of training: train loss per step
// (thin line), validation loss at each eval (dots + line) and, on a right-hand axis in [0, 1], every
// eval metric that is a fraction (e.g. accuracy). Drawn as SVG, rasterised with sharp.
import sharp from 'sharp';

export interface Series {
  name: string;
  points: { step: number; value: number }[];
  /** 'left' = loss axis, 'right' = fraction axis [0, 1] */
  axis: 'left' | 'right';
  color: string;
  dots?: boolean;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(+v.toPrecision(6));
  return out;
}

/** the SVG text of the chart (exported for tests) */
export function curveSvg(title: string, series: Series[], width = 900, height = 500): string {
  const m = { l: 60, r: 60, t: 40, b: 50 };
  const W = width - m.l - m.r;
  const H = height - m.t - m.b;
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.value));
  const maxStep = Math.max(1, ...all.map((p) => p.step));
  const minStep = Math.min(maxStep - 1, ...all.map((p) => p.step));
  const left = series.filter((s) => s.axis === 'left').flatMap((s) => s.points.map((p) => p.value)).filter(Number.isFinite);
  const lo = left.length ? Math.min(0, ...left) : 0;
  const hi = left.length ? Math.max(...left) * 1.05 || 1 : 1;
  const x = (s: number) => m.l + ((s - minStep) / (maxStep - minStep)) * W;
  const yL = (v: number) => m.t + H - ((v - lo) / (hi - lo)) * H;
  const yR = (v: number) => m.t + H - v * H;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`,
    `<rect x="${m.l}" y="${m.t}" width="${W}" height="${H}" fill="none" stroke="#444"/>`,
  ];
  for (const t of niceTicks(lo, hi)) {
    parts.push(`<line x1="${m.l}" x2="${m.l + W}" y1="${yL(t)}" y2="${yL(t)}" stroke="#eee"/>`);
    parts.push(`<text x="${m.l - 6}" y="${yL(t) + 4}" text-anchor="end">${t}</text>`);
  }
  for (const t of niceTicks(minStep, maxStep, 8)) parts.push(`<text x="${x(t)}" y="${m.t + H + 18}" text-anchor="middle">${t}</text>`);
  parts.push(`<text x="${m.l + W / 2}" y="${height - 10}" text-anchor="middle">step</text>`);
  parts.push(`<text x="16" y="${m.t + H / 2}" transform="rotate(-90 16 ${m.t + H / 2})" text-anchor="middle">loss</text>`);
  if (series.some((s) => s.axis === 'right')) {
    for (const t of [0, 0.25, 0.5, 0.75, 1]) parts.push(`<text x="${m.l + W + 6}" y="${yR(t) + 4}">${t}</text>`);
  }
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => Number.isFinite(p.value));
    const y = s.axis === 'left' ? yL : yR;
    if (pts.length > 1)
      parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${pts.map((p) => `${x(p.step).toFixed(1)},${y(p.value).toFixed(1)}`).join(' ')}"/>`);
    if (s.dots || pts.length === 1) for (const p of pts) parts.push(`<circle cx="${x(p.step)}" cy="${y(p.value)}" r="3" fill="${s.color}"/>`);
    parts.push(`<rect x="${m.l + 10}" y="${m.t + 8 + i * 16}" width="12" height="3" fill="${s.color}"/>`);
    parts.push(`<text x="${m.l + 28}" y="${m.t + 13 + i * 16}">${esc(s.name)}${s.axis === 'right' ? ' (right axis)' : ''}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export async function writeCurvePng(file: string, title: string, series: Series[]): Promise<void> {
  await sharp(Buffer.from(curveSvg(title, series))).png().toFile(file);
}
