/**
 * Optimizers with state keyed by parameter path (tfjs's own Adam keys its moments by list position and has no AdamW).
 *
 * - AdamW (PyTorch `torch.optim.AdamW`): decoupled decay p ← p·(1 − lr·wd), then Adam with bias correction:
 *   m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; p ← p − lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + eps).
 * - SGD with momentum (PyTorch `torch.optim.SGD`): g ← g + wd·p (coupled L2); buf ← μ·buf + (1−dampening)·g
 *   (buf = g on the first step); p ← p − lr·buf (or g + μ·buf with Nesterov).
 *
 * Per-parameter settings (resolved once, in the constructor, against the fixed ordered parameter set): a no-decay mask
 * (default: rank ≤ 1 tensors — biases, norms, LayerScale — and the token / position tables, as timm's
 * `no_weight_decay`), an lr multiplier (e.g. layer-wise decay), and parameter-group rules as data (`groups.ts`: lr
 * multipliers, decay on/off, zero-lr-for-k-iterations, grad-clip groups, which optimizer configuration updates a path).
 * Several configurations in one optimizer ("several optimizers in one step"): `opts.optimizers` names extra
 * configurations that rules select with `optimizer: name`; all share one step counter. `apply` must run inside a tidy
 * (the train step does that).
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys } from '../check';
import { ParamGroupRule, ParamSettings, ParamGroup, resolveParamSettings, fuseParamGroups, layerId, MAIN_OPTIMIZER } from './groups';

export { layerId } from './groups';

export type OptimizerConfig =
  | { kind: 'adamw'; beta1: number; beta2: number; eps: number }
  | { kind: 'sgd'; momentum: number; dampening: number; nesterov: boolean };

export const ADAMW_DEFAULTS = { kind: 'adamw', beta1: 0.9, beta2: 0.999, eps: 1e-8 } as const satisfies OptimizerConfig;
/** MAE / ExPLoRA-MAE pre-training betas. */
export const ADAMW_MAE = { kind: 'adamw', beta1: 0.9, beta2: 0.95, eps: 1e-8 } as const satisfies OptimizerConfig;
export const SGD_MOMENTUM = { kind: 'sgd', momentum: 0.9, dampening: 0, nesterov: false } as const satisfies OptimizerConfig;

const CONFIG_KEYS = { adamw: ['kind', 'beta1', 'beta2', 'eps'], sgd: ['kind', 'momentum', 'dampening', 'nesterov'] } as const;

/**
 * Validate an optimizer configuration: unknown kind or keys, AdamW betas in [0, 1) and eps > 0, SGD momentum ≥ 0,
 * dampening in [0, 1], nesterov a boolean (and only with momentum > 0 and dampening 0, as PyTorch). Errors name the key.
 */
