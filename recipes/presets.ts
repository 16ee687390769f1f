/**
 * Recipe presets: every paper configuration the kit knows, and the small CPU recipes the notebooks run. Each is a
 * complete `Recipe` (plain data); spread one and tweak it inline:
 *
 *   await runRecipe({...RECIPES.d_explora_small, lr: 1e-4, steps: 50, epochs: null});
 *
 * The paper presets name the files they need (weights converted to safetensors, dataset folders) by relative paths
 * (`weights/…`, `data/…`, resolved against the recipe file's folder or the current one); they are right as
 * configurations, and the larger ones are GPU jobs. Sources: ExPLoRA's `scripts/pretrain_dino.sh`,
 * `scripts/pretrain_mae.sh`, `scripts/finetune.sh`, `scripts/linprobe.sh` (recipes/explora-*.ts, finetune.ts);
 * PYRA's `scripts/pyra_vit-l.sh` and `model/tome.py` (recipes/pyra-presets.ts).
 */
import { D_EXPLORA_L_R64, D_EXPLORA_SMALL, DExploraConfig } from './explora-dino';
import { EXPLORA_MAE_TRAIN } from './explora-mae';
import { EXPLORA_FINETUNE, finetuneVitOverrides } from './finetune';
import { PYRA_PRESETS, PYRA_TRAIN_RECIPE, PyraPresetName } from './pyra-presets';
import { SATMAE_GROUP_FROM_RGB_MAE } from '../lib/mae/satmae-group';
import { formatExploraNotation, exploraRecipe } from '../lib/peft/explora';
import { DINOV2_LINEAR_PROBE } from '../lib/eval/linear-probe';
import { DataSpec, EvalSpec, OptimizerSpec, ProbeSpec, Recipe, RECIPE_FORMAT, SourceSpec, SplitSet, recipe } from './recipe';
import { sourceMaeRecipe, SOURCE_MAE_ASSET, SOURCE_MAE_MODEL } from './source-mae';
import { SOURCE_VIT_SPECS } from './source-vit';

const ADAMW: Extract<OptimizerSpec, { kind: 'adamw' }> = { kind: 'adamw', betas: [0.9, 0.999], eps: 1e-8, layerDecay: 1, patchEmbedLrMult: 1 };
const ADAMW_MAE: Extract<OptimizerSpec, { kind: 'adamw' }> = { ...ADAMW, betas: [0.9, 0.95] };

/** The DINOv2 linear-probe grid (lib/eval/linear-probe.ts) as recipe data. */
export const DINOV2_PROBE: ProbeSpec = {
  nLastBlocks: [...DINOV2_LINEAR_PROBE.nLastBlocks],
  avgpool: [...DINOV2_LINEAR_PROBE.avgpool],
  lrs: [...DINOV2_LINEAR_PROBE.lrs],
  batchSize: DINOV2_LINEAR_PROBE.batchSize,
  epochs: DINOV2_LINEAR_PROBE.epochs,
  itersPerEpoch: 1500,
  momentum: DINOV2_LINEAR_PROBE.momentum,
  weightDecay: DINOV2_LINEAR_PROBE.weightDecay,
  initStd: DINOV2_LINEAR_PROBE.initStd,
};

/** The probe evaluation (narrowed, so a spread preset's `eval.probe` type-checks). */
export type ProbeEval = Extract<EvalSpec, { kind: 'probe' }>;

// -- data --------------------------------------------------------------------------------------------------------

/** fMoW-RGB through SatMAE/ExPLoRA's CSVs (ExPLoRA evaluates on `val_62classes.csv`, which it calls test). */
const FMOW_RGB: SourceSpec = { kind: 'fmow-rgb', csv: { train: 'data/fmow-rgb/train_62classes.csv', val: 'data/fmow-rgb/val_62classes.csv' } };
const FMOW_SENTINEL: SourceSpec = { kind: 'fmow-sentinel', csv: { train: 'data/fmow-sentinel/train.csv', val: 'data/fmow-sentinel/val.csv' } };

