/**
 * PYRA / ToMe+LoRA / LoRA presets as data, model assembly on a ViT, and the trainable-parameter report of the paper
 * (PYRA `model/vision_transformer_timm.py`, `model/tome.py`; the paper's tunable-parameter columns).
 *
 * - `pyra`: LoRA (PYRA's released form: one shared A [D, r] and B [r, 3D] on the fused qkv, added to q, k and v, no α/r
 *   scaling, input dropout 0.1) + PYRA generators in every merging block + ToMe (proportional attention on).
 * - `tome`: the ToMe + LoRA baseline (same LoRA, same schedule, no generators).
 * - `lora`: uncompressed LoRA (e.g. the "smaller model" ViT-S baseline at high compression).
 * LoRA ranks as released: ViT-S 4, ViT-B 8, ViT-L 12. LoRA init: `truncNormal` (σ 0.02 for A and B) by default, which
 * is what the released pipeline ends up with (its ViT init overwrites LoRA's zero-B init, so the adapter is NOT zero at
 * step 0); use `{...PYRA_PRESETS.pyra_vit_b16_high, loraInit: 'kaiming'}` for the textbook identity-at-init start.
 *
 * Parameter report (the paper's convention): trainable = LoRA + Σ(r_l + D) PYRA generators, as a share of the backbone
 * without head (ViT-B 85.80 M, ViT-L 303.30 M); PYRA's trainable LayerNorm (2D per merging block) and the task head are
 * reported separately. ViT-B: LoRA 294,912 (0.34 %), +PYRA 9,402 low / 9,408 high (0.35 %); ViT-L: 1,179,648 (0.39 %),
 * +24,766 / 24,768 (0.40 %).
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys, lookup } from '../lib/check';
import { VitPresetName, VitConfig } from '../lib/vit/config';
import { Vit } from '../lib/vit/params';
import { VitHooks } from '../lib/vit/forward';
import { countParams } from '../lib/tree';
import { vitShapes } from '../lib/peft/shapes';
import { createLora, disposeLora, loraHooks, LoraAdapters, LoraConfig, LoraInit, loraPlanCount, planLora, loraConfig, mergeLora } from '../lib/peft/lora';
import { selectTrainable, FREEZE_REST, TrainSummary } from '../lib/peft/trainable';
import { RSchedule, resolveSchedule, pyraSchedule, PyraSchedulePreset, PYRA_SCHEDULES } from '../lib/tome/schedule';
import { createPyra, disposePyra, Pyra, pyraParamCount } from '../lib/tome/pyra';
import { tomeHooks, pyraHooks } from '../lib/tome/hooks';
import { Rng } from '../lib/rng';
import { vitForward } from '../lib/vit/forward';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { Schedule, checkSchedule } from '../lib/train/schedule';
import { LossOutput } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';

export type PyraMethod = 'pyra' | 'tome' | 'lora';

export interface PyraPresetConfig {
  method: PyraMethod;
  /** Backbone the preset is for (names the schedule and the parameter report). */
  backbone: VitPresetName;
  /** 'low' / 'high' (PYRA's schedules for the backbone), an explicit r schedule, or null (no merging; method 'lora'). */
  schedule: 'low' | 'high' | RSchedule | null;
  loraRank: number;
  /** 'truncNormal' (as released, default) or 'kaiming' (A kaiming-uniform, B = 0). */
  loraInit: LoraInit;
  /** Dropout on the LoRA input while training (released default 0.1). */
  loraDropout: number;
  /** ToMe proportional attention (PYRA: on in training and evaluation). */
  propAttn: boolean;
}

const PRESET_KEYS: readonly (keyof PyraPresetConfig)[] = ['method', 'backbone', 'schedule', 'loraRank', 'loraInit', 'loraDropout', 'propAttn'];

const LORA_REL = { loraInit: 'truncNormal', loraDropout: 0.1, propAttn: true } as const;
const B16 = { backbone: 'vit_base_patch16_224', loraRank: 8, ...LORA_REL } as const;
const L16 = { backbone: 'vit_large_patch16_224', loraRank: 12, ...LORA_REL } as const;
const S16 = { backbone: 'vit_small_patch16_224', loraRank: 4, ...LORA_REL } as const;