export function checkOptimizerConfig(c: OptimizerConfig, what = 'OptimizerConfig'): OptimizerConfig {
  if (c === null || typeof c !== 'object') throw new Error(`${what}: expected an object, got ${JSON.stringify(c)}`);
  const keys = (CONFIG_KEYS as Record<string, readonly string[]>)[(c as { kind: string }).kind];
  if (!keys) throw new Error(`${what}.kind: unknown optimizer '${String((c as { kind: unknown }).kind)}'; valid: ${Object.keys(CONFIG_KEYS).join(', ')}`);
  const w = `${what}(${c.kind})`;
  checkKeys(w, c, keys);
  for (const k of keys) if (k !== 'kind' && (c as unknown as Record<string, unknown>)[k] === undefined) throw new Error(`${w}.${k}: missing`);
  const num = (k: string, v: unknown, ok: (x: number) => boolean, range: string): void => {
    if (!(typeof v === 'number' && Number.isFinite(v) && ok(v))) throw new Error(`${w}.${k}: expected ${range}, got ${JSON.stringify(v)}`);
  };
  if (c.kind === 'adamw') {
    num('beta1', c.beta1, (x) => x >= 0 && x < 1, 'a number in [0, 1)');
    num('beta2', c.beta2, (x) => x >= 0 && x < 1, 'a number in [0, 1)');
    num('eps', c.eps, (x) => x > 0, 'a number > 0');
  } else {
    num('momentum', c.momentum, (x) => x >= 0, 'a number ≥ 0');
    num('dampening', c.dampening, (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
    if (typeof c.nesterov !== 'boolean') throw new Error(`${w}.nesterov: expected true or false, got ${JSON.stringify(c.nesterov)}`);
    if (c.nesterov && !(c.momentum > 0 && c.dampening === 0)) throw new Error(`${w}.nesterov: Nesterov momentum needs momentum > 0 and dampening 0 (got momentum ${c.momentum}, dampening ${c.dampening})`);
  }
  return c;
}

/** Names timm excludes from weight decay besides every rank ≤ 1 tensor. */
const NO_DECAY_NAMES = /(^|\.)(pos_embed|cls_token|dist_token|register_tokens|mask_token|decoder_pos_embed)$/;

/** Default weight-decay mask: false (no decay) for rank ≤ 1 tensors and token/position tables. */
export function defaultDecay(path: string, v: tf.Variable): boolean {
  return v.rank > 1 && !NO_DECAY_NAMES.test(path);
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
  /** Parameter-group rules as data (`groups.ts`), applied in order after `decay` / `lrScale`. */
  groups?: readonly ParamGroupRule[];
  /** Further optimizer configurations by name, chosen per path by a rule's `optimizer` (the first argument is 'main'). */
  optimizers?: Readonly<Record<string, OptimizerConfig>>;
}

const SLOTS = { adamw: ['exp_avg', 'exp_avg_sq'], sgd: ['momentum_buffer'] } as const;

/** A finite number ≥ 0, or an error naming it. */
function checkRate(what: string, x: number): void {
  if (!(typeof x === 'number' && Number.isFinite(x) && x >= 0)) throw new Error(`${what}: expected a finite number ≥ 0, got ${x}`);
}

/** An optimizer bound to an ordered parameter map. */
export class Optimizer {
  /** The main configuration (the one every path uses unless a group rule picks another). */
  readonly config: OptimizerConfig;
  /** Every configuration by name ('main' first). */
  readonly configs: ReadonlyMap<string, OptimizerConfig>;
  readonly params: ReadonlyMap<string, tf.Variable>;
  /** Resolved per-path settings (lr scale, decay, frozen iterations, clip group, configuration), in parameter order. */
  readonly settings: ReadonlyMap<string, ParamSettings>;
  /** The group rules it was built with (recorded in checkpoints). */
  readonly rules: readonly ParamGroupRule[];
  /** Number of updates applied so far (AdamW's bias-correction t). */
  step = 0;
  /** Number of steps skipped (non-finite values with `nonFinite: 'skip'`): no update, no state change but this count. */
  skipped = 0;
  private readonly slots = new Map<string, tf.Variable[]>();
  private readonly slotNames: readonly string[];

  constructor(config: OptimizerConfig, params: ReadonlyMap<string, tf.Variable>, opts: OptimizerOptions = {}) {
    checkKeys('OptimizerOptions', opts, ['decay', 'lrScale', 'groups', 'optimizers']);
    checkOptimizerConfig(config);
    if (params.size === 0) throw new Error('Optimizer: no parameters to optimise (the trainable set is empty)');
    const configs = new Map<string, OptimizerConfig>([[MAIN_OPTIMIZER, config]]);
    for (const [name, c] of Object.entries(opts.optimizers ?? {})) {
      if (name === MAIN_OPTIMIZER) throw new Error(`OptimizerOptions.optimizers: '${MAIN_OPTIMIZER}' is the optimizer's own configuration (the first argument); pick another name`);
      configs.set(name, checkOptimizerConfig(c, `OptimizerOptions.optimizers.${name}`));
    }
    this.config = config;
    this.configs = configs;
    this.params = params;
    this.rules = opts.groups ?? [];
    this.slotNames = SLOTS[config.kind];
    for (const [path, v] of params) {
      if (v.dtype !== 'float32') throw new Error(`Optimizer: parameter ${path} has dtype ${v.dtype}, expected float32`);
    }
    const settings = resolveParamSettings(params, this.rules, { decay: opts.decay ?? defaultDecay, lrScale: opts.lrScale ?? (() => 1) }, 'OptimizerOptions.groups');
    for (const [path, s] of settings) {
      if (!configs.has(s.optimizer)) throw new Error(`OptimizerOptions.groups: '${path}' is assigned optimizer '${s.optimizer}', which is not configured; valid: ${[...configs.keys()].join(', ')}`);
    }
    this.settings = settings;
    for (const [path, v] of params) {
      const kind = configs.get(settings.get(path)!.optimizer)!.kind;
      this.slots.set(
        path,
        SLOTS[kind].map((s) => tf.tidy(() => tf.variable(tf.zerosLike(v), false, `${v.name}/${s}#${Math.random().toString(36).slice(2, 8)}`))), // tidy: free the zerosLike tensor
      );
    }
  }

  /** The iteration the next step is: updates applied + steps skipped. */
  get iteration(): number {
    return this.step + this.skipped;
  }

  /** Whether `path` receives weight decay. */
  decays(path: string): boolean {
    return this.settings.get(path)?.decay ?? false;
  }

  /** Paths with identical settings, fused into groups (for reports and checkpoint metadata). */
  groups(): ParamGroup[] {
    return fuseParamGroups(this.settings);
  }

  /** lr of `path` at `iteration` for base lr `lr`: 0 while the path is frozen, else lr × its scale. */
  lrOf(path: string, lr: number, iteration: number): number {
    const s = this.settings.get(path);
    if (!s) throw new Error(`Optimizer: unknown parameter '${path}'`);
    return iteration < s.freezeIters ? 0 : lr * s.lrScale;
  }

  /**
   * Apply one update. Call inside `tf.tidy`. `grads` keyed by path; a path without gradient is skipped (its state too).
   * Checks lr, weight decay and iteration before touching anything.
   * @param lr base learning rate for this step; @param weightDecay base weight decay for this step;
   * @param iteration the loop iteration (for frozen groups; default `this.iteration`).
   */
  apply(grads: ReadonlyMap<string, tf.Tensor>, lr: number, weightDecay: number, iteration = this.iteration): void {
    checkRate('Optimizer.apply lr', lr);
    checkRate('Optimizer.apply weightDecay', weightDecay);
    if (!(Number.isInteger(iteration) && iteration >= 0)) throw new Error(`Optimizer.apply: iteration must be an integer ≥ 0, got ${iteration}`);
    for (const path of grads.keys()) if (!this.slots.has(path)) throw new Error(`Optimizer.apply: gradient for unknown parameter '${path}'`);
    this.step += 1;
    const t = this.step;
    for (const [path, g] of grads) {
      const p = this.params.get(path)!;
      const slots = this.slots.get(path)!;
      const s = this.settings.get(path)!;
      const cfg = this.configs.get(s.optimizer)!;
      const plr = iteration < s.freezeIters ? 0 : lr * s.lrScale;
      const wd = s.decay ? weightDecay : 0;
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
    for (const [path, slots] of this.slots) {
      const names = SLOTS[this.configs.get(this.settings.get(path)!.optimizer)!.kind];
      slots.forEach((s, i) => out.set(`${names[i]}.${path}`, s));
    }
    return out;
  }

  /** Names of the main configuration's state slots (`exp_avg`, `exp_avg_sq` | `momentum_buffer`). */
  slotKinds(): readonly string[] {
    return this.slotNames;
  }

  /** Free the state variables. */
  dispose(): void {
    for (const slots of this.slots.values()) slots.forEach((s) => s.isDisposed || s.dispose());
    this.slots.clear();
  }
}
