/**
 * D-ExPLoRA: ExPLoRA's extended pre-training with the DINOv2 objective (ExPLoRA `scripts/pretrain_dino.sh` on DINOv2
 * `dinov2/train/ssl_meta_arch.py`; the paper's headline method, `D-ExPLoRA-[L]-r64` on ViT-L/14).
 *
 * Student: the DINOv2 ViT (mask token, LayerScale) with `applyExplora`: block [L] fully trainable, LoRA r (α = 1 ⇒
 * scale 1/r) on the Q and V slices of every other block, every LayerNorm and the CLS token trainable; DINO head (and
 * iBOT head if separate) trained from scratch. Trainable encoder parameters of ViT-L/14 [L]-r64: 18,724,864 (heads
 * reported separately).
 * Teacher: the same backbone with its own LoRA modules (`cloneLora`) and its own heads, none trainable, updated only by
 * the EMA of every trainable student parameter (LoRA A and B separately). Frozen backbone weights are identical in
 * both models and never change, so the teacher *shares* those variables with the student (exact, and saves a second
 * 300M-parameter copy); it owns copies of the trainable ones (block L, norms, CLS).
 *
 * One step (`run.step(views, it)`) is the kit's generic `trainStep` (one synchronous tidy) with the DINOv2 objective as
 * its loss: multi-crop batch (2 global + n local crops, crop-major) and iBOT masks for the student's global crops →
 * teacher targets (centering or Sinkhorn-Knopp, τ_t schedule; gradient-free, the center updates deferred) → student
 * forward on all crops and the losses (1·DINO + 0.1·KoLeo + 1·iBOT), returned with the parts and collapse diagnostics
 * as named metrics → per sub-module grad clip 3.0 (clip groups backbone incl. LoRA, dino_head, ibot_head) → the
 * finiteness check → AdamW with the DINOv2 parameter groups (`lib/dino/param-groups.ts`): no weight decay on biases /
 * `norm` / LayerScale `gamma` (upstream's name rule; tokens do decay), weight decay cosine 0.04 → 0.4, layer-wise lr
 * decay 0.9^(L+1−layer) on the backbone (heads ×1), patch_embed lr ×0.2, the heads' `last_layer` at lr 0 for the first
 * `freezeLastLayerEpochs` (its Adam moments still update, as upstream's zero-lr param group) → the center updates —
 * then the teacher EMA (momentum cosine 0.992 → 1) in its own tidy (the step's post-update hook). A non-finite loss,
 * metric, gradient or center stops the step before anything changes (or skips it, `nonFinite: 'skip'`).
 * lr = baseLr·√(batchSize/1024) with linear warm-up and cosine to minLr; schedules are per iteration with an "epoch" of
 * `itersPerEpoch` iterations (upstream OFFICIAL_EPOCH_LENGTH = 1250).
 *
 * Gradient accumulation (`train.accumIter` micro-batches per optimizer step; ExPLoRA's script: 8 images/GPU × 4 GPUs
 * × accum_iter 32 = 1024): the gradients, losses and metrics are averaged over the micro-batches, each with its own
 * masks and randomness; the teacher targets are computed per micro-batch (Sinkhorn-Knopp over the micro-batch, as
 * upstream's per-forward all-gathered batch), and the center update is the mean of the micro-batches' proposals (the
 * full-batch update; upstream applies one update per forward — how ExPLoRA's fork handles it is unpublished).
 *
 * Left as upstream documents but not reproduced: fp16 / grad scaler, multi-GPU all-reduce (the batch is the whole
 * batch), DINOv2's subset-based drop path for rates > 0.1 (the kit's per-sample DropPath has the same expectation),
 * linspace-with-endpoint warm-ups (the kit's warm-up reaches the peak one iteration later).
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys, lookup } from '../lib/check';
import { Rng } from '../lib/rng';
import { ParamTree, newScope, flattenTree } from '../lib/tree';
import { VitConfig, VitPresetName } from '../lib/vit/config';
import { Vit, createVit, disposeVit } from '../lib/vit/params';
import { VitHooks, checkImages } from '../lib/vit/forward';
import { Optimizer, OptimizerConfig, ADAMW_DEFAULTS, checkOptimizerConfig } from '../lib/train/optim';
import { Schedule, checkSchedule, scheduleAt } from '../lib/train/schedule';
import { trainStep, StateUpdate, NonFinitePolicy } from '../lib/train/step';
import { dinov2ParamGroups } from '../lib/dino/param-groups';
import { applyExplora, ExploraRecipe, ExploraSetup, exploraRecipe, countExplora } from '../lib/peft/explora';
import { vitShapes } from '../lib/peft/shapes';
import { TrainSummary } from '../lib/peft/trainable';
import { LoraAdapters, cloneLora, disposeLora, loraHooks, loraVariables, mergeLora } from '../lib/peft/lora';
import { saveCheckpoint, loadCheckpoint, LoadReport } from '../lib/io/checkpoint';
import { dinoMultiCrop, MultiCropOptions } from '../data-loaders/augment';
import { Loader, ViewsTransform, disposeBatch } from '../data-loaders/dataset';
import { DinoHeads, createDinoHeads, disposeDinoHeads, dinoHeadVariables } from '../lib/dino/head';
import { teacherTempSchedule } from '../lib/dino/teacher';
import { IbotMasks, ibotMasks } from '../lib/dino/masking';
import { EmaPair, emaPairs, emaUpdate, teacherMomentumSchedule } from '../lib/dino/ema';
import {
  Dinov2Objective,
  Dinov2ObjectiveOverrides,
  DINOV2_OBJECTIVE,
  Dinov2LossState,
  DinoSide,
  dinov2Objective,
  createDinov2LossState,
  disposeDinov2LossState,
  dinov2StateVariables,
  multiCropBatch,
  dinov2Targets,
  dinov2StudentLoss,
  collapseMetrics,
} from '../lib/dino/dinov2';

/** Optimisation settings of a DINOv2-objective run (upstream `optim.*`, `train.*`, `teacher.*`). */
export interface DinoTrain {
  /** optim.base_lr (ExPLoRA: 1e-3); lr = baseLr·√(batchSize/1024). */
  baseLr: number;
  /** Images per optimizer step used by the √ rule (ExPLoRA: 8/GPU × 4 GPUs × accum 32 = 1024; UNCONFIRMED whether accum counts). */
  batchSize: number;
  epochs: number;
  /** Iterations per "epoch" (upstream OFFICIAL_EPOCH_LENGTH 1250). */
  itersPerEpoch: number;
  warmupEpochs: number;
  minLr: number;
  /** Weight decay cosine weightDecay → weightDecayEnd (0.04 → 0.4). */
  weightDecay: number;
  weightDecayEnd: number;
  /** Layer-wise lr decay (0.9). */
  layerDecay: number;
  /** patch_embed lr multiplier (0.2). */
  patchEmbedLrMult: number;
  /** Grad-norm clip per student sub-module (3.0; 0 = none). */
  clipGrad: number;
  /** Epochs with lr 0 on the heads' last layer (DINOv2 default 1; ExPLoRA 3). */
  freezeLastLayerEpochs: number;
  /** Teacher momentum cosine base → final (0.992 → 1). */
  momentumTeacher: number;
  finalMomentumTeacher: number;
  optimizer: OptimizerConfig;
  /** Student stochastic depth (DINOv2 default 0.3, uniform over blocks). */
  dropPathRate: number;
  /**
   * Micro-batches per optimizer step (gradient accumulation; `trainExploraDino` reads `accumIter` loader batches per
   * iteration). Default 1. ExPLoRA's script: 32 (8/GPU × 4 GPUs per forward); set it with a loader of
   * batchSize / accumIter images to reproduce the batch of 1024 on one process.
   */
  accumIter: number;
}

