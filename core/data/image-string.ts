// nanoVLM HEAD's image tokens in the text (4e0c096: models/config.py vlm_extra_tokens,
// data/processors.py get_image_string). Each image becomes, in order:
//   [`<image: k>` when the sample has several images] `<|global_image|>` + `<|image|>` x L, then, unless
//   the grid is 1 x 1, for each tile (row-major) `<row_i_col_j>` + `<|image|>` x L
// (L = mp_image_token_length), matching the tiles of the image processor (global view first).
// Without a global-image token (a tokenizer lacking it) the global part is left out.

/** HEAD's vlm_extra_tokens, in the dataclass's order (66: image, global image, row/col 1..8). */
export const NANOVLM_HEAD_EXTRA_TOKENS: Record<string, string> = (() => {
  const t: Record<string, string> = { image_token: '<|image|>', global_image_token: '<|global_image|>' };
  for (let i = 1; i <= 8; i++) for (let j = 1; j <= 8; j++) t[`r${i}c${j}`] = `<row_${i}_col_${j}>`;
  return t;
})();

export interface ImageStringTokens {
  image: string;
  /** null: the tokenizer has no global-image token */
  global: string | null;
  /** the token of tile (row i, column j), 1-based */
  tile(i: number, j: number): string;
}

export const HEAD_IMAGE_TOKENS: ImageStringTokens = {
  image: NANOVLM_HEAD_EXTRA_TOKENS.image_token,
  global: NANOVLM_HEAD_EXTRA_TOKENS.global_image_token,
  tile: (i, j) => {
    const t = NANOVLM_HEAD_EXTRA_TOKENS[`r${i}c${j}`];
    if (!t) throw new RangeError(`no image token for tile row ${i} column ${j} (the grid is at most 8 x 8)`);
    return t;
  },
};

/** get_image_string(tokenizer, grids, mp_image_token_length) */
export function imageString(grids: [number, number][], tokenLength: number, tokens: ImageStringTokens = HEAD_IMAGE_TOKENS): string {
  const run = tokens.image.repeat(tokenLength);
  let s = '';
  grids.forEach(([nh, nw], k) => {
    if (grids.length > 1) s += `<image: ${k}>`;
    if (tokens.global !== null) {
      s += tokens.global + run;
      if (nh === 1 && nw === 1) return;
    }
    for (let i = 0; i < nh; i++) for (let j = 0; j < nw; j++) s += tokens.tile(i + 1, j + 1) + run;
  });
  return s;
}
