// Built-in evaluator plugins (used by the eval stage and by the train stage every eval_every steps).
// TEMPORARY: empty until core/data (prompt.ts, loader.ts, collator.ts) lands; the evaluators import it.
import type { Plugin } from '../../core/plugin.ts';

export default [] as Plugin[];
