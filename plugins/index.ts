// Every built-in plugin, by kind. bin/vlm.js (the composition root) and tests register this list
// in the registry; core/ never imports from plugins/.
import type { Plugin } from '../core/plugin.ts';
import vision from './vision/index.ts';
import projector from './projector/index.ts';
import decoder from './decoder/index.ts';
import tokenizer from './tokenizer/index.ts';
import imageProcessor from './image-processor/index.ts';
import dataset from './dataset/index.ts';
import optimizer from './optimizer/index.ts';
import schedule from './schedule/index.ts';
import evaluator from './evaluator/index.ts';
import publisher from './publisher/index.ts';
import stage from './stage/index.ts';
import adapter from './adapter/index.ts';

const builtins: Plugin[] = [
  ...vision,
  ...projector,
  ...decoder,
  ...tokenizer,
  ...imageProcessor,
  ...dataset,
  ...optimizer,
  ...schedule,
  ...evaluator,
  ...publisher,
  ...stage,
  ...adapter,
];

export default builtins;
