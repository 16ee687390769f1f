/**
 * The training step and loop — one step for every objective (supervised, MAE, DINOv2, PYRA, …).
 *
 * A step, in one synchronous `tf.tidy`:
 *   1. gradients computed: the loss of each of k micro-batches under the gradient tape (`tf.variableGrads`, which frees
 *      each micro-batch's activations before the next), gradients keyed by path and averaged over the micro-batches;
 *      the loss may return named metrics and proposed state updates (e.g. the DINO centers) besides the loss;
 *   2. the seam: `reduceGrads(grads)` (synchronous, path-keyed; where a data-parallel worker would sum across threads);
 *   3. grad-norm clipping per clip group (the optimizer's parameter groups: global by default, or per sub-module);
 *   4. the finiteness check, BEFORE any state changes: loss, every metric, every clip group's gradient norm (so every
 *      gradient) and every proposed state update are read back in one `dataSync`; a non-finite one stops the step with
 *      an error naming the term (the loss, the metric, the gradient's path or the overflowing norm, the state update),
 *      the loop step and the lr — or, with `nonFinite: 'skip'`, skips it (counted in `optimizer.skipped`);
 *   5. the optimizer update (per-path lr scale, weight decay, frozen-for-k-iterations groups, several configurations),
 *      then the state updates;
 * and after the tidy, `afterUpdate` (work that must follow the update in its own tidy: the DINO teacher EMA).
 * Non-finite or negative learning rates / weight decays are refused before anything runs.
 *
 * Memory contract: only variables survive a step (tests assert `tf.memory().numTensors` is unchanged across steps,
 * skipped steps and accumulation included). The trainable set is a required, ordered map path → variable; nothing
 * else can move (tfjs's default "all trainable variables in the process" is never used).
 *
 * Reproducibility: the step's randomness comes from `Rng.derive(seed, 'step', step)` (with accumulation
 * `Rng.derive(seed, 'step', step, 'micro', i)` for micro-batch i), and data from a function of (step, micro), so the same
 * seed on the same backend gives the same numbers, and resuming from a checkpoint at step k continues exactly like the
 * uninterrupted run.
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys } from '../check';
import { Rng } from '../rng';
import { Optimizer } from './optim';
import { clipGroups } from './groups';
import { Schedule, checkSchedule, scheduleAt } from './schedule';

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

/** A variable update proposed by the loss; the step applies it after the optimizer update, and only if it applies. */
export interface StateUpdate {
  /** Its name in messages and checkpoints (e.g. 'dino_loss.center'). */
  path: string;
  variable: tf.Variable;
  /** The new value (the variable's shape). With accumulation the micro-batches' values are averaged. */
  value: tf.Tensor;
}

/** What a loss function may return instead of a bare scalar. */
export interface LossOutput {
  /** The scalar that is differentiated. */
  loss: tf.Scalar;
  /** Named extra metrics (scalars or plain numbers), returned as numbers; averaged over micro-batches. */
  metrics?: Record<string, tf.Scalar | number>;
  /** State changes that must wait for the finiteness check (applied after the optimizer update). */
  updates?: readonly StateUpdate[];
}

/** The loss of micro-batch `micro` (0 without accumulation). Runs inside the step's tidy, under the gradient tape. */
export type StepLoss = (micro: number) => tf.Scalar | LossOutput;

/** What to do with a non-finite loss / metric / gradient / state update / learning rate. */
export type NonFinitePolicy = 'error' | 'skip';

/** Grad-norm clip: one max norm for every clip group, or per clip group by name (a missing group is not clipped). */
export type ClipSpec = number | Readonly<Record<string, number>>;

export interface StepArgs {
  /** What trains (required; the optimizer's parameter set, fixed order for the optimizer's lifetime). */
  params: TrainableSet;
  optimizer: Optimizer;
  /** Builds the loss from the current parameters; runs inside the step's tidy and under the gradient tape. */
  loss: StepLoss;
  lr: number;
  weightDecay?: number;
  /** Grad-norm clip per clip group (0 / undefined = none; the norms are still measured). */
  clipGradNorm?: ClipSpec;
  /** The loop iteration (frozen groups, messages). Default: `optimizer.iteration`. */
  iteration?: number;
  /** Micro-batches whose mean gradient makes the one update (default 1). */
  microBatches?: number;
  /** Between "gradients computed" and "gradients applied": maps the path-keyed mean gradients (synchronous). */
  reduceGrads?: (grads: Map<string, tf.Tensor>) => Map<string, tf.Tensor>;
  /** Runs after the update (not after a skipped step), outside the step's tidy. */
  afterUpdate?: () => void;
  /** 'error' (default) or 'skip'. */
  nonFinite?: NonFinitePolicy;
}