/** Named presets (tweak with spread: `{...PYRA_PRESETS.pyra_vit_b16_low, loraInit: 'kaiming'}`). */
export const PYRA_PRESETS = {
  pyra_vit_b16_low: { method: 'pyra', schedule: 'low', ...B16 },
  pyra_vit_b16_high: { method: 'pyra', schedule: 'high', ...B16 },
  pyra_vit_l16_low: { method: 'pyra', schedule: 'low', ...L16 },
  pyra_vit_l16_high: { method: 'pyra', schedule: 'high', ...L16 },
  tome_lora_vit_b16_low: { method: 'tome', schedule: 'low', ...B16 },
  tome_lora_vit_b16_high: { method: 'tome', schedule: 'high', ...B16 },
  tome_lora_vit_l16_low: { method: 'tome', schedule: 'low', ...L16 },
  tome_lora_vit_l16_high: { method: 'tome', schedule: 'high', ...L16 },
  lora_vit_s16: { method: 'lora', schedule: null, ...S16 },
  lora_vit_b16: { method: 'lora', schedule: null, ...B16 },
  lora_vit_l16: { method: 'lora', schedule: null, ...L16 },
} as const satisfies Record<string, PyraPresetConfig>;

export type PyraPresetName = keyof typeof PYRA_PRESETS;

/**
 * The released training recipe (ViT-L script; ViT-B / DeiT recipes were not released — Consolidator's per-task lr/wd
 * grid is the documented starting point). Epoch-based cosine with warm-up, stepped after each epoch.
 */
export const PYRA_TRAIN_RECIPE = Object.freeze({
  optimizer: 'adamw',
  lr: 1e-3,
  /** applied to ≥ 2-D parameters only (W_r, W_D, LoRA A/B, head weight) */
  weightDecay: 1e-4,
  batch: 32,
  epochs: 100,
  warmupEpochs: 10,
  warmupStartLr: 1e-6,
  minLr: 1e-5,
  dropPath: 0.1,
  /** evaluate on test every 10 epochs and at the end; report the best */
  evalEvery: 10,
});

/**
 * Per-step fine-tuning settings (what notebook 02 spreads per scale): cosine from `lr` to `minLr` over `steps` after a
 * linear warm-up of `warmupSteps` from `warmupStart` (the release steps the same curve per epoch), constant weight
 * decay on ≥ 2-D parameters, batches of `batch`, evaluation every `evalEvery` steps (the caller's).
 */
export interface PyraTrainSettings {
  steps: number;
  batch: number;
  lr: number;
  minLr: number;
  warmupSteps: number;
  warmupStart: number;
  weightDecay: number;
  evalEvery: number;
}

const TRAIN_SETTING_KEYS: readonly (keyof PyraTrainSettings)[] = ['steps', 'batch', 'lr', 'minLr', 'warmupSteps', 'warmupStart', 'weightDecay', 'evalEvery'];

/** The optimisation of a PYRA / ToMe+LoRA / LoRA fine-tune, ready for `trainLoop`. */
export interface PyraTraining {
  settings: PyraTrainSettings;
  /** AdamW (0.9, 0.999) over the model's trainable set; weight decay on ≥ 2-D tensors only (PYRA's `pre_process`). */
  optimizer: Optimizer;
  lr: Schedule;
  weightDecay: Schedule;
  /** Cross-entropy on the adapted model in training mode (LoRA dropout, drop path), with the batch's top-1 as metric `accuracy`. */
  loss: (batch: { x: tf.Tensor4D; y: tf.Tensor1D }, rng: Rng) => LossOutput;
  /** Free the optimizer state (the model and its adapters are the caller's). */
  dispose(): void;
}

