/**
 * Token-merging schedules as data (ToMe `parse_r`, PYRA's `get_merging_schedule`), per-layer token counts and the
 * run-time cap (ToMe `tome/utils.py` `parse_r`, `tome/merge.py`; PYRA `model/tome.py` `get_merging_schedule`).
 *
 * A schedule says how many tokens r_l block l removes. Three forms, as in ToMe:
 * - a number r: the same r in every block;
 * - `{ r, inflect }` with inflect ∈ [−1, 1]: lo = ⌊r(1 − inflect)⌋, hi = 2r − lo, block i gets ⌊lo + i(hi − lo)/(L − 1)⌋
 *   ((r, −1) is ToMe's "decreasing schedule", 2r → 0);
 * - a per-layer list, zero-padded to the depth (a list longer than the depth is an error).
 *
 * At run time block l removes min(r_l, ⌊(N − protected)/2⌋) tokens, N = tokens entering the block and protected =
 * cls (+ distillation) tokens: at most half of the unprotected tokens can go in one layer, so the protected tokens are
 * never merged. `tokenCounts` applies that cap ('cap', ToMe's behaviour) or refuses a schedule that needs it ('error';
 * PYRA sizes W_r by r_l, so its schedule must be feasible as written).
 */
import { checkKeys, lookup, fmtValue } from '../check';

/** r schedule: constant r, ToMe's (r, inflection) pair, or an explicit per-layer list. */
export type RSchedule = number | { readonly r: number; readonly inflect: number } | readonly number[];

/** What to do when a block's r exceeds the run-time cap ⌊(N − protected)/2⌋. */
export type CapPolicy = 'cap' | 'error';

function checkR(what: string, r: unknown): number {
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 0) {
    throw new Error(`${what}: expected a non-negative integer number of tokens to merge, got ${fmtValue(r)}`);
  }
  return r;
}

/**
 * Resolve a schedule into one r per block (ToMe `parse_r`, including its integer truncation of the inflected ramp).
 * @param depth number of blocks L
 * @example resolveSchedule({r: 8, inflect: -1}, 12) // [16, 14, 13, 11, 10, 8, 7, 5, 4, 2, 1, 0]
 */
export function resolveSchedule(schedule: RSchedule, depth: number): number[] {
  if (!Number.isInteger(depth) || depth <= 0) throw new Error(`r schedule: depth must be a positive integer, got ${fmtValue(depth)}`);
  if (Array.isArray(schedule)) {
    const list = schedule as readonly number[];
    if (list.length > depth) {
      throw new Error(
        `r schedule: the per-layer list has ${list.length} entries but the model has only ${depth} blocks ([${list.join(', ')}])`,
      );
    }
    list.forEach((r, i) => checkR(`r schedule[${i}]`, r));
    return [...list, ...new Array<number>(depth - list.length).fill(0)];
  }
  let r: number;
  let inflect = 0;
  if (typeof schedule === 'number') {
    r = checkR('r schedule', schedule);
  } else if (schedule !== null && typeof schedule === 'object') {
    const pair = schedule as { readonly r: number; readonly inflect: number };
    checkKeys('r schedule', pair, ['r', 'inflect']);
    r = checkR('r schedule.r', pair.r);
    inflect = pair.inflect;
    if (typeof inflect !== 'number' || !(inflect >= -1 && inflect <= 1)) {
      throw new Error(`r schedule.inflect: expected a number in [-1, 1], got ${fmtValue(inflect)}`);
    }
  } else {
    throw new Error(`r schedule: expected a number, {r, inflect} or a per-layer list, got ${fmtValue(schedule)}`);
  }
  const lo = Math.trunc(r * (1.0 - inflect));
  const hi = 2 * r - lo;
  if (depth === 1) return [lo];
  const step = (hi - lo) / (depth - 1);
  return Array.from({ length: depth }, (_, i) => Math.trunc(lo + step * i) + 0); // + 0 turns −0 into 0
}

/** The largest r a block may use on N tokens with `protectedTokens` protected: ⌊(N − protected)/2⌋ (≥ 0). */
export function mergeCap(numTokens: number, protectedTokens: number): number {
  return Math.max(0, Math.floor((numTokens - protectedTokens) / 2));
}

export interface TokenCountOptions {
  /** Tokens entering the first block (cls + patches (+ dist)): 197 for a 224² /16 ViT, 198 for DeiT distilled. */
  numTokens: number;
  /** cls (+ distillation) tokens that are never merged (default 1). */
  protectedTokens?: number;
  /** 'cap' (default, ToMe) silently caps r at ⌊(N − protected)/2⌋; 'error' throws when the cap would bind. */
  onCap?: CapPolicy;
}

export interface TokenCounts {
  /** Tokens entering block 0, then after each block (length depth + 1). */
  tokens: number[];
  /** r actually removed by each block (after the cap). */
  r: number[];
  /** Tokens entering each block (pre-merge N). */
  before: number[];
}