const STEP_KEYS: readonly (keyof StepArgs)[] = [
  'params', 'optimizer', 'loss', 'lr', 'weightDecay', 'clipGradNorm', 'iteration', 'microBatches', 'reduceGrads', 'afterUpdate', 'nonFinite',
];

export interface StepResult {
  /** The loss (mean over micro-batches). */
  loss: number;
  /** Pre-clip gradient norm over every path (with one clip group: that group's norm). */
  gradNorm: number;
  /** Pre-clip gradient norm of each clip group. */
  gradNorms: Record<string, number>;
  /** The loss function's named metrics. */
  metrics: Record<string, number>;
  /** Set when the step was skipped: which term was non-finite. */
  skipped?: string;
}

/** Check that every variable of the set is trainable (tfjs silently returns null gradients for the others). */
export function assertTrainable(params: TrainableSet): void {
  if (params.size === 0) throw new Error('trainStep: the trainable set is empty');
  for (const [path, v] of params) {
    if (v.isDisposed) throw new Error(`trainStep: parameter '${path}' is disposed`);
    if (!v.trainable) throw new Error(`trainStep: parameter '${path}' is in the trainable set but its variable has trainable = false`);
  }
}

/** The clip groups of an optimizer (cached: settings are fixed for its lifetime). */
const clipGroupCache = new WeakMap<Optimizer, Map<string, string[]>>();
function clipGroupsOf(opt: Optimizer): Map<string, string[]> {
  let g = clipGroupCache.get(opt);
  if (!g) {
    g = clipGroups(opt.settings);
    clipGroupCache.set(opt, g);
  }
  return g;
}

/** Max norm per clip group from a clip spec; unknown group names and bad values are errors naming them. */
export function resolveClip(spec: ClipSpec | undefined, groups: Iterable<string>, what = 'clipGradNorm'): Map<string, number> {
  const names = [...groups];
  const out = new Map<string, number>();
  const check = (k: string, v: unknown): number => {
    if (!(typeof v === 'number' && Number.isFinite(v) && v >= 0)) throw new Error(`${k}: expected a finite number ≥ 0 (0 = no clipping), got ${JSON.stringify(v)}`);
    return v;
  };
  if (spec === undefined) return out;
  if (typeof spec === 'number') {
    check(what, spec);
    for (const n of names) out.set(n, spec);
    return out;
  }
  if (spec === null || typeof spec !== 'object') throw new Error(`${what}: expected a number or a record of clip group → max norm, got ${JSON.stringify(spec)}`);
  for (const [k, v] of Object.entries(spec)) {
    if (!names.includes(k)) throw new Error(`${what}: unknown clip group '${k}'; the parameter groups define: ${names.join(', ')}`);
    out.set(k, check(`${what}.${k}`, v));
  }
  return out;
}

function checkSameSet(params: TrainableSet, opt: Optimizer): void {
  if (params === opt.params) return;
  for (const [path, v] of params) {
    const o = opt.params.get(path);
    if (!o) throw new Error(`trainStep: '${path}' is in the trainable set but not in the optimizer's parameters`);
    if (o !== v) throw new Error(`trainStep: '${path}' is a different variable in the trainable set and in the optimizer`);
  }
  if (params.size !== opt.params.size) {
    const missing = [...opt.params.keys()].find((p) => !params.has(p));
    throw new Error(`trainStep: the optimizer's parameter '${missing}' is not in the trainable set`);
  }
}

const fmt = (x: number): string => (Number.isFinite(x) && x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e4) ? x.toExponential(3) : String(x));

/**
 * Read named scalars with one `dataSync` (tensors of size 1, or plain numbers kept as float64). Inside a tidy.
 */
function readScalars(entries: ReadonlyArray<[string, tf.Tensor | number]>): Map<string, number> {
  const tensors = entries.filter(([, v]) => v instanceof tf.Tensor) as Array<[string, tf.Tensor]>;
  const vals = tensors.length ? tf.stack(tensors.map(([, t]) => tf.reshape(t, []))).dataSync() : new Float32Array(0);
  const out = new Map<string, number>();
  let i = 0;
  for (const [name, v] of entries) out.set(name, v instanceof tf.Tensor ? vals[i++] : v);
  return out;
}

