// An example plugin package: a modality projector that averages groups of `pool` neighbouring
// vision tokens, then maps them to the decoder width with a bias-free Linear (a cheaper cousin of
// nanoVLM's pixel shuffle). Everything comes from nanovlm-ts's plugin-author API, as a plugin
// published on npm would import it; nothing here reaches into nanovlm-ts's files.
//   [B, N, D] -> mean over groups of `pool` tokens -> [B, N / pool, D] -> proj -> [B, N / pool, C]
import { definePlugin, linear, normalInit, param, Rng, tf, UserError, type ModuleDescription, type ModulePeers, type PluginContext, type Projector } from 'nanovlm-ts/plugin-api';

export class MeanPoolProjector implements Projector {
  readonly params = new Map<string, tf.Variable>();

  constructor(
    readonly inDim: number, // D (vision width)
    readonly outDim: number, // C (decoder width)
    readonly pool: number,
    rng: Rng,
  ) {
    const shape = [outDim, inDim];
    this.params.set('proj.weight', param(normalInit(rng, shape, 0.02), shape));
  }

  outTokens(inTokens: number): number {
    return inTokens / this.pool;
  }

  /** [B, N, D] -> [B, N / pool, C] */
  forward(x: tf.Tensor3D): tf.Tensor3D {
    const [B, N, D] = x.shape;
    const pooled = x.reshape([B, N / this.pool, this.pool, D]).mean(2) as tf.Tensor3D; // [B, N / pool, D]
    return linear(pooled, this.params.get('proj.weight') as unknown as tf.Tensor2D) as tf.Tensor3D;
  }

  nanovlmConfig(): Record<string, unknown> {
    return {}; // not a nanoVLM projector: nothing to record in config.json
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
  }
}

function checkPool(numTokens: number, pool: number, yamlPath: string): void {
  if (numTokens % pool !== 0) {
    throw new UserError(`mean-pool: ${numTokens} vision tokens do not split into groups of ${pool}`, {
      where: { yamlPath: `${yamlPath}.pool` },
      hint: `use a pool that divides ${numTokens}`,
    });
  }
}

export default definePlugin({
  kind: 'projector',
  name: 'mean-pool',
  description: 'Averages groups of `pool` neighbouring vision tokens, then a bias-free Linear to the decoder width',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: { pool: { type: 'integer', minimum: 1, default: 4, description: 'vision tokens averaged into one' } },
  } as const,
  create(opts, ctx: PluginContext) {
    const vision = ctx.built?.vision;
    const decoder = ctx.built?.decoder;
    if (!vision || !decoder) throw new Error('mean-pool: needs the vision encoder and the decoder built first');
    checkPool(vision.numTokens, opts.pool, ctx.yamlPath);
    return new MeanPoolProjector(vision.hiddenDim, decoder.hiddenDim, opts.pool, new Rng(ctx.seed, 'projector'));
  },
  describe(opts, peers: ModulePeers): ModuleDescription {
    if (!peers.vision || !peers.decoder) throw new Error('mean-pool: describe needs the vision and decoder widths');
    checkPool(peers.vision.numTokens, opts.pool, 'model.projector');
    return { params: { 'proj.weight': [peers.decoder.hiddenDim, peers.vision.hiddenDim] }, numTokens: peers.vision.numTokens / opts.pool, hiddenDim: peers.decoder.hiddenDim };
  },
});
