// The `name:` option every dataset plugin takes: a short, stable name for the dataset in metric keys
// (`<evaluator>/<name>/<metric>`, e.g. `multiple-choice/shapes-test/accuracy`), eval tables, the
// model card and `train.best_metric`. The default is short and machine-independent (never a path);
// a plugin's sampling order is keyed separately, so naming a dataset never changes what it yields.
import { basename } from 'node:path';

/** The JSON Schema of the option; a plugin spreads it into its options with its own default text. */
export function datasetNameOption(defaultText: string) {
  return {
    type: 'string',
    minLength: 1,
    maxLength: 64,
    pattern: '^[^/\\s]+$',
    description: `short name in metric keys (<evaluator>/<name>/<metric>), tables and train.best_metric; no "/" or spaces; default: ${defaultText}`,
  } as const;
}

/** a default name from a path or a repo id: its last part without extension and revision, no "/" */
export function shortName(pathOrRepo: string): string {
  const last = basename(pathOrRepo.replace(/@.*$/, '').replace(/[/\\]+$/, ''));
  return last.replace(/\.(parquet|jsonl?)$/i, '').replace(/[\s/]+/g, '-') || 'data';
}