/** Number of NaN and ±Inf entries of a tensor (a sync read; only used to diagnose a failed check). */
function countNonFinite(t: tf.Tensor): { nan: number; inf: number } {
  return tf.tidy(() => {
    const v = tf.stack([tf.sum(tf.cast(tf.isNaN(t), 'float32')), tf.sum(tf.cast(tf.isInf(t), 'float32'))]).dataSync();
    return { nan: v[0], inf: v[1] };
  });
}

interface Computed {
  value: tf.Scalar;
  grads: Map<string, tf.Tensor>;
  metrics: Map<string, tf.Scalar | number>;
  updates: Map<string, StateUpdate>;
}

/** Step 1: loss and mean gradients over k micro-batches. Inside the step's tidy; `kept` collects tensors to free. */
function computeGradients(params: TrainableSet, loss: StepLoss, k: number, kept: tf.Tensor[]): Computed {
  const vars = [...params.values()];
  const pathOf = new Map<string, string>();
  for (const [p, v] of params) pathOf.set(v.name, p);
  let acc: Computed | null = null;
  for (let i = 0; i < k; i++) {
    let out: LossOutput | null = null;
    // An error inside the taped function would leave the tape's saved tensors behind (tfjs frees them only after a
    // backward pass): catch it, finish the (empty) backward with a constant, then rethrow.
    let failure: { error: unknown } | null = null;
    let value: tf.Scalar | null = null;
    let grads: tf.NamedTensorMap = {};
    try {
      ({ value, grads } = tf.variableGrads(() => {
        try {
          const r = loss(i);
          if (r instanceof tf.Tensor) {
            if (r.rank !== 0) throw new Error(`trainStep: the loss must be a scalar tensor, got shape [${r.shape}]`);
            return r as tf.Scalar;
          }
          out = checkLossOutput(r);
          // variableGrads frees what the loss made except its result: keep the metrics and proposed updates
          for (const m of Object.values(r.metrics ?? {})) if (m instanceof tf.Tensor) kept.push(tf.keep(m));
          for (const u of r.updates ?? []) kept.push(tf.keep(u.value));
          return r.loss;
        } catch (e) {
          failure = { error: e };
          return tf.scalar(0);
        }
      }, vars));
    } catch (e) {
      if (!failure) throw e;
    }
    if (failure) throw (failure as { error: unknown }).error;
    if (!value) throw new Error('trainStep: internal error (no loss value)');
    const byPath = new Map<string, tf.Tensor>();
    for (const [name, g] of Object.entries(grads)) {
      const p = pathOf.get(name);
      if (p !== undefined && g) byPath.set(p, g);
    }
    const o = out as LossOutput | null;
    const metrics = new Map<string, tf.Scalar | number>(Object.entries(o?.metrics ?? {}));
    const updates = new Map<string, StateUpdate>();
    for (const u of o?.updates ?? []) {
      if (updates.has(u.path)) throw new Error(`trainStep: two state updates for '${u.path}' from one loss call`);
      updates.set(u.path, u);
    }
    if (acc === null) {
      acc = { value: value as tf.Scalar, grads: byPath, metrics, updates };
      if (k > 1) {
        // with accumulation: copies owned by the tidy, so that the kept originals can be freed after each micro-batch
        acc.value = tf.clone(value) as tf.Scalar;
        for (const [name, m] of metrics) if (m instanceof tf.Tensor) metrics.set(name, tf.clone(m));
        for (const [p, u] of updates) updates.set(p, { ...u, value: tf.clone(u.value) });
        for (const t of kept.splice(0)) t.dispose();
      }
      continue;
    }
    const a: Computed = acc;
    a.value = tf.add(a.value, value) as tf.Scalar;
    for (const [p, g] of byPath) {
      const prev = a.grads.get(p);
      a.grads.set(p, prev ? tf.add(prev, g) : g);
      if (prev) {
        prev.dispose();
        g.dispose();
      }
    }
    if (metrics.size !== a.metrics.size || [...metrics.keys()].some((n) => !a.metrics.has(n))) {
      throw new Error(`trainStep: micro-batch ${i} returned metrics [${[...metrics.keys()]}], micro-batch 0 returned [${[...a.metrics.keys()]}]`);
    }
    for (const [n, m] of metrics) {
      const prev = a.metrics.get(n)!;
      const sum = typeof prev === 'number' && typeof m === 'number' ? prev + m : (tf.add(prev, m) as tf.Scalar);
      if (prev instanceof tf.Tensor) prev.dispose();
      a.metrics.set(n, sum);
    }
    if (updates.size !== a.updates.size || [...updates.keys()].some((n) => !a.updates.has(n))) {
      throw new Error(`trainStep: micro-batch ${i} proposed state updates [${[...updates.keys()]}], micro-batch 0 [${[...a.updates.keys()]}]`);
    }
    for (const [p, u] of updates) {
      const prev = a.updates.get(p)!;
      a.updates.set(p, { ...prev, value: tf.add(prev.value, u.value) });
      prev.value.dispose();
    }
    // the kept tensors of this micro-batch have been summed: free them now (not k copies until the end)
    for (const t of kept.splice(0)) t.dispose();
  }
  const c = acc!;
  if (k > 1) {
    c.value = tf.div(c.value, k) as tf.Scalar;
    for (const [p, g] of c.grads) {
      c.grads.set(p, tf.div(g, k));
      g.dispose(); // not one more copy of every gradient until the end of the step
    }
    for (const [n, m] of c.metrics) c.metrics.set(n, typeof m === 'number' ? m / k : (tf.div(m, k) as tf.Scalar));
    for (const [p, u] of c.updates) c.updates.set(p, { ...u, value: tf.div(u.value, k) });
  }
  return c;
}