/**
 * Token counts through the blocks for a resolved or unresolved schedule.
 * @example tokenCounts(PYRA_SCHEDULES.vit_base_patch16_224.high, 12, {numTokens: 197}).tokens // [197, 157, …, 5]
 */
export function tokenCounts(schedule: RSchedule, depth: number, opts: TokenCountOptions): TokenCounts {
  checkKeys('tokenCounts options', opts, ['numTokens', 'protectedTokens', 'onCap']);
  const rs = resolveSchedule(schedule, depth);
  const prot = opts.protectedTokens ?? 1;
  if (!Number.isInteger(opts.numTokens) || opts.numTokens <= prot) {
    throw new Error(`tokenCounts: numTokens must be an integer > protectedTokens (${prot}), got ${fmtValue(opts.numTokens)}`);
  }
  const policy = opts.onCap ?? 'cap';
  if (policy !== 'cap' && policy !== 'error') throw new Error(`tokenCounts.onCap: expected 'cap' or 'error', got ${fmtValue(policy)}`);
  let n = opts.numTokens;
  const tokens = [n];
  const applied: number[] = [];
  const before: number[] = [];
  rs.forEach((r, i) => {
    const cap = mergeCap(n, prot);
    if (r > cap && policy === 'error') {
      throw new Error(
        `r schedule: block ${i} asks to merge r = ${r} of ${n} tokens, but at most ⌊(${n} − ${prot})/2⌋ = ${cap} can be ` +
          `merged without touching the protected cls${prot > 1 ? '/distillation' : ''} token (A-side tokens would run out); ` +
          `lower r at block ${i} to ≤ ${cap}`,
      );
    }
    const eff = Math.min(r, cap);
    before.push(n);
    applied.push(eff);
    n -= eff;
    tokens.push(n);
  });
  return { tokens, r: applied, before };
}

/** A named low/high pair of per-layer schedules for one backbone (PYRA `get_merging_schedule`). */
export interface SchedulePreset {
  /** timm name of the backbone the schedule was made for. */
  backbone: string;
  depth: number;
  /** Tokens entering block 0 at 224². */
  numTokens: number;
  /** cls (+ dist) */
  protectedTokens: number;
  /** ToMe's constant r with the capped last layer (≈ 50 % MACs, ≈ 1.7× throughput). */
  low: readonly number[];
  /** Front-loaded list that leaves 5 tokens (≈ 29 % MACs, ≈ 3.2× throughput). */
  high: readonly number[];
}

const fill = (n: number, v: number): number[] => new Array<number>(n).fill(v);
const HIGH_B = [40, 34, 30, 24, 18, 14, 10, 8, 4, 4, 3, 3] as const;

/**
 * PYRA's released compression schedules (PYRA `model/tome.py` `get_merging_schedule`), keyed by the kit's preset name
 * (the timm name the code used is in `backbone`). No schedule exists for ViT-S / DeiT-S: they serve uncompressed as
 * "smaller model" baselines.
 */
export const PYRA_SCHEDULES = {
  vit_base_patch16_224: {
    backbone: 'vit_base_patch16_224_in21k',
    depth: 12,
    numTokens: 197,
    protectedTokens: 1,
    low: [...fill(11, 16), 10],
    high: HIGH_B,
  },
  vit_large_patch16_224: {
    backbone: 'vit_large_patch16_224_in21k',
    depth: 24,
    numTokens: 197,
    protectedTokens: 1,
    low: [...fill(23, 8), 6],
    high: [20, 19, 18, 17, 15, 13, 13, 12, 10, 9, 8, 6, 6, 4, 4, 4, 3, 3, 2, 2, 1, 1, 1, 1],
  },
  deit_base_distilled_patch16_224: {
    backbone: 'deit_base_distilled_patch16_224',
    depth: 12,
    numTokens: 198,
    protectedTokens: 2,
    low: [...fill(6, 16), ...fill(6, 10)],
    high: HIGH_B,
  },
} as const satisfies Record<string, SchedulePreset>;

export type PyraSchedulePreset = keyof typeof PYRA_SCHEDULES;
export type CompressionLevel = 'low' | 'high';

/**
 * The per-layer list of a PYRA preset.
 * @example pyraSchedule('vit_base_patch16_224', 'high') // [40, 34, 30, 24, 18, 14, 10, 8, 4, 4, 3, 3]
 */
export function pyraSchedule(backbone: PyraSchedulePreset, level: CompressionLevel): number[] {
  const p: SchedulePreset = lookup('PYRA schedule backbone', PYRA_SCHEDULES, backbone);
  if (level !== 'low' && level !== 'high') throw new Error(`PYRA schedule level: expected 'low' or 'high', got ${fmtValue(level)}`);
  return [...p[level]];
}
