/**
 * Teacher targets of the DINOv2 objective (DINOv2 `dinov2/loss/dino_clstoken_loss.py`,
 * `ibot_patch_loss.py`). Both modes run outside the gradient tape (call them before `tf.variableGrads`, or on
 * teacher outputs, which depend on non-trainable variables only); both return row-stochastic targets P [n, K].
 *
 * - **Centering** (`train.centering: centering`, the default config): P = softmax((T − c)/τ_t) row-wise with a running
 *   center c [1, K]. The update c ← m·c + (1 − m)·mean_rows(T) (m = 0.9) is queued after the targets of step k and
 *   applied before the targets of step k+1 — so step k's targets never see step k's own batch. Upstream queues the
 *   batch sum (for an async all-reduce) and applies it lazily at the next call; on one process applying it right after
 *   the targets is the same arithmetic, so `centerTargets` does exactly that and keeps no pending state (a checkpoint
 *   of `center` resumes exactly). The iBOT patch loss has its own center over the masked patch rows.
 * - **Sinkhorn-Knopp** (`sinkhorn_knopp`): Q = exp(T/τ_t)ᵀ [K, n]; Q ← Q/ΣQ; **3** times {Q ← Q/rowsum/K;
 *   Q ← Q/colsum/n}; P = (n·Q)ᵀ. Rows of P sum to 1 exactly; prototype marginals are balanced (≈ n/K per column of P).
 *   n is the number of rows (2B for CLS, the number of masked patches for iBOT); one process = the whole batch.
 * - τ_t: linear warm-up 0.04 → 0.07 over 30 epochs, then 0.07 (`teacherTempSchedule`).
 */
import * as tf from '@tensorflow/tfjs';
import { makeVariable, newScope } from '../tree';
import { Schedule, checkSchedule } from '../train/schedule';
import type { StateUpdate } from '../train/step';
import { fmtValue, checkNumber } from '../check';

/** How teacher logits become targets. */
export type TeacherTargetMode = { kind: 'centering'; momentum: number } | { kind: 'sinkhorn_knopp'; iterations: number };

/** DINOv2 default: centering with momentum 0.9. */
export const CENTERING: TeacherTargetMode = Object.freeze({ kind: 'centering', momentum: 0.9 });
/** Sinkhorn-Knopp with exactly 3 iterations (DINOv2's `sinkhorn_knopp_teacher`). */
export const SINKHORN_KNOPP: TeacherTargetMode = Object.freeze({ kind: 'sinkhorn_knopp', iterations: 3 });

/** Validate a target mode (unknown kind / keys, momentum outside [0, 1), iterations < 1). */
export function checkTargetMode(m: TeacherTargetMode, what = 'TeacherTargetMode'): TeacherTargetMode {
  const keys = m.kind === 'centering' ? ['kind', 'momentum'] : m.kind === 'sinkhorn_knopp' ? ['kind', 'iterations'] : null;
  if (!keys) throw new Error(`${what}: unknown kind '${(m as { kind: string }).kind}'; valid: centering, sinkhorn_knopp`);
  const bad = Object.keys(m).filter((k) => !keys.includes(k));
  if (bad.length) throw new Error(`${what}(${m.kind}): unknown key '${bad[0]}'; valid keys: ${keys.join(', ')}`);
  if (m.kind === 'centering') checkNumber(`${what}.momentum`, m.momentum, { min: 0, lt: 1 });
  if (m.kind === 'sinkhorn_knopp' && !(Number.isInteger(m.iterations) && m.iterations >= 1)) {
    throw new Error(`${what}.iterations: expected an integer ≥ 1, got ${fmtValue(m.iterations)}`);
  }
  return m;
}

/** A running center (one per loss: `dino_loss.center` [1, K], `ibot_patch_loss.center`). */
export interface CenterState {
  /** [1, K], starts at zero (a non-trainable variable; save it in checkpoints). */
  readonly center: tf.Variable;
  readonly momentum: number;
  /** Its checkpoint key (e.g. 'dino_loss.center'), used in messages. */
  readonly path?: string;
}

/** A zero center of width K under `path` (e.g. 'dino_loss.center'). */
export function createCenter(K: number, momentum = 0.9, path = 'dino_loss.center'): CenterState {
  if (!Number.isInteger(K) || K <= 0) throw new Error(`createCenter: K (prototypes) must be a positive integer, got ${fmtValue(K)}`);
  checkNumber('createCenter: momentum', momentum, { min: 0, lt: 1 });
  return { center: makeVariable(newScope('dino-center'), path, new Float32Array(K), [1, K], false), momentum, path };
}

