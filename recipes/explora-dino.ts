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
 * One step (`run.step(views, it)`) = one synchronous tidy: multi-crop batch (2 global + n local crops, crop-major) and
 * iBOT masks for the student's global crops → teacher targets outside the gradient tape (centering or Sinkhorn-Knopp,
 * τ_t schedule) → student forward on all crops and the losses (1·DINO + 0.1·KoLeo + 1·iBOT) under the tape → per
 * sub-module grad clip 3.0 (backbone incl. LoRA, dino_head, ibot_head) → AdamW with the DINOv2 parameter groups:
 * no weight decay on biases / `norm` / LayerScale `gamma` (upstream's name rule; tokens do decay), weight decay cosine
 * 0.04 → 0.4, layer-wise lr decay 0.9^(L+1−layer) on the backbone (heads ×1), patch_embed lr ×0.2, the heads'
 * `last_layer` at lr 0 for the first `freezeLastLayerEpochs` (its Adam moments still update, as upstream's zero-lr
 * param group) — then the teacher EMA (momentum cosine 0.992 → 1) in its own tidy.
 * lr = baseLr·√(batchSize/1024) with linear warm-up and cosine to minLr; schedules are per iteration with an "epoch" of
 * `itersPerEpoch` iterations (upstream OFFICIAL_EPOCH_LENGTH = 1250).
 *
 * Left as upstream documents but not reproduced: fp16 / grad scaler, multi-GPU all-reduce (the batch is the whole
 * batch), gradient accumulation (ExPLoRA's accum_iter 32), DINOv2's subset-based drop path for rates > 0.1 (the kit's
 * per-sample DropPath has the same expectation), linspace-with-endpoint warm-ups (the kit's warm-up reaches the peak
 * one iteration later).
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys, lookup } from '../lib/check';
import { Rng } from '../lib/rng';
import { ParamTree, newScope, flattenTree } from '../lib/tree';
import { VitConfig, VitPresetName } from '../lib/vit/config';
import { Vit, createVit, disposeVit } from '../lib/vit/params';
import { VitHooks, checkImages } from '../lib/vit/forward';
import { Optimizer, OptimizerConfig, ADAMW_DEFAULTS, layerId } from '../lib/train/optim';
import { Schedule, checkSchedule, scheduleAt } from '../lib/train/schedule';
import { clipByGlobalNorm } from '../lib/train/step';
import { applyExplora, ExploraRecipe, ExploraSetup, exploraRecipe, countExplora } from '../lib/peft/explora';
import { vitShapes } from '../lib/peft/shapes';
import { TrainSummary } from '../lib/peft/trainable';
import { LoraAdapters, cloneLora, disposeLora, loraHooks, loraVariables, mergeLora } from '../lib/peft/lora';
import { saveCheckpoint, loadCheckpoint, LoadReport } from '../lib/io/checkpoint';
import { dinoMultiCrop, MultiCropOptions } from '../data-loaders/augment';
import { Loader, ViewsTransform, disposeBatch } from '../data-loaders/dataset';
import { DinoHeads, createDinoHeads, disposeDinoHeads, dinoHeadVariables, isLastLayer } from '../lib/dino/head';
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
}

