/**
 * The training step and loop.
 *
 * Memory contract: a step is one synchronous `tf.tidy` — forward, gradients, clipping and the optimizer update — and
 * only variables survive it (tests assert `tf.memory().numTensors` is unchanged across steps). The trainable set is a
 * required, ordered map path → variable; nothing else can move (tfjs's default "all trainable variables in the
 * process" is never used).
 *
 * Reproducibility: the step's randomness comes from `Rng.derive(seed, 'step', step)`, and data from a function of the
 * step index, so the same seed on the same backend gives the same numbers, and resuming from a checkpoint at step k
 * continues exactly like the uninterrupted run.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../rng';
import { Optimizer } from './optim';
import { Schedule, scheduleAt } from './schedule';

/** Ordered path → variable map of what trains. */
export type TrainableSet = ReadonlyMap<string, tf.Variable>;

/**
 * Scale gradients so their global L2 norm is at most `maxNorm` (PyTorch `clip_grad_norm_`: coef = max/(norm + 1e-6),
 * applied only when < 1). Returns the clipped grads and the pre-clip norm (a scalar tensor). Call inside a tidy.
 */
export function clipByGlobalNorm(
  grads: Map<string, tf.Tensor>,
  maxNorm: number,
): { grads: Map<string, tf.Tensor>; norm: tf.Scalar } {
  const sq = [...grads.values()].map((g) => tf.sum(tf.square(g)));
  const norm = tf.sqrt(tf.addN(sq)) as tf.Scalar;
  if (!(maxNorm > 0) || !Number.isFinite(maxNorm)) return { grads, norm };
  const coef = tf.minimum(tf.div(maxNorm, tf.add(norm, 1e-6)), 1);
  const out = new Map<string, tf.Tensor>();
  for (const [k, g] of grads) out.set(k, tf.mul(g, coef));
  return { grads: out, norm };
}

export interface StepArgs {
  /** What trains (required; fixed order for the optimizer's lifetime). */
  params: TrainableSet;
  optimizer: Optimizer;
  /** Builds the scalar loss from the current parameters; runs inside the step's tidy and under the gradient tape. */
  loss: () => tf.Scalar;
  lr: number;
  weightDecay?: number;
  /** Global grad-norm clip (0 / undefined = none; the norm is still measured). */
  clipGradNorm?: number;
}

export interface StepResult {
  loss: number;
  gradNorm: number;
}

/** Check that every variable of the set is trainable (tfjs silently returns null gradients for the others). */
export function assertTrainable(params: TrainableSet): void {
  if (params.size === 0) throw new Error('trainStep: the trainable set is empty');
  for (const [path, v] of params) {
    if (v.isDisposed) throw new Error(`trainStep: parameter '${path}' is disposed`);
    if (!v.trainable) throw new Error(`trainStep: parameter '${path}' is in the trainable set but its variable has trainable = false`);
  }
}

/** One optimisation step in one synchronous tidy. Returns the loss and the pre-clip gradient norm. */
export function trainStep(a: StepArgs): StepResult {
  assertTrainable(a.params);
  const vars = [...a.params.values()];
  const pathOf = new Map<string, string>();
  for (const [p, v] of a.params) pathOf.set(v.name, p);
  const [lossT, normT] = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(a.loss, vars);
    const byPath = new Map<string, tf.Tensor>();
    for (const [name, g] of Object.entries(grads)) {
      const p = pathOf.get(name);
      if (p !== undefined && g) byPath.set(p, g);
    }
    const clipped = clipByGlobalNorm(byPath, a.clipGradNorm ?? 0);
    a.optimizer.apply(clipped.grads, a.lr, a.weightDecay ?? 0);
    return [value, clipped.norm];
  });
  const loss = lossT.dataSync()[0];
  const gradNorm = normT.dataSync()[0];
  lossT.dispose();
  normT.dispose();
  if (!Number.isFinite(loss)) throw new Error(`trainStep: loss is ${loss} at optimizer step ${a.optimizer.step}`);
  return { loss, gradNorm };
}

export interface StepInfo {
  step: number;
  loss: number;
  gradNorm: number;
  lr: number;
  weightDecay: number;
  seconds: number;
}

export interface LoopArgs<B> {
  params: TrainableSet;
  optimizer: Optimizer;
  /** Total number of steps of the run (the schedule's horizon); the loop runs steps [startStep, endStep). */
  steps: number;
  startStep?: number;
  /** Stop before this step (default `steps`): lets a run be split into chunks with checkpoints in between. */
  endStep?: number;
  /** The batch of a step (may be async: decoding happens outside the tidy). Its tensors are disposed after the step. */
  batch: (step: number) => B | Promise<B>;
  /** The loss of a batch (runs inside the tidy). `rng` is derived from (seed, step). */
  loss: (batch: B, rng: Rng, step: number) => tf.Scalar;
  lr: Schedule;
  weightDecay?: Schedule;
  clipGradNorm?: number;
  seed: number;
  /** Called after every step (metrics logging, progress bars, checkpoints). */
  onStep?: (info: StepInfo) => void | Promise<void>;
}

/** Dispose every tensor reachable in a batch object. */
function disposeBatch(b: unknown): void {
  const seen = new Set<unknown>();
  const walk = (x: unknown): void => {
    if (x === null || typeof x !== 'object' || seen.has(x)) return;
    seen.add(x);
    if (x instanceof tf.Tensor) {
      if (!(x instanceof tf.Variable) && !x.isDisposed) x.dispose();
      return;
    }
    for (const v of Object.values(x as Record<string, unknown>)) walk(v);
  };
  walk(b);
}

/** Run steps [startStep, endStep) and return their infos. */
export async function trainLoop<B>(a: LoopArgs<B>): Promise<StepInfo[]> {
  const start = a.startStep ?? a.optimizer.step;
  const end = a.endStep ?? a.steps;
  const infos: StepInfo[] = [];
  for (let step = start; step < end; step++) {
    const t0 = Date.now();
    const batch = await a.batch(step);
    const lr = scheduleAt(a.lr, step);
    const weightDecay = a.weightDecay ? scheduleAt(a.weightDecay, step) : 0;
    const rng = Rng.derive(a.seed, 'step', step);
    let r: StepResult;
    try {
      r = trainStep({
        params: a.params,
        optimizer: a.optimizer,
        loss: () => a.loss(batch, rng, step),
        lr,
        weightDecay,
        clipGradNorm: a.clipGradNorm,
      });
    } finally {
      disposeBatch(batch);
    }
    const info: StepInfo = { step, loss: r.loss, gradNorm: r.gradNorm, lr, weightDecay, seconds: (Date.now() - t0) / 1000 };
    infos.push(info);
    if (a.onStep) await a.onStep(info);
  }
  return infos;
}
