// A synthetic visual question answering set, generated deterministically from a seed: coloured
// shapes (SVG rendered to PNG by sharp) with questions about colour, shape, count and position.
// It is the task of the embedded default recipe, so it is deliberately small and learnable:
//   4 colours (red, green, blue, yellow), 4 shapes (circle, square, triangle, star),
//   colour / shape questions: one large shape (radius 24-27 of 64) at the centre: the tiny model
//   reads colour from 4 image tokens only when the shape fills most of the image;
//   position: one shape at the left / right / top / bottom;
//   count: 1..4 shapes of one colour and kind, one per quadrant.
// Answers are one word or one digit. `format: multiple-choice` asks the same questions with the 4
// answers of that question type inline in MMStar's format (`\nOptions: A: red, B: green, ...`) and
// the letter as the answer; by default the options come in a fixed (canonical) order per question
// type (shuffle_options: true shuffles them), so the letter is a function of the question type and
// the scene; `inline_options: false` then asks the bare question (the options are implied by that
// order). `mixed` alternates open and multiple-choice (even / odd). `curriculum`: stages
// of samples asking only some question types, which come first in every epoch.
// A multiple-choice sample's answer is the letter (what evaluators check and, by default, what it
// trains on); `mc_target: letter-option` trains on "B: green" instead (Sample.target) - see
// docs/data.md for why that is a shortcut rather than a help with nanoVLM's left padding.
// Sample i of split s is a pure function of (seed, s, i); the splits are disjoint by construction:
// the x coordinate of every shape centre is congruent to the split id modulo 3 (train 0, val 1,
// test 2), so no image of one split can appear in another.
import sharp from 'sharp';
import { datasetNameOption } from '../../core/data/name.ts';
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { formatOptions } from '../../core/data/prompt.ts';
import { hashString, mixSeed, mulberry32, permutation } from 'nanovlm-ts/plugin-api';
import type { Dataset, Sample } from 'nanovlm-ts/plugin-api';

export const COLORS: Record<string, string> = { red: '#dc2828', green: '#1e9e3c', blue: '#2850dc', yellow: '#f0c814' };
export const SHAPES = ['circle', 'square', 'triangle', 'star'] as const;
export const POSITIONS = ['left', 'right', 'top', 'bottom'] as const;
export const COUNTS = ['1', '2', '3', '4'] as const;
const COLOR_NAMES = Object.keys(COLORS);
const SPLITS = { train: 0, val: 1, test: 2 } as const;
const TASKS = ['color', 'shape', 'count', 'position'] as const;
type Task = (typeof TASKS)[number];

// Short on purpose (with the byte tokenizer every character is a token), and of equal length in
// the multiple-choice format: `question + "\n" + options` is 58 bytes for every question type, so
// every multiple-choice training sequence (MMStar prompt + letter + eos) is exactly 109 tokens and
// the default recipe's max_length is 109: no padding in training, and the MMStar evaluation (which
// left-pads to the longest prompt of its batch) puts the prompt end at the same position as
// training did. With unequal lengths the relative distance from the image tokens to the answer
// differs between training and evaluation (RoPE sees it). Asserted in test/data.
const QUESTIONS: Record<Task, string> = {
  color: 'Which color?',
  shape: 'Shape?',
  count: 'How many shapes are there?',
  position: 'Where is it?',
};
// open answers and multiple choice without inline options: 6 bytes each
const SHORT_QUESTIONS: Record<Task, string> = { color: 'Color?', shape: 'Shape?', count: 'Count?', position: 'Where?' };
const ANSWERS: Record<Task, readonly string[]> = { color: COLOR_NAMES, shape: SHAPES, count: COUNTS, position: POSITIONS };

interface Shape {
  kind: (typeof SHAPES)[number];
  color: string;
  cx: number;
  cy: number;
  r: number;
}
export interface Scene {
  task: Task;
  shapes: Shape[];
  answer: string;
  mc: boolean;
  choices: string[];
}

function svgShape(s: Shape): string {
  const f = COLORS[s.color];
  const { cx, cy, r } = s;
  switch (s.kind) {
    case 'circle':
      return `<circle cx="${cx}" cy="${cy}" r="${r}" fill="${f}"/>`;
    case 'square':
      return `<rect x="${cx - r}" y="${cy - r}" width="${2 * r}" height="${2 * r}" fill="${f}"/>`;
    case 'triangle':
      return `<polygon points="${cx},${cy - r} ${cx + r},${cy + r} ${cx - r},${cy + r}" fill="${f}"/>`;
    case 'star': {
      const pts: string[] = [];
      for (let k = 0; k < 10; k++) {
        const a = -Math.PI / 2 + (k * Math.PI) / 5;
        const rr = k % 2 ? r * 0.45 : r;
        pts.push(`${(cx + rr * Math.cos(a)).toFixed(2)},${(cy + rr * Math.sin(a)).toFixed(2)}`);
      }
      return `<polygon points="${pts.join(' ')}" fill="${f}"/>`;
    }
  }
}

