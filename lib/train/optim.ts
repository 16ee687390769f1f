/**
 * Optimizers with state keyed by parameter path (tfjs's own Adam keys its moments by list position and has no AdamW).
 *
 * - AdamW (PyTorch `torch.optim.AdamW`): decoupled decay p ← p·(1 − lr·wd), then Adam with bias correction:
 *   m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; p ← p − lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + eps).
 * - SGD with momentum (PyTorch `torch.optim.SGD`): g ← g + wd·p (coupled L2); buf ← μ·buf + (1−dampening)·g
 *   (buf = g on the first step); p ← p − lr·buf (or g + μ·buf with Nesterov).
 *
 * Per-parameter rules: a no-decay mask (default: rank ≤ 1 tensors — biases, norms, LayerScale — and the token /
 * position tables, as timm's `no_weight_decay`) and an lr multiplier (e.g. layer-wise decay). The optimizer is built
 * for one fixed, ordered set of parameters; `apply` must run inside a tidy (the train step does that).
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys } from '../check';

export type OptimizerConfig =
  | { kind: 'adamw'; beta1: number; beta2: number; eps: number }
  | { kind: 'sgd'; momentum: number; dampening: number; nesterov: boolean };

export const ADAMW_DEFAULTS = { kind: 'adamw', beta1: 0.9, beta2: 0.999, eps: 1e-8 } as const satisfies OptimizerConfig;
/** MAE / ExPLoRA-MAE pre-training betas. */
export const ADAMW_MAE = { kind: 'adamw', beta1: 0.9, beta2: 0.95, eps: 1e-8 } as const satisfies OptimizerConfig;
export const SGD_MOMENTUM = { kind: 'sgd', momentum: 0.9, dampening: 0, nesterov: false } as const satisfies OptimizerConfig;

/** Names timm excludes from weight decay besides every rank ≤ 1 tensor. */
const NO_DECAY_NAMES = /(^|\.)(pos_embed|cls_token|dist_token|register_tokens|mask_token|decoder_pos_embed)$/;

/** Default weight-decay mask: false (no decay) for rank ≤ 1 tensors and token/position tables. */
export function defaultDecay(path: string, v: tf.Variable): boolean {
  return v.rank > 1 && !NO_DECAY_NAMES.test(path);
}

/**
 * Layer id for layer-wise lr decay (BEiT/MAE `lr_decay.py`): 0 for embeddings and tokens, i+1 for `blocks.i.*`,
 * depth+1 for everything after the blocks (final norm, head).
 */
export function layerId(path: string, depth: number): number {
  if (/^(cls_token|pos_embed|register_tokens|mask_token|patch_embed)(\.|$)/.test(path)) return 0;
  const m = /^blocks\.(\d+)\./.exec(path);
  if (m) return Number(m[1]) + 1;
  return depth + 1;
}

/** lr multiplier `decay^(depth + 1 − layerId)` for every path (decay = 1 gives 1 everywhere). */
export function layerDecayScale(depth: number, decay: number): (path: string) => number {
  return (path) => Math.pow(decay, depth + 1 - layerId(path, depth));
}

export interface OptimizerOptions {
  /** true = apply weight decay to this parameter. Default `defaultDecay`. */
  decay?: (path: string, v: tf.Variable) => boolean;
  /** lr multiplier per parameter. Default 1. */
  lrScale?: (path: string) => number;
}

/** An optimizer bound to an ordered parameter map. */
export class Optimizer {
  readonly config: OptimizerConfig;
  readonly params: ReadonlyMap<string, tf.Variable>;
  /** Number of updates applied so far. */
  step = 0;
  private readonly slots = new Map<string, tf.Variable[]>();
  private readonly decayOf = new Map<string, boolean>();
  private readonly scaleOf = new Map<string, number>();
  private readonly slotNames: readonly string[];

