// End to end on the real data: digits (the_cauldron layout) -> resize -> SmolLM2 tokenizer ->
// VQACollator batch; and the MMStar-layout file through the eval iterator.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DATA, needsShared } from '../../helpers/shared.ts';
import cauldron from '../../../plugins/dataset/cauldron.ts';
import mmstar from '../../../plugins/dataset/mmstar.ts';
import hf from '../../../plugins/tokenizer/hf.ts';
import resize from '../../../plugins/image-processor/resize.ts';
import { BatchLoader, processedSamples } from '../../../core/data/loader.ts';
import { IGNORE } from '../../../core/data/collator.ts';
import { mmstarPrompt } from '../../../core/data/prompt.ts';
import type { Dataset, ImageProcessor, Tokenizer } from '../../../core/types.ts';

const ctx = (role?: 'train' | 'val' | 'eval', yamlPath = 'x') => ({ role, seed: 0, recipeDir: process.cwd(), yamlPath, recipe: {}, log: console }) as any;

test('digits train.parquet -> a batch of 8 with the real SmolLM2 tokenizer', needsShared('data', 'digits'), async () => {
  const tok = (await hf.create({ from: join(DATA, 'tokenizers', 'smollm2'), chat_template: null, eos_token: null } as any, ctx())) as Tokenizer;
  const proc = (await resize.create({ size: 32, resampler: 'pil', sharp_kernel: 'linear', mean: null, std: null, max_pixels: 1 << 26 } as any, ctx())) as ImageProcessor;
  const train = (await cauldron.create({ path: join(DATA, 'digits', 'train.parquet'), repo: null, subsets: null, limit: null, skip: 0, val_ratio: 0.01, seed: 0 } as any, ctx('train'))) as Dataset;
  const T = 32;
  const L = new BatchLoader({ datasets: [train], tokenizer: tok, imageProcessor: proc, batchSize: 8, maxLength: T, seed: 0 });
  assert.equal(await L.batchesPerEpoch(), 177); // floor(1423 / 8)
  let first;
  for await (const b of L.batches({ epoch: 0 })) {
    first = b.batch;
    break;
  }
  const h = first!;
  assert.deepEqual([h.batchSize, h.seqLen, h.imageSize, h.images.length], [8, T, 32, 8 * 3 * 32 * 32]);
  // digit images: white strokes on black, the 3 channels equal, values k/255
  assert.ok(h.images.every((v) => v >= 0 && v <= 1));
  assert.ok(h.images.some((v) => v > 0.9) && h.images.some((v) => v === 0));
  for (let b = 0; b < 8; b++) {
    const ids = Array.from(h.inputIds.subarray(b * T, (b + 1) * T));
    const mask = Array.from(h.attentionMask.subarray(b * T, (b + 1) * T));
    const real = ids.filter((_, t) => mask[t] === 1);
    const text = tok.decode(real);
    assert.match(text, /^Question: .+ Answer:(\d|zero|one|two|three|four|five|six|seven|eight|nine)<\|endoftext\|>$/, text);
    const answer = text.slice(text.lastIndexOf('Answer:') + 7);
    const targets = Array.from(h.targets.subarray(b * T, (b + 1) * T)).filter((t) => t !== IGNORE);
    assert.equal(tok.decode(targets), answer); // exactly the answer + eos are predicted
    assert.ok(ids.slice(0, T - real.length).every((id) => id === 0)); // left padding with eos = 0
  }
});

test('digits mmstar-style.parquet through the eval iterator: processed images, MMStar prompts', needsShared('data', 'digits', 'mmstar-style.parquet'), async () => {
  const proc = (await resize.create({ size: 16, resampler: 'pil', sharp_kernel: 'linear', mean: null, std: null, max_pixels: 1 << 26 } as any, ctx())) as ImageProcessor;
  const ds = (await mmstar.create({ path: join(DATA, 'digits', 'mmstar-style.parquet'), repo: null, limit: 40, seed: 0, shuffle: false } as any, ctx('eval'))) as Dataset;
  let n = 0;
  const bad: string[] = [];
  for await (const { sample, pixels } of processedSamples(ds, proc, { onBad: (id) => bad.push(id) })) {
    n++;
    assert.equal(pixels.length, 3 * 16 * 16);
    assert.match(mmstarPrompt(sample.question), /^Question: Which digit is shown\?\nOptions: A: \d, B: \d, C: \d, D: \d \nAnswer only with the letter! \nAnswer:$/);
    assert.match(sample.answer, /^[ABCD]$/);
  }
  assert.equal(n, 40);
  assert.deepEqual(bad, []);
});
