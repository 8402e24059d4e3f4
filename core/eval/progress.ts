// A progress bar with an ETA for one benchmark task, as a single status line:
//   textvqa  [########------------]  200/500  40%  3.1 samples/s  ETA 1m37s
// `progressReporter` throttles the lines (the first, the last, then at most one per `everyMs`),
// so the plain renderer of logs and CI prints a few lines rather than one per batch.

export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** The line for `done` of `total` samples after `elapsedMs` (total null: no bar, no ETA). */
export function progressLine(name: string, done: number, total: number | null, elapsedMs: number, width = 20): string {
  const rate = elapsedMs > 0 ? done / (elapsedMs / 1000) : 0;
  const speed = done > 0 ? `  ${rate.toFixed(rate < 10 ? 2 : 1)} samples/s` : '';
  if (!total) return `${name}  ${done} samples${speed}`;
  const frac = Math.min(1, done / total);
  const filled = Math.round(frac * width);
  const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
  const eta = done >= total ? `done in ${formatDuration(elapsedMs / 1000)}` : done > 0 ? `ETA ${formatDuration((total - done) / rate)}` : 'ETA ?';
  return `${name}  [${bar}]  ${done}/${total}  ${Math.floor(frac * 100)}%${speed}  ${eta}`;
}

/** A throttled reporter: call it with (done, total); it hands lines to `emit`. */
export function progressReporter(name: string, emit: (line: string) => void, opts: { everyMs?: number; now?: () => number } = {}) {
  const now = opts.now ?? Date.now;
  const every = opts.everyMs ?? 2000;
  const start = now();
  let last = -Infinity;
  return (done: number, total: number | null) => {
    const t = now();
    const final = total != null && done >= total;
    if (done !== 0 && !final && t - last < every) return;
    last = t;
    emit(progressLine(name, done, total, t - start));
  };
}