/** The embedded satellite domain (EuroSAT classes, 32 px, 600 / 200 / 200). */
export const EMBEDDED_SATELLITE: SourceSpec = { kind: 'embedded', domain: 'satellite-rgb', seed: 0, size: 32, satellitePerClass: 100, naturalPerClass: 100 };

const all = (...splits: string[]): SplitSet['splits'] => splits.map((split) => ({ split, subset: null }));
const set = (transform: SplitSet['transform'], ...splits: string[]): SplitSet => ({ splits: all(...splits), transform });

/** The linear probe + kNN of ExPLoRA's Table 3 protocol on a source (train / val / test splits, one eval transform). */
export function probeEval(
  t: SplitSet['transform'],
  splits: { train: string; val: string; test: string },
  probe: ProbeSpec = DINOV2_PROBE,
  at: ProbeEval['at'] = { steps: [] },
): ProbeEval {
  return {
    kind: 'probe',
    train: set(t, splits.train),
    val: set(t, splits.val),
    test: set(t, splits.test),
    at,
    featureBatch: 200,
    probe,
    knn: { k: 20, temperature: 0.07 },
    saveEncoder: true,
  };
}

// -- D-ExPLoRA -------------------------------------------------------------------------------------------------

/**
 * A D-ExPLoRA configuration (recipes/explora-dino.ts) as a recipe: the same backbone, ExPLoRA recipe, DINOv2 objective
 * and optimisation; `data` and `weights` say what it trains on and from.
 */
export function dExploraRecipe(cfg: DExploraConfig, o: { name: string; description: string; data: DataSpec; weights: Recipe['weights']; eval?: EvalSpec; seed?: number }): Recipe {
  const t = cfg.train;
  // The ExPLoRA recipe as notation + overrides (JSON: pattern strings only).
  const full = exploraRecipe(cfg.recipe);
  const notation = formatExploraNotation(full);
  const base = exploraRecipe(notation);
  const overrides: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(full)) {
    if (JSON.stringify(v) === JSON.stringify((base as unknown as Record<string, unknown>)[k])) continue;
    if (k === 'extraTrainable' && (v as unknown[]).some((x) => typeof x !== 'string')) throw new Error(`dExploraRecipe: extraTrainable patterns must be strings to be recipe data`);
    overrides[k] = v;
  }
  return recipe({
    format: RECIPE_FORMAT,
    name: o.name,
    description: o.description,
    tags: {},
    seed: o.seed ?? 0,
    model: { kind: 'vit', preset: cfg.model, overrides: { ...cfg.modelOverrides } },
    weights: o.weights,
    adapters: { kind: 'explora', notation, overrides },
    objective: {
      kind: 'dinov2',
      settings: JSON.parse(JSON.stringify(cfg.objective)),
      teacherMomentum: [t.momentumTeacher, t.finalMomentumTeacher],
      freezeLastLayerEpochs: t.freezeLastLayerEpochs,
      dropPathRate: t.dropPathRate,
    },
    data: o.data,
    batch: t.batchSize,
    steps: null,
    epochs: t.epochs,
    epochLength: t.itersPerEpoch,
    optimizer: { ...ADAMW, betas: [t.optimizer.kind === 'adamw' ? t.optimizer.beta1 : 0.9, t.optimizer.kind === 'adamw' ? t.optimizer.beta2 : 0.999], layerDecay: t.layerDecay, patchEmbedLrMult: t.patchEmbedLrMult },
    lr: { base: t.baseLr, scale: 'sqrt-1024' },
    schedule: { kind: 'cosine', warmup: { epochs: t.warmupEpochs }, minLr: t.minLr, warmupStart: 0 },
    weightDecay: { start: t.weightDecay, end: t.weightDecayEnd },
    clipGrad: t.clipGrad,
    eval: o.eval ?? { kind: 'none' },
    checkpointEvery: t.itersPerEpoch,
  });
}

const fmowDino: DataSpec = { source: FMOW_RGB, train: set({ name: 'dino-multicrop', blurMode: 'effective', rgb: true }, 'train') };
const dinov2Weights = (size: 'b' | 'l'): Recipe['weights'] => ({
  kind: 'checkpoint',
  path: `weights/dinov2_vit${size}14_pretrain.safetensors`,
  head: 'keep',
  stripPrefixes: [],
  ignore: null,
  allowMissing: null,
});

