// The training dashboard: one curve per run (several runs overlaid) of loss, learning rate,
// gradient norm and tokens/s, drawn on canvases, kept live by the server-sent events of
// /api/events (new metrics.jsonl lines, new runs, new eval results and samples). Plain browser
// JavaScript, no build, no library.
const $ = (id) => document.getElementById(id);
const COLORS = ['#2f6fde', '#e4572e', '#29a36a', '#9b5de5', '#f0a202', '#00a6a6', '#c2185b', '#6d4c41'];
/** id -> {summary, records, color, visible} */
const runs = new Map();

// ---- data ------------------------------------------------------------------------------------

async function addRun(summary) {
  if (runs.has(summary.id)) {
    runs.get(summary.id).summary = summary;
    renderRuns();
    renderDetails();
    return;
  }
  const run = { summary, records: [], color: COLORS[runs.size % COLORS.length], visible: true };
  runs.set(summary.id, run);
  const m = await (await fetch(`/api/runs/${encodeURIComponent(summary.id)}/metrics`)).json();
  if (m.records.length > run.records.length) run.records = m.records;
  renderRuns();
  renderDetails();
  redraw();
}

function addRecords({ run: id, from, records }) {
  const run = runs.get(id);
  if (!run) return;
  if (from > run.records.length) {
    // missed some: fetch everything again
    fetch(`/api/runs/${encodeURIComponent(id)}/metrics`).then((r) => r.json()).then((m) => {
      run.records = m.records;
      redraw();
    });
    return;
  }
  run.records.push(...records.slice(run.records.length - from));
  redraw();
  if (records.some((r) => r.type === 'eval')) renderDetails();
}

// ---- charts ----------------------------------------------------------------------------------

/** Round tick values over [lo, hi]. */
function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}
const fmt = (v) => (v === 0 ? '0' : Math.abs(v) >= 1e4 || Math.abs(v) < 1e-2 ? v.toExponential(1) : +v.toPrecision(3) + '');

/**
 * Draw series [{name, color, points: [[x, y]], dots?, dash?}] on a canvas; records how many
 * points it drew in data-points (the browser test watches it grow).
 */
function drawChart(canvas, series) {
  const dpr = window.devicePixelRatio || 1;
  const W = canvas.clientWidth;
  const H = canvas.clientHeight;
  canvas.width = W * dpr;
  canvas.height = H * dpr;
  const g = canvas.getContext('2d');
  g.scale(dpr, dpr);
  g.clearRect(0, 0, W, H);
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  canvas.dataset.points = String(all.length);
  const pad = { l: 56, r: 12, t: 10, b: 28 };
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = '#647087';
  if (!all.length) {
    g.fillText('no data yet', W / 2 - 28, H / 2);
    return;
  }
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - Math.abs(y0 || 1) * 0.1, y1 + Math.abs(y1 || 1) * 0.1];
  const yPad = (y1 - y0) * 0.05;
  y0 -= yPad;
  y1 += yPad;
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (W - pad.l - pad.r);
  const Y = (y) => H - pad.b - ((y - y0) / (y1 - y0)) * (H - pad.t - pad.b);
  // grid and axes
  g.strokeStyle = '#e6e9ef';
  g.lineWidth = 1;
  for (const t of ticks(y0, y1)) {
    g.beginPath();
    g.moveTo(pad.l, Y(t));
    g.lineTo(W - pad.r, Y(t));
    g.stroke();
    g.fillText(fmt(t), 4, Y(t) + 4);
  }
  for (const t of ticks(x0, x1, 6)) {
    if (t !== Math.round(t)) continue;
    g.fillText(String(t), X(t) - 8, H - 10);
  }
  g.fillText('step', 4, H - 10);
  // series
  for (const s of series) {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    g.strokeStyle = g.fillStyle = s.color;
    g.lineWidth = 1.6;
    g.setLineDash(s.dash ? [5, 4] : []);
    if (s.dots) {
      for (const [x, y] of pts) {
        g.beginPath();
        g.arc(X(x), Y(y), 3.2, 0, 2 * Math.PI);
        g.fill();
      }
    } else {
      g.beginPath();
      pts.forEach(([x, y], i) => (i ? g.lineTo(X(x), Y(y)) : g.moveTo(X(x), Y(y))));
      g.stroke();
    }
  }
  g.setLineDash([]);
  // legend
  const names = series.filter((s) => s.points.length);
  names.forEach((s, i) => {
    const y = pad.t + 12 + i * 14;
    g.fillStyle = s.color;
    g.fillRect(W - pad.r - 150, y - 8, 10, 3);
    g.fillStyle = '#1d2330';
    g.fillText(s.name.length > 26 ? s.name.slice(0, 25) + '…' : s.name, W - pad.r - 135, y - 3);
  });
}

