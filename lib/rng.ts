/**
 * Seeded pseudo-random numbers, identical on every backend (pure JS, no tfjs kernels).
 *
 * `Rng` is a splitmix32/mulberry-style 32-bit generator: fast, small state, good enough for initialisation, shuffles,
 * masks and augmentation. Streams are derived, never shared: `rng.fork('dropPath')` or `Rng.derive(seed, step)` give
 * independent generators, so a training step's randomness depends only on (seed, step) and resuming from a checkpoint
 * reproduces an uninterrupted run.
 */

/** 32-bit string/number hash (FNV-1a over the characters), used to derive stream seeds from labels. */
export function hash32(...parts: Array<string | number>): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    const s = typeof p === 'number' ? `#${p}` : `$${p}`;
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  }
  return h >>> 0;
}

export class Rng {
  private state: number;
  /** The seed this generator started from (for records). */
  readonly seed: number;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new Error(`Rng: seed must be a finite number, got ${seed}`);
    this.seed = seed >>> 0;
    this.state = this.seed;
  }

  /** A generator for (seed, ...labels), independent of any other label combination. */
  static derive(seed: number, ...labels: Array<string | number>): Rng {
    return new Rng(hash32(seed, ...labels));
  }

  /** Next raw 32-bit unsigned integer. */
  nextU32(): number {
    this.state = (this.state + 0x9e3779b9) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform in [lo, hi). */
  uniform(lo = 0, hi = 1): number {
    return lo + (hi - lo) * this.next();
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Standard normal (Box-Muller; one value per call, the partner is dropped for simplicity of the stream). */
  normal(mean = 0, std = 1): number {
    let u = this.next();
    while (u <= 1e-12) u = this.next();
    const v = this.next();
    return mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** A seed for tfjs random ops (they take a number seed). */
  seedInt(): number {
    return this.nextU32() & 0x7fffffff;
  }

  /** An independent child stream labelled `label`. */
  fork(label: string | number): Rng {
    return new Rng(hash32(this.nextU32(), label));
  }

  /** In-place Fisher-Yates shuffle; returns the array. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }

  /** A random permutation of 0..n-1. */
  permutation(n: number): number[] {
    return this.shuffle(Array.from({ length: n }, (_, i) => i));
  }
}