/**
 * Identity with a zero gradient (PyTorch `detach`; tfjs has no `stopGradient`): x ↦ x, ∂/∂x = 0. Call inside a tidy.
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  const f = tf.customGrad(((a: tf.Tensor) => ({ value: a.clone(), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x) as T;
}

function checkLogits(t: tf.Tensor, what: string, K?: number): asserts t is tf.Tensor2D {
  if (t.rank !== 2 || t.shape[0] < 1 || (K !== undefined && t.shape[1] !== K)) {
    throw new Error(`${what}: expected teacher logits [n ≥ 1, ${K ?? 'K'}], got [${t.shape}]`);
  }
}

function checkTemp(temp: number, what: string): void {
  checkNumber(`${what}: teacher temperature`, temp, { gt: 0 });
}

/**
 * Centering targets P = softmax((T − c)/τ) with the current center, then c ← m·c + (1 − m)·mean_rows(T) (used from the
 * next call on). T [n, K] → P [n, K]. Gradient-free (the result is wrapped in `stopGradient`).
 * With `pending`, the center is not assigned: its new value is pushed as a state update for the train step to apply
 * after its finiteness check (and, with gradient accumulation, averaged over the micro-batches — the full-batch
 * update for equal micro-batches). Call inside a tidy then.
 */
export function centerTargets(state: CenterState, teacher: tf.Tensor2D, temp: number, pending?: StateUpdate[]): tf.Tensor2D {
  checkLogits(teacher, 'centerTargets', state.center.shape[1]);
  checkTemp(temp, 'centerTargets');
  const p = tf.tidy(() => stopGradient(tf.softmax(tf.div(tf.sub(teacher, state.center), temp), -1)) as tf.Tensor2D);
  const next = tf.tidy(() => {
    const mean = tf.mean(teacher, 0, true); // [1, K]
    return tf.add(tf.mul(state.center, state.momentum), tf.mul(mean, 1 - state.momentum));
  });
  if (pending) {
    pending.push({ path: state.path ?? state.center.name, variable: state.center, value: next });
  } else {
    state.center.assign(next);
    next.dispose();
  }
  return p;
}

/**
 * Sinkhorn-Knopp targets (DINOv2 `sinkhorn_knopp_teacher`): T [n, K] → P [n, K], rows summing to 1, with balanced
 * prototype marginals. Exactly `iterations` (default 3) row/column normalisations. Gradient-free.
 */
export function sinkhornKnopp(teacher: tf.Tensor2D, temp: number, iterations = 3): tf.Tensor2D {
  checkLogits(teacher, 'sinkhornKnopp');
  checkTemp(temp, 'sinkhornKnopp');
  if (!(Number.isInteger(iterations) && iterations >= 1)) throw new Error(`sinkhornKnopp: iterations must be an integer ≥ 1, got ${fmtValue(iterations)}`);
  return tf.tidy(() => {
    const [n, K] = teacher.shape;
    let q = tf.transpose(tf.exp(tf.div(teacher, temp))) as tf.Tensor2D; // [K, n]
    q = tf.div(q, tf.sum(q));
    for (let i = 0; i < iterations; i++) {
      q = tf.div(tf.div(q, tf.sum(q, 1, true)), K); // prototypes (rows) → 1/K each
      q = tf.div(tf.div(q, tf.sum(q, 0, true)), n); // samples (columns) → 1/n each
    }
    return stopGradient(tf.transpose(tf.mul(q, n))) as tf.Tensor2D; // [n, K]
  });
}

/** Targets for teacher logits by mode: centering (updates `center`, or proposes the update in `pending`) or Sinkhorn-Knopp (no state). */
export function teacherTargets(mode: TeacherTargetMode, teacher: tf.Tensor2D, temp: number, center: CenterState | null, pending?: StateUpdate[]): tf.Tensor2D {
  if (mode.kind === 'centering') {
    if (!center) throw new Error('teacherTargets: centering mode needs a CenterState');
    return centerTargets(center, teacher, temp, pending);
  }
  return sinkhornKnopp(teacher, temp, mode.iterations);
}

/** Teacher temperature warm-up settings (DINOv2: 0.04 → 0.07 over 30 epochs). */
export interface TeacherTemp {
  warmup: number;
  final: number;
  warmupEpochs: number;
}

export const TEACHER_TEMP_DEFAULTS: TeacherTemp = Object.freeze({ warmup: 0.04, final: 0.07, warmupEpochs: 30 });

/** τ_t per iteration: linear warmup → final over warmupEpochs·itersPerEpoch, then constant. */
export function teacherTempSchedule(t: TeacherTemp, itersPerEpoch: number): Schedule {
  checkTemp(t.warmup, 'TeacherTemp.warmup');
  checkTemp(t.final, 'TeacherTemp.final');
  const iters = Math.round(t.warmupEpochs * itersPerEpoch);
  if (iters <= 0) return checkSchedule({ kind: 'constant', value: t.final });
  return checkSchedule({ kind: 'linear', from: t.warmup, to: t.final, iters });
}

/** Mean row entropy of targets P [n, K] (nats): low = sharp. Call inside a tidy. */
export function rowEntropy(p: tf.Tensor2D): tf.Scalar {
  return tf.neg(tf.mean(tf.sum(tf.mul(p, tf.log(tf.add(p, 1e-12))), 1))) as tf.Scalar;
}

/** Entropy of the mean target distribution (nats): near log K = all prototypes used, near 0 = collapse to one. */
export function marginalEntropy(p: tf.Tensor2D): tf.Scalar {
  const m = tf.mean(p, 0);
  return tf.neg(tf.sum(tf.mul(m, tf.log(tf.add(m, 1e-12))))) as tf.Scalar;
}