/**
 * The training half of a PYRA run on the kit's generic step: optimizer, schedules and loss for `model` on `vit`.
 * @example
 *   const model = buildPyraModel(vit, 'pyra_vit_b16_low', {seed});
 *   const t = pyraTraining(vit, model, {...pyraTrainSteps(31), steps: 100}); // or the notebook's per-scale settings
 *   await trainLoop({params: model.trainable, optimizer: t.optimizer, lr: t.lr, weightDecay: t.weightDecay, loss: t.loss, batch, steps: 100, seed});
 */
export function pyraTraining(vit: Vit, model: PyraModel, settings: PyraTrainSettings): PyraTraining {
  checkKeys('PyraTrainSettings', settings, TRAIN_SETTING_KEYS);
  for (const k of ['steps', 'batch', 'evalEvery'] as const) {
    if (!(Number.isInteger(settings[k]) && settings[k] > 0)) throw new Error(`PyraTrainSettings.${k}: expected a positive integer, got ${settings[k]}`);
  }
  const lr = checkSchedule(
    { kind: 'cosine', base: settings.lr, min: settings.minLr, totalIters: settings.steps, warmupIters: settings.warmupSteps, warmupStart: settings.warmupStart },
    'PyraTrainSettings (lr schedule)',
    { nonNegative: true },
  );
  const weightDecay = checkSchedule({ kind: 'constant', value: settings.weightDecay }, 'PyraTrainSettings (weightDecay)', { nonNegative: true });
  const optimizer = new Optimizer(ADAMW_DEFAULTS, model.trainable);
  return {
    settings,
    optimizer,
    lr,
    weightDecay,
    loss: (b, rng) => {
      const logits = vitForward(vit, b.x, { hooks: model.hooks, training: true, rng }).logits!;
      const accuracy = tf.mean(tf.cast(tf.equal(tf.argMax(logits, -1), tf.cast(b.y, 'int32')), 'float32')) as tf.Scalar;
      return { loss: crossEntropy(logits, b.y), metrics: { accuracy } };
    },
    dispose: () => optimizer.dispose(),
  };
}

/**
 * PYRA_TRAIN_RECIPE as per-step settings for a dataset of `itersPerEpoch` steps per epoch (VTAB-1k: ⌊1000/32⌋ = 31).
 */
export function pyraTrainSteps(itersPerEpoch: number, r: typeof PYRA_TRAIN_RECIPE = PYRA_TRAIN_RECIPE): PyraTrainSettings {
  if (!(Number.isInteger(itersPerEpoch) && itersPerEpoch > 0)) throw new Error(`pyraTrainSteps: itersPerEpoch must be a positive integer, got ${itersPerEpoch}`);
  return {
    steps: r.epochs * itersPerEpoch,
    batch: r.batch,
    lr: r.lr,
    minLr: r.minLr,
    warmupSteps: r.warmupEpochs * itersPerEpoch,
    warmupStart: r.warmupStartLr,
    weightDecay: r.weightDecay,
    evalEvery: r.evalEvery * itersPerEpoch,
  };
}

/** Resolve a preset name or config (unknown keys rejected, fields checked). */
export function pyraPreset(p: PyraPresetName | PyraPresetConfig): PyraPresetConfig {
  const cfg: PyraPresetConfig = typeof p === 'string' ? lookup('PYRA preset', PYRA_PRESETS, p) : p;
  checkKeys('PYRA preset', cfg, PRESET_KEYS);
  if (!['pyra', 'tome', 'lora'].includes(cfg.method)) throw new Error(`PYRA preset.method: expected 'pyra', 'tome' or 'lora', got '${String(cfg.method)}'`);
  if (cfg.method === 'lora' && cfg.schedule !== null) throw new Error(`PYRA preset: method 'lora' merges nothing; schedule must be null, got ${JSON.stringify(cfg.schedule)}`);
  if (cfg.method !== 'lora' && cfg.schedule === null) throw new Error(`PYRA preset: method '${cfg.method}' needs a schedule ('low', 'high' or an r schedule)`);
  if (!Number.isInteger(cfg.loraRank) || cfg.loraRank <= 0) throw new Error(`PYRA preset.loraRank: expected a positive integer, got ${cfg.loraRank}`);
  return cfg;
}

