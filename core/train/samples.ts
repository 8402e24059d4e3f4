// Sample generations at a checkpoint, for the dashboard (`vlm serve`, docs/serve.md): the model's
// greedy answers to the first `train.samples` held-out samples (data.val, else data.eval), written
// to <run dir>/samples/step-N.json as {step, samples: [{id, image (a small PNG data: URL),
// question, expected, answer}]}. Cheap on purpose: one batch, at most 16 new tokens (generation
// stops at eos), only when a checkpoint is written; the samples are read and their images encoded
// once per run. Greedy decoding draws no random number and changes no weight: training is the same
// with or without it.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { generateText } from '../generate.ts';
import { defaultPrompt } from '../data/loader.ts';
import type { VisionLanguageModel } from '../model/vlm.ts';
import type { RunContext, Sample } from '../types.ts';

const MAX_NEW_TOKENS = 16;
const THUMB = 160; // px, the longer side of the image shown

interface Held {
  sample: Sample;
  thumb: string;
}
const cache = new WeakMap<RunContext, Promise<Held[]>>();

/** The first n samples of data.val (else data.eval), read once per run. */
function heldOut(ctx: RunContext, n: number): Promise<Held[]> {
  let p = cache.get(ctx);
  if (!p) {
    p = (async () => {
      const out: Held[] = [];
      const sets = ctx.datasets.val.length ? ctx.datasets.val : ctx.datasets.eval;
      for (const ds of sets) {
        for await (const s of ds.samples({ epoch: 0 })) {
          if (out.length >= n) break;
          if (s.problem) continue;
          try {
            const png = await sharp(s.image).resize(THUMB, THUMB, { fit: 'inside', withoutEnlargement: true }).png().toBuffer();
            out.push({ sample: s, thumb: `data:image/png;base64,${png.toString('base64')}` });
          } catch {
            // an image sharp cannot read is skipped here as the loader skips it
          }
        }
        if (out.length >= n) break;
      }
      return out;
    })();
    cache.set(ctx, p);
  }
  return p;
}

/** Write samples/step-<step>.json; a failure is a warning, never a failed run. */
export async function writeSamples(ctx: RunContext, model: VisionLanguageModel, step: number, n: number): Promise<void> {
  if (n <= 0 || !ctx.tokenizer || !ctx.imageProcessor) return;
  try {
    const held = await heldOut(ctx, n);
    if (!held.length) return;
    const answers = await generateText(
      model,
      ctx.tokenizer,
      ctx.imageProcessor,
      held.map((h) => ({ prompt: defaultPrompt(h.sample), image: h.sample.image, id: h.sample.id })),
      { greedy: true, maxNewTokens: MAX_NEW_TOKENS },
    );
    const samples = held.map((h, i) => ({ id: h.sample.id, image: h.thumb, question: h.sample.question, expected: h.sample.answer, answer: answers[i] }));
    const dir = join(ctx.runDir, 'samples');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `step-${step}.json`);
    writeFileSync(file + '.tmp', JSON.stringify({ step, samples }) + '\n');
    renameSync(file + '.tmp', file);
  } catch (e) {
    ctx.log.warn(`train.samples: no sample generations at step ${step} (${(e as Error).message})`);
  }
}