const TRAIN_KEYS: readonly (keyof DinoTrain)[] = [
  'baseLr', 'batchSize', 'epochs', 'itersPerEpoch', 'warmupEpochs', 'minLr', 'weightDecay', 'weightDecayEnd', 'layerDecay', 'patchEmbedLrMult',
  'clipGrad', 'freezeLastLayerEpochs', 'momentumTeacher', 'finalMomentumTeacher', 'optimizer', 'dropPathRate', 'accumIter',
];

/** ExPLoRA's `scripts/pretrain_dino.sh` on DINOv2 defaults (`dinov2/configs/ssl_default_config.yaml`). */
export const D_EXPLORA_TRAIN: DinoTrain = Object.freeze({
  baseLr: 1e-3,
  batchSize: 1024,
  epochs: 100,
  itersPerEpoch: 1250,
  warmupEpochs: 10,
  minLr: 1e-6,
  weightDecay: 0.04,
  weightDecayEnd: 0.4,
  layerDecay: 0.9,
  patchEmbedLrMult: 0.2,
  clipGrad: 3.0,
  freezeLastLayerEpochs: 3,
  momentumTeacher: 0.992,
  finalMomentumTeacher: 1,
  optimizer: ADAMW_DEFAULTS,
  dropPathRate: 0.3,
  accumIter: 1,
});

