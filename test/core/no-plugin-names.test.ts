// core/ knows kinds, not names: no source file under core/ names a built-in plugin (the names come
// from plugins/index.ts, so a new built-in is covered the day it is added). core/ finds plugins by
// kind and by what they declare (Plugin.nanovlm, checkRecipe, evaluates, the optional Decoder
// methods in core/types.ts).
//   - a name that is not an ordinary word (llama, adamw, siglip-vit, ...) may not appear in core/ as
//     a string literal at all (comments aside), unless listed in ALLOWED below with the reason;
//   - a name that is also an ordinary word or a data role (train, eval, load, folder, hub, hf, ...)
//     may not appear where a plugin is named: `use: 'x'`, `.use === 'x'`, registry.has/get/create/
//     plugin(kind, 'x'), `{ use: 'x' }`, `stages.includes('x')`.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import builtins from '../../plugins/index.ts';
import { REPO_ROOT } from '../helpers/shared.ts';

/** names that are also ordinary words, directory names, data roles or option values in core/ */
const ORDINARY = new Set(['train', 'eval', 'load', 'publish', 'folder', 'hub', 'local', 'split', 'constant', 'bytes', 'hf', 'multiple-choice']);

/** file + literal + why it is not the plugin */
const ALLOWED: { file: string; literal: string; why: string }[] = [
  { file: 'core/commands/compare.ts', literal: 'llama', why: "the hf-backbones fixture's folder layout (siglip/, llama/), not a plugin name" },
];

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** source without comments (// to the end of a line outside strings, /* ... *\/ blocks) */
function stripComments(src: string): string {
  let out = '';
  let i = 0;
  let quote: string | null = null;
  while (i < src.length) {
    const c = src[i];
    if (quote) {
      out += c;
      if (c === '\\') out += src[++i] ?? '';
      else if (c === quote) quote = null;
      i++;
    } else if (c === '/' && src[i + 1] === '/') {
      while (i < src.length && src[i] !== '\n') i++;
    } else if (c === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      i = end < 0 ? src.length : end + 2;
    } else {
      if (c === "'" || c === '"' || c === '`') quote = c;
      out += c;
      i++;
    }
  }
  return out;
}

/** every place in `src` (a core/ file) that names one of `names`, as "line: text" */
export function namings(src: string, names: string[]): { line: number; name: string; text: string }[] {
  const hits: { line: number; name: string; text: string }[] = [];
  const lines = stripComments(src).split('\n');
  const esc = (n: string) => n.replace(/[-]/g, '\\-');
  lines.forEach((text, i) => {
    for (const name of names) {
      const lit = `(['"\`])${esc(name)}\\1`;
      const pattern = ORDINARY.has(name)
        ? new RegExp(
            [`use\\s*:\\s*${lit}`, `\\.use\\s*[!=]==?\\s*${lit}`, `(?:has|get|create|plugin|source|definedIn)\\(\\s*['"][a-z-]+['"]\\s*,\\s*(?:\\{\\s*use\\s*:\\s*)?${lit}`, `stages\\.includes\\(\\s*${lit}`].join('|'),
          )
        : new RegExp(lit);
      if (pattern.test(text)) hits.push({ line: i + 1, name, text: text.trim() });
    }
  });
  return hits;
}

const names = [...new Set(builtins.map((p) => p.name))];

test('the scanner finds a plugin named in code (it is not vacuous)', () => {
  const src = [
    "const a = { use: 'adamw', lr: 1 }; // 'llama' in a comment is fine",
    "if (stages.includes('train')) x();",
    "registry.create('stage', { use: 'eval' }, ctx);",
    "if (entry.use === 'hf') y();",
    "const roles = ['train', 'val', 'eval']; // roles, not plugins",
    '/* llama in a block comment */ const z = 1;',
  ].join('\n');
  assert.deepEqual(
    namings(src, names).map((h) => `${h.line}:${h.name}`),
    ['1:adamw', '2:train', '3:eval', '4:hf'],
  );
});

test('core/ names no built-in plugin', () => {
  assert.ok(names.length >= 20 && names.includes('llama') && names.includes('train'), `built-in names: ${names.join(', ')}`);
  const problems: string[] = [];
  for (const file of filesUnder(join(REPO_ROOT, 'core'))) {
    const rel = relative(REPO_ROOT, file);
    for (const h of namings(readFileSync(file, 'utf8'), names)) {
      if (ALLOWED.some((a) => a.file === rel && a.literal === h.name)) continue;
      problems.push(`${rel}:${h.line} names the built-in plugin "${h.name}": ${h.text}`);
    }
  }
  assert.deepEqual(problems, [], `core/ knows kinds, not names; find plugins by kind or by what they declare:\n${problems.join('\n')}`);
});
