/**
 * Per-iteration schedules as data (so they are recorded in run configs), evaluated by `scheduleAt(s, iter)`.
 *
 * - `cosine`: linear warm-up from `warmupStart` to `base` over `warmupIters`, then a half-cycle cosine from `base` to
 *   `min` at `totalIters` (MAE `util/lr_sched.py`, DINOv2's `CosineScheduler`), constant `min` afterwards.
 * - `constant`: `value` at every iteration (optionally after a linear warm-up).
 * - `linear`: `from` → `to` over `iters`, then `to` (e.g. DINO teacher temperature warm-up).
 * Weight-decay and momentum schedules use the same kinds (DINOv2 wd cosine 0.04 → 0.4: `{kind:'cosine', base: 0.04, min: 0.4, ...}`).
 */
import { checkKeys } from '../check';

export type Schedule =
  | { kind: 'constant'; value: number; warmupIters?: number }
  | { kind: 'cosine'; base: number; min: number; totalIters: number; warmupIters: number; warmupStart?: number }
  | { kind: 'linear'; from: number; to: number; iters: number };

const KEYS: Record<Schedule['kind'], readonly string[]> = {
  constant: ['kind', 'value', 'warmupIters'],
  cosine: ['kind', 'base', 'min', 'totalIters', 'warmupIters', 'warmupStart'],
  linear: ['kind', 'from', 'to', 'iters'],
};

const VALUE_KEYS: Record<Schedule['kind'], readonly string[]> = {
  constant: ['value'],
  cosine: ['base', 'min', 'warmupStart'],
  linear: ['from', 'to'],
};

/**
 * Validate a schedule: a known kind, no unknown keys, finite values (≥ 0 with `nonNegative`, as learning rates and
 * weight decays must be), iteration counts ≥ 0 and warm-up within the total. Errors name the schedule and the key.
 */
export function checkSchedule(s: Schedule, what = 'Schedule', opts: { nonNegative?: boolean } = {}): Schedule {
  if (s === null || typeof s !== 'object') throw new Error(`${what}: expected a schedule object ({kind: 'constant' | 'cosine' | 'linear', ...}), got ${JSON.stringify(s)}`);
  if (!KEYS[s.kind]) throw new Error(`${what}: unknown kind '${(s as { kind: string }).kind}'; valid: ${Object.keys(KEYS).join(', ')}`);
  checkKeys(`${what}(${s.kind})`, s, KEYS[s.kind]);
  const rec = s as unknown as Record<string, unknown>;
  for (const k of VALUE_KEYS[s.kind]) {
    const v = rec[k];
    if (v === undefined && k === 'warmupStart') continue;
    if (!(typeof v === 'number' && Number.isFinite(v))) throw new Error(`${what}.${k}: expected a finite number, got ${JSON.stringify(v)}`);
    if (opts.nonNegative && v < 0) throw new Error(`${what}.${k}: expected ≥ 0, got ${v}`);
  }
  if (s.kind === 'constant' && s.warmupIters !== undefined && !(s.warmupIters >= 0 && Number.isFinite(s.warmupIters))) {
    throw new Error(`${what}.warmupIters: expected a finite number ≥ 0, got ${JSON.stringify(s.warmupIters)}`);
  }
  if (s.kind === 'cosine') {
    if (!(s.totalIters > 0 && Number.isFinite(s.totalIters))) throw new Error(`${what}: totalIters must be > 0, got ${s.totalIters}`);
    if (!(s.warmupIters >= 0 && s.warmupIters <= s.totalIters)) {
      throw new Error(`${what}: warmupIters must be in [0, totalIters=${s.totalIters}], got ${s.warmupIters}`);
    }
  }
  if (s.kind === 'linear' && !(s.iters > 0 && Number.isFinite(s.iters))) throw new Error(`${what}: iters must be > 0, got ${s.iters}`);
  return s;
}

/** Value of schedule `s` at iteration `it` (0-based). */
export function scheduleAt(s: Schedule, it: number): number {
  switch (s.kind) {
    case 'constant': {
      const w = s.warmupIters ?? 0;
      return w > 0 && it < w ? (s.value * it) / w : s.value;
    }
    case 'cosine': {
      const w = s.warmupIters;
      if (it < w) {
        const start = s.warmupStart ?? 0;
        return start + ((s.base - start) * it) / w;
      }
      if (it >= s.totalIters) return s.min;
      const progress = (it - w) / Math.max(1, s.totalIters - w);
      return s.min + (s.base - s.min) * 0.5 * (1 + Math.cos(Math.PI * progress));
    }
    case 'linear': {
      if (it >= s.iters) return s.to;
      return s.from + ((s.to - s.from) * it) / s.iters;
    }
    default: {
      const never: never = s;
      throw new Error(`scheduleAt: unknown schedule ${JSON.stringify(never)}`);
    }
  }
}

/** MAE's rule: lr = blr · effective batch / 256. */
export function scaledLr(blr: number, effectiveBatch: number): number {
  return (blr * effectiveBatch) / 256;
}