const D_L = (notation: string, name: string): Recipe =>
  dExploraRecipe({ ...D_EXPLORA_L_R64, recipe: notation }, {
    name,
    description: `${notation} on DINOv2 ViT-L/14 (fMoW-RGB, 224 px, effective batch 1024; ExPLoRA scripts/pretrain_dino.sh). A GPU job.`,
    data: fmowDino,
    weights: dinov2Weights('l'),
  });

// -- M-ExPLoRA -------------------------------------------------------------------------------------------------

const t = EXPLORA_MAE_TRAIN;
const mExploraCommon = {
  format: RECIPE_FORMAT,
  tags: {},
  seed: 42,
  objective: { kind: 'mae', maskRatio: t.maskRatio, normPixLoss: t.normPixLoss },
  batch: t.effectiveBatch,
  steps: null,
  epochs: t.epochs,
  epochLength: null,
  optimizer: ADAMW_MAE,
  lr: { base: t.blr, scale: 'linear-256' },
  schedule: { kind: 'cosine', warmup: { epochs: t.warmupEpochs }, minLr: t.minLr, warmupStart: 0 },
  weightDecay: t.weightDecay,
  clipGrad: 0,
  eval: { kind: 'none' },
  checkpointEvery: 1000,
} as const;

// -- PYRA ------------------------------------------------------------------------------------------------------

/**
 * A PYRA / ToMe + LoRA / LoRA preset (recipes/pyra-presets.ts) on a VTAB-1k task with the released recipe (lr 1e-3,
 * wd 1e-4, batch 32, 100 epochs, 10 warm-up epochs from 1e-6, min lr 1e-5; the release steps the schedule per epoch,
 * the kit per step), the backbone's ImageNet-21k weights converted to safetensors, a new head.
 */
export function pyraRecipe(preset: PyraPresetName, task = 'eurosat', numClasses = 10): Recipe {
  const p = PYRA_PRESETS[preset];
  const r = PYRA_TRAIN_RECIPE;
  const vtab = { name: 'vtab', size: 224 } as const;
  return recipe({
    format: RECIPE_FORMAT,
    name: preset.replace(/_/g, '-'),
    description: `${preset} on VTAB-1k ${task} (PYRA scripts/pyra_vit-l.sh recipe; IN-21k backbone). A GPU job.`,
    tags: { task },
    seed: 0,
    model: { kind: 'vit', preset: p.backbone, overrides: { numClasses, dropPathRate: r.dropPath } },
    weights: { kind: 'checkpoint', path: `weights/${p.backbone}_in21k.safetensors`, head: 'reinit', stripPrefixes: [], ignore: null, allowMissing: null },
    adapters: { kind: 'pyra', method: p.method, backbone: p.backbone, schedule: p.schedule, loraRank: p.loraRank, loraInit: p.loraInit, loraDropout: p.loraDropout, propAttn: p.propAttn, trainHead: true },
    objective: { kind: 'supervised', labelSmoothing: 0 },
    data: { source: { kind: 'vtab1k', root: 'data/vtab-1k', task }, train: set(vtab, 'train800val200') },
    batch: r.batch,
    steps: null,
    epochs: r.epochs,
    epochLength: null,
    optimizer: ADAMW,
    lr: r.lr,
    schedule: { kind: 'cosine', warmup: { epochs: r.warmupEpochs }, minLr: r.minLr, warmupStart: r.warmupStartLr },
    weightDecay: r.weightDecay,
    clipGrad: 0,
    eval: { kind: 'accuracy', test: set(vtab, 'test'), at: { everyEpochs: r.evalEvery }, batch: 64 },
    checkpointEvery: 0,
  });
}

const pyraPresets = Object.fromEntries((Object.keys(PYRA_PRESETS) as PyraPresetName[]).map((k) => [k, pyraRecipe(k)])) as Record<PyraPresetName, Recipe>;

// -- the table -------------------------------------------------------------------------------------------------

const norm = { name: 'normalize', stats: 'imagenet' } as const;

