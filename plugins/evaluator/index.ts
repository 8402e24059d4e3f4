// Built-in evaluator plugins (used by the eval stage and by the train stage every eval_every steps).
import multipleChoice from './multiple-choice.ts';
import valLoss from './val-loss.ts';
import exactMatch from './exact-match.ts';
import tasks from './tasks/index.ts';

// the lmms-eval benchmark tasks (evaluator plugins, plus dataset plugins for their Hub layouts)
export default [multipleChoice, valLoss, exactMatch, ...tasks];