function checkLossOutput(r: LossOutput): LossOutput {
  if (r === null || typeof r !== 'object') throw new Error(`trainStep: the loss function must return a scalar tensor or {loss, metrics?, updates?}, got ${String(r)}`);
  checkKeys('trainStep loss output', r, ['loss', 'metrics', 'updates']);
  if (!(r.loss instanceof tf.Tensor) || r.loss.rank !== 0) throw new Error(`trainStep: the loss must be a scalar tensor, got ${r.loss instanceof tf.Tensor ? `shape [${r.loss.shape}]` : String(r.loss)}`);
  for (const [n, m] of Object.entries(r.metrics ?? {})) {
    if (typeof m === 'number') continue;
    if (!(m instanceof tf.Tensor) || m.size !== 1) throw new Error(`trainStep: metric '${n}' must be a scalar tensor or a number, got ${m instanceof tf.Tensor ? `shape [${m.shape}]` : String(m)}`);
  }
  for (const u of r.updates ?? []) {
    if (!(u.variable instanceof tf.Variable) || !(u.value instanceof tf.Tensor)) throw new Error(`trainStep: state update '${u.path}' needs a variable and a value tensor`);
    if (u.variable.shape.length !== u.value.shape.length || u.variable.shape.some((d, i) => d !== u.value.shape[i])) {
      throw new Error(`trainStep: state update '${u.path}' has shape [${u.value.shape}], its variable [${u.variable.shape}]`);
    }
    if (u.value.dtype !== u.variable.dtype) throw new Error(`trainStep: state update '${u.path}' has dtype ${u.value.dtype}, its variable ${u.variable.dtype}`);
    if (u.variable.isDisposed) throw new Error(`trainStep: the variable of state update '${u.path}' is disposed`);
  }
  return r;
}

function checkReduced(grads: unknown, params: TrainableSet): Map<string, tf.Tensor> {
  if (!(grads instanceof Map)) throw new Error('trainStep: reduceGrads must return a Map path → gradient');
  for (const [p, g] of grads as Map<string, tf.Tensor>) {
    const v = params.get(p);
    if (!v) throw new Error(`trainStep: reduceGrads returned a gradient for '${p}', which is not in the trainable set`);
    if (!(g instanceof tf.Tensor) || g.shape.length !== v.shape.length || g.shape.some((d, i) => d !== v.shape[i])) {
      throw new Error(`trainStep: reduceGrads returned shape [${g instanceof tf.Tensor ? g.shape : '?'}] for '${p}', the parameter is [${v.shape}]`);
    }
  }
  return grads as Map<string, tf.Tensor>;
}