  constructor(config: OptimizerConfig, params: ReadonlyMap<string, tf.Variable>, opts: OptimizerOptions = {}) {
    checkKeys(`OptimizerConfig(${config.kind})`, config, config.kind === 'adamw' ? ['kind', 'beta1', 'beta2', 'eps'] : ['kind', 'momentum', 'dampening', 'nesterov']);
    if (params.size === 0) throw new Error('Optimizer: no parameters to optimise (the trainable set is empty)');
    this.config = config;
    this.params = params;
    this.slotNames = config.kind === 'adamw' ? ['exp_avg', 'exp_avg_sq'] : ['momentum_buffer'];
    const decay = opts.decay ?? defaultDecay;
    const scale = opts.lrScale ?? (() => 1);
    for (const [path, v] of params) {
      if (v.dtype !== 'float32') throw new Error(`Optimizer: parameter ${path} has dtype ${v.dtype}, expected float32`);
      this.decayOf.set(path, decay(path, v));
      this.scaleOf.set(path, scale(path));
      this.slots.set(
        path,
        this.slotNames.map((s) => tf.tidy(() => tf.variable(tf.zerosLike(v), false, `${v.name}/${s}#${Math.random().toString(36).slice(2, 8)}`))), // tidy: free the zerosLike tensor
      );
    }
  }

  /** Whether `path` receives weight decay. */
  decays(path: string): boolean {
    return this.decayOf.get(path) ?? false;
  }

  /**
   * Apply one update. Call inside `tf.tidy`. `grads` keyed by path; a path without gradient is skipped (its state too).
   * @param lr base learning rate for this step; @param weightDecay base weight decay for this step.
   */
  apply(grads: ReadonlyMap<string, tf.Tensor>, lr: number, weightDecay: number): void {
    this.step += 1;
    const t = this.step;
    const cfg = this.config;
    for (const [path, g] of grads) {
      const p = this.params.get(path);
      const slots = this.slots.get(path);
      if (!p || !slots) throw new Error(`Optimizer.apply: gradient for unknown parameter '${path}'`);
      const plr = lr * (this.scaleOf.get(path) ?? 1);
      const wd = this.decayOf.get(path) ? weightDecay : 0;
      if (cfg.kind === 'adamw') {
        const [m, v] = slots;
        const { beta1: b1, beta2: b2, eps } = cfg;
        const m1 = tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1));
        const v1 = tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2));
        m.assign(m1);
        v.assign(v1);
        const bc1 = 1 - Math.pow(b1, t);
        const bc2 = 1 - Math.pow(b2, t);
        const denom = tf.add(tf.div(tf.sqrt(v1), Math.sqrt(bc2)), eps);
        const base = wd > 0 ? tf.mul(p, 1 - plr * wd) : p;
        p.assign(tf.sub(base, tf.mul(tf.div(m1, denom), plr / bc1)));
      } else {
        const [buf] = slots;
        const { momentum: mu, dampening, nesterov } = cfg;
        const gd = wd > 0 ? tf.add(g, tf.mul(p, wd)) : g;
        let d = gd;
        if (mu > 0) {
          const b1 = t === 1 ? gd : tf.add(tf.mul(buf, mu), tf.mul(gd, 1 - dampening));
          buf.assign(b1);
          d = nesterov ? tf.add(gd, tf.mul(b1, mu)) : b1;
        }
        p.assign(tf.sub(p, tf.mul(d, plr)));
      }
    }
  }

  /** Optimizer state as `<slot>.<path>` → variable (for checkpoints), in parameter order. */
  stateTensors(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    for (const [path, slots] of this.slots) slots.forEach((s, i) => out.set(`${this.slotNames[i]}.${path}`, s));
    return out;
  }

  /** Names of the state slots (`exp_avg`, `exp_avg_sq` | `momentum_buffer`). */
  slotKinds(): readonly string[] {
    return this.slotNames;
  }

  /** Free the state variables. */
  dispose(): void {
    for (const slots of this.slots.values()) slots.forEach((s) => s.isDisposed || s.dispose());
    this.slots.clear();
  }
}
