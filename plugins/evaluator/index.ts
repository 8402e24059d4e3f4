// Built-in evaluator plugins (used by the eval stage and by the train stage every eval_every steps).
import multipleChoice from './multiple-choice.ts';
import valLoss from './val-loss.ts';
import exactMatch from './exact-match.ts';

export default [multipleChoice, valLoss, exactMatch];