/** One optimisation step (see the file comment). Returns the loss, gradient norms and named metrics. */
export function trainStep(a: StepArgs): StepResult {
  checkKeys('trainStep', a, STEP_KEYS);
  assertTrainable(a.params);
  const opt = a.optimizer;
  checkSameSet(a.params, opt);
  const iteration = a.iteration ?? opt.iteration;
  if (!(Number.isInteger(iteration) && iteration >= 0)) throw new Error(`trainStep: iteration must be an integer ≥ 0, got ${iteration}`);
  const k = a.microBatches ?? 1;
  if (!(Number.isInteger(k) && k >= 1)) throw new Error(`trainStep: microBatches must be an integer ≥ 1, got ${k}`);
  const policy = a.nonFinite ?? 'error';
  if (policy !== 'error' && policy !== 'skip') throw new Error(`trainStep: nonFinite must be 'error' or 'skip', got ${JSON.stringify(policy)}`);
  const lr = a.lr;
  const wd = a.weightDecay ?? 0;
  if (typeof lr !== 'number' || lr < 0) throw new Error(`trainStep: the learning rate must be a number ≥ 0, got ${lr} at step ${iteration}`);
  if (typeof wd !== 'number' || wd < 0) throw new Error(`trainStep: the weight decay must be a number ≥ 0, got ${wd} at step ${iteration}`);
  const groups = clipGroupsOf(opt);
  const clip = resolveClip(a.clipGradNorm, groups.keys());
  const where = `at step ${iteration} (lr ${fmt(lr)})`;
  const skip = (reason: string): StepResult => {
    opt.skipped += 1;
    return { loss: NaN, gradNorm: NaN, gradNorms: {}, metrics: {}, skipped: reason };
  };
  const stop = (reason: string): never => {
    throw new Error(`trainStep: ${reason} ${where}; nothing was updated (parameters, optimizer moments and step counter, state)`);
  };
  const rateBad = !Number.isFinite(lr) ? `the learning rate is ${lr}` : !Number.isFinite(wd) ? `the weight decay is ${wd}` : null;
  if (rateBad) return policy === 'skip' ? skip(rateBad) : stop(rateBad);

  const kept: tf.Tensor[] = [];
  let result: StepResult | null = null;
  let bad: string | null = null;
  try {
    tf.tidy(() => {
      const c = computeGradients(a.params, a.loss, k, kept);
      // ---- gradients computed | gradients applied ----
      const grads = a.reduceGrads ? checkReduced(a.reduceGrads(c.grads), a.params) : c.grads;
      const clipped = new Map<string, tf.Tensor>();
      const groupNames: string[] = [];
      const norms: tf.Scalar[] = [];
      for (const [name, paths] of groups) {
        const gm = new Map<string, tf.Tensor>();
        for (const p of paths) {
          const g = grads.get(p);
          if (g) gm.set(p, g);
        }
        groupNames.push(name);
        if (gm.size === 0) {
          norms.push(tf.scalar(0));
          continue;
        }
        const r = clipByGlobalNorm(gm, clip.get(name) ?? 0);
        norms.push(r.norm);
        for (const [p, g] of r.grads) clipped.set(p, g);
      }
      const metricNames = [...c.metrics.keys()];
      const updates = [...c.updates.values()];
      // one read for everything the check and the result need, addressed by name
      const read = readScalars([
        ['loss', c.value],
        ...metricNames.map((n): [string, tf.Tensor | number] => [`metric:${n}`, c.metrics.get(n)!]),
        ...groupNames.map((n, i): [string, tf.Tensor | number] => [`norm:${n}`, norms[i]]),
        ...updates.map((u): [string, tf.Tensor | number] => [`update:${u.path}`, tf.sum(tf.mul(u.value, 0))]), // 0 if finite, else NaN
      ]);
      const metrics: Record<string, number> = {};
      for (const n of metricNames) metrics[n] = read.get(`metric:${n}`)!;
      const gradNorms: Record<string, number> = {};
      for (const n of groupNames) gradNorms[n] = read.get(`norm:${n}`)!;
      const gradNorm = groupNames.length === 1 ? gradNorms[groupNames[0]] : Math.sqrt(groupNames.reduce((sum, n) => sum + gradNorms[n] * gradNorms[n], 0));
      const loss = read.get('loss')!;
      result = { loss, gradNorm, gradNorms, metrics };
      // ---- the check, before any state changes ----
      if (!Number.isFinite(loss)) bad = `the loss is ${loss}`;
      for (const n of metricNames) if (!bad && !Number.isFinite(metrics[n])) bad = `metric '${n}' is ${metrics[n]}`;
      for (const n of groupNames) {
        if (bad || Number.isFinite(gradNorms[n])) continue;
        for (const p of groups.get(n)!) {
          const g = grads.get(p);
          if (!g) continue;
          const { nan, inf } = countNonFinite(g);
          if (nan + inf > 0) {
            bad = `the gradient of '${p}' has ${nan} NaN and ${inf} ±Inf entries (of ${g.size})`;
            break;
          }
        }
        bad ??= `the gradient norm of clip group '${n}' is ${gradNorms[n]} although every gradient is finite (overflow)`;
      }
      for (const u of updates) if (!bad && !Number.isFinite(read.get(`update:${u.path}`)!)) bad = `the state update of '${u.path}' is non-finite`;
      if (bad) {
        if (policy === 'error') stop(bad);
        return;
      }
      opt.apply(clipped, lr, wd, iteration);
      for (const u of updates) u.variable.assign(u.value);
    });
  } finally {
    for (const t of kept) if (!t.isDisposed) t.dispose();
  }
  const r = result as StepResult | null;
  if (!r) throw new Error('trainStep: internal error (no result)');
  if (bad) return { ...skip(bad), loss: r.loss, gradNorm: r.gradNorm, gradNorms: r.gradNorms, metrics: r.metrics };
  if (a.afterUpdate) a.afterUpdate();
  return r;
}