export function sceneSvg(scene: Scene, size: number): string {
  // scenes are laid out on a 64x64 grid (viewBox), rendered at size x size
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 64 64">` +
    `<rect width="64" height="64" fill="#f4f4f4"/>` +
    scene.shapes.map(svgShape).join('') +
    `</svg>`
  );
}

/** x in [lo, hi] with x = split (mod 3) */
function pickX(rand: () => number, lo: number, hi: number, split: number): number {
  const first = lo + ((split - (lo % 3) + 3) % 3);
  const n = Math.floor((hi - first) / 3) + 1;
  return first + 3 * Math.floor(rand() * n);
}
function between(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}
function pick<T>(rand: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rand() * xs.length)];
}

/** The scene of sample `index` (pure function of its arguments). */
export function makeScene(seed: number, split: number, index: number, format: 'open' | 'multiple-choice' | 'mixed', shuffleOptions: boolean, tasks: readonly Task[] = TASKS): Scene {
  const rand = mulberry32(mixSeed(seed, split, index));
  const task = tasks[Math.floor(rand() * tasks.length)];
  const kind = pick(rand, SHAPES);
  const color = pick(rand, COLOR_NAMES);
  const shapes: Shape[] = [];
  let answer: string;
  if (task === 'count') {
    const n = between(rand, 1, 4);
    const cells = [0, 1, 2, 3];
    for (let i = 3; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [cells[i], cells[j]] = [cells[j], cells[i]];
    }
    for (const c of cells.slice(0, n)) {
      const x0 = (c % 2) * 32;
      const y0 = Math.floor(c / 2) * 32;
      shapes.push({ kind, color, r: between(rand, 10, 12), cx: pickX(rand, x0 + 14, x0 + 18, split), cy: y0 + between(rand, 14, 18) });
    }
    answer = String(n);
  } else if (task === 'position') {
    const where = pick(rand, POSITIONS);
    const r = between(rand, 12, 14);
    const [cx, cy] =
      where === 'left' ? [pickX(rand, 14, 18, split), between(rand, 28, 36)]
      : where === 'right' ? [pickX(rand, 46, 50, split), between(rand, 28, 36)]
      : where === 'top' ? [pickX(rand, 28, 36, split), between(rand, 14, 18)]
      : [pickX(rand, 28, 36, split), between(rand, 46, 50)];
    shapes.push({ kind, color, r, cx, cy });
    answer = where;
  } else {
    shapes.push({ kind, color, r: between(rand, 24, 27), cx: pickX(rand, 30, 34, split), cy: between(rand, 30, 34) });
    answer = task === 'color' ? color : kind;
  }
  const mc = format === 'multiple-choice' || (format === 'mixed' && index % 2 === 1);
  let choices = [...ANSWERS[task]];
  if (shuffleOptions) {
    for (let i = choices.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [choices[i], choices[j]] = [choices[j], choices[i]];
    }
  }
  if (!mc) choices = [];
  return { task, shapes, answer, mc, choices };
}

export interface ShapesOptions {
  /** the `name:` option (default shapes-<split>) */
  name?: string;
  split: 'train' | 'val' | 'test';
  count: number;
  seed: number;
  format: 'open' | 'multiple-choice' | 'mixed';
  imageSize: number;
  shuffle: boolean;
  shuffleOptions: boolean;
  /** what a multiple-choice sample trains on: the letter, or the letter and its option ("B: green") */
  mcTarget?: 'letter' | 'letter-option';
  /** multiple choice: list the options in the question (MMStar's `\nOptions: A: ..`), or not */
  inlineOptions?: boolean;
  tasks?: Task[];
  /** curriculum: consecutive index ranges (from 0) whose samples ask only these question types; they come first, in this order, in every epoch */
  curriculum?: { tasks: Task[]; count: number }[];
  orderSeed: number;
}

/** the curriculum stage of sample `index`, if any */
function curriculumStage(stages: { tasks: Task[]; count: number }[] | undefined, index: number) {
  let end = 0;
  for (const st of stages ?? []) if (index < (end += st.count)) return st;
  return undefined;
}

export class SyntheticShapes implements Dataset {
  readonly name: string;
  /** keys sample ids and the epoch order (unchanged by `name:`) */
  private readonly key: string;
  private cache = new Map<number, Promise<Uint8Array>>();
  constructor(private o: ShapesOptions) {
    this.key = `synthetic-shapes/${o.split}`;
    this.name = o.name ?? `shapes-${o.split}`;
  }
  async size(): Promise<number> {
    return this.o.count;
  }