let pending = false;
function redraw() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    const visible = [...runs.values()].filter((r) => r.visible);
    const train = (r) => r.records.filter((x) => x.type === 'train' && typeof x.step === 'number');
    const evals = (r) => r.records.filter((x) => x.type === 'eval' && typeof x.step === 'number');
    const label = (r) => r.summary.name;
    drawChart($('chart-loss'), visible.flatMap((r) => [
      { name: label(r), color: r.color, points: train(r).map((x) => [x.step, x.loss]) },
      { name: `${label(r)} val`, color: r.color, dots: true, points: evals(r).filter((x) => x.val_loss !== undefined).map((x) => [x.step, x.val_loss]) },
    ]));
    drawChart($('chart-lr'), visible.flatMap((r) => {
      const groups = [...new Set(train(r).flatMap((x) => (x.lr && typeof x.lr === 'object' ? Object.keys(x.lr) : ['lr'])))];
      return groups.map((gname, i) => ({
        name: groups.length > 1 ? `${label(r)} ${gname}` : label(r),
        color: r.color,
        dash: i > 0,
        points: train(r).map((x) => [x.step, typeof x.lr === 'object' ? x.lr?.[gname] : x.lr]),
      }));
    }));
    drawChart($('chart-grad'), visible.map((r) => ({ name: label(r), color: r.color, points: train(r).map((x) => [x.step, x.grad_norm]) })));
    drawChart($('chart-tps'), visible.map((r) => ({ name: label(r), color: r.color, points: train(r).map((x) => [x.step, x.tokens_per_s]) })));
  });
}
window.addEventListener('resize', redraw);

// ---- runs list and details -------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function renderRuns() {
  const box = $('runs');
  box.replaceChildren();
  for (const r of runs.values()) {
    const cb = el('input', { type: 'checkbox', 'data-run': r.summary.id });
    cb.checked = r.visible;
    cb.addEventListener('change', () => {
      r.visible = cb.checked;
      redraw();
    });
    const sw = el('span', { class: 'swatch' });
    sw.style.background = r.color;
    const last = r.records.filter((x) => x.type === 'train').at(-1);
    box.append(el('label', { title: r.summary.path }, cb, sw, `${r.summary.name}`, el('span', { class: 'muted' }, last ? ` step ${last.step}` : '')));
  }
  if (!runs.size) box.append(el('span', { class: 'muted' }, 'no run yet'));
  const sel = $('detail-run');
  const keep = sel.value;
  sel.replaceChildren(...[...runs.keys()].map((id) => el('option', { value: id }, id)));
  if (runs.has(keep)) sel.value = keep;
}
$('detail-run').addEventListener('change', renderDetails);

function table(head, rows) {
  const t = el('table');
  t.append(el('tr', {}, ...head.map((h, i) => el('th', i ? { class: 'num' } : {}, h))));
  for (const row of rows) t.append(el('tr', {}, ...row.map((c, i) => el('td', i ? { class: 'num' } : {}, c))));
  return t;
}
const num = (v) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(4)) : String(v));

function renderDetails() {
  const run = runs.get($('detail-run').value);
  const box = $('details');
  box.replaceChildren();
  if (!run) return;
  box.classList.remove('muted');
  const s = run.summary;
  box.append(el('p', { class: 'muted' }, `${s.path}${s.hasModel ? ' · has a model: ask it in the playground' : ''}`));
  // eval records during training, and the eval stage's results
  const evals = run.records.filter((x) => x.type === 'eval');
  if (evals.length) {
    const keys = [...new Set(evals.flatMap((x) => Object.keys(x).filter((k) => k !== 'type' && k !== 'step')))];
    box.append(el('h2', {}, 'Evaluation during training'), table(['step', ...keys], evals.map((x) => [String(x.step), ...keys.map((k) => (x[k] === undefined ? '' : num(x[k])))])));
  }
  const results = s.eval?.results ?? [];
  if (results.length) {
    const rows = results.flatMap((r) => Object.entries(r.metrics).map(([k, v]) => [`${r.evaluator} / ${r.dataset} / ${k}`, num(v)]));
    box.append(el('h2', { id: 'eval-results' }, 'Eval results'), table(['metric', 'value'], rows));
  }
  // sample generations at each checkpoint (the newest first)
  if (s.samples.length) {
    box.append(el('h2', {}, 'Sample generations'));
    for (const at of [...s.samples].reverse()) {
      const grid = el('div', { class: 'samples' });
      for (const x of at.samples) {
        const ok = x.expected !== undefined && String(x.answer).trim().startsWith(String(x.expected).trim());
        grid.append(el('div', { class: 'sample' }, el('img', { src: x.image, alt: x.id ?? '' }), el('div', {}, x.question), el('div', { class: 'a ' + (ok ? 'ok' : 'no') }, `→ ${x.answer}`), x.expected !== undefined ? el('div', { class: 'muted' }, `expected: ${x.expected}`) : ''));
      }
      box.append(el('details', at === s.samples.at(-1) ? { open: '' } : {}, el('summary', {}, `step ${at.step}`), grid));
    }
  }
  if (s.recipe) box.append(el('details', {}, el('summary', {}, 'resolved recipe (recipe.yaml)'), el('pre', { class: 'recipe' }, s.recipe)));
}

// ---- live updates ----------------------------------------------------------------------------

async function start() {
  const { runs: list } = await (await fetch('/api/runs')).json();
  for (const s of list) await addRun(s);
  const events = new EventSource('/api/events');
  events.addEventListener('open', () => {
    $('live').textContent = '● live';
    $('live').className = 'live on';
  });
  events.addEventListener('error', () => {
    $('live').textContent = 'reconnecting…';
    $('live').className = 'live';
  });
  events.addEventListener('metrics', (e) => {
    addRecords(JSON.parse(e.data));
    renderRuns();
  });
  events.addEventListener('run', (e) => addRun(JSON.parse(e.data)));
}
start().catch((e) => ($('live').textContent = `cannot reach the server: ${e.message}`));