/** The per-layer schedule of a preset for a model of `depth` blocks (zeros for 'lora'). */
export function presetSchedule(cfg: PyraPresetConfig, depth: number): number[] {
  if (cfg.schedule === null) return new Array<number>(depth).fill(0);
  if (cfg.schedule === 'low' || cfg.schedule === 'high') {
    if (!(cfg.backbone in PYRA_SCHEDULES)) {
      throw new Error(`PYRA preset: no '${cfg.schedule}' schedule for backbone ${cfg.backbone}; valid: ${Object.keys(PYRA_SCHEDULES).join(', ')} (or give an explicit schedule)`);
    }
    return resolveSchedule(pyraSchedule(cfg.backbone as PyraSchedulePreset, cfg.schedule), depth);
  }
  return resolveSchedule(cfg.schedule, depth);
}

/** PYRA's released LoRA as a kit LoRA config: shared A/B on every encoder qkv, scale 1, dropout, init. */
export function pyraLoraConfig(cfg: PyraPresetConfig): LoraConfig {
  return loraConfig({
    rank: cfg.loraRank,
    scaling: 1,
    dropout: cfg.loraDropout,
    init: cfg.loraInit,
    targets: [{ sites: /^blocks\.\d+\.attn\.qkv$/, kind: 'shared-qkv' }],
  });
}

export interface PyraParamReport {
  preset: PyraPresetConfig;
  /** Backbone parameters without the head (the paper's denominator). */
  backbone: number;
  lora: number;
  /** Σ (r_l + D) over merging blocks (0 unless method 'pyra'). */
  pyraGenerators: number;
  /** Σ 2D PYRA LayerNorm affine (trainable, reported separately). */
  pyraLayerNorm: number;
  /** lora + pyraGenerators: the paper's trainable count. */
  trainable: number;
  /** trainable / backbone · 100 (ViT-B PYRA: 0.355). */
  pct: number;
  /** (trainable + pyraLayerNorm) / backbone · 100 */
  pctWithLayerNorm: number;
  /** Head parameters for `numClasses` (trainable, excluded from the paper's share). */
  head: number;
}

/**
 * The paper's trainable-parameter report for a preset, computed from shapes (nothing allocated).
 * @example pyraParamReport('pyra_vit_b16_low') // {lora: 294912, pyraGenerators: 9402, pct: 0.355, …}
 */
export function pyraParamReport(preset: PyraPresetName | PyraPresetConfig, opts: { numClasses?: number; config?: Partial<VitConfig> } = {}): PyraParamReport {
  const cfg = pyraPreset(preset);
  const numClasses = opts.numClasses ?? 0;
  const shapes = vitShapes(cfg.backbone, { ...opts.config, numClasses: 0 });
  let backbone = 0;
  for (const s of shapes.values()) backbone += s.shape.reduce((a, b) => a * b, 1);
  const depth = [...shapes.keys()].filter((k) => /^blocks\.\d+\.norm1\.weight$/.test(k)).length;
  const D = shapes.get('cls_token')!.shape[2];
  const lora = loraPlanCount(planLora(shapes, pyraLoraConfig(cfg)));
  const pc = cfg.method === 'pyra' ? pyraParamCount(presetSchedule(cfg, depth), D) : { generators: 0, layerNorm: 0 };
  const trainable = lora + pc.generators;
  return {
    preset: cfg,
    backbone,
    lora,
    pyraGenerators: pc.generators,
    pyraLayerNorm: pc.layerNorm,
    trainable,
    pct: (100 * trainable) / backbone,
    pctWithLayerNorm: (100 * (trainable + pc.layerNorm)) / backbone,
    head: numClasses > 0 ? numClasses * D + numClasses : 0,
  };
}

/** A ViT equipped per a preset: adapters, PYRA parameters, hooks and the trainable set. */
export interface PyraModel {
  preset: PyraPresetConfig;
  schedule: number[];
  lora: LoraAdapters;
  /** null for 'tome' and 'lora' */
  pyra: Pyra | null;
  /** Forward hooks: LoRA `linear` + ToMe/PYRA `merge` + `propAttn`. */
  hooks: VitHooks;
  /** Ordered trainable set (LoRA, PYRA incl. its LayerNorm, head) for `trainStep`; everything else is frozen. */
  trainable: Map<string, tf.Variable>;
  /** Per-group counts (from the kit's trainability summary; % of the backbone without head). */
  summary: TrainSummary;
  dispose(): void;
}