  /** the sample at `index` (its PNG rendered on first use and cached) */
  async get(index: number): Promise<Sample> {
    const o = this.o;
    const tasks = curriculumStage(o.curriculum, index)?.tasks ?? o.tasks;
    const scene = makeScene(o.seed, SPLITS[o.split], index, o.format, o.shuffleOptions, tasks);
    let png = this.cache.get(index);
    if (!png) {
      png = sharp(Buffer.from(sceneSvg(scene, o.imageSize)))
        .png({ compressionLevel: 1 })
        .toBuffer()
        .then((b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
      this.cache.set(index, png);
    }
    const inline = scene.mc && o.inlineOptions !== false;
    const q = (inline ? QUESTIONS : SHORT_QUESTIONS)[scene.task];
    const letter = String.fromCharCode(65 + scene.choices.indexOf(scene.answer));
    const sample: Sample = {
      id: `${this.key}#${index}`,
      image: await png,
      question: inline ? `${q}\n${formatOptions(scene.choices)}` : q,
      answer: scene.mc ? letter : scene.answer,
      category: scene.task,
    };
    if (scene.mc) {
      sample.choices = scene.choices;
      if (o.mcTarget === 'letter-option') sample.target = `${letter}: ${scene.answer}`;
    }
    return sample;
  }

  async *samples(opts: { epoch?: number; skip?: number } = {}): AsyncIterable<Sample> {
    const n = this.o.count;
    let order = this.o.shuffle ? permutation(n, mixSeed(this.o.orderSeed, hashString(this.key), opts.epoch ?? 0)) : null;
    const stages = this.o.curriculum ?? [];
    if (order && stages.length) {
      // curriculum: each stage's samples keep their place (stage by stage, then the rest), each
      // part shuffled in itself
      const stageOf = (i: number) => {
        let end = 0;
        for (let k = 0; k < stages.length; k++) if (i < (end += stages[k].count)) return k;
        return stages.length;
      };
      const parts: number[][] = Array.from({ length: stages.length + 1 }, () => []);
      for (const i of order) parts[stageOf(i)].push(i);
      order = Int32Array.from(parts.flat());
    }
    // render a few ahead so sharp's pool works in parallel with the consumer
    const AHEAD = 256;
    const at = (k: number) => (order ? order[k] : k);
    const pending: Promise<Sample>[] = [];
    let next = opts.skip ?? 0;
    while (pending.length < AHEAD && next < n) pending.push(this.get(at(next++)));
    while (pending.length) {
      const s = await pending.shift()!;
      if (next < n) pending.push(this.get(at(next++)));
      yield s;
    }
  }
}

export default definePlugin({
  kind: 'dataset',
  name: 'synthetic-shapes',
  description: 'Coloured shapes rendered from SVG, with colour / shape / count / position questions (open or MMStar-style multiple choice), generated from a seed; disjoint train/val/test',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      split: { type: 'string', enum: ['train', 'val', 'test'], default: 'train', description: 'which disjoint stream of samples' },
      count: { type: 'integer', minimum: 1, default: 1000, description: 'number of samples' },
      format: { type: 'string', enum: ['open', 'multiple-choice', 'mixed'], default: 'mixed', description: 'open answers (a word or digit), 4-option multiple choice with the letter as answer, or both (odd indices multiple choice)' },
      seed: { type: 'integer', minimum: 0, default: 0, description: 'content seed (sample i of a split is fixed by seed, split and i)' },
      image_size: { type: 'integer', minimum: 8, default: 64, description: 'side of the rendered PNG in pixels' },
      tasks: { type: 'array', items: { type: 'string', enum: ['color', 'shape', 'count', 'position'] }, minItems: 1, description: 'question types to draw from (default: all four)' },
      shuffle: { type: 'boolean', description: "reshuffle the order every epoch (seeded by runtime.seed); default: true for data.train, false otherwise" },
      shuffle_options: { type: 'boolean', default: false, description: 'multiple choice: shuffle the option order per sample (default: a fixed order per question type)' },
      inline_options: { type: 'boolean', default: true, description: 'multiple choice: list the 4 options in the question (MMStar format); false asks the bare question (with the fixed option order the letter still names one answer)' },
      curriculum: {
        type: 'array',
        description: 'a curriculum: consecutive ranges of samples (from index 0), each asking only its `tasks`; they come first, stage by stage, in every (shuffled) epoch; the remaining samples use `tasks`',
        items: {
          type: 'object', additionalProperties: false, required: ['tasks', 'count'],
          properties: {
            tasks: { type: 'array', items: { type: 'string', enum: ['color', 'shape', 'count', 'position'] }, minItems: 1 },
            count: { type: 'integer', minimum: 1 },
          },
        },
      },
      mc_target: { type: 'string', enum: ['letter', 'letter-option'], default: 'letter', description: 'multiple choice: train on the letter alone (as MMStar), or on the letter and its option ("B: green"; beware: answers of different lengths leak through the left-padded positions, see docs/data.md). Evaluation always checks the letter' },
      name: datasetNameOption('shapes-<split>, e.g. shapes-test'),
    },
  },
  create(o, ctx) {
    return new SyntheticShapes({
      name: o.name,
      split: o.split,
      count: o.count,
      seed: o.seed,
      format: o.format,
      imageSize: o.image_size,
      shuffle: o.shuffle ?? ctx.role === 'train',
      shuffleOptions: o.shuffle_options,
      mcTarget: o.mc_target ?? 'letter',
      inlineOptions: o.inline_options ?? true,
      tasks: o.tasks as Task[] | undefined,
      curriculum: o.curriculum as { tasks: Task[]; count: number }[] | undefined,
      orderSeed: ctx.seed ?? 0,
    });
  },
});
