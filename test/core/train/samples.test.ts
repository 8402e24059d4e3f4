// train.samples (core/train/samples.ts): at each checkpoint the model answers the first held-out
// samples greedily, written to samples/step-N.json for the dashboard of vlm serve; the answers are
// the checkpoint's own (generateText on the saved weights gives the same), and training is
// unchanged by it (the same losses with samples: 0).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateText } from '../../../core/generate.ts';
import { defaultPrompt } from '../../../core/data/loader.ts';
import { loadModel } from '../../../core/load-model.ts';
import { createRegistry } from '../../../core/registry.ts';
import builtins from '../../../plugins/index.ts';
import { runTrain, smallRecipe, tmpOut, writeRecipe } from '../../helpers/run.ts';

test('train.samples writes the checkpoint\'s greedy answers on held-out images, and changes nothing in training', async () => {
  const on = await runTrain(writeRecipe(smallRecipe(tmpOut(), { max_steps: 4, checkpoint_every: 2, samples: 3 })));
  assert.equal(on.error, undefined, String(on.error));
  on.ctx.model!.dispose();
  const off = await runTrain(writeRecipe(smallRecipe(tmpOut(), { max_steps: 4, checkpoint_every: 2, samples: 0 })));
  assert.equal(off.error, undefined, String(off.error));
  off.ctx.model!.dispose();
  assert.deepEqual(on.steps.map((r) => r.loss), off.steps.map((r) => r.loss), 'the same losses with and without samples');
  assert.ok(!existsSync(join(off.ctx.runDir, 'samples')), 'samples: 0 writes nothing');

  for (const step of [2, 4]) {
    const j = JSON.parse(readFileSync(join(on.ctx.runDir, 'samples', `step-${step}.json`), 'utf8'));
    assert.equal(j.step, step);
    assert.equal(j.samples.length, 3);
    for (const s of j.samples) {
      assert.match(s.image, /^data:image\/png;base64,[A-Za-z0-9+/]+=*$/);
      assert.equal(typeof s.question, 'string');
      assert.equal(typeof s.expected, 'string');
      assert.equal(typeof s.answer, 'string');
    }
  }
  // step 4's answers are what the saved step-4 checkpoint answers to the same held-out samples
  const j = JSON.parse(readFileSync(join(on.ctx.runDir, 'samples', 'step-4.json'), 'utf8'));
  const { model, tokenizer, imageProcessor } = await loadModel(join(on.ctx.runDir, 'checkpoints', 'step-4'), { registry: createRegistry(builtins) });
  try {
    const val = on.ctx.datasets.val[0];
    const samples = [];
    for await (const s of val.samples({ epoch: 0 })) if (samples.length < 3) samples.push(s);
    const answers = await generateText(model, tokenizer, imageProcessor, samples.map((s) => ({ prompt: defaultPrompt(s), image: s.image, id: s.id })), { greedy: true, maxNewTokens: 16 });
    assert.deepEqual(j.samples.map((s: { answer: string }) => s.answer), answers);
    assert.deepEqual(j.samples.map((s: { id: string }) => s.id), samples.map((s) => s.id));
  } finally {
    model.dispose();
  }
});