/** Validated training settings (unknown keys rejected). */
export function dinoTrain(o: Partial<DinoTrain> = {}, base: DinoTrain = D_EXPLORA_TRAIN): DinoTrain {
  checkKeys('DinoTrain', o, TRAIN_KEYS);
  const t = { ...base, ...o };
  for (const k of ['baseLr', 'batchSize', 'epochs', 'itersPerEpoch'] as const) if (!(t[k] > 0)) throw new Error(`DinoTrain.${k}: expected > 0, got ${t[k]}`);
  if (!Number.isInteger(t.itersPerEpoch)) throw new Error(`DinoTrain.itersPerEpoch: expected an integer, got ${t.itersPerEpoch}`);
  for (const k of ['warmupEpochs', 'freezeLastLayerEpochs'] as const) {
    if (!(t[k] >= 0 && t[k] <= t.epochs)) throw new Error(`DinoTrain.${k}: expected in [0, epochs=${t.epochs}], got ${t[k]}`);
  }
  for (const k of ['minLr', 'weightDecay', 'weightDecayEnd', 'clipGrad'] as const) if (!(t[k] >= 0)) throw new Error(`DinoTrain.${k}: expected ≥ 0, got ${t[k]}`);
  for (const k of ['layerDecay', 'patchEmbedLrMult'] as const) if (!(t[k] > 0 && t[k] <= 1)) throw new Error(`DinoTrain.${k}: expected in (0, 1], got ${t[k]}`);
  for (const k of ['momentumTeacher', 'finalMomentumTeacher'] as const) if (!(t[k] >= 0 && t[k] <= 1)) throw new Error(`DinoTrain.${k}: expected in [0, 1], got ${t[k]}`);
  if (!(t.dropPathRate >= 0 && t.dropPathRate < 1)) throw new Error(`DinoTrain.dropPathRate: expected in [0, 1), got ${t.dropPathRate}`);
  if (!(Number.isInteger(t.accumIter) && t.accumIter >= 1)) throw new Error(`DinoTrain.accumIter: expected an integer ≥ 1, got ${t.accumIter}`);
  checkOptimizerConfig(t.optimizer, 'DinoTrain.optimizer');
  return Object.freeze(t);
}

/** A whole D-ExPLoRA run description: backbone, parameter recipe, objective, optimisation. */
export interface DExploraConfig {
  /** ViT preset of the backbone (a DINOv2 preset: mask token + LayerScale). */
  model: VitPresetName;
  modelOverrides: Partial<VitConfig>;
  /** ExPLoRA recipe in the paper's notation (`D-ExPLoRA-[L]-r64`) or as a record. */
  recipe: string | ExploraRecipe;
  objective: Dinov2Objective;
  train: DinoTrain;
}

const CONFIG_KEYS: readonly (keyof DExploraConfig)[] = ['model', 'modelOverrides', 'recipe', 'objective', 'train'];

/**
 * The paper's configuration: DINOv2 ViT-L/14 (checkpoint grid 37×37, trained at 224: global 224 / local 98 crops),
 * D-ExPLoRA-[L]-r64, DINOv2 default objective (65,536 prototypes, shared head, centering), ExPLoRA optimisation.
 */
export const D_EXPLORA_L_R64: DExploraConfig = Object.freeze({
  model: 'vit_large_patch14_dinov2',
  modelOverrides: Object.freeze({ imgSize: 224 }),
  recipe: 'D-ExPLoRA-[L]-r64',
  objective: DINOV2_OBJECTIVE,
  train: D_EXPLORA_TRAIN,
});

/**
 * A small configuration for CPU runs on the embedded 32-px datasets: a 4-block 64-wide ViT with patch 4 (global 32 /
 * local 16 crops, 4 local), [L]-r8, a 256-prototype head, 8 images per step, epochs of 20 iterations.
 */
export const D_EXPLORA_SMALL: DExploraConfig = Object.freeze({
  model: 'vit_small_patch14_dinov2',
  modelOverrides: Object.freeze({ imgSize: 32, patchSize: 4, embedDim: 64, depth: 4, numHeads: 4, posEmbedGrid: null }),
  recipe: 'D-ExPLoRA-[L]-r8',
  objective: dinov2Objective({ head: { hiddenDim: 128, bottleneckDim: 32, outDim: 256 }, nLocalCrops: 4, globalCropSize: 32, localCropSize: 16, teacherTemp: { warmupEpochs: 2 } }),
  train: dinoTrain({ batchSize: 8, epochs: 10, itersPerEpoch: 20, warmupEpochs: 1, freezeLastLayerEpochs: 1, dropPathRate: 0.1 }),
});

export const D_EXPLORA_PRESETS = { D_EXPLORA_L_R64, D_EXPLORA_SMALL } as const;

/** Overrides of a config: nested objective / train records may be partial. */
export type DExploraOverrides = Partial<Omit<DExploraConfig, 'objective' | 'train'>> & { objective?: Dinov2ObjectiveOverrides; train?: Partial<DinoTrain> };

/**
 * Validated config from a preset (name or record) and overrides; unknown keys at any level are errors.
 * @example dExploraConfig('D_EXPLORA_L_R64', {train: {baseLr: 5e-4}, objective: {targets: SINKHORN_KNOPP}})
 */
export function dExploraConfig(base: keyof typeof D_EXPLORA_PRESETS | DExploraConfig = 'D_EXPLORA_L_R64', o: DExploraOverrides = {}): DExploraConfig {
  const b = typeof base === 'string' ? lookup('D-ExPLoRA preset', D_EXPLORA_PRESETS, base) : base;
  checkKeys('DExploraConfig', b, CONFIG_KEYS);
  checkKeys('DExploraConfig overrides', o, CONFIG_KEYS);
  const cfg: DExploraConfig = {
    model: o.model ?? b.model,
    modelOverrides: { ...b.modelOverrides, ...(o.modelOverrides ?? {}) },
    recipe: o.recipe ?? b.recipe,
    objective: dinov2Objective(o.objective ?? {}, b.objective),
    train: dinoTrain(o.train ?? {}, b.train),
  };
  const r = exploraRecipe(cfg.recipe);
  if (r.family !== 'D') throw new Error(`DExploraConfig.recipe: D-ExPLoRA needs a DINOv2 (D-) recipe, got ${typeof cfg.recipe === 'string' ? cfg.recipe : r.family}`);
  return Object.freeze(cfg);
}