/** Every preset recipe by name. */
export const RECIPES = {
  // D-ExPLoRA (fMoW-RGB, ViT-L/14 DINOv2): the paper's headline run and its ablation rows; ViT-B the same recipe.
  d_explora_l_r64: D_L('D-ExPLoRA-[L]-r64', 'd-explora-l-r64'),
  d_explora_l: D_L('D-ExPLoRA-[L]', 'd-explora-l'),
  d_explora_1_l1_l_r64: D_L('D-ExPLoRA-[1,L-1,L]-r64', 'd-explora-1-l1-l-r64'),
  d_explora_b_r64: dExploraRecipe({ ...D_EXPLORA_L_R64, model: 'vit_base_patch14_dinov2' }, {
    name: 'd-explora-b-r64',
    description: 'D-ExPLoRA-[L]-r64 on DINOv2 ViT-B/14 (fMoW-RGB, 224 px, effective batch 1024). A GPU job.',
    data: fmowDino,
    weights: dinov2Weights('b'),
  }),
  // M-ExPLoRA: MAE ViT-L/16 on fMoW-RGB (mae_visualize_vit_large), SatMAE group-channel ViT-L/8 on fMoW-Sentinel.
  m_explora_l_r64: recipe({
    ...mExploraCommon,
    name: 'm-explora-l-r64',
    description: 'M-ExPLoRA-[L]-r64 on MAE ViT-L/16 (fMoW-RGB, 224 px, effective batch 1024, 400 epochs; ExPLoRA scripts/pretrain_mae.sh). A GPU job.',
    model: { kind: 'mae', preset: 'mae_vit_large_patch16', encoder: {}, decoder: {} },
    weights: { kind: 'checkpoint', path: 'weights/mae_visualize_vit_large.safetensors', head: 'keep', stripPrefixes: [], ignore: null, allowMissing: null },
    adapters: { kind: 'explora', notation: 'M-ExPLoRA-[L]-r64', overrides: {} },
    data: { source: FMOW_RGB, train: set({ name: 'fmow-train', size: 224 }, 'train') },
  }),
  m_explora_1_l_r32: recipe({
    ...mExploraCommon,
    name: 'm-explora-1-l-r32',
    description:
      'M-ExPLoRA-[1,L]-r32 on a SatMAE group-channel ViT-L/8 from the RGB MAE (fMoW-Sentinel, 96 px); optimisation as the RGB run (the multispectral script is not published). A GPU job.',
    model: { kind: 'satmae-group', preset: 'satmae_group_vit_large_patch8', overrides: {} },
    weights: {
      kind: 'checkpoint',
      path: 'weights/mae_visualize_vit_large.safetensors',
      head: 'keep',
      stripPrefixes: [],
      ignore: SATMAE_GROUP_FROM_RGB_MAE.ignore.source,
      allowMissing: SATMAE_GROUP_FROM_RGB_MAE.allowMissing.source,
    },
    adapters: { kind: 'explora', notation: 'M-ExPLoRA-[1,L]-r32', overrides: { unfreezeEmbed: true, decoderRank: 32 } },
    data: { source: FMOW_SENTINEL, train: set({ name: 'sentinel-train', size: 96, droppedBands: [0, 9, 10] }, 'train') },
  }),
  // ExPLoRA's evaluation protocols on the merged ExPLoRA ViT-L/14: LoRA-r8 fine-tuning and the linear probe.
  finetune_lora_r8: recipe({
    format: RECIPE_FORMAT,
    name: 'finetune-lora-r8',
    description: "ExPLoRA's fine-tuning protocol (scripts/finetune.sh): LoRA r8 on Q,V of every block + a new head, mean-pool + frozen fc_norm, fMoW-RGB 62 classes. A GPU job.",
    tags: {},
    seed: 0,
    model: { kind: 'vit', preset: 'vit_large_patch14_dinov2', overrides: { imgSize: 224, ...finetuneVitOverrides(62) } },
    weights: { kind: 'checkpoint', path: 'weights/explora_dinov2_vit_large_fmow_rgb_encoder_only.safetensors', head: 'reinit', stripPrefixes: ['module.', 'backbone.'], ignore: null, allowMissing: '^(fc_norm|mask_token)\\.?' },
    adapters: { kind: 'finetune-lora', rank: EXPLORA_FINETUNE.rank, alpha: EXPLORA_FINETUNE.alpha, slices: [...EXPLORA_FINETUNE.slices], headInitStd: EXPLORA_FINETUNE.headInitStd },
    objective: { kind: 'supervised', labelSmoothing: EXPLORA_FINETUNE.labelSmoothing },
    data: { source: FMOW_RGB, train: set({ name: 'fmow-train', size: 224 }, 'train') },
    batch: EXPLORA_FINETUNE.batchSize,
    steps: null,
    epochs: EXPLORA_FINETUNE.epochs,
    epochLength: null,
    optimizer: { ...ADAMW, layerDecay: EXPLORA_FINETUNE.layerDecay },
    lr: { base: EXPLORA_FINETUNE.blr, scale: 'linear-256' },
    schedule: { kind: 'cosine', warmup: { epochs: EXPLORA_FINETUNE.warmupEpochs }, minLr: EXPLORA_FINETUNE.minLr, warmupStart: 0 },
    weightDecay: EXPLORA_FINETUNE.weightDecay,
    clipGrad: 0,
    eval: { kind: 'accuracy', test: set({ name: 'fmow-eval', size: 224 }, 'val'), at: { everyEpochs: 1 }, batch: 64 },
    checkpointEvery: 0,
  }),
  linear_probe: recipe({
    format: RECIPE_FORMAT,
    name: 'linear-probe',
    description:
      "The DINOv2 linear-probe protocol ExPLoRA reports (scripts/linprobe.sh: n last blocks {1,4} × avgpool × 7 lrs, SGD, 10 × 1500 iterations at batch 256) on the merged ExPLoRA ViT-L/14, fMoW-RGB. Like DINOv2's linear.py it selects and reports on val. Features are cached once (no training augmentation).",
    tags: {},
    seed: 0,
    model: { kind: 'vit', preset: 'vit_large_patch14_dinov2', overrides: { imgSize: 224 } },
    weights: { kind: 'checkpoint', path: 'weights/explora_dinov2_vit_large_fmow_rgb_encoder_only.safetensors', head: 'keep', stripPrefixes: ['module.', 'backbone.'], ignore: null, allowMissing: '^mask_token$' },
    adapters: { kind: 'frozen' },
    objective: { kind: 'supervised', labelSmoothing: 0 },
    data: { source: FMOW_RGB, train: set({ name: 'linear-probe-eval', size: 224 }, 'train') },
    batch: 256,
    steps: 0,
    epochs: null,
    epochLength: null,
    optimizer: ADAMW,
    lr: 1e-3,
    schedule: { kind: 'constant', warmup: { steps: 0 } },
    weightDecay: 0,
    clipGrad: 0,
    eval: probeEval({ name: 'linear-probe-eval', size: 224 }, { train: 'train', val: 'val', test: 'val' }),
    checkpointEvery: 0,
  }),
  // PYRA (VTAB-1k EuroSAT): PYRA, ToMe + LoRA and LoRA for ViT-B/16 and ViT-L/16 at low / high compression, and the
  // smaller models' LoRA.
  ...pyraPresets,

  // -- small CPU recipes (embedded data; what the notebooks run) -----------------------------------------------
  /** D-ExPLoRA on a 4-block 64-wide ViT, fresh init, embedded satellite images (D_EXPLORA_SMALL), 200 steps. */
  d_explora_small: dExploraRecipe(D_EXPLORA_SMALL, {
    name: 'd-explora-small',
    description: 'D_EXPLORA_SMALL on the embedded satellite domain: a CPU-sized D-ExPLoRA run (random init: mechanics only).',
    data: { source: EMBEDDED_SATELLITE, train: set({ name: 'dino-multicrop', blurMode: 'effective', rgb: true }, 'train') },
    weights: { kind: 'init' },
    eval: probeEval(norm, { train: 'train', val: 'val', test: 'test' }, { ...DINOV2_PROBE, itersPerEpoch: 20 }),
  }),
  /** The source MAE of notebook 01 (tools/make-source-mae.ts as a recipe). */
  source_mae: sourceMaeRecipe(),
  /** Notebook 01's M-ExPLoRA run at `smoke` scale: the source MAE, [L]-r8 + decoder r2, 12 epochs of the satellite images. */
  m_explora_small: {
    format: RECIPE_FORMAT,
    name: 'nb01-explora',
    description: 'M-ExPLoRA-[L]-r8 (decoder r2) on the kit source MAE, embedded satellite domain, 32 px (notebook 01, smoke scale)',
    tags: {},
    seed: 0,
    model: { kind: 'mae', preset: SOURCE_MAE_MODEL.preset, encoder: { ...SOURCE_MAE_MODEL.encoder }, decoder: { ...SOURCE_MAE_MODEL.decoder } },
    weights: { kind: 'asset', name: SOURCE_MAE_ASSET, head: 'keep' },
    adapters: { kind: 'explora', notation: 'M-ExPLoRA-[L]-r8', overrides: { decoderRank: 2 } },
    objective: { kind: 'mae', maskRatio: 0.75, normPixLoss: true },
    data: { source: EMBEDDED_SATELLITE, train: set({ name: 'mae-pretrain', size: 32, stats: 'imagenet' }, 'train') },
    batch: 64,
    steps: null,
    epochs: 12,
    epochLength: null,
    optimizer: ADAMW_MAE,
    // lr = blr·64/256 = 2e-3, about the source's own peak (LOG.md, notebook 01).
    lr: { base: 8e-3, scale: 'linear-256' },
    schedule: { kind: 'cosine', warmup: { epochs: 1 }, minLr: 0, warmupStart: 0 },
    weightDecay: 0,
    clipGrad: 0,
    eval: probeEval(norm, { train: 'train', val: 'val', test: 'test' }, { ...DINOV2_PROBE, epochs: 10, itersPerEpoch: 20, batchSize: 256 }, { epochs: [0, 4, 12] }),
    checkpointEvery: 0,
  } satisfies Recipe,
  /**
   * Notebook 02's LoRA run at `smoke` scale: LoRA r8 in PYRA's released form on the d128×6 source ViT (a new 10-class
   * head), 100 steps of 32 on the embedded satellite train ∪ val (VTAB-style: direct resize, no augmentation), test
   * accuracy every 25 steps. lr 1e-2: the release's 1e-3 is meant for 100 epochs (LOG.md, notebook 02).
   */
  tome_pyra_small: {
    format: RECIPE_FORMAT,
    name: 'tome-pyra-lora',
    description: 'LoRA (PYRA release form) on the d128x6 source ViT, embedded satellite domain, 32 px (notebook 02, smoke scale)',
    tags: {},
    seed: 0,
    model: { kind: 'vit', preset: SOURCE_VIT_SPECS.d128x6.preset, overrides: { ...SOURCE_VIT_SPECS.d128x6.overrides, numClasses: 10 } },
    weights: { kind: 'asset', name: 'source-vit-d128x6', head: 'reinit' },
    adapters: { kind: 'pyra', method: 'lora', backbone: SOURCE_VIT_SPECS.d128x6.preset, schedule: null, loraRank: 8, loraInit: 'kaiming', loraDropout: 0.1, propAttn: true, trainHead: true },
    objective: { kind: 'supervised', labelSmoothing: 0 },
    data: { source: EMBEDDED_SATELLITE, train: set({ name: 'vtab', size: 32 }, 'train', 'val') },
    batch: 32,
    steps: 100,
    epochs: null,
    epochLength: null,
    optimizer: ADAMW,
    lr: 1e-2,
    schedule: { kind: 'cosine', warmup: { steps: 10 }, minLr: 1e-5, warmupStart: 1e-6 },
    weightDecay: 1e-4,
    clipGrad: 0,
    eval: { kind: 'accuracy', test: set({ name: 'vtab', size: 32 }, 'test'), at: { every: 25 }, batch: 100 },
    checkpointEvery: 0,
  } satisfies Recipe,
} satisfies Record<string, Recipe>;
