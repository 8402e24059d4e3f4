// Seeded randomness, the one PRNG of the project: mulberry32, seed mixing (mixSeed for integers,
// hashString for names), Fisher-Yates permutations, and Rng (uniform and normal draws for weight
// initialisation). Everything the loader and the datasets shuffle is a pure function of
// (seed, stream, epoch), so a run is reproducible and a resumed epoch sees the same order; weight
// initialisation is a pure function of (seed, module name); sampling of (seed, row).

/** mulberry32: a 32-bit PRNG returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mix several integers (seed, stream id, epoch, ...) into one 32-bit seed (murmur3 finaliser). */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    let k = Math.imul((p | 0) ^ ((p / 4294967296) | 0), 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Stable 32-bit hash of a string (FNV-1a from `basis`), to derive a stream id from a name. */
export function hashString(s: string, basis = 0x811c9dc5): number {
  let h = basis >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** In-place Fisher-Yates shuffle driven by `rand`. */
export function shuffleInPlace<T>(a: { length: number; [i: number]: T }, rand: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

/** A seeded permutation of 0..n-1. */
export function permutation(n: number, seed: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  shuffleInPlace(p, mulberry32(seed));
  return p;
}

/**
 * Uniform and standard normal draws for weight initialisation (torch.nn.init.normal_ / torch.rand
 * semantics, not their streams): mulberry32 seeded with the run seed hashed with a stream name
 * ("vision", "decoder", ...), so each module's weights depend on the seed and its name only.
 */
export class Rng {
  private readonly rand: () => number;
  private spare: number | null = null;
  constructor(seed: number, stream = '') {
    this.rand = mulberry32(hashString(stream, (seed >>> 0) ^ 0x9e3779b9));
  }
  /** uniform in [0, 1) */
  next(): number {
    return this.rand();
  }
  /** standard normal (Box-Muller) */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
}