/** Parameters of one DINO head of the config (shape-only). */
export function dinoHeadCount(inDim: number, h: Dinov2Objective['head']): number {
  const dims = h.nlayers === 1 ? [inDim, h.bottleneckDim] : [inDim, ...Array(h.nlayers - 1).fill(h.hiddenDim), h.bottleneckDim];
  let n = 0;
  for (let i = 0; i + 1 < dims.length; i++) n += dims[i] * dims[i + 1] + (h.mlpBias ? dims[i + 1] : 0);
  return n + h.outDim + h.outDim * h.bottleneckDim; // weight_g [K, 1] + weight_v [K, bottleneck]
}

/**
 * What a config trains, without allocating anything: the ExPLoRA encoder summary (trainable encoder parameters, as
 * the paper counts them) and the heads (student heads train from scratch; reported separately).
 * @example exploraDinoCounts(D_EXPLORA_L_R64).encoder // 18,724,864
 */
export function exploraDinoCounts(config: DExploraConfig | keyof typeof D_EXPLORA_PRESETS = 'D_EXPLORA_L_R64'): { encoder: number; heads: number; trainable: number; summary: TrainSummary } {
  const cfg = typeof config === 'string' ? dExploraConfig(config) : dExploraConfig(config);
  const shapes = vitShapes(cfg.model, cfg.modelOverrides);
  const summary = countExplora(shapes, exploraRecipe(cfg.recipe));
  const inDim = shapes.get('cls_token')!.shape[2];
  const heads = dinoHeadCount(inDim, cfg.objective.head) * (cfg.objective.separateIbotHead ? 2 : 1);
  return { encoder: summary.trainableEncoder, heads, trainable: summary.trainableEncoder + heads, summary };
}

/** Peak lr: baseLr·√(batchSize/1024) (DINOv2 `sqrt_wrt_1024`). */
export function dinoLr(t: DinoTrain): number {
  return t.baseLr * Math.sqrt(t.batchSize / 1024);
}

/** All per-iteration schedules of a run. */
export interface DinoSchedules {
  lr: Schedule;
  weightDecay: Schedule;
  momentum: Schedule;
  teacherTemp: Schedule;
  /** Iterations with lr 0 on `last_layer`. */
  freezeLastLayerIters: number;
  totalIters: number;
}

export function dinoSchedules(c: Pick<DExploraConfig, 'objective' | 'train'>): DinoSchedules {
  const t = c.train;
  const ipe = t.itersPerEpoch;
  const totalIters = Math.round(t.epochs * ipe);
  return {
    lr: checkSchedule({ kind: 'cosine', base: dinoLr(t), min: t.minLr, totalIters, warmupIters: Math.round(t.warmupEpochs * ipe), warmupStart: 0 }, 'lr schedule'),
    weightDecay: checkSchedule({ kind: 'cosine', base: t.weightDecay, min: t.weightDecayEnd, totalIters, warmupIters: 0 }, 'weight-decay schedule'),
    momentum: teacherMomentumSchedule(totalIters, t.momentumTeacher, t.finalMomentumTeacher),
    teacherTemp: teacherTempSchedule(c.objective.teacherTemp, ipe),
    freezeLastLayerIters: Math.round(t.freezeLastLayerEpochs * ipe),
    totalIters,
  };
}

export { dinov2Decay, dinov2LrScale, dinov2ParamGroups } from '../lib/dino/param-groups';

/** The DINOv2 parameter groups of a run config (`lib/dino/param-groups.ts`) for a backbone of `depth` blocks. */
export function exploraDinoParamGroups(cfg: Pick<DExploraConfig, 'objective' | 'train'>, depth: number) {
  const t = cfg.train;
  return dinov2ParamGroups({
    depth,
    layerDecay: t.layerDecay,
    patchEmbedLrMult: t.patchEmbedLrMult,
    freezeLastLayerIters: Math.round(t.freezeLastLayerEpochs * t.itersPerEpoch),
    separateIbotHead: cfg.objective.separateIbotHead,
  });
}

/** Metrics of one step (plain numbers). */
export interface DinoStepMetrics {
  step: number;
  loss: number;
  dino: number;
  ibot: number;
  koleo: number;
  lr: number;
  lastLayerLr: number;
  weightDecay: number;
  teacherTemp: number;
  momentum: number;
  /** Pre-clip gradient norms per student sub-module. */
  gradNorm: { backbone: number; dino_head: number; ibot_head?: number };
  /** Masked patches in the step. */
  nMasked: number;
  /** Collapse diagnostics of the teacher targets / teacher CLS (see `collapseMetrics`). */
  targetEntropy: number;
  targetMarginalEntropy: number;
  featureStd: number;
  seconds: number;
  /** Micro-batches of the step (1 without accumulation). */
  microBatches?: number;
  /** Set when the step was skipped (`nonFinite: 'skip'`): which term was non-finite; nothing changed. */
  skipped?: string;
}

