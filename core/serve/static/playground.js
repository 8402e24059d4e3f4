// The playground: pick or drop an image, ask, and watch the answer stream in from
// POST /v1/chat/completions (stream: true, server-sent events). Plain browser JavaScript, no build.
const $ = (id) => document.getElementById(id);
let imageUrl = null; // data: URL of the chosen image
let modelId = null;
let controller = null;

// ---- sampling controls: show each slider's value next to it
for (const id of ['max-tokens', 'temperature', 'top-p', 'top-k']) {
  const input = $(id);
  const out = input.parentElement.querySelector('output');
  const show = () => (out.textContent = input.value);
  input.addEventListener('input', show);
  show();
}

// ---- image: click to pick, or drop
function useFile(file) {
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    imageUrl = reader.result;
    $('preview').src = imageUrl;
    $('preview').hidden = false;
    $('drop-hint').textContent = file.name;
    updateButtons();
  };
  reader.readAsDataURL(file);
}
$('file').addEventListener('change', (e) => useFile(e.target.files[0]));
const drop = $('drop');
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  useFile(e.dataTransfer.files[0]);
});

function updateButtons() {
  $('ask').disabled = !imageUrl || !modelId || !!controller;
  $('stop').disabled = !controller;
}

// ---- the model card's facts
const fmt = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : String(n));
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}
function renderFacts(info) {
  const facts = $('facts');
  facts.replaceChildren();
  const m = info.model;
  if (!m) {
    facts.append(info.modelId ? 'the model is not ready yet (no checkpoint?): it is loaded at the first question' : 'this server has no model');
    return;
  }
  facts.classList.remove('muted');
  const t = el('table', { id: 'params' });
  t.append(el('tr', {}, el('th', {}, 'module'), el('th', { class: 'num' }, 'parameters')));
  for (const [k, v] of Object.entries(m.parameters)) t.append(el('tr', {}, el('td', {}, k), el('td', { class: 'num' }, fmt(v))));
  facts.append(t);
  facts.append(el('p', {}, `image ${m.imageSize}px → ${m.imageTokens} image tokens; trained sequence length ${m.maxLength}; folder ${m.folder}`));
  if (m.eval && m.eval.length) {
    const e = el('table', { id: 'eval' });
    e.append(el('tr', {}, el('th', {}, 'evaluator / dataset'), el('th', {}, 'metric'), el('th', { class: 'num' }, 'value')));
    for (const r of m.eval) for (const [k, v] of Object.entries(r.metrics)) e.append(el('tr', {}, el('td', {}, `${r.evaluator} / ${r.dataset}`), el('td', {}, k), el('td', { class: 'num' }, typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(4) : String(v))));
    facts.append(el('h2', {}, 'Evaluation'), e);
  }
  if (m.model) {
    const d = el('details', {}, el('summary', {}, 'recipe (model section)'), el('pre', { class: 'recipe' }, JSON.stringify(m.model, null, 2)));
    facts.append(d);
  }
}
async function loadInfo() {
  const info = await (await fetch('/api/info')).json();
  modelId = info.modelId;
  $('model-id').textContent = modelId ? `model: ${modelId}` : 'no model (dashboard only)';
  $('dash-link').hidden = !info.dashboard;
  renderFacts(info);
  updateButtons();
}

// ---- ask: stream the answer
function showError(msg) {
  $('error').textContent = msg;
  $('error').hidden = !msg;
}
async function ask() {
  showError('');
  const answer = $('answer');
  answer.textContent = '';
  answer.classList.add('streaming');
  answer.dataset.state = 'streaming';
  controller = new AbortController();
  updateButtons();
  const body = {
    model: modelId,
    stream: true,
    max_tokens: Number($('max-tokens').value),
    temperature: Number($('temperature').value),
    top_p: Number($('top-p').value),
    top_k: Number($('top-k').value),
    seed: Number($('seed').value),
    messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: imageUrl } }, { type: 'text', text: $('question').value }] }],
  };
  const t0 = performance.now();
  let tokens = 0;
  let finish = '';
  try {
    const res = await fetch('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: controller.signal });
    if (!res.ok) {
      const err = await res.json().catch(() => ({}));
      throw new Error(err.error?.message ?? `HTTP ${res.status}`);
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = event.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
        if (!data || data === '[DONE]') continue;
        const chunk = JSON.parse(data);
        const c = chunk.choices?.[0];
        if (c?.delta?.content) answer.textContent += c.delta.content;
        if (c?.finish_reason) finish = c.finish_reason;
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
        $('stats').textContent = `${tokens || ''}`;
      }
    }
    const s = (performance.now() - t0) / 1000;
    $('stats').textContent = `${tokens} token${tokens === 1 ? '' : 's'} in ${s.toFixed(2)} s (${(tokens / s).toFixed(1)} tok/s), finish: ${finish}`;
    answer.dataset.state = 'done';
  } catch (e) {
    answer.dataset.state = e.name === 'AbortError' ? 'stopped' : 'error';
    if (e.name !== 'AbortError') showError(e.message);
  } finally {
    answer.classList.remove('streaming');
    controller = null;
    updateButtons();
  }
}
$('ask').addEventListener('click', ask);
$('question').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !$('ask').disabled) ask();
});
$('stop').addEventListener('click', () => controller?.abort());

loadInfo().catch((e) => showError(`cannot reach the server: ${e.message}`));
