/**
 * Compression-rate sweeps: families of merge schedules from no merging to the most a rule allows, each with its token
 * counts and analytic MACs (flops.ts), so accuracy and throughput can be plotted against the compression rate.
 *
 * Rules (all respect the run-time cap ⌊(N − protected)/2⌋ exactly, so every schedule is also valid for PYRA):
 * - 'constant': ToMe's constant r = 0, 1, …, with the capped blocks written as capped (r = 16 on ViT-B/16 is PYRA's
 *   "low" [16×11, 10]); the largest r is the first at which the cap binds in block 0 (more merges nothing more).
 * - 'decreasing': ToMe's (r, inflect = −1) schedule, 2r in block 0 down to 0 in the last (capped the same way).
 * - 'pyraHigh': PYRA's "high" rule generalised to any final token count T: the token profile of the released ViT-B/16
 *   high schedule (197 → 157 → 123 → … → 5), φ(u) = (n(u) − 5)/192 at relative depth u, rescaled to
 *   n_l = round(T + (N − T)·φ(l/L)) (linear in u between the 13 released points). T = 5 on ViT-B/16 gives the released
 *   list exactly; on ViT-L/16 it gives a 24-block list within a few tokens of the released one. T runs from N (no
 *   merging) down to `protected + 1`.
 */
import { checkKeys } from '../check';
import { VitConfig, numPosPrefix } from '../vit/config';
import { numPatches } from '../vit/params';
import { resolveSchedule, mergeCap, tokenCounts } from './schedule';
import { vitMacs } from './flops';
import { PyraVariant } from './pyra';

export type SweepRule = 'constant' | 'decreasing' | 'pyraHigh';

/** Tokens after each block of PYRA's released ViT-B/16 "high" schedule (the profile of the 'pyraHigh' rule). */
export const PYRA_HIGH_PROFILE_TOKENS = [197, 157, 123, 93, 69, 51, 37, 27, 19, 15, 11, 8, 5] as const;

export interface ScheduleFamilyOptions {
  /** Tokens entering block 0 (cls (+ dist) + patches). */
  numTokens: number;
  /** Never-merged tokens (cls, + the DeiT distillation token); default 1. */
  protectedTokens?: number;
  /**
   * Which parameter values to use: r values for 'constant' / 'decreasing', final token counts for 'pyraHigh'. Default:
   * every value from no merging to the rule's maximum.
   */
  values?: readonly number[];
}

export interface SchedulePoint {
  rule: SweepRule;
  /** r ('constant', 'decreasing') or the final token count T ('pyraHigh'). */
  param: number;
  /** Per-block r, cap applied (feasible as written). */
  schedule: number[];
  /** Tokens entering block 0, then after each block. */
  tokens: number[];
}

function capped(rs: readonly number[], depth: number, n0: number, prot: number): { schedule: number[]; tokens: number[] } {
  const c = tokenCounts(rs, depth, { numTokens: n0, protectedTokens: prot, onCap: 'cap' });
  return { schedule: c.r, tokens: c.tokens };
}

/** The 'pyraHigh' profile φ at relative depth u ∈ [0, 1] (linear between the released points). */
function highProfile(u: number): number {
  const P = PYRA_HIGH_PROFILE_TOKENS;
  const L = P.length - 1;
  const x = Math.min(1, Math.max(0, u)) * L;
  const i = Math.min(L - 1, Math.floor(x));
  const t = x - i;
  const n = P[i] * (1 - t) + P[i + 1] * t;
  return (n - P[L]) / (P[0] - P[L]);
}

/** 'pyraHigh' schedule to final count T: rescaled profile, then made monotone and cap-feasible. */
function highSchedule(depth: number, n0: number, prot: number, T: number): number[] {
  const want = Array.from({ length: depth + 1 }, (_, l) => Math.round(T + (n0 - T) * highProfile(l / depth)));
  // most tokens block l may leave so that T stays reachable with the remaining blocks at their caps
  const reach = (l: number): number => {
    let n = T;
    while (n < n0 && minFinalTokens(depth - l, n + 1, prot) <= T) n += 1;
    return n;
  };
  const tokens = [n0];
  for (let l = 1; l <= depth; l++) {
    const prev = tokens[l - 1];
    const floor = prev - mergeCap(prev, prot); // fewest tokens this block can leave
    tokens.push(Math.min(prev, Math.max(floor, Math.min(want[l], reach(l)), T)));
  }
  if (tokens[depth] !== T) throw new Error(`pyraHigh rule: ${T} final tokens cannot be reached from ${n0} in ${depth} blocks (cap ⌊(N − ${prot})/2⌋ per block)`);
  return tokens.slice(1).map((n, l) => tokens[l] - n);
}

