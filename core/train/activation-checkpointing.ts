// Activation checkpointing per transformer block (train.activation_checkpointing), as
// torch.utils.checkpoint does it (use_reentrant=True):
//   https://github.com/pytorch/pytorch/blob/v1.13.0/torch/utils/checkpoint.py (CheckpointFunction)
// The forward pass of a block runs with the gradient tape off: of the block only its input and its
// output stay alive, not the ~20 intermediate tensors per block the tape would keep for the
// backward pass. In the backward pass the block is run again from its input, this time on a tape,
// and differentiated with the incoming gradient. The recomputation runs the same kernels on the
// same input, so the gradients are the ones without checkpointing; it costs one more forward pass
// of each block. Blocks with dropout cannot be recomputed identically (tf.dropout draws new
// randomness), so a model with dropout > 0 refuses checkpointing (see checkpointBlock's callers).
//
// A model plugin uses it in its block loop:
//   x = checkpointBlock((x) => block(x, i), x, paramsOfBlock(i), opts.checkpoint)
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';

// ---- the scope of one gradient computation (core/train/grads.ts variableGradsLean) --------------

/** ids of the variables the running gradient computation differentiates (null: none running) */
let differentiating: Set<number> | null = null;
/** tensors a recomputation reads besides the block input and parameters, released at the end */
let keptForRecompute: tf.Tensor[] | null = null;

/** runs one gradient computation (forward + backward): see keepForRecompute */
export function gradientScope<T>(varIds: Set<number>, f: () => T): T {
  const outer = { differentiating, keptForRecompute };
  differentiating = varIds;
  keptForRecompute = [];
  try {
    return f();
  } finally {
    tf.dispose(keptForRecompute);
    ({ differentiating, keptForRecompute } = outer);
  }
}

/**
 * A tensor that checkpointed blocks read besides their input and parameters (positions, masks),
 * created during the forward pass: kept until the gradient computation ends, as the blocks are
 * recomputed in the backward pass, after the forward pass's tidy scopes have ended. Outside a
 * gradient computation it is returned as is.
 */
export function keepForRecompute<T extends tf.Tensor | null>(t: T): T {
  if (t && keptForRecompute && !keptForRecompute.includes(t)) keptForRecompute.push(tf.keep(t));
  return t;
}

type Engine = { isTapeOn(): boolean; gradients(f: () => tf.Tensor, xs: tf.Tensor[], dy: tf.Tensor, allowNoGradients?: boolean): { value: tf.Tensor; grads: (tf.Tensor | undefined)[] } };

/**
 * `block(x)` in its own tidy; with `enabled` and a gradient tape recording, checkpointed: only x
 * and the output are kept, the block is recomputed in the backward pass. `params` are the
 * variables the block reads (their gradients come from the recomputation).
 */
export function checkpointBlock<T extends tf.Tensor>(block: (x: T) => T, x: T, params: tf.Variable[], enabled = false): T {
  const engine = tf.engine() as unknown as Engine;
  if (!enabled || !engine.isTapeOn()) return tf.tidy(() => block(x));
  const op = tf.customGrad(((...args: tf.Tensor[]) => {
    const input = args[0] as T;
    const save = args[args.length - 1] as unknown as tf.GradSaveFunc;
    save([input]); // kept (a clone) until the backward pass
    // runs inside the custom op's kernel scope: not taped, intermediates freed on return
    const value = block(input);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
      const input = saved[0] as T;
      // only the variables the caller differentiates (frozen ones get a placeholder nobody reads)
      const wanted = differentiating;
      const diff = params.filter((p) => !wanted || wanted.has(p.id));
      const { value: y, grads } = engine.gradients(() => block(input), [input, ...diff], dy, true);
      y.dispose();
      const byId = new Map<number, tf.Tensor>();
      diff.forEach((p, i) => byId.set(p.id, grads[i + 1] ?? tf.zerosLike(p)));
      const none = tf.scalar(0);
      return [grads[0] ?? tf.zerosLike(input), ...params.map((p) => byId.get(p.id) ?? none)];
    };
    return { value, gradFunc };
  }) as never) as (...xs: tf.Tensor[]) => tf.Tensor;
  return op(x, ...params) as T;
}

/** the variables of block i of a module whose parameters are named "blocks.<i>.<...>" */
export function blockParams(params: Map<string, tf.Variable>, i: number): tf.Variable[] {
  const prefix = `blocks.${i}.`;
  return [...params].filter(([n]) => n.startsWith(prefix)).map(([, v]) => v);
}

/** the error of a module asked to checkpoint blocks that have dropout */
export function noCheckpointWithDropout(module: string, p: number): UserError {
  return new UserError(`train.activation_checkpointing cannot recompute the ${module}'s blocks: they use dropout ${p}, whose randomness a recomputation would not repeat`, {
    where: { yamlPath: 'train.activation_checkpointing' },
    hint: `set the ${module}'s dropout to 0 (nanoVLM v0.1's default) or train.activation_checkpointing: false`,
  });
}
