// The lmms-eval benchmark tasks: each an evaluator plugin (and, except MMStar, which the `mmstar`
// dataset plugin reads, a dataset plugin of the same name for its Hub Parquet layout).
import type { Plugin } from '../../../core/plugin.ts';
import mmstar from './mmstar.ts';
import scienceqa from './scienceqa.ts';
import ai2d from './ai2d.ts';
import textvqa from './textvqa.ts';
import { docvqa, infovqa } from './docvqa.ts';
import chartqa from './chartqa.ts';
import ocrbench from './ocrbench.ts';
import mme from './mme.ts';
import mmmu from './mmmu.ts';

export default [mmstar, scienceqa, ai2d, textvqa, docvqa, infovqa, chartqa, ocrbench, mme, mmmu].flat() as Plugin[];
