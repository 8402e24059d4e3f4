// The run directories a dashboard shows, and what changes in them while training runs:
//   <run>/metrics.jsonl    {type: train, step, loss, grad_norm, lr: {group: value}, tokens_per_s, ...}
//                          {type: eval, step, val_loss, <evaluator>/<dataset>/<metric>, ...}
//   <run>/recipe.yaml      the resolved recipe
//   <run>/eval/results.json  the eval stage's results
//   <run>/samples/step-N.json  sample generations on held-out images at checkpoint N (train.samples)
// A source is a run directory, or a folder of run directories (`runs/`: runs started later appear).
// Files are followed by polling their size every `pollMs` while someone listens (fs.watch misses
// appends on some file systems); only complete lines are read.
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { redact } from '../hub/index.ts';
import { hasModelWeights } from '../weights/model-weights.ts';

export interface RunSummary {
  id: string;
  name: string;
  /** the folder, relative to the working directory when inside it */
  path: string;
  recipe: string | null;
  eval: unknown;
  samples: { step: number; samples: unknown[] }[];
  hasModel: boolean;
  lastStep: number;
}

interface Followed {
  id: string;
  dir: string;
  offset: number;
  partial: string;
  records: Record<string, unknown>[];
  /** records already sent to listeners */
  emitted: number;
  stamp: string;
}

export const isRunDir = (d: string) => existsSync(join(d, 'metrics.jsonl')) || (existsSync(join(d, 'recipe.yaml')) && existsSync(join(d, 'run.json')));
const isDir = (d: string) => {
  try {
    return statSync(d).isDirectory();
  } catch {
    return false;
  }
};

/** The runs under the served sources, their metrics, and change notifications. */
export class RunsWatcher {
  private runs = new Map<string, Followed>();
  private listeners = new Set<(event: string, data: unknown) => void>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    /** run directories or folders of run directories */
    readonly sources: string[],
    private readonly pollMs = 500,
  ) {
    this.scan();
  }

  /** True when some source may hold runs (a run dir or a folder of them, possibly still empty). */
  get any(): boolean {
    return this.sources.length > 0;
  }

  /** Find run directories (new ones in folders of runs included). */
  scan(): string[] {
    const found: string[] = [];
    for (const src of this.sources.map((s) => resolve(s))) {
      if (isRunDir(src)) found.push(src);
      else if (isDir(src)) {
        for (const name of readdirSync(src).sort()) {
          const d = join(src, name);
          if (isDir(d) && isRunDir(d)) found.push(d);
        }
      }
    }
    const added: string[] = [];
    for (const dir of found) {
      if ([...this.runs.values()].some((r) => r.dir === dir)) continue;
      let id = basename(dir).replace(/[^A-Za-z0-9._-]/g, '_');
      for (let k = 2; this.runs.has(id); k++) id = `${basename(dir)}-${k}`;
      this.runs.set(id, { id, dir, offset: 0, partial: '', records: [], emitted: 0, stamp: '' });
      added.push(id);
    }
    return added;
  }

  ids(): string[] {
    return [...this.runs.keys()];
  }

  /** Read what was appended to metrics.jsonl since the last call; returns the new records. */
  private follow(r: Followed): Record<string, unknown>[] {
    const file = join(r.dir, 'metrics.jsonl');
    let size: number;
    try {
      size = statSync(file).size;
    } catch {
      return [];
    }
    if (size < r.offset) Object.assign(r, { offset: 0, partial: '', records: [], emitted: 0 }); // rewritten
    if (size === r.offset) return [];
    const buf = Buffer.alloc(size - r.offset);
    const fd = openSync(file, 'r');
    try {
      readSync(fd, buf, 0, buf.length, r.offset);
    } finally {
      closeSync(fd);
    }
    r.offset = size;
    const text = r.partial + buf.toString('utf8');
    const lines = text.split('\n');
    r.partial = lines.pop() ?? ''; // an incomplete last line waits for its newline
    const fresh: Record<string, unknown>[] = [];
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        const rec = JSON.parse(line);
        if (rec && typeof rec === 'object') fresh.push(rec);
      } catch {
        // a damaged line is skipped, the rest still shows
      }
    }
    r.records.push(...fresh);
    return fresh;
  }

  metrics(id: string): Record<string, unknown>[] | null {
    const r = this.runs.get(id);
    if (!r) return null;
    this.follow(r);
    return r.records;
  }

  dir(id: string): string | null {
    return this.runs.get(id)?.dir ?? null;
  }

  summary(id: string): RunSummary | null {
    const r = this.runs.get(id);
    if (!r) return null;
    this.follow(r);
    const read = (p: string) => {
      try {
        return readFileSync(join(r.dir, p), 'utf8');
      } catch {
        return null;
      }
    };
    const json = (p: string) => {
      const t = read(p);
      try {
        return t === null ? null : JSON.parse(t);
      } catch {
        return null;
      }
    };
    const samplesDir = join(r.dir, 'samples');
    const samples = isDir(samplesDir)
      ? readdirSync(samplesDir)
          .filter((f) => /^step-\d+\.json$/.test(f))
          .map((f) => json(join('samples', f)))
          .filter((s): s is { step: number; samples: unknown[] } => !!s && Array.isArray(s.samples))
          .sort((a, b) => a.step - b.step)
      : [];
    const rel = relative(process.cwd(), r.dir);
    const recipe = read('recipe.yaml');
    const lastTrain = [...r.records].reverse().find((x) => typeof x.step === 'number');
    return {
      id: r.id,
      name: basename(r.dir),
      path: rel && !rel.startsWith('..') ? rel : r.dir,
      recipe: recipe === null ? null : redact(recipe),
      eval: json(join('eval', 'results.json')),
      samples,
      hasModel: hasModelWeights(join(r.dir, 'model')) || existsSync(join(r.dir, 'checkpoints', 'latest')),
      lastStep: (lastTrain?.step as number) ?? 0,
    };
  }

  /** What makes a summary change (other than metrics): eval results, samples, a model. */
  private stampOf(r: Followed): string {
    const m = (p: string) => {
      try {
        return statSync(join(r.dir, p)).mtimeMs;
      } catch {
        return 0;
      }
    };
    return [m('eval/results.json'), m('samples'), m('model'), m('checkpoints/latest'), m('recipe.yaml')].join(':');
  }

  /**
   * Listen for `metrics` {run, from, records} (records[from...] of the run's metrics) and `run` (a
   * summary) events; returns the unsubscribe function.
   */
  subscribe(fn: (event: string, data: unknown) => void): () => void {
    this.listeners.add(fn);
    if (!this.timer) {
      for (const r of this.runs.values()) {
        this.follow(r);
        r.emitted = r.records.length;
        r.stamp = this.stampOf(r);
      }
      this.timer = setInterval(() => this.poll(), this.pollMs);
    }
    return () => {
      this.listeners.delete(fn);
      if (this.listeners.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = null;
      }
    };
  }

  private emit(event: string, data: unknown): void {
    for (const fn of this.listeners) fn(event, data);
  }

  /** One round of following: new runs, new metric lines, changed summaries. */
  poll(): void {
    for (const id of this.scan()) this.emit('run', this.summary(id));
    for (const r of this.runs.values()) {
      this.follow(r);
      if (r.records.length > r.emitted) {
        this.emit('metrics', { run: r.id, from: r.emitted, records: r.records.slice(r.emitted) });
        r.emitted = r.records.length;
      }
      const stamp = this.stampOf(r);
      if (stamp !== r.stamp) {
        r.stamp = stamp;
        this.emit('run', this.summary(r.id));
      }
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.listeners.clear();
  }
}
