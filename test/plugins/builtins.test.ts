// Every built-in plugin follows the plugin rules: a unique name per kind, a description, a strict
// options schema (unknown options are errors) that ajv compiles, with a description per option,
// and defaults that satisfy the schema.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validator } from '../../core/recipe/ajv.ts';
import { Registry } from '../../core/registry.ts';
import { PLUGIN_KINDS } from '../../core/types.ts';
import builtins from '../../plugins/index.ts';

test('built-ins register without clashes; every kind of stage is there', () => {
  const r = new Registry(builtins);
  for (const s of ['load', 'train', 'eval', 'publish']) assert.ok(r.has('stage', s), s);
  for (const p of builtins) assert.ok(PLUGIN_KINDS.includes(p.kind), `${p.name}: kind ${p.kind}`);
});

test('each built-in plugin has a strict, compilable, described options schema', () => {
  for (const p of builtins) {
    const id = `${p.kind}/${p.name}`;
    assert.ok(p.description.length > 10, `${id}: description`);
    assert.equal(p.options.type, 'object', `${id}: options.type`);
    assert.equal(p.options.additionalProperties, false, `${id}: options.additionalProperties must be false`);
    for (const [k, s] of Object.entries(p.options.properties ?? {})) assert.ok(s.description, `${id}: option ${k} has no description`);
    const validate = validator(p.options);
    // the defaults alone must be valid unless the plugin has required options
    if (!(p.options.required ?? []).length) assert.ok(validate({}), `${id}: defaults do not validate: ${JSON.stringify(validate.errors)}`);
  }
});
