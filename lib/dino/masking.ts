/**
 * iBOT masks for the student's global crops (DINOv2 `dinov2/data/masking.py`, `dinov2/data/collate.py`).
 *
 * Per batch of n = 2B global-crop images (crop-major: g1 of every image, then g2):
 * - ⌊n·p⌋ images get a mask (`maskProbability` p = 0.5); the i-th of them targets ⌊N·U(r_i, r_{i+1})⌋ patches with
 *   r = linspace(0.1, 0.5, ⌊n·p⌋ + 1), so the ratios are spread over [0.1, 0.5]; the others get an empty mask;
 *   the list of masks is then shuffled over the batch.
 * - Block-wise generator (BEiT): while fewer than the target are masked, up to 10 proposals of a rectangle with area
 *   U(minNumPatches = 4, cap) and aspect ratio log-uniform in [0.3, 1/0.3] (h = round(√(area·ar)), w = round(√(area/ar)),
 *   h < H and w < W strictly, top/left uniform); a proposal is accepted if it adds between 1 and `cap` new patches,
 *   where cap = min(target − masked, maxNumPatches = ⌊0.5·N⌋). Stops when a round adds nothing. The count never
 *   exceeds the target, hence never 50 % of the patches.
 * Randomness comes from one `Rng` (Python's `random` in upstream), so masks are reproducible by seed, not bit-equal
 * to upstream's.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../rng';
import { checkKeys, fmtValue, checkNumber } from '../check';

export interface IbotMaskConfig {
  /** [min, max] mask ratio of masked images (DINOv2: [0.1, 0.5]). */
  ratioMinMax: readonly [number, number];
  /** Share of the global-crop images that get a mask (DINOv2: 0.5). */
  maskProbability: number;
  /** Cap of one proposal, as a share of N (DINOv2: 0.5 ⇒ `max_num_patches` = 0.5·N). */
  maxRatio: number;
  /** Smallest rectangle area proposed (4). */
  minNumPatches: number;
  /** Smallest aspect ratio (0.3; the largest is its inverse). */
  minAspect: number;
}

export const IBOT_MASK_DEFAULTS: IbotMaskConfig = Object.freeze({
  ratioMinMax: [0.1, 0.5] as const,
  maskProbability: 0.5,
  maxRatio: 0.5,
  minNumPatches: 4,
  minAspect: 0.3,
});

const KEYS: readonly (keyof IbotMaskConfig)[] = ['ratioMinMax', 'maskProbability', 'maxRatio', 'minNumPatches', 'minAspect'];

/** Validated mask config from defaults + overrides. */
export function ibotMaskConfig(o: Partial<IbotMaskConfig> = {}): IbotMaskConfig {
  checkKeys('IbotMaskConfig', o, KEYS);
  const c = { ...IBOT_MASK_DEFAULTS, ...o };
  const [lo, hi] = c.ratioMinMax;
  checkNumber('IbotMaskConfig.ratioMinMax[0]', lo, { min: 0, max: 1 });
  checkNumber('IbotMaskConfig.ratioMinMax[1]', hi, { min: 0, max: 1 });
  if (!(lo >= 0 && hi <= 1 && lo <= hi)) throw new Error(`IbotMaskConfig.ratioMinMax: expected 0 ≤ min ≤ max ≤ 1, got [${lo}, ${hi}]`);
  checkNumber('IbotMaskConfig.maskProbability', c.maskProbability, { min: 0, max: 1 });
  checkNumber('IbotMaskConfig.maxRatio', c.maxRatio, { gt: 0, max: 1 });
  checkNumber('IbotMaskConfig.minNumPatches', c.minNumPatches, { min: 0 });
  checkNumber('IbotMaskConfig.minAspect', c.minAspect, { gt: 0, max: 1 });
  return Object.freeze(c);
}

/** One BEiT proposal round (upstream `_mask`): mutates `mask` [H·W], returns the number of newly masked patches. */
function proposeBlock(rng: Rng, mask: Uint8Array, H: number, W: number, cap: number, c: IbotMaskConfig): number {
  const logLo = Math.log(c.minAspect);
  const logHi = Math.log(1 / c.minAspect);
  let delta = 0;
  for (let attempt = 0; attempt < 10; attempt++) {
    const area = rng.uniform(c.minNumPatches, cap); // random.uniform(a, b) = a + (b − a)·U, also for b < a
    const ar = Math.exp(rng.uniform(logLo, logHi));
    const h = Math.round(Math.sqrt(area * ar));
    const w = Math.round(Math.sqrt(area / ar));
    if (w < W && h < H) {
      const top = rng.int(H - h + 1); // randint(0, H − h) is inclusive
      const left = rng.int(W - w + 1);
      let already = 0;
      for (let i = top; i < top + h; i++) for (let j = left; j < left + w; j++) already += mask[i * W + j];
      const add = h * w - already;
      if (add > 0 && add <= cap) {
        for (let i = top; i < top + h; i++) {
          for (let j = left; j < left + w; j++) {
            if (!mask[i * W + j]) {
              mask[i * W + j] = 1;
              delta++;
            }
          }
        }
      }
      if (delta > 0) break;
    }
  }
  return delta;
}

