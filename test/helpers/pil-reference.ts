// An independent float64 reading of PIL's BILINEAR resize (Pillow Resample.c), for tests: the same
// triangle filter stretched by the scale when downscaling (antialias), support 1 x scale, pixel
// centres at +0.5, weights normalised per output pixel, horizontal pass then vertical; but in
// float64 weights. `roundBetween` rounds to uint8 after the horizontal pass as Pillow does; with it
// the only difference to Pillow left is its 22-bit fixed-point weights.
export function floatBilinear(src: Uint8Array, w: number, h: number, ow: number, oh: number, roundBetween = true): Uint8Array {
  const weights = (inSize: number, outSize: number) => {
    const scale = inSize / outSize;
    const fs = Math.max(1, scale);
    const rows: { start: number; w: number[] }[] = [];
    for (let o = 0; o < outSize; o++) {
      const center = (o + 0.5) * scale;
      const lo = Math.max(0, Math.trunc(center - fs + 0.5));
      const hi = Math.min(inSize, Math.trunc(center + fs + 0.5));
      const w: number[] = [];
      for (let i = lo; i < hi; i++) w.push(Math.max(0, 1 - Math.abs((i - center + 0.5) / fs)));
      const sum = w.reduce((a, b) => a + b, 0);
      rows.push({ start: lo, w: w.map((x) => x / sum) });
    }
    return rows;
  };
  const wx = ow === w ? null : weights(w, ow);
  const wy = oh === h ? null : weights(h, oh);
  const tmp = new Float64Array(h * ow * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < ow; x++)
      for (let c = 0; c < 3; c++) {
        if (!wx) tmp[(y * ow + x) * 3 + c] = src[(y * w + x) * 3 + c];
        else {
          let s = 0;
          wx[x].w.forEach((k, i) => (s += k * src[(y * w + wx[x].start + i) * 3 + c]));
          tmp[(y * ow + x) * 3 + c] = roundBetween ? Math.min(255, Math.max(0, Math.round(s))) : s;
        }
      }
  const out = new Uint8Array(oh * ow * 3);
  for (let y = 0; y < oh; y++)
    for (let x = 0; x < ow; x++)
      for (let c = 0; c < 3; c++) {
        let s = 0;
        if (!wy) s = tmp[(y * ow + x) * 3 + c];
        else wy[y].w.forEach((k, i) => (s += k * tmp[((wy[y].start + i) * ow + x) * 3 + c]));
        out[(y * ow + x) * 3 + c] = Math.min(255, Math.max(0, Math.round(s)));
      }
  return out;
}

/** CRC-32 (PNG chunks) */
export function crc32(bytes: Uint8Array): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}

/** a PNG whose IHDR claims width x height (the data is a tiny image): a decompression-bomb header */
export function pngWithClaimedSize(png: Uint8Array, width: number, height: number): Uint8Array {
  const out = png.slice();
  const dv = new DataView(out.buffer);
  // signature (8) + length (4) + "IHDR" (4): width at 16, height at 20, CRC over type+data at 29
  dv.setUint32(16, width);
  dv.setUint32(20, height);
  dv.setUint32(29, crc32(out.subarray(12, 29)));
  return out;
}
