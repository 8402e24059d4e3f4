// docs/plugins.md has one contract table per plugin kind (issue 20, item 14), and each table names
// every member of that kind's interface in core/types.ts: a member added to an interface without
// documenting it fails here.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { PLUGIN_KINDS } from '../../core/types.ts';

const types = readFileSync('core/types.ts', 'utf8');
const doc = readFileSync('docs/plugins.md', 'utf8');

/** member names of `export interface <name>` (own members only) */
function members(name: string): string[] {
  const m = new RegExp(`export interface ${name}(?: extends \\w+)? \\{\\n([\\s\\S]*?)\\n\\}`).exec(types);
  assert.ok(m, `interface ${name} not found in core/types.ts`);
  let depth = 0;
  const out: string[] = [];
  for (const line of m[1].split('\n')) {
    const t = line.trim();
    if (depth === 0) {
      const mm = /^(?:readonly\s+)?(\w+)\??\s*[(:<]/.exec(t);
      if (mm && !t.startsWith('*') && !t.startsWith('/')) out.push(mm[1]);
    }
    depth += (line.match(/[{(]/g) ?? []).length - (line.match(/[})]/g) ?? []).length;
    if (depth < 0) depth = 0;
  }
  return out;
}

const PRODUCT = /export interface PluginProducts \{([\s\S]*?)\}/.exec(types)![1];

test('one contract table per kind, naming every member of its interface', () => {
  for (const kind of PLUGIN_KINDS) {
    const iface = new RegExp(`'?${kind}'?: (\\w+);`).exec(PRODUCT)?.[1];
    assert.ok(iface, kind);
    const start = doc.indexOf(`#### ${kind} (\`${iface}\`)`);
    assert.ok(start >= 0, `docs/plugins.md has no "#### ${kind} (\`${iface}\`)" contract table`);
    const end = doc.indexOf('\n#### ', start + 5);
    const section = doc.slice(start, end < 0 ? undefined : end);
    for (const m of members(iface)) assert.ok(section.includes(`\`${m}`), `docs/plugins.md, ${kind}: member ${m} of ${iface} is not documented`);
  }
  for (const m of members('Module')) assert.ok(doc.includes(`| \`${m}`), `Module member ${m}`);
  // what the issue asked about the projector in particular
  for (const s of ['outDim', 'outTokens(n)', 'context.built.vision.hiddenDim', '`describe` returns']) assert.ok(doc.includes(s), s);
});