/** Options of one D-ExPLoRA step. */
export interface DinoStepOptions {
  /** The iBOT masks (one per micro-batch with accumulation); default `masksFor(it, B, grid[, micro])`. */
  masks?: IbotMasks | readonly IbotMasks[];
  /** Non-finite loss / metric / gradient / center: 'error' (default) or 'skip' the step. */
  nonFinite?: NonFinitePolicy;
}

/** A ready-to-train D-ExPLoRA run. */
export interface DExploraRun {
  readonly config: DExploraConfig;
  readonly seed: number;
  readonly student: DinoSide;
  readonly teacher: DinoSide;
  readonly studentHeads: DinoHeads;
  readonly teacherHeads: DinoHeads;
  readonly explora: ExploraSetup;
  readonly teacherLora: LoraAdapters | null;
  /** What trains (student backbone subset + LoRA + heads), in optimizer order. */
  readonly trainable: Map<string, tf.Variable>;
  /** AdamW over the trainable set with the DINOv2 parameter groups (the last layer is a zero-lr group while frozen). */
  readonly optimizer: Optimizer;
  /** @deprecated the same optimizer as `optimizer`; `lastLayer` is null (the frozen last layer is a group of it). */
  readonly optimizers: { main: Optimizer; lastLayer: Optimizer | null };
  readonly lossState: Dinov2LossState;
  readonly ema: readonly EmaPair[];
  readonly schedules: DinoSchedules;
  /** Peak lr. */
  readonly lr: number;
  /** Teacher backbone variables the teacher owns (copies of trainable student parameters). */
  readonly teacherOwn: ReadonlyMap<string, tf.Variable>;
  /**
   * The iBOT masks of iteration `it` for B images per crop (what `step` draws when none are given); with gradient
   * accumulation, of micro-batch `micro` (k > 1 micro-batches draw from (seed, it, micro), k = 1 from (seed, it)).
   */
  masksFor(it: number, B: number, grid: [number, number], micro?: number): IbotMasks;
  /**
   * One training iteration on loader views [g1, g2, l1 … ln] (each [B, h, w, C]) — or on a list of such view sets, the
   * micro-batches of one optimizer step (gradient accumulation).
   */
  step(views: readonly tf.Tensor4D[] | readonly (readonly tf.Tensor4D[])[], it: number, opts?: DinoStepOptions): DinoStepMetrics;
  /** Checkpoint map: `student.backbone.*`, `student.dino_head.*`, `teacher.*`, `dino_loss.center`, `ibot_patch_loss.center`, `optim.*`. */
  variables(opts?: { optimizer?: boolean }): Map<string, tf.Variable>;
  /** Free adapters, heads, teacher copies, optimizer state and centers (and the backbone if the run created it). */
  dispose(): void;
}

function mapTreeLeaves<T>(tree: T, fn: (path: string, v: tf.Variable) => tf.Variable, prefix = ''): T {
  if (tree === undefined || tree === null) return tree;
  if (tree instanceof tf.Variable) return fn(prefix, tree) as unknown as T;
  if (Array.isArray(tree)) return tree.map((sub, i) => mapTreeLeaves(sub, fn, prefix ? `${prefix}.${i}` : String(i))) as unknown as T;
  if (typeof tree !== 'object') return tree;
  const out: Record<string, unknown> = {};
  for (const [k, sub] of Object.entries(tree as Record<string, unknown>)) out[k] = mapTreeLeaves(sub, fn, prefix ? `${prefix}.${k}` : k);
  return out as T;
}

/** A non-trainable copy of every variable of a tree (new scope). */
function copyTree<T extends ParamTree>(tree: T, kind: string, only?: (path: string) => boolean): { tree: T; own: Map<string, tf.Variable> } {
  const scope = newScope(kind);
  const own = new Map<string, tf.Variable>();
  const out = mapTreeLeaves(tree, (path, v) => {
    if (only && !only(path)) return v;
    const c = tf.tidy(() => tf.variable(v.clone(), false, `${scope}/${path}`));
    own.set(path, c);
    return c;
  });
  return { tree: out, own };
}

export interface ExploraDinoOptions {
  /** Seed of the heads' and LoRA initialisation and of every step's randomness (masks, drop path). */
  seed?: number;
}

/**
 * Set up D-ExPLoRA on a DINOv2 backbone (created / loaded by the caller, who keeps owning it): heads, LoRA, teacher,
 * optimizers, centers, schedules.
 * @example
 *   const vit = createVit('vit_large_patch14_dinov2', {imgSize: 224}, {skipInit: true}); // then load dinov2_vitl14_pretrain
 *   const run = setupExploraDino(vit, D_EXPLORA_L_R64);
 *   console.log(formatTrainSummary(run.explora.selection.summary)); // 18,724,864 trainable encoder parameters
 *   const loader = new Loader(ds, {batchSize: 32, views: exploraDinoViews(run.config)});
 *   await trainExploraDino(run, loader, {steps: 100});
 */