/**
 * Equip `vit` per a preset: create LoRA (and PYRA) parameters, build the hooks, select what trains (the backbone is
 * frozen: `trainable = false` on its variables). The ViT's own depth / width are used, so micro ViTs work with an
 * explicit schedule. Dispose the result (adapters and PYRA parameters; the ViT is the caller's).
 * @example const m = buildPyraModel(vit, 'pyra_vit_b16_low', {seed: 0});
 *          const t = pyraTraining(vit, m, settings); // optimizer, schedules, loss for trainLoop
 *          trainStep({params: m.trainable, optimizer: t.optimizer, lr, loss: () => t.loss({x, y}, rng)})
 */
export function buildPyraModel(
  vit: Vit,
  preset: PyraPresetName | PyraPresetConfig,
  opts: { seed?: number; traceSource?: boolean; trainHead?: boolean } = {},
): PyraModel {
  checkKeys('buildPyraModel options', opts, ['seed', 'traceSource', 'trainHead']);
  const cfg = pyraPreset(preset);
  const seed = opts.seed ?? 0;
  const schedule = presetSchedule(cfg, vit.config.depth);
  const lora = createLora(vit.params, pyraLoraConfig(cfg), { seed });
  let pyra: Pyra | null = null;
  try {
    const linear = { linear: loraHooks(lora) };
    let hooks: VitHooks;
    if (cfg.method === 'pyra') {
      pyra = createPyra(vit.config, schedule, { seed });
      hooks = pyraHooks(vit.config, pyra, { propAttn: cfg.propAttn, traceSource: opts.traceSource }, linear);
    } else if (cfg.method === 'tome') {
      hooks = tomeHooks(vit.config, { schedule, propAttn: cfg.propAttn, traceSource: opts.traceSource }, linear);
    } else {
      hooks = linear;
    }
    const trainHead = opts.trainHead ?? true;
    if (trainHead && !vit.params.head) throw new Error('buildPyraModel: trainHead is set but the ViT has no head (numClasses = 0)');
    const spec = [
      { match: /(^|\.)lora_[AB]\.weight$/, train: true, group: 'LoRA (shared qkv A, B)' },
      { match: /(^|\.)pyra_[ab]$/, train: true, group: 'PYRA generators (W_r, W_D)', optional: true },
      { match: /(^|\.)pyra_norm\./, train: true, group: 'PYRA LayerNorm', optional: true },
      { match: /^head\./, train: trainHead, group: 'head', optional: true },
      { ...FREEZE_REST, group: 'backbone (frozen)' },
    ];
    const { head: _head, ...backboneTree } = vit.params;
    const sel = selectTrainable([vit.params, lora.params, ...(pyra ? [pyra.params] : [])], spec, {
      encoderTotal: countParams(backboneTree),
    });
    const owned = pyra;
    return {
      preset: cfg,
      schedule,
      lora,
      pyra,
      hooks,
      trainable: sel.trainable,
      summary: sel.summary,
      dispose: () => {
        disposeLora(lora);
        if (owned) disposePyra(owned);
      },
    };
  } catch (e) {
    disposeLora(lora);
    if (pyra) disposePyra(pyra);
    throw e;
  }
}

/**
 * Inference form: LoRA merged into the qkv weights (W ← W + A·B; PYRA's LoRA is mergeable), the merge hook kept.
 * Returns a new ViT (new variables; dispose with `disposeVit`) and the hooks to run it with.
 */
export function mergeForInference(vit: Vit, model: PyraModel): { vit: Vit; hooks: VitHooks } {
  const params = mergeLora(vit.params, model.lora);
  const { linear: _linear, ...mergeOnly } = model.hooks;
  return { vit: { config: vit.config, params, scope: `${vit.scope}+merged` }, hooks: mergeOnly };
}