/**
 * Block-wise mask of an H×W grid with at most `target` patches (row-major [H·W], 1 = masked).
 * @example blockMask(new Rng(0), 16, 16, 64) // ≤ 64 ones in rectangles
 */
export function blockMask(rng: Rng, H: number, W: number, target: number, config: Partial<IbotMaskConfig> = {}): Uint8Array {
  const c = ibotMaskConfig(config);
  const N = H * W;
  if (!(Number.isInteger(H) && Number.isInteger(W) && H > 0 && W > 0)) throw new Error(`blockMask: grid must be positive integers, got ${fmtValue(H)}x${W}`);
  if (!(Number.isInteger(target) && target >= 0 && target <= N)) throw new Error(`blockMask: target must be an integer in [0, ${N}], got ${fmtValue(target)}`);
  const maxNum = c.maxRatio * N; // upstream: max_num_patches = 0.5 · N (a float)
  const mask = new Uint8Array(N);
  let count = 0;
  while (count < target) {
    const cap = Math.min(target - count, maxNum);
    const d = proposeBlock(rng, mask, H, W, cap, c);
    if (d === 0) break;
    count += d;
  }
  return mask;
}

/** Masks of one batch of global-crop images, as plain data (no tensors). */
export interface IbotMasks {
  /** n = 2B images (crop-major) */
  n: number;
  /** grid [H, W]; N = H·W patches per image */
  grid: [number, number];
  /** [n·N] 1 = masked (row-major per image) */
  mask: Uint8Array;
  /** |M_b| per image */
  counts: number[];
  /** target count per image before generation (⌊N·ratio⌋, 0 for unmasked images) */
  targets: number[];
  /** flat indices b·N + p of the masked positions, image-major (upstream `mask_indices_list`) */
  indices: Int32Array;
  /** 1/|M_b| per masked position (upstream `masks_weight`) */
  weights: Float32Array;
}

/**
 * iBOT masks for n global-crop images on an H×W patch grid (see the module note).
 * @example const m = ibotMasks(Rng.derive(seed, 'masks', step), 2 * B, 16, 16); // DINOv2 defaults
 */
export function ibotMasks(rng: Rng, n: number, H: number, W: number, config: Partial<IbotMaskConfig> = {}): IbotMasks {
  const c = ibotMaskConfig(config);
  if (!(Number.isInteger(n) && n > 0)) throw new Error(`ibotMasks: image count (2B) must be a positive integer, got ${fmtValue(n)}`);
  const N = H * W;
  const nMasked = Math.floor(n * c.maskProbability);
  const [lo, hi] = c.ratioMinMax;
  const probs = Array.from({ length: nMasked + 1 }, (_, i) => (nMasked === 0 ? lo : lo + ((hi - lo) * i) / nMasked)); // linspace
  const list: Array<{ mask: Uint8Array; target: number }> = [];
  for (let i = 0; i < nMasked; i++) {
    const target = Math.floor(N * rng.uniform(probs[i], probs[i + 1]));
    list.push({ mask: blockMask(rng, H, W, target, c), target });
  }
  for (let i = nMasked; i < n; i++) list.push({ mask: new Uint8Array(N), target: 0 });
  rng.shuffle(list);
  const mask = new Uint8Array(n * N);
  const counts: number[] = [];
  const idx: number[] = [];
  list.forEach((m, b) => {
    mask.set(m.mask, b * N);
    let k = 0;
    for (let p = 0; p < N; p++) {
      if (m.mask[p]) {
        idx.push(b * N + p);
        k++;
      }
    }
    counts.push(k);
  });
  const weights = new Float32Array(idx.length);
  let o = 0;
  for (const k of counts) for (let i = 0; i < k; i++) weights[o++] = 1 / Math.max(k, 1);
  return { n, grid: [H, W], mask, counts, targets: list.map((m) => m.target), indices: Int32Array.from(idx), weights };
}

/** Build `IbotMasks` from explicit 0/1 masks [n][N] (tests, or masks made elsewhere). */
export function ibotMasksFrom(masks: ReadonlyArray<ArrayLike<number>>, grid: [number, number]): IbotMasks {
  const N = grid[0] * grid[1];
  const n = masks.length;
  const mask = new Uint8Array(n * N);
  const counts: number[] = [];
  const idx: number[] = [];
  masks.forEach((m, b) => {
    if (m.length !== N) throw new Error(`ibotMasksFrom: mask ${b} has ${m.length} entries, expected ${N} (${grid[0]}x${grid[1]})`);
    let k = 0;
    for (let p = 0; p < N; p++) {
      if (m[p]) {
        mask[b * N + p] = 1;
        idx.push(b * N + p);
        k++;
      }
    }
    counts.push(k);
  });
  const weights = new Float32Array(idx.length);
  let o = 0;
  for (const k of counts) for (let i = 0; i < k; i++) weights[o++] = 1 / k;
  return { n, grid, mask, counts, targets: counts.slice(), indices: Int32Array.from(idx), weights };
}

/** The masks as a float tensor [n, N] (1 = masked) for `vitForward({masks})`. Call inside a tidy. */
export function ibotMaskTensor(m: IbotMasks): tf.Tensor2D {
  const N = m.grid[0] * m.grid[1];
  return tf.tensor2d(Float32Array.from(m.mask), [m.n, N]);
}
