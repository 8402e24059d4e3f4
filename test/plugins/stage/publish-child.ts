// Child process for test/plugins/stage/publish.test.ts: runs the publish stage on the tiny fixture model the
// way the CLI would (log lines to stdout, errors to stderr with their stack, as --debug prints them),
// so the test can capture everything the process writes and grep it for the token.
//   node --import tsx test/plugins/stage/publish-child.ts <runDir> '<publishers JSON>' [--dry-run]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../../helpers/backend.ts';
import { FIXTURES } from '../../helpers/shared.ts';
import { createRegistry } from '../../../core/registry.ts';
import vision from '../../../plugins/vision/index.ts';
import projector from '../../../plugins/projector/index.ts';
import decoder from '../../../plugins/decoder/index.ts';
import publishers from '../../../plugins/publisher/index.ts';
import publishStage from '../../../plugins/stage/publish.ts';
import { checkpointModelSection, loadCheckpoint } from '../../../core/weights/model-folder.ts';
import { isUserError } from '../../../core/errors.ts';
import type { RunContext, Stage } from '../../../core/types.ts';

const [runDir, publishersJson, flag] = process.argv.slice(2);
const TINY = join(FIXTURES, 'tiny');

async function main(): Promise<void> {
  await useTestBackend();
  const registry = createRegistry([...vision, ...projector, ...decoder, ...publishers]);
  const model = await loadCheckpoint(TINY, registry);
  mkdirSync(runDir, { recursive: true });
  const recipe = {
    name: 'tiny-published',
    model: checkpointModelSection(TINY, registry).section,
    publish: { repo_id: 'alice/tiny-vlm', private: true, license: 'apache-2.0', message: null, publishers: JSON.parse(publishersJson) },
  };
  writeFileSync(join(runDir, 'recipe.yaml'), `name: tiny-published\n`);
  const log = {
    info: (m: string) => console.log(m),
    warn: (m: string) => console.warn(`warning: ${m}`),
    debug: (m: string) => console.log(`debug: ${m}`),
  };
  const ctx: RunContext = {
    recipe,
    recipePath: join(runDir, 'recipe.yaml'),
    recipeDir: runDir,
    runDir,
    backend: tf.getBackend(),
    registry,
    log,
    signal: new AbortController().signal,
    seed: 0,
    model,
    tokenizer: {
      vocabSize: 300,
      eosTokenId: 0,
      padTokenId: 0,
      encode: (t) => [...Buffer.from(t)],
      decode: (ids) => Buffer.from(ids).toString(),
      files: () => ({ 'tokenizer.json': '{"kind": "bytes"}\n' }),
    },
    datasets: { train: [], val: [], eval: [] },
    metrics: () => {},
    evalResults: [],
    artifacts: {},
    facts: { train_time_s: 1 },
    flags: { dryRun: flag === '--dry-run', debug: true },
  };
  await (publishStage.create({} as never, {} as never) as Stage).run(ctx, (line: string) => console.log(`[publish] ${line}`));
  model.dispose();
}

main().catch((e) => {
  console.error(isUserError(e) && 'format' in e ? (e as { format(): string }).format() : String(e));
  console.error((e as Error).stack);
  process.exit(1);
});