const TRAIN_KEYS: readonly (keyof DinoTrain)[] = [
  'baseLr', 'batchSize', 'epochs', 'itersPerEpoch', 'warmupEpochs', 'minLr', 'weightDecay', 'weightDecayEnd', 'layerDecay', 'patchEmbedLrMult',
  'clipGrad', 'freezeLastLayerEpochs', 'momentumTeacher', 'finalMomentumTeacher', 'optimizer', 'dropPathRate',
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

/** DINOv2's weight-decay rule (`param_groups.py`): no decay on `*.bias`, any `norm` parameter, LayerScale `gamma`. */
export function dinov2Decay(path: string): boolean {
  return !(path.endsWith('.bias') || path.includes('norm') || path.includes('gamma'));
}

/** DINOv2's lr multiplier: layer decay on backbone paths (0 = tokens / patch_embed, blocks i+1, rest L+1), heads ×1, patch_embed × mult. */
export function dinov2LrScale(depth: number, layerDecay: number, patchEmbedLrMult: number): (path: string) => number {
  return (path) => {
    if (/^(dino_head|ibot_head)\./.test(path)) return 1;
    const s = Math.pow(layerDecay, depth + 1 - layerId(path, depth));
    return /(^|\.)patch_embed\./.test(path) ? s * patchEmbedLrMult : s;
  };
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
  readonly optimizers: { main: Optimizer; lastLayer: Optimizer | null };
  readonly lossState: Dinov2LossState;
  readonly ema: readonly EmaPair[];
  readonly schedules: DinoSchedules;
  /** Peak lr. */
  readonly lr: number;
  /** Teacher backbone variables the teacher owns (copies of trainable student parameters). */
  readonly teacherOwn: ReadonlyMap<string, tf.Variable>;
  /** The iBOT masks of iteration `it` for B images per crop (what `step` draws when none are given). */
  masksFor(it: number, B: number, grid: [number, number]): IbotMasks;
  /** One training iteration on loader views [g1, g2, l1 … ln] (each [B, h, w, C]). */
  step(views: readonly tf.Tensor4D[], it: number, opts?: { masks?: IbotMasks }): DinoStepMetrics;
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
    // optimizers: everything but the heads' last layers, and the last layers (lr 0 while frozen)
    const t = cfg.train;
    const optOpts = { decay: (p: string) => dinov2Decay(p), lrScale: dinov2LrScale(vc.depth, t.layerDecay, t.patchEmbedLrMult) };
    const mainParams = new Map([...trainable].filter(([p]) => !isLastLayer(p)));
    const lastParams = new Map([...trainable].filter(([p]) => isLastLayer(p)));
    const main = new Optimizer(t.optimizer, mainParams, optOpts);
    disposers.push(() => main.dispose());
    const lastLayer = lastParams.size ? new Optimizer(t.optimizer, lastParams, optOpts) : null;
    if (lastLayer) disposers.push(() => lastLayer.dispose());
    const lossState = createDinov2LossState(obj);
    disposers.push(() => disposeDinov2LossState(lossState));
    if (ownsModel) disposers.unshift(() => disposeVit(vit));
    const schedules = dinoSchedules(cfg);
    const studentHooks: VitHooks = explora.lora ? { linear: loraHooks(explora.lora) } : {};
    const teacherHooks: VitHooks = teacherLora ? { linear: loraHooks(teacherLora) } : {};
    const student: DinoSide = { vit, hooks: studentHooks, heads: studentHeads.params };
    const teacher: DinoSide = { vit: teacherVit, hooks: teacherHooks, heads: teacherHeads.params };
    const headGroups = (p: string): 'backbone' | 'dino_head' | 'ibot_head' => (p.startsWith('dino_head.') ? 'dino_head' : p.startsWith('ibot_head.') ? 'ibot_head' : 'backbone');
    const pathOf = new Map<string, string>();
    for (const [p, v] of trainable) pathOf.set(v.name, p);

    const masksFor = (it: number, B: number, grid: [number, number]): IbotMasks =>
      ibotMasks(Rng.derive(seed, 'ibot-masks', it), 2 * B, grid[0], grid[1], obj.masking);

    const step = (views: readonly tf.Tensor4D[], it: number, so: { masks?: IbotMasks } = {}): DinoStepMetrics => {
      const t0 = Date.now();
      if (!Number.isInteger(it) || it < 0) throw new Error(`D-ExPLoRA step: iteration must be an integer ≥ 0, got ${it}`);
      if (!views.length) throw new Error('D-ExPLoRA step: no views (expected 2 global + nLocal local crops)');
      const B = views[0].shape[0];
      const grid = checkImages(vc, views[0]);
      const masks = so.masks ?? masksFor(it, B, grid);
      if (masks.n !== 2 * B || masks.grid[0] !== grid[0] || masks.grid[1] !== grid[1]) {
        throw new Error(`D-ExPLoRA step: masks are for ${masks.n} images on ${masks.grid[0]}x${masks.grid[1]}, the global crops give ${2 * B} on ${grid[0]}x${grid[1]}`);
      }
      const lr = scheduleAt(schedules.lr, it);
      const lastLayerLr = it < schedules.freezeLastLayerIters ? 0 : lr;
      const wd = scheduleAt(schedules.weightDecay, it);
      const temp = scheduleAt(schedules.teacherTemp, it);
      const momentum = scheduleAt(schedules.momentum, it);
      const rng = Rng.derive(seed, 'step', it);
      const vars = [...trainable.values()];
      const kept: tf.Tensor[] = [];
      const groups = obj.separateIbotHead ? (['backbone', 'dino_head', 'ibot_head'] as const) : (['backbone', 'dino_head'] as const);
      let values: Float32Array;
      try {
        const packed = tf.tidy(() => {
          const batch = multiCropBatch(views, obj.nLocalCrops);
          const targets = dinov2Targets(teacher, studentHeads.config, batch, masks, temp, obj, lossState); // outside the tape
          const { value, grads } = tf.variableGrads(() => {
            const r = dinov2StudentLoss(student, studentHeads.config, batch, masks, targets, obj, { rng, training: true, dropPathRate: t.dropPathRate });
            for (const x of [r.dino, r.ibot, r.koleo]) kept.push(tf.keep(x));
            return r.total;
          }, vars);
          const byGroup = new Map<string, Map<string, tf.Tensor>>();
          for (const g of groups) byGroup.set(g, new Map<string, tf.Tensor>());
          for (const [name, g] of Object.entries(grads)) {
            const p = pathOf.get(name);
            if (p !== undefined && g) byGroup.get(headGroups(p))!.set(p, g);
          }
          const norms: tf.Scalar[] = [];
          const gMain = new Map<string, tf.Tensor>();
          const gLast = new Map<string, tf.Tensor>();
          for (const g of groups) {
            const gm = byGroup.get(g)!;
            if (gm.size === 0) {
              norms.push(tf.scalar(0));
              continue;
            }
            const c = clipByGlobalNorm(gm, t.clipGrad);
            norms.push(c.norm);
            for (const [p, x] of c.grads) (isLastLayer(p) ? gLast : gMain).set(p, x);
          }
          main.apply(gMain, lr, wd);
          if (lastLayer) lastLayer.apply(gLast, lastLayerLr, wd);
          const cm = collapseMetrics(targets.cls, targets.features.cls);
          return tf.stack([value, ...kept, ...norms, cm.targetEntropy, cm.targetMarginalEntropy, cm.featureStd]);
        });
        values = packed.dataSync() as Float32Array;
        packed.dispose();
      } finally {
        kept.forEach((x) => x.isDisposed || x.dispose());
      }
      if (!Number.isFinite(values[0])) throw new Error(`D-ExPLoRA step ${it}: loss is ${values[0]} (dino ${values[1]}, ibot ${values[2]}, koleo ${values[3]})`);
      emaUpdate(ema, momentum);
      const g0 = 4;
      const gn = groups.length;
      return {
        step: it,
        loss: values[0],
        dino: values[1],
        ibot: values[2],
        koleo: values[3],
        lr,
        lastLayerLr,
        weightDecay: wd,
        teacherTemp: temp,
        momentum,
        gradNorm: { backbone: values[g0], dino_head: values[g0 + 1], ...(gn === 3 ? { ibot_head: values[g0 + 2] } : {}) },
        nMasked: masks.indices.length,
        targetEntropy: values[g0 + gn],
        targetMarginalEntropy: values[g0 + gn + 1],
        featureStd: values[g0 + gn + 2],
        seconds: (Date.now() - t0) / 1000,
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
      if (vo.optimizer ?? true) {
        add('optim.', main.stateTensors());
        if (lastLayer) add('optim.', lastLayer.stateTensors());
      }
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
      optimizers: { main, lastLayer },
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
 * Train `steps` iterations from `startStep` (default: the optimizer's step count) on a multi-crop loader. Batches are
 * addressed by iteration (resuming continues exactly) and disposed after their step.
 */
export async function trainExploraDino(
  run: DExploraRun,
  loader: Loader,
  opts: { steps: number; startStep?: number; onStep?: (m: DinoStepMetrics) => void | Promise<void> },
): Promise<DinoStepMetrics[]> {
  const start = opts.startStep ?? run.optimizers.main.step;
  const out: DinoStepMetrics[] = [];
  for (let it = start; it < start + opts.steps; it++) {
    const b = await loader.batchAt(it);
    let m: DinoStepMetrics;
    try {
      if (!b.views) throw new Error(`trainExploraDino: the loader gives no views; build it with {views: exploraDinoViews(run.config)}`);
      m = run.step(b.views, it);
    } finally {
      disposeBatch(b);
    }
    out.push(m);
    if (opts.onStep) await opts.onStep(m);
  }
  return out;
}

/** Save student, teacher, heads, centers and optimizer state (PyTorch layout; `step` in the metadata). */
export function saveExploraDinoCheckpoint(file: string, run: DExploraRun, meta: Record<string, unknown> = {}): void {
  saveCheckpoint(file, {
    params: run.variables(),
    meta: {
      ...meta,
      step: run.optimizers.main.step,
      objective: 'dinov2',
      notation: run.explora.notation,
      config: { ...run.config, recipe: run.explora.notation },
      seed: run.seed,
    },
  });
}

/** Load a checkpoint written by `saveExploraDinoCheckpoint` into a run of the same config (all-or-nothing). */
export function loadExploraDinoCheckpoint(file: string, run: DExploraRun): LoadReport {
  const rep = loadCheckpoint(file, { params: run.variables() });
  const step = rep.meta.step;
  if (typeof step === 'number') {
    run.optimizers.main.step = step;
    if (run.optimizers.lastLayer) run.optimizers.lastLayer.step = step;
  }
  return rep;
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