export interface StepInfo {
  step: number;
  loss: number;
  gradNorm: number;
  lr: number;
  weightDecay: number;
  seconds: number;
  /** Pre-clip gradient norm per clip group (always set by `trainLoop`). */
  gradNorms?: Record<string, number>;
  /** The loss function's named metrics (always set by `trainLoop`; {} for a bare-scalar loss). */
  metrics?: Record<string, number>;
  /** Set when the step was skipped (`nonFinite: 'skip'`): which term was non-finite. */
  skipped?: string;
}

export interface LoopArgs<B> {
  params: TrainableSet;
  optimizer: Optimizer;
  /** Total number of steps of the run (the schedule's horizon); the loop runs steps [startStep, endStep). */
  steps: number;
  /** First step (default: `optimizer.iteration`, i.e. where a loaded checkpoint stopped). */
  startStep?: number;
  /** Stop before this step (default `steps`): lets a run be split into chunks with checkpoints in between. */
  endStep?: number;
  /**
   * The batch of a step — of micro-batch `micro` of it with `accumulate` > 1 (may be async: decoding happens outside
   * the tidy). Its tensors are disposed after the step.
   */
  batch: (step: number, micro: number) => B | Promise<B>;
  /** The loss of a batch (runs inside the tidy). `rng` is derived from (seed, step[, micro]). */
  loss: (batch: B, rng: Rng, step: number, micro: number) => tf.Scalar | LossOutput;
  lr: Schedule;
  weightDecay?: Schedule;
  clipGradNorm?: ClipSpec;
  seed: number;
  /** Micro-batches per optimizer step (gradient accumulation; default 1). */
  accumulate?: number;
  /** 'error' (default) or 'skip' (see `trainStep`). */
  nonFinite?: NonFinitePolicy;
  /** See `StepArgs.reduceGrads`. */
  reduceGrads?: (grads: Map<string, tf.Tensor>) => Map<string, tf.Tensor>;
  /** Work after each applied update (own tidy), e.g. an EMA. */
  afterUpdate?: (step: number) => void;
  /** Called after every step (metrics logging, progress bars, checkpoints). */
  onStep?: (info: StepInfo) => void | Promise<void>;
}

const LOOP_KEYS: readonly (keyof LoopArgs<unknown>)[] = [
  'params', 'optimizer', 'steps', 'startStep', 'endStep', 'batch', 'loss', 'lr', 'weightDecay', 'clipGradNorm', 'seed', 'accumulate',
  'nonFinite', 'reduceGrads', 'afterUpdate', 'onStep',
];

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

