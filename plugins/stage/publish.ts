// The publish stage: runs the recipe's `publish.publishers` in order. `local` writes the model
// folder (<runDir>/model by default); a publisher that uploads (e.g. `hub`) publishes the folder
// the last `local` wrote — and if no `local` ran before it, the stage writes <runDir>/model first.
// Writes <runDir>/publish.json: where each publisher put the model (never a token). When the run
// starts, preflight() checks the hub publishers' repo ids and warns about a missing token.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { foreignFolder, isOurs } from '../publisher/local.ts';
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { UserError } from 'nanovlm-ts/plugin-api';
import { atomicWrite } from '../../core/hub/cache.ts';
import { isOffline, parseRepoId, readToken } from '../../core/hub/index.ts';
import type { Logger, Publisher, RunContext, Stage } from 'nanovlm-ts/plugin-api';

type Entry = { use: string; [k: string]: unknown };

async function build(ctx: RunContext, entry: Entry, yamlPath: string): Promise<Publisher> {
  return ctx.registry.create('publisher', entry, {
    recipe: ctx.recipe,
    recipeDir: ctx.recipeDir,
    yamlPath,
    seed: ctx.seed,
    log: ctx.log,
    positions: ctx.positions,
  });
}

/** Run the publishers of `entries` (default: recipe publish.publishers); returns [name, where] pairs. */
export async function runPublishers(ctx: RunContext, report: (line: string) => void = () => {}, entries?: Entry[]): Promise<[string, string][]> {
  const list: Entry[] = entries ?? ctx.recipe?.publish?.publishers ?? [];
  const dryRun = !!ctx.flags.dryRun;
  const defaultFolder = join(ctx.runDir, 'model');
  let folder: string | undefined;
  const done: [string, string][] = [];
  for (let i = 0; i < list.length; i++) {
    const entry = list[i];
    const yamlPath = `publish.publishers[${i}]`;
    const publisher = await build(ctx, entry, yamlPath);
    const writesFolder = entry.use === 'local';
    if (!writesFolder && !folder) {
      report(`local: writing ${defaultFolder} for ${entry.use}`);
      folder = await (await build(ctx, { use: 'local' }, yamlPath)).publish(ctx, defaultFolder, { dryRun });
      done.push(['local', folder]);
    }
    report(`${entry.use}${dryRun && !writesFolder ? ' (dry run)' : ''}`);
    const where = await publisher.publish(ctx, writesFolder ? defaultFolder : folder!, { dryRun });
    if (writesFolder) folder = where;
    done.push([entry.use, where]);
    ctx.log.info(`${yamlPath} ${entry.use}${dryRun && !writesFolder ? ' (dry run, nothing uploaded)' : ''}: ${where}`);
  }
  return done;
}

/**
 * Checks made when the run starts (stages are created before any runs), so that a publish that
 * cannot work fails or warns before hours of training, not after: every hub publisher needs a valid
 * repo id (error); a missing or malformed token, or HF_HUB_OFFLINE, is a warning (a --dry-run needs
 * neither).
 */
export function preflight(recipe: Record<string, any>, log: Logger, opts: { recipeDir?: string; flags?: RunContext['flags'] } = {}): void {
  const entries: Entry[] = recipe?.publish?.publishers ?? [];
  const dryRun = !!opts.flags?.dryRun;
  entries.forEach((entry, i) => {
    // a `local` path that holds someone else's folder: refused now, not after training
    if (entry.use === 'local' && typeof entry.path === 'string' && opts.recipeDir !== undefined && !opts.flags?.force) {
      const dest = resolve(opts.recipeDir, entry.path);
      if (existsSync(dest) && statSync(dest).isDirectory() && readdirSync(dest).length > 0 && !isOurs(dest)) {
        throw foreignFolder(dest, `publish.publishers[${i}].path`);
      }
    }
    if (entry.use !== 'hub') return;
    const yamlPath = `publish.publishers[${i}]`;
    const repo = (entry.repo_id as string | undefined) ?? recipe.publish?.repo_id;
    const id = typeof repo === 'string' ? parseRepoId(repo) : null;
    if (!id || id.revision !== undefined) {
      throw new UserError(repo ? `"${repo}" is not a Hub repo id (owner/name)` : 'the hub publisher needs a repo id', {
        where: { yamlPath: entry.repo_id !== undefined || !repo ? `${yamlPath}.repo_id` : 'publish.repo_id' },
        hint: 'set repo_id: owner/name on the publisher entry (or publish.repo_id)',
      });
    }
    if (dryRun) return; // a dry run uploads nothing: neither network nor token is needed
    if (isOffline()) log.warn(`${yamlPath}: HF_HUB_OFFLINE is set, so the upload to ${id.repo} will fail at the end of the run (use --dry-run, or unset it)`);
    try {
      if (!readToken()) {
        log.warn(`${yamlPath}: no Hugging Face token (HF_TOKEN or \`huggingface-cli login\`): the upload to ${id.repo} at the end of the run will fail unless one is set (--dry-run needs none)`);
      }
    } catch (e) {
      log.warn(`${yamlPath}: ${(e as Error).message}`);
    }
  });
}

export default definePlugin({
  kind: 'stage',
  name: 'publish',
  description: "Runs the publishers of the recipe's publish: section in order (local writes <run>/model; hub uploads it). --dry-run uploads nothing.",
  // the recipe's `publish:` section
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      publishers: { type: 'array', default: [], items: { type: 'object', 'x-plugin': 'publisher', required: ['use'], properties: { use: { type: 'string', minLength: 1 } } }, description: 'Publisher plugin entries, run in order.' },
      repo_id: { type: ['string', 'null'], default: null, description: 'Hub repository (`owner/name`) for publishers that upload.' },
      private: { type: 'boolean', default: false, description: 'Create the Hub repository as private.' },
      license: { type: 'string', default: 'apache-2.0', description: 'License written into the model card.' },
      message: { type: ['string', 'null'], default: null, description: 'Commit message for uploads (null = a generated one).' },
    },
  } as const,
  create(_options, context): Stage {
    preflight(context.recipe, context.log, { recipeDir: context.recipeDir, flags: context.flags });
    return {
      title: 'publish',
      async run(ctx, report) {
        const done = await runPublishers(ctx, report);
        if (!done.length) {
          ctx.log.info('publish: the recipe lists no publishers (publish.publishers is empty)');
          report('no publishers');
          return;
        }
        await atomicWrite(
          join(ctx.runDir, 'publish.json'),
          JSON.stringify({ dry_run: !!ctx.flags.dryRun, published: done.map(([use, where]) => ({ use, where })) }, null, 2) + '\n',
        );
        report(done.map(([use, where]) => `${use}: ${where}`).join('; '));
      },
    };
  },
});