export function setupExploraDino(vit: Vit, config: DExploraConfig | keyof typeof D_EXPLORA_PRESETS = 'D_EXPLORA_L_R64', opts: ExploraDinoOptions = {}): DExploraRun {
  return build(vit, typeof config === 'string' ? dExploraConfig(config) : dExploraConfig(config), opts, false);
}

/** Create the backbone from the config (fresh init, or `skipInit` for weights loaded next) and set up the run; the run owns it. */
export function createExploraDino(config: DExploraConfig | keyof typeof D_EXPLORA_PRESETS = 'D_EXPLORA_SMALL', opts: ExploraDinoOptions & { skipInit?: boolean } = {}): DExploraRun {
  checkKeys('createExploraDino options', opts, ['seed', 'skipInit']);
  const cfg = typeof config === 'string' ? dExploraConfig(config) : dExploraConfig(config);
  const vit = createVit(cfg.model, cfg.modelOverrides, { seed: opts.seed ?? 0, skipInit: opts.skipInit });
  try {
    return build(vit, cfg, { seed: opts.seed }, true);
  } catch (e) {
    disposeVit(vit);
    throw e;
  }
}

function build(vit: Vit, cfg: DExploraConfig, opts: ExploraDinoOptions, ownsModel: boolean): DExploraRun {
  checkKeys('ExploraDinoOptions', opts, ['seed']);
  const vc = vit.config;
  if (!vit.params.mask_token) throw new Error(`D-ExPLoRA: the backbone needs a mask token for iBOT (VitConfig.maskToken = true, as the DINOv2 presets)`);
  if (vc.pool !== 'cls' || !vit.params.norm) throw new Error("D-ExPLoRA: the backbone must end with the final norm and pool 'cls' (DINOv2 layout)");
  const obj = cfg.objective;
  for (const [k, s] of [['globalCropSize', obj.globalCropSize], ['localCropSize', obj.localCropSize]] as const) {
    if (s % vc.patchSize) throw new Error(`D-ExPLoRA: objective.${k} ${s} is not a multiple of the patch size ${vc.patchSize}`);
  }
  const seed = opts.seed ?? 0;
  const headCfg = { inDim: vc.embedDim, ...obj.head };
  const studentHeads = createDinoHeads(headCfg, { separateIbot: obj.separateIbotHead, seed });
  const disposers: Array<() => void> = [() => disposeDinoHeads(studentHeads)];
  let disposed = false;
  const cleanup = (): void => {
    if (disposed) return;
    disposed = true;
    for (const d of [...disposers].reverse()) d();
  };
  try {
    const explora = applyExplora({ encoder: vit.params, heads: studentHeads.params }, cfg.recipe, { seed });
    disposers.push(() => explora.dispose());
    const trainable = explora.selection.trainable;
    // teacher: own copies of the trainable backbone parameters, shared frozen ones; own LoRA; own heads
    const { tree: tParams, own: teacherOwn } = copyTree(vit.params, 'dino-teacher', (p) => trainable.has(p));
    disposers.push(() => teacherOwn.forEach((v) => v.isDisposed || v.dispose()));
    const teacherVit: Vit = { config: vc, params: tParams, scope: newScope('dino-teacher-vit') };
    const teacherLora = explora.lora ? cloneLora(explora.lora) : null;
    if (teacherLora) disposers.push(() => disposeLora(teacherLora));
    const th = copyTree(studentHeads.params, 'dino-teacher-heads');
    const teacherHeads: DinoHeads = { ...studentHeads, params: th.tree, scope: newScope('dino-teacher-heads') };
    disposers.push(() => disposeDinoHeads(teacherHeads));
    // EMA over everything that trains
    const teacherAll = new Map<string, tf.Variable>([...flattenTree(tParams), ...(teacherLora ? loraVariables(teacherLora) : []), ...dinoHeadVariables(teacherHeads)]);
    const ema = emaPairs(teacherAll, trainable);
    // one optimizer with the DINOv2 parameter groups (decay rule, layer decay, patch_embed ×0.2, frozen last layer,
    // clip groups per sub-module)
    const t = cfg.train;
    const optimizer = new Optimizer(t.optimizer, trainable, { groups: exploraDinoParamGroups(cfg, vc.depth) });
    disposers.push(() => optimizer.dispose());
    const lossState = createDinov2LossState(obj);
    disposers.push(() => disposeDinov2LossState(lossState));
    if (ownsModel) disposers.unshift(() => disposeVit(vit));
    const schedules = dinoSchedules(cfg);
    const studentHooks: VitHooks = explora.lora ? { linear: loraHooks(explora.lora) } : {};
    const teacherHooks: VitHooks = teacherLora ? { linear: loraHooks(teacherLora) } : {};
    const student: DinoSide = { vit, hooks: studentHooks, heads: studentHeads.params };
    const teacher: DinoSide = { vit: teacherVit, hooks: teacherHooks, heads: teacherHeads.params };
    const masksFor = (it: number, B: number, grid: [number, number], micro?: number): IbotMasks =>
      ibotMasks(micro === undefined ? Rng.derive(seed, 'ibot-masks', it) : Rng.derive(seed, 'ibot-masks', it, 'micro', micro), 2 * B, grid[0], grid[1], obj.masking);

    const step = (views: readonly tf.Tensor4D[] | readonly (readonly tf.Tensor4D[])[], it: number, so: DinoStepOptions = {}): DinoStepMetrics => {
      const t0 = Date.now();
      checkKeys('D-ExPLoRA step options', so, ['masks', 'nonFinite']);
      if (!Number.isInteger(it) || it < 0) throw new Error(`D-ExPLoRA step: iteration must be an integer ≥ 0, got ${it}`);
      if (!views.length) throw new Error('D-ExPLoRA step: no views (expected 2 global + nLocal local crops)');
      const micro: (readonly tf.Tensor4D[])[] = Array.isArray(views[0]) ? (views as readonly (readonly tf.Tensor4D[])[]).slice() : [views as readonly tf.Tensor4D[]];
      const k = micro.length;
      const given = so.masks === undefined ? null : Array.isArray(so.masks) ? (so.masks as readonly IbotMasks[]) : [so.masks as IbotMasks];
      if (given && given.length !== k) throw new Error(`D-ExPLoRA step: ${given.length} mask sets for ${k} micro-batches`);
      const masks = micro.map((v, i) => {
        if (!v.length) throw new Error(`D-ExPLoRA step: micro-batch ${i} has no views (expected 2 global + nLocal local crops)`);
        const B = v[0].shape[0];
        const grid = checkImages(vc, v[0]);
        const m = given ? given[i] : masksFor(it, B, grid, k === 1 ? undefined : i);
        if (m.n !== 2 * B || m.grid[0] !== grid[0] || m.grid[1] !== grid[1]) {
          throw new Error(`D-ExPLoRA step: masks are for ${m.n} images on ${m.grid[0]}x${m.grid[1]}, the global crops give ${2 * B} on ${grid[0]}x${grid[1]}`);
        }
        return m;
      });
      const lr = scheduleAt(schedules.lr, it);
      const lastLayerLr = it < schedules.freezeLastLayerIters ? 0 : lr;
      const wd = scheduleAt(schedules.weightDecay, it);
      const temp = scheduleAt(schedules.teacherTemp, it);
      const momentum = scheduleAt(schedules.momentum, it);
      const rngs = micro.map((_v, i) => (k === 1 ? Rng.derive(seed, 'step', it) : Rng.derive(seed, 'step', it, 'micro', i)));
      const r = trainStep({
        params: trainable,
        optimizer,
        iteration: it,
        lr,
        weightDecay: wd,
        clipGradNorm: t.clipGrad,
        microBatches: k,
        nonFinite: so.nonFinite,
        loss: (i) => {
          const batch = multiCropBatch(micro[i], obj.nLocalCrops);
          const updates: StateUpdate[] = [];
          const targets = dinov2Targets(teacher, studentHeads.config, batch, masks[i], temp, obj, lossState, updates);
          const l = dinov2StudentLoss(student, studentHeads.config, batch, masks[i], targets, obj, { rng: rngs[i], training: true, dropPathRate: t.dropPathRate });
          const cm = collapseMetrics(targets.cls, targets.features.cls);
          return {
            loss: l.total,
            metrics: { dino: l.dino, ibot: l.ibot, koleo: l.koleo, targetEntropy: cm.targetEntropy, targetMarginalEntropy: cm.targetMarginalEntropy, featureStd: cm.featureStd },
            updates,
          };
        },
        afterUpdate: () => emaUpdate(ema, momentum),
      });
      const m = r.metrics;
      const g = r.gradNorms;
      return {
        step: it,
        loss: r.loss,
        dino: m.dino,
        ibot: m.ibot,
        koleo: m.koleo,
        lr,
        lastLayerLr,
        weightDecay: wd,
        teacherTemp: temp,
        momentum,
        gradNorm: { backbone: g.backbone, dino_head: g.dino_head, ...(g.ibot_head !== undefined ? { ibot_head: g.ibot_head } : {}) },
        nMasked: masks.reduce((a, x) => a + x.indices.length, 0),
        targetEntropy: m.targetEntropy,
        targetMarginalEntropy: m.targetMarginalEntropy,
        featureStd: m.featureStd,
        seconds: (Date.now() - t0) / 1000,
        ...(k > 1 ? { microBatches: k } : {}),
        ...(r.skipped ? { skipped: r.skipped } : {}),
      };
    };

    const variables = (vo: { optimizer?: boolean } = {}): Map<string, tf.Variable> => {
      const m = new Map<string, tf.Variable>();
      const add = (prefix: string, src: ReadonlyMap<string, tf.Variable>): void => src.forEach((v, p) => m.set(`${prefix}${p}`, v));
      add('student.backbone.', flattenTree(vit.params));
      if (explora.lora) add('student.backbone.', loraVariables(explora.lora));
      add('student.', dinoHeadVariables(studentHeads));
      add('teacher.backbone.', flattenTree(tParams));
      if (teacherLora) add('teacher.backbone.', loraVariables(teacherLora));
      add('teacher.', dinoHeadVariables(teacherHeads));
      add('', dinov2StateVariables(lossState));
      if (vo.optimizer ?? true) add('optim.', optimizer.stateTensors());
      return m;
    };

    return {
      config: cfg,
      seed,
      student,
      teacher,
      studentHeads,
      teacherHeads,
      explora,
      teacherLora,
      trainable,
      optimizer,
      optimizers: { main: optimizer, lastLayer: null },
      lossState,
      ema,
      schedules,
      lr: dinoLr(t),
      teacherOwn,
      masksFor,
      step,
      variables,
      dispose: cleanup,
    };
  } catch (e) {
    cleanup();
    throw e;
  }
}