/** Validate loop options before step 0; returns [start, end, accumulate]. */
function checkLoop<B>(a: LoopArgs<B>): [number, number, number] {
  if (a === null || typeof a !== 'object') throw new Error('trainLoop: expected an options object');
  checkKeys('trainLoop', a, LOOP_KEYS);
  for (const k of ['params', 'optimizer', 'steps', 'batch', 'loss', 'lr', 'seed'] as const) if (a[k] === undefined) throw new Error(`trainLoop.${k}: missing`);
  if (!(a.optimizer instanceof Optimizer)) throw new Error('trainLoop.optimizer: expected an Optimizer');
  for (const k of ['batch', 'loss'] as const) if (typeof a[k] !== 'function') throw new Error(`trainLoop.${k}: expected a function`);
  for (const k of ['onStep', 'reduceGrads', 'afterUpdate'] as const) if (a[k] !== undefined && typeof a[k] !== 'function') throw new Error(`trainLoop.${k}: expected a function`);
  if (!(Number.isInteger(a.steps) && a.steps > 0)) throw new Error(`trainLoop.steps: expected an integer > 0, got ${JSON.stringify(a.steps)}`);
  if (!(typeof a.seed === 'number' && Number.isFinite(a.seed))) throw new Error(`trainLoop.seed: expected a finite number, got ${JSON.stringify(a.seed)}`);
  const start = a.startStep ?? a.optimizer.iteration;
  const end = a.endStep ?? a.steps;
  if (!(Number.isInteger(start) && start >= 0)) throw new Error(`trainLoop.startStep: expected an integer ≥ 0, got ${JSON.stringify(start)}`);
  if (!(Number.isInteger(end) && end >= 0 && end <= a.steps)) throw new Error(`trainLoop.endStep: expected an integer in [0, steps = ${a.steps}], got ${JSON.stringify(end)}`);
  if (start > end) throw new Error(`trainLoop: startStep ${start} is after endStep ${end}${a.startStep === undefined ? ' (startStep defaults to the optimizer\'s iteration)' : ''}`);
  const k = a.accumulate ?? 1;
  if (!(Number.isInteger(k) && k >= 1)) throw new Error(`trainLoop.accumulate: expected an integer ≥ 1, got ${JSON.stringify(a.accumulate)}`);
  if (a.nonFinite !== undefined && a.nonFinite !== 'error' && a.nonFinite !== 'skip') throw new Error(`trainLoop.nonFinite: expected 'error' or 'skip', got ${JSON.stringify(a.nonFinite)}`);
  checkSchedule(a.lr, 'trainLoop.lr', { nonNegative: true });
  if (a.weightDecay !== undefined) checkSchedule(a.weightDecay, 'trainLoop.weightDecay', { nonNegative: true });
  resolveClip(a.clipGradNorm, clipGroupsOf(a.optimizer).keys(), 'trainLoop.clipGradNorm');
  assertTrainable(a.params);
  checkSameSet(a.params, a.optimizer);
  return [start, end, k];
}

/** Run steps [startStep, endStep) and return their infos. Options are validated before step 0. */
export async function trainLoop<B>(a: LoopArgs<B>): Promise<StepInfo[]> {
  const [start, end, k] = checkLoop(a);
  const infos: StepInfo[] = [];
  for (let step = start; step < end; step++) {
    const t0 = Date.now();
    const batches: B[] = [];
    let r: StepResult;
    const lr = scheduleAt(a.lr, step);
    const weightDecay = a.weightDecay ? scheduleAt(a.weightDecay, step) : 0;
    try {
      for (let i = 0; i < k; i++) batches.push(await a.batch(step, i));
      const rngs = batches.map((_b, i) => (k === 1 ? Rng.derive(a.seed, 'step', step) : Rng.derive(a.seed, 'step', step, 'micro', i)));
      r = trainStep({
        params: a.params,
        optimizer: a.optimizer,
        loss: (i) => a.loss(batches[i], rngs[i], step, i),
        lr,
        weightDecay,
        clipGradNorm: a.clipGradNorm,
        iteration: step,
        microBatches: k,
        reduceGrads: a.reduceGrads,
        afterUpdate: a.afterUpdate ? () => a.afterUpdate!(step) : undefined,
        nonFinite: a.nonFinite,
      });
    } finally {
      batches.forEach(disposeBatch);
    }
    const info: StepInfo = { step, loss: r.loss, gradNorm: r.gradNorm, lr, weightDecay, seconds: (Date.now() - t0) / 1000, gradNorms: r.gradNorms, metrics: r.metrics };
    if (r.skipped) info.skipped = r.skipped;
    infos.push(info);
    if (a.onStep) await a.onStep(info);
  }
  return infos;
}
