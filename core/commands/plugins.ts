// `vlm plugins [kind] [--json]`: every registered plugin by kind, with its description and options.
import { parseArgs } from 'node:util';
import type { CommandEnv } from '../cli.ts';
import { UserError } from '../errors.ts';
import type { JSONSchema } from '../plugin.ts';
import { didYouMean } from '../recipe/did-you-mean.ts';
import { PLUGIN_KINDS, type PluginKind } from '../types.ts';

export interface OptionRow {
  name: string;
  type: string;
  default: string;
  required: boolean;
  description: string;
}

export function schemaType(s: JSONSchema): string {
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  if (s.const !== undefined) return JSON.stringify(s.const);
  const t = Array.isArray(s.type) ? s.type.join(' | ') : (s.type as string | undefined);
  if (t === 'array' && s.items) return `${schemaType(s.items)}[]`;
  if (s.oneOf || s.anyOf) return (s.oneOf ?? s.anyOf)!.map(schemaType).join(' | ');
  return t ?? 'any';
}

export function optionRows(schema: JSONSchema): OptionRow[] {
  const req = new Set(schema.required ?? []);
  return Object.entries(schema.properties ?? {}).map(([name, s]) => ({
    name,
    type: schemaType(s),
    default: s.default === undefined ? '' : JSON.stringify(s.default),
    required: req.has(name),
    description: s.description ?? '',
  }));
}

export async function main(argv: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean' }, help: { type: 'boolean' } } });
  if (values.help) {
    env.stdout.write('Usage: vlm plugins [kind] [--json]\n');
    return 0;
  }
  const kind = positionals[0] as PluginKind | undefined;
  if (kind && !PLUGIN_KINDS.includes(kind)) {
    throw new UserError(`unknown plugin kind "${kind}"${didYouMean(kind, PLUGIN_KINDS)}`, { hint: `kinds: ${PLUGIN_KINDS.join(', ')}` });
  }
  const kinds = kind ? [kind] : PLUGIN_KINDS;
  if (values.json) {
    const out = kinds.map((k) => ({
      kind: k,
      plugins: env.registry.list(k).map(({ plugin, source }) => ({ name: plugin.name, description: plugin.description, source, file: env.registry.definedIn(k, plugin.name), options: optionRows(plugin.options) })),
    }));
    env.stdout.write(JSON.stringify(out, null, 2) + '\n');
    return 0;
  }
  const lines: string[] = [];
  for (const k of kinds) {
    lines.push(`${k}:`);
    const list = env.registry.list(k);
    if (list.length === 0) lines.push('  (none registered)');
    for (const { plugin, source } of list) {
      lines.push(`  ${plugin.name}  ${env.registry.definedIn(k, plugin.name) ?? source}`); // the file to jump to
      lines.push(`    ${plugin.description}`);
      for (const o of optionRows(plugin.options)) {
        const dflt = o.required ? ' (required)' : o.default ? ` = ${o.default}` : '';
        lines.push(`    - ${o.name}: ${o.type}${dflt}${o.description ? `  ${o.description}` : ''}`);
      }
    }
    lines.push('');
  }
  env.stdout.write(lines.join('\n'));
  return 0;
}
