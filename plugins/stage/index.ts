// The built-in stages, in the order a default recipe runs them (`stages: [load, train, eval, publish]`).
import load from './load.ts';
import train from './train.ts';
import evaluate from './eval.ts';
import publish from './publish.ts';

export default [load, train, evaluate, publish];
