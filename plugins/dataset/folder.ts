// A folder the way a user has data on disk: images plus `data.jsonl`, one JSON object per line:
//   {"image": "a.png", "question": "What is this?", "answer": "a cat"}
// optional: "choices": ["x", "y", ...] (multiple choice; answer = the letter, or the option's text,
// which becomes its letter), "category", "id".
// Multi-image, multi-turn chat samples (nanoVLM HEAD's data, as the_cauldron's `images` + `texts`):
//   {"images": ["a.png", "b.png"], "turns": [{"user": "...", "assistant": "..."}, ...]}
// `images` may be empty (a text-only sample); the first image and turn are also the sample's
// `image`, `question`, `answer` (the v0.1 path reads those; the chat path reads every image and turn).
// A line that is not a JSON object stops with a UserError naming file:line; a line with a missing
// field or image file becomes a bad sample (skipped and counted by the loader).
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve, relative, isAbsolute } from 'node:path';
import { datasetNameOption, shortName } from '../../core/data/name.ts';
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { UserError } from 'nanovlm-ts/plugin-api';
import { hashString, mixSeed, permutation } from 'nanovlm-ts/plugin-api';
import type { Dataset, Sample } from 'nanovlm-ts/plugin-api';

interface Entry {
  line: number;
  image?: string;
  images?: unknown;
  turns?: unknown;
  question?: unknown;
  answer?: unknown;
  choices?: unknown;
  category?: unknown;
  id?: unknown;
}

export function parseJsonl(file: string, textContent: string): Entry[] {
  const out: Entry[] = [];
  const lines = textContent.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new UserError(`invalid JSON: ${(e as Error).message}`, {
        where: { file, line: i + 1 },
        hint: 'each line of data.jsonl must be one JSON object like {"image": "a.png", "question": "...", "answer": "..."}',
      });
    }
    if (!v || typeof v !== 'object' || Array.isArray(v))
      throw new UserError(`expected a JSON object, got ${Array.isArray(v) ? 'an array' : typeof v}`, {
        where: { file, line: i + 1 },
        hint: 'each line of data.jsonl must be one JSON object like {"image": "a.png", "question": "...", "answer": "..."}',
      });
    out.push({ ...(v as object), line: i + 1 } as Entry);
  });
  return out;
}

export class FolderDataset implements Dataset {
  readonly name: string;
  constructor(
    private dir: string,
    private file: string,
    private entries: Entry[],
    private shuffle: boolean,
    private orderSeed: number,
    name?: string,
  ) {
    this.name = name ?? shortName(dir);
  }
  async size(): Promise<number> {
    return this.entries.length;
  }

  private async load(e: Entry): Promise<Sample> {
    const where = `${relative(process.cwd(), this.file) || this.file}:${e.line}`;
    const s: Sample = {
      id: typeof e.id === 'string' ? `${where} (${e.id})` : where,
      image: new Uint8Array(0),
      question: typeof e.question === 'string' ? e.question : '',
      answer: typeof e.answer === 'string' ? e.answer : typeof e.answer === 'number' ? String(e.answer) : '',
    };
    if (Array.isArray(e.choices)) {
      s.choices = e.choices.map(String);
      // the answer may be given as the option's text: the evaluators compare letters
      const i = /^[A-Z]$/.test(s.answer.trim()) ? -1 : s.choices.findIndex((c) => c.trim().toLowerCase() === s.answer.trim().toLowerCase());
      if (i >= 0) s.answer = String.fromCharCode(65 + i);
    }
    if (typeof e.category === 'string') s.category = e.category;
    if (e.turns !== undefined) {
      if (!Array.isArray(e.turns) || e.turns.some((t) => !t || typeof t !== 'object' || typeof t.user !== 'string' || typeof t.assistant !== 'string')) {
        s.problem = '"turns" must be a list of {"user": "...", "assistant": "..."} objects';
        return s;
      }
      s.turns = e.turns.map((t: { user: string; assistant: string }) => ({ user: t.user, assistant: t.assistant }));
      if (s.turns.length) [s.question, s.answer] = [s.turns[0].user, s.turns[0].assistant];
    }
    if (e.images !== undefined) {
      if (!Array.isArray(e.images) || e.images.some((f) => typeof f !== 'string' || !f)) {
        s.problem = '"images" must be a list of image file names';
        return s;
      }
      s.images = [];
      for (const f of e.images as string[]) {
        try {
          s.images.push(new Uint8Array(await readFile(isAbsolute(f) ? f : join(this.dir, f))));
        } catch (err) {
          s.problem = `cannot read image ${f}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
          return s;
        }
      }
      if (s.images.length) s.image = s.images[0];
      return s;
    }
    if (typeof e.image !== 'string' || !e.image) {
      s.problem = 'no "image" field';
      return s;
    }
    const p = isAbsolute(e.image) ? e.image : join(this.dir, e.image);
    try {
      s.image = new Uint8Array(await readFile(p));
    } catch (err) {
      s.problem = `cannot read image ${e.image}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
    }
    return s;
  }

  async *samples(opts: { epoch?: number; skip?: number } = {}): AsyncIterable<Sample> {
    const n = this.entries.length;
    const order = this.shuffle ? permutation(n, mixSeed(this.orderSeed, hashString(`folder:${this.dir}`), opts.epoch ?? 0)) : null;
    const at = (k: number) => this.entries[order ? order[k] : k];
    const pending: Promise<Sample>[] = [];
    let next = opts.skip ?? 0;
    while (pending.length < 16 && next < n) pending.push(this.load(at(next++)));
    while (pending.length) {
      const s = await pending.shift()!;
      if (next < n) pending.push(this.load(at(next++)));
      yield s;
    }
  }
}

export default definePlugin({
  kind: 'dataset',
  name: 'folder',
  description: 'a directory of images plus data.jsonl lines {"image", "question", "answer"[, "choices", "category"]} or chat lines {"images": [...], "turns": [{"user", "assistant"}, ...]}',
  options: {
    type: 'object',
    additionalProperties: false,
    required: ['path'],
    properties: {
      path: { type: 'string', description: 'the folder (relative to the recipe); image paths in the jsonl are relative to it' },
      file: { type: 'string', default: 'data.jsonl', description: 'the JSON-lines file inside the folder' },
      shuffle: { type: 'boolean', description: 'reshuffle every epoch (seeded by runtime.seed); default: true under data.train' },
      name: datasetNameOption("the folder's name (photos for data/photos)"),
    },
  },
  create(o, ctx) {
    const dir = resolve(ctx.recipeDir ?? '.', o.path);
    const file = join(dir, o.file);
    if (!existsSync(file))
      throw new UserError(`no ${o.file} in ${dir}`, { where: { yamlPath: `${ctx.yamlPath}.path` }, hint: 'the folder needs a data.jsonl with one {"image", "question", "answer"} object per line' });
    const entries = parseJsonl(file, readFileSync(file, 'utf8'));
    if (!entries.length) throw new UserError(`${file} has no samples`, { where: { file } });
    return new FolderDataset(dir, file, entries, o.shuffle ?? ctx.role === 'train', ctx.seed ?? 0, o.name);
  },
});
