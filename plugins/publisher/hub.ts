// The `hub` publisher: uploads the model folder (written by the `local` publisher) to a Hub repo
// in one commit — whoami, create the repo if missing (private option), commit — through
// core/hub/upload.ts (@huggingface/hub, retries with backoff, redacted errors).
// Token from HF_TOKEN or the CLI's stored token; endpoint from HF_ENDPOINT.
// With --dry-run it prints the files and sizes that would go up and sends nothing.
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { UserError } from 'nanovlm-ts/plugin-api';
import { formatBytes, parseRepoId, uploadFolder } from '../../core/hub/index.ts';
import type { Publisher } from 'nanovlm-ts/plugin-api';

export interface HubOptions {
  repo_id?: string;
  private?: boolean;
  message?: string;
  retries?: number;
}

export function hubPublisher(opts: HubOptions, yamlPath: string): Publisher {
  return {
    name: 'hub',
    async publish(ctx, folder, { dryRun }) {
      const publish = ctx.recipe?.publish ?? {};
      const repo = opts.repo_id ?? publish.repo_id;
      if (!repo) {
        throw new UserError('the hub publisher needs a repo id', {
          where: { yamlPath: `${yamlPath}.repo_id` },
          hint: 'set repo_id: owner/name on the publisher entry (or publish.repo_id)',
        });
      }
      const id = parseRepoId(repo);
      if (!id || id.revision !== undefined) {
        throw new UserError(`"${repo}" is not a Hub repo id (owner/name, without @revision)`, {
          where: { yamlPath: opts.repo_id ? `${yamlPath}.repo_id` : 'publish.repo_id' },
        });
      }
      const message = opts.message ?? publish.message ?? `Upload ${ctx.recipe?.name ?? 'model'} (trained with nanovlm-ts)`;
      const result = await uploadFolder(folder, id.repo, {
        message,
        private: opts.private ?? publish.private ?? false,
        dryRun,
        log: (line) => ctx.log.info(line),
        retry: { attempts: opts.retries ?? 5 },
      });
      if (!dryRun) {
        ctx.log.info(`uploaded ${result.files.length} files (${formatBytes(result.bytes)}) to ${result.url} (commit ${result.commit})`);
      }
      return result.url;
    },
  };
}

export default definePlugin({
  kind: 'publisher',
  name: 'hub',
  description:
    'Uploads the model folder to a Hugging Face Hub repo in one commit (creates the repo if missing). Token: HF_TOKEN or the CLI login; endpoint: HF_ENDPOINT.',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      repo_id: {
        type: 'string',
        pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$',
        description: 'owner/name of the repo (default: publish.repo_id).',
      },
      private: { type: 'boolean', description: 'Create the repo as private (default: publish.private).' },
      message: { type: 'string', minLength: 1, description: 'Commit message (default: publish.message or a generated one).' },
      retries: { type: 'integer', minimum: 1, maximum: 10, default: 5, description: 'Tries per HTTP request on transient errors (5xx, network).' },
    },
  } as const,
  create(options, context) {
    return hubPublisher(options, context.yamlPath);
  },
});