/** Views transform for a `Loader` matching the run's crops: DINOv2 multi-crop (2 global + nLocal local). */
export function exploraDinoViews(cfg: Pick<DExploraConfig, 'objective'>, extra: Omit<MultiCropOptions, 'globalSize' | 'localSize' | 'nLocal'> = {}): ViewsTransform {
  const o = cfg.objective;
  return dinoMultiCrop({ ...extra, globalSize: o.globalCropSize, localSize: o.localCropSize, nLocal: o.nLocalCrops });
}

/**
 * Train `steps` iterations from `startStep` (default: where the optimizer stopped — updates + skipped steps) on a
 * multi-crop loader. Batches are addressed by iteration (`accumIter` > 1: micro-batch i of iteration it is loader batch
 * it·accumIter + i), so resuming continues exactly; they are disposed after their step.
 */
export async function trainExploraDino(
  run: DExploraRun,
  loader: Loader,
  opts: { steps: number; startStep?: number; onStep?: (m: DinoStepMetrics) => void | Promise<void>; nonFinite?: NonFinitePolicy },
): Promise<DinoStepMetrics[]> {
  checkKeys('trainExploraDino options', opts, ['steps', 'startStep', 'onStep', 'nonFinite']);
  if (!(Number.isInteger(opts.steps) && opts.steps >= 0)) throw new Error(`trainExploraDino: steps must be an integer ≥ 0, got ${opts.steps}`);
  const start = opts.startStep ?? run.optimizer.iteration;
  if (!(Number.isInteger(start) && start >= 0)) throw new Error(`trainExploraDino: startStep must be an integer ≥ 0, got ${start}`);
  const k = run.config.train.accumIter;
  const out: DinoStepMetrics[] = [];
  for (let it = start; it < start + opts.steps; it++) {
    const bs = [];
    let m: DinoStepMetrics;
    try {
      for (let i = 0; i < k; i++) {
        const b = await loader.batchAt(k === 1 ? it : it * k + i);
        bs.push(b);
        if (!b.views) throw new Error(`trainExploraDino: the loader gives no views; build it with {views: exploraDinoViews(run.config)}`);
      }
      const views = bs.map((b) => b.views!);
      m = run.step(k === 1 ? views[0] : views, it, { nonFinite: opts.nonFinite });
    } finally {
      bs.forEach(disposeBatch);
    }
    out.push(m);
    if (opts.onStep) await opts.onStep(m);
  }
  return out;
}