/** Fewest final tokens reachable from n0 in `depth` blocks when every block merges the cap. */
function minFinalTokens(depth: number, n0: number, prot: number): number {
  let n = n0;
  for (let l = 0; l < depth; l++) n -= mergeCap(n, prot);
  return n;
}

/**
 * A family of schedules for a model of `depth` blocks and `numTokens` input tokens, ordered from no merging to the
 * most merging (each distinct effective schedule once).
 * @example scheduleFamily('constant', 12, {numTokens: 197}).find(p => p.param === 16)!.schedule // [16 ×11, 10]
 */
export function scheduleFamily(rule: SweepRule, depth: number, opts: ScheduleFamilyOptions): SchedulePoint[] {
  checkKeys('scheduleFamily options', opts, ['numTokens', 'protectedTokens', 'values']);
  const prot = opts.protectedTokens ?? 1;
  const n0 = opts.numTokens;
  if (!Number.isInteger(n0) || n0 <= prot) throw new Error(`scheduleFamily: numTokens must be an integer > protectedTokens (${prot}), got ${n0}`);
  if (!Number.isInteger(depth) || depth <= 0) throw new Error(`scheduleFamily: depth must be a positive integer, got ${depth}`);
  const points: SchedulePoint[] = [];
  const seen = new Set<string>();
  const push = (param: number, rs: readonly number[]): void => {
    const c = capped(rs, depth, n0, prot);
    const key = c.schedule.join(',');
    if (seen.has(key)) return;
    seen.add(key);
    points.push({ rule, param, ...c });
  };
  if (rule === 'constant' || rule === 'decreasing') {
    const rMax = rule === 'constant' ? mergeCap(n0, prot) : Math.ceil(mergeCap(n0, prot) / 2);
    const values = opts.values ?? Array.from({ length: rMax + 1 }, (_, r) => r);
    for (const r of values) {
      if (!Number.isInteger(r) || r < 0) throw new Error(`scheduleFamily(${rule}): r values must be non-negative integers, got ${r}`);
      push(r, resolveSchedule(rule === 'constant' ? r : { r, inflect: -1 }, depth));
    }
  } else if (rule === 'pyraHigh') {
    const tMin = minFinalTokens(depth, n0, prot);
    const values = opts.values ?? Array.from({ length: n0 - tMin + 1 }, (_, i) => n0 - i);
    for (const T of values) {
      if (!Number.isInteger(T) || T < tMin || T > n0) throw new Error(`scheduleFamily(pyraHigh): final token counts must be integers in [${tMin}, ${n0}], got ${T}`);
      push(T, highSchedule(depth, n0, prot, T));
    }
  } else {
    throw new Error(`scheduleFamily: rule must be 'constant', 'decreasing' or 'pyraHigh', got ${String(rule)}`);
  }
  return points.sort((a, b) => b.tokens.reduce((s, t) => s + t, 0) - a.tokens.reduce((s, t) => s + t, 0));
}

export interface SweepPoint extends SchedulePoint {
  /** Analytic MACs per image (flops.ts rule; PYRA's generators when `pyra`). */
  macs: number;
  gmacs: number;
  /** macs / unmerged macs (1 = no compression). */
  macsRatio: number;
  /** 1 − macsRatio: the share of MACs removed. */
  compression: number;
}

/**
 * `scheduleFamily` for a model config (depth, input tokens, protected cls (+ dist) from the config), with MACs per
 * schedule: the x-axis of accuracy / throughput vs compression-rate plots.
 * @example compressionSweep(vitConfig('vit_base_patch16_224'), 'pyraHigh', {values: [197, 101, 37, 5]}).map(p => p.macsRatio)
 */
export function compressionSweep(
  cfg: VitConfig,
  rule: SweepRule,
  opts: { values?: readonly number[]; pyra?: boolean | Partial<PyraVariant> } = {},
): SweepPoint[] {
  checkKeys('compressionSweep options', opts, ['values', 'pyra']);
  if (cfg.numRegisters > 0) throw new Error(`compressionSweep: the model has ${cfg.numRegisters} register tokens; token merging protects only cls and distillation tokens`);
  const prot = numPosPrefix(cfg);
  const fam = scheduleFamily(rule, cfg.depth, { numTokens: prot + numPatches(cfg), protectedTokens: prot, values: opts.values });
  const base = vitMacs(cfg).total;
  return fam.map((p) => {
    const m = vitMacs(cfg, { schedule: p.schedule, pyra: opts.pyra ?? false, onCap: 'error' });
    return { ...p, macs: m.total, gmacs: m.gmacs, macsRatio: m.total / base, compression: 1 - m.total / base };
  });
}