/**
 * Save student, teacher, heads, centers and optimizer state (PyTorch layout; the optimizer's step, skipped count,
 * configuration and parameter groups in the metadata, so a resume can check it continues the same optimisation).
 */
export function saveExploraDinoCheckpoint(file: string, run: DExploraRun, meta: Record<string, unknown> = {}): void {
  saveCheckpoint(file, {
    params: run.variables({ optimizer: false }),
    optimizer: run.optimizer,
    meta: {
      ...meta,
      objective: 'dinov2',
      notation: run.explora.notation,
      config: { ...run.config, recipe: run.explora.notation },
      seed: run.seed,
    },
  });
}

/**
 * Load a checkpoint written by `saveExploraDinoCheckpoint` into a run of the same config (all-or-nothing; another
 * optimizer configuration, trainable set or parameter groups than the checkpoint's is an error naming the difference).
 */
export function loadExploraDinoCheckpoint(file: string, run: DExploraRun): LoadReport {
  return loadCheckpoint(file, { params: run.variables({ optimizer: false }), optimizer: run.optimizer });
}

/**
 * ExPLoRA step 6: merge LoRA into the backbone weights (teacher by default — the model DINOv2 / ExPLoRA evaluate and
 * release) and return a new plain `Vit` (new variables) for fine-tuning or linear probing without hooks.
 */
export function mergeExploraDinoEncoder(run: DExploraRun, which: 'teacher' | 'student' = 'teacher'): Vit {
  const side = which === 'teacher' ? run.teacher : run.student;
  const lora = which === 'teacher' ? run.teacherLora : run.explora.lora;
  return { ...side.vit, params: mergeLora(side.vit.params, lora ?? [], { allowMissing: true, scopeKind: `d-explora-${which}-merged` }), scope: newScope(`d-explora-${which}`) };
}
