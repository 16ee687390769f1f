/**
 * A recipe is plain data: one JSON-serialisable, versioned object that names everything a training run needs — the
 * model (preset + overrides) and where its weights come from, the adapters and what trains, the objective, the data
 * (dataset, splits, transforms by name), the optimiser and schedules, the evaluation protocol, steps, batch and seed.
 * `runRecipe` (run.ts) executes one and writes a run folder; `recipe(x)` validates one and fills the defaults.
 *
 * Notebooks spread a preset and tweak it inline: `{...RECIPES.d_explora_small, lr: 1e-4}`; files hold the same object
 * as JSON (`vitpeft run recipe.json`). Unknown keys and wrong types are errors naming the key path:
 *
 *   recipe.optimizer.betas[1]: expected a number in [0, 1), got "0.9"
 *
 * Conventions: `batch` is the images of one optimizer step; the run length is `steps` or `epochs` (the other null),
 * an epoch being `epochLength` steps (null: ⌊training images / batch⌋); `lr` is the peak learning rate, or
 * `{base, scale}` with MAE's `base·batch/256` ('linear-256') or DINOv2's `base·√(batch/1024)` ('sqrt-1024');
 * schedules are per step; paths are resolved against the recipe file's folder (the current folder for a recipe given
 * as an object) and stored absolute in the run folder.
 */
import { resolve as pathResolve } from 'path';
import type { VitConfig, VitPresetName } from '../lib/vit/config';
import { VIT_PRESETS, vitConfig } from '../lib/vit/config';
import type { DecoderConfig } from '../lib/mae/decoder';
import { decoderConfig } from '../lib/mae/decoder';
import type { SatMaeGroupOverrides, SatMaeGroupPresetName } from '../lib/mae/satmae-group';
import { SATMAE_GROUP_PRESETS, satMaeGroupConfig } from '../lib/mae/satmae-group';
import type { SatMaeTemporalOverrides, SatMaeTemporalPresetName } from '../lib/mae/satmae-temporal';
import { SATMAE_TEMPORAL_PRESETS, satMaeTemporalConfig } from '../lib/mae/satmae-temporal';
import type { LoraInit, LoraKind, QkvSlice } from '../lib/peft/lora';
import type { BlockRef, ExploraRecipe } from '../lib/peft/explora';
import { exploraRecipe } from '../lib/peft/explora';
import type { Dinov2Objective } from '../lib/dino/dinov2';
import { dinov2Objective } from '../lib/dino/dinov2';
import type { TeacherTargetMode } from '../lib/dino/teacher';
import type { IbotMaskConfig } from '../lib/dino/masking';
import { DINOV2_LINEAR_PROBE } from '../lib/eval/linear-probe';
import { SENTINEL2_DROPPED_BANDS } from '../data-loaders/transforms';
import type { StructuredTask } from '../data-loaders/embedded-structured';
import type { PyraVariant } from '../lib/tome/pyra';
import { PYRA_VARIANT_KEYS, pyraVariant } from '../lib/tome/pyra';
import {
  Check, Fields, RecipeError, arr, bool, delegate, either, int, isPlainObject, lit, nullable, num, obj, oneOf, opt, record, str,
  tagged, tuple,
} from './schema';

export const RECIPE_FORMAT = 'vitpeft-recipe/1';

// ---------------------------------------------------------------------------------------------------------------
// Types

/** The model: a ViT, an MAE (ViT encoder + decoder) or a SatMAE group-channel MAE (multispectral). */
export type ModelSpec =
  | { kind: 'vit'; preset: VitPresetName; overrides: Partial<VitConfig> }
  | { kind: 'mae'; preset: VitPresetName; encoder: Partial<VitConfig>; decoder: Partial<DecoderConfig> }
  | { kind: 'satmae-group'; preset: SatMaeGroupPresetName; overrides: SatMaeGroupOverrides }
  /** SatMAE temporal MAE (fMoW-temporal: T frames with [year − 2002, month − 1, hour] codes; trains on 'fmow-temporal' data). */
  | { kind: 'satmae-temporal'; preset: SatMaeTemporalPresetName; overrides: SatMaeTemporalOverrides };

/** What to do with the classification head of loaded weights: keep it, or start a new one (seeded init). */
export type HeadPolicy = 'keep' | 'reinit';

/** Where the weights come from. */
export type WeightsSpec =
  /** Fresh initialisation from the recipe's seed. */
  | { kind: 'init' }
  /** A kit asset: `notebooks/assets/<name>.safetensors` (its recorded model is checked against the recipe's). */
  | { kind: 'asset'; name: string; head: HeadPolicy }
  /**
   * A kit / PyTorch-layout safetensors checkpoint. `stripPrefixes` e.g. ['teacher.backbone.']; `ignore` (file keys
   * skipped) and `allowMissing` (model parameters the file may lack; they keep their seeded init) are regex sources.
   */
  | { kind: 'checkpoint'; path: string; head: HeadPolicy; stripPrefixes: string[]; ignore: string | null; allowMissing: string | null }
  /** A timm `VisionTransformer` safetensors file (registers / no_embed_class folded, lib/io/timm.ts). */
  | { kind: 'timm'; path: string; head: HeadPolicy };

/** ExPLoRA recipe fields as JSON (block refs 1-based: 3, 'L', 'L-1'). */
export type ExploraOverrides = Partial<Omit<ExploraRecipe, 'extraTrainable' | 'unfrozen' | 'slices'>> & {
  unfrozen?: BlockRef[];
  slices?: QkvSlice[];
  extraTrainable?: string[];
};

/** One LoRA target as JSON (`null` = inherit from the adapter config; site patterns are glob strings). */
export interface LoraTargetSpec {
  sites: string[];
  exclude: string[];
  layers: number[] | null;
  kind: LoraKind;
  slices: QkvSlice[];
  rank: number | null;
  alpha: number | null;
  scaling: number | null;
  dropout: number | null;
  init: LoraInit | null;
}

/** Adapters and trainability. */
export type AdapterSpec =
  /** Every parameter trains (except fixed tables such as MAE's sin-cos position embedding). */
  | { kind: 'full' }
  /** Nothing trains: evaluation only (steps must be 0). */
  | { kind: 'frozen' }
  /** ExPLoRA: unfrozen blocks, LoRA on Q,V of the others, norms, CLS (`notation` e.g. 'D-ExPLoRA-[L]-r64'). */
  | { kind: 'explora'; notation: string; overrides: ExploraOverrides }
  /** Plain LoRA at the listed sites; `train`: further parameters that train (glob patterns, e.g. ['head.*']). */
  | { kind: 'lora'; rank: number; alpha: number; dropout: number; init: LoraInit; targets: LoraTargetSpec[]; train: string[] }
  /** PYRA / ToMe + LoRA / LoRA as the PYRA release builds them (recipes/pyra-presets.ts); `schedule` null = no merging. */
  | {
      kind: 'pyra';
      method: 'pyra' | 'tome' | 'lora';
      backbone: VitPresetName;
      schedule: 'low' | 'high' | number[] | null;
      loraRank: number;
      loraInit: LoraInit;
      loraDropout: number;
      propAttn: boolean;
      trainHead: boolean;
      /** PYRA ablation variant (method 'pyra' only; absent = PYRA as released; lib/tome/pyra.ts `PYRA_ABLATIONS`). */
      variant?: Partial<PyraVariant>;
    }
  /** ExPLoRA's fine-tuning protocol: LoRA on Q,V of every block + a new head; fc_norm frozen (recipes/finetune.ts). */
  | { kind: 'finetune-lora'; rank: number; alpha: number; slices: QkvSlice[]; headInitStd: number };

/** The DINOv2 objective settings as JSON. */
export type DinoSettings = Omit<Dinov2Objective, 'masking' | 'targets'> & { masking: IbotMaskConfig; targets: TeacherTargetMode };

/** The training objective. */
export type ObjectiveSpec =
  | { kind: 'mae'; maskRatio: number; normPixLoss: boolean }
  | { kind: 'supervised'; labelSmoothing: number }
  | {
      kind: 'dinov2';
      settings: DinoSettings;
      /** Teacher EMA momentum, cosine from [0] to [1] over the run (0.992 → 1). */
      teacherMomentum: [number, number];
      /** Epochs with lr 0 on the heads' last layer (DINOv2 1, ExPLoRA 3). */
      freezeLastLayerEpochs: number;
      /** Student stochastic depth (DINOv2: 0.3, uniform). */
      dropPathRate: number;
    };

/** Images of one split, the seeded subset optionally drawn from it. */
export interface SplitRef {
  split: string;
  /** `n` images drawn by `Rng.derive(seed, 'subset', key ?? dataset name).permutation`, kept in drawn or index order. */
  subset: { n: number; key: string | null; sorted: boolean } | null;
}

export type NormStatsName = 'imagenet' | 'fmow' | 'sentinel2';

/** Per-sample transforms by name (data-loaders/presets.ts, augment.ts). */
export type TransformSpec =
  | { name: 'normalize'; stats: NormStatsName }
  | { name: 'mae-pretrain'; size: number; stats: NormStatsName }
  | { name: 'supervised'; size: number; rrcScale: [number, number] | null; hflip: boolean; stats: NormStatsName }
  | { name: 'vtab'; size: number }
  | { name: 'fmow-train'; size: number }
  | { name: 'fmow-eval'; size: number }
  /** fMoW-temporal triplets: SatMAE's joint resize + crop of the frames, fMoW-RGB mean / std (temporal models only). */
  | { name: 'fmow-temporal'; size: number }
  | { name: 'linear-probe-eval'; size: number }
  | { name: 'sentinel-train'; size: number; droppedBands: number[] }
  | { name: 'sentinel-eval'; size: number; droppedBands: number[] }
  /** DINOv2 multi-crop (sizes and local-crop count from the objective). */
  | { name: 'dino-multicrop'; blurMode: 'effective' | 'intended'; rgb: boolean };

/** Splits concatenated in order, then a transform. */
export interface SplitSet {
  splits: SplitRef[];
  transform: TransformSpec;
}

/** Where images come from: the embedded domains, or the papers' formats on disk. */
export type SourceSpec =
  | {
      kind: 'embedded';
      /**
       * 'objects' / 'count' / 'orientation': three-split tasks (data-loaders/embedded-structured.ts; `naturalPerClass`
       * images per class). 'pathology' (Camelyon17-WILDS layout, splits pretrain / train / id_val / val / test of `camelyon17Protocol`)
       * and 'camera-traps' (iWildCam-WILDS layout, splits train / val / test / id_val / id_test) are the beyond-RGB
       * domains of data-loaders/embedded-beyond.ts at their default sizes.
       */
      domain: 'satellite-rgb' | 'satellite-ms' | 'natural' | StructuredTask | 'pathology' | 'camera-traps' | 'sites-ms' | 'sites-temporal' | 'buildings';
      /** Generation options of `loadEmbedded` (seed 0, 32 px, 100 per class by default). */
      seed: number;
      size: number;
      satellitePerClass: number;
      naturalPerClass: number;
      /**
       * Size of a beyond-RGB domain (null = its default): 'pathology' → labelled and unlabelled patches per hospital
       * (default 120 each); 'camera-traps' → training bursts of 3 frames (default 200; each ID split count/5 +
       * 1 bursts, each OOD split count/4 + 1 — the defaults are 30 and 40); 'sites-ms' (fMoW-Sentinel-like 13-band
       * single dates of the multi-date sites, splits train / val / test, fMoW label ids of 8 classes) → sites per class
       * (default 20: 12 train / 4 val / 4 test locations); 'sites-temporal' (the same sites as fMoW-temporal RGB
       * triplets: anchor + two other dates, with their timestamps) → the same.
       */
      count?: number | null;
      /**
       * 'buildings' only (SpaceNet-v1 layout, data-loaders/embedded-beyond.ts; splits train / val / test with masks and
       * pretrain = the train chips without masks; `count` = chips, default 300 → 180 / 60 / 60): the image product
       * ('3band' RGB, default; '8band'; '13band').
       */
      product?: '3band' | '8band' | '13band';
    }
  /** `<root>/<split>/<class>/*.{jpg,png,…}`. */
  | { kind: 'imagefolder'; root: string }
  /** EuroSAT (`root` = the dataset folder; `splits` = SatMAE-style split files by split name). */
  | { kind: 'eurosat'; root: string; variant: 'rgb' | 'ms'; splits: Record<string, string> }
  /** VTAB-1k as NOAH's `get_vtab1k.py` lays it out; splits train800, val200, train800val200, test. */
  | { kind: 'vtab1k'; root: string; task: string }
  /** fMoW-RGB from SatMAE/ExPLoRA CSVs, by split name. */
  | { kind: 'fmow-rgb'; csv: Record<string, string> }
  /** fMoW-temporal triplets from fMoW-RGB CSVs with timestamps (column 2), by split name. */
  | { kind: 'fmow-temporal'; csv: Record<string, string> }
  /** fMoW-Sentinel from SatMAE CSVs, by split name. */
  | { kind: 'fmow-sentinel'; csv: Record<string, string> }
  /**
   * Camelyon17-WILDS (`root` = camelyon17_v1.0, `unlabeledRoot` = camelyon17_unlabeled_v1.0) by the hospital protocol:
   * splits pretrain (the unlabelled `pretrainSplits`), train, id_val, val (OOD hospital 1), test (OOD hospital 2).
   */
  | { kind: 'camelyon17'; root: string; unlabeledRoot: string; pretrainSplits: Array<'train_unlabeled' | 'val_unlabeled' | 'test_unlabeled'> }
  /** iWildCam-WILDS v2.0 (`root` = iwildcam_v2.0): splits train, val, test (OOD locations), id_val, id_test. */
  | { kind: 'iwildcam'; root: string }
  /**
   * SpaceNet-v1 buildings (`root` holds `SN1_buildings/train/{3band,8band,geojson}`, torchgeo's layout; all labelled
   * chips are in `train`): splits train / val / test by a hash of the image id (`valFraction`, `testFraction`; the
   * official split is not published) and pretrain = the train chips without masks (recipes/data-seg.ts).
   */
  | { kind: 'spacenet1'; root: string; product: '3band' | '8band'; valFraction: number; testFraction: number };

export interface DataSpec {
  source: SourceSpec;
  /** Training images (labels used only by the supervised objective). */
  train: SplitSet;
}

/** When evaluations happen (besides after the last step, always). */
export type EvalAt = { steps: number[] } | { epochs: number[] } | { every: number } | { everyEpochs: number };

/** The DINOv2 linear-probe grid settings (lib/eval/linear-probe.ts). */
export interface ProbeSpec {
  nLastBlocks: number[];
  avgpool: boolean[];
  lrs: number[];
  batchSize: number;
  epochs: number;
  itersPerEpoch: number | null;
  momentum: number;
  weightDecay: number;
  initStd: number;
}

export type EvalSpec =
  | { kind: 'none' }
  /** Top-1 accuracy of the model (eval mode, adapters applied) on `test`. */
  | { kind: 'accuracy'; test: SplitSet; at: EvalAt; batch: number }
  /**
   * Frozen-feature evaluation of the encoder (adapters merged when they can be): the DINOv2 linear-probe grid trained
   * on `train`, selected on `val`, reported on `test`; weighted kNN train → test. `saveEncoder` keeps the evaluated
   * encoder as a run checkpoint `encoder-step<k>`.
   */
  | {
      kind: 'probe';
      train: SplitSet;
      val: SplitSet;
      test: SplitSet;
      at: EvalAt;
      featureBatch: number;
      probe: ProbeSpec;
      knn: { k: number; temperature: number } | null;
      saveEncoder: boolean;
      /** Also report the macro F1 of the selected probe on `test` (WILDS: over the classes present in the labels). */
      macroF1?: boolean;
    }
  | SegmentationEval
  /** LoRA fine-tuning of the downstream classifier of a SatMAE group model, per task (recipes/session-satmae.ts). */
  | { kind: 'finetune'; at: EvalAt; tasks: FinetuneTaskSpec[] };

/**
 * Segmentation evaluation of the encoder (adapters merged when they can be; recipes/session-seg.ts): a new
 * segmentation head (lib/seg/head.ts) on the last `head.layers` blocks' patch tokens is trained on the masks of `train`
 * for `steps` steps of `batch` (AdamW, constant `lr`), with the encoder frozen (its features computed once) or adapted
 * by LoRA on Q,V of every block (`loraRank`, trained with the head); reported on `test`: IoU of class 1 (`segIoU`,
 * building), mIoU, pixel accuracy, from the confusion matrix over the whole split. `previewImages` > 0 also stores the
 * predicted masks of the first test images in the row (`segPreview`, hex bits) for figures.
 */
export interface SegmentationEval {
  kind: 'segmentation';
  train: SplitSet;
  test: SplitSet;
  at: EvalAt;
  featureBatch: number;
  head: { mode: 'linear' | 'patch'; layers: number };
  numClasses: number;
  encoder: 'frozen' | 'lora';
  loraRank: number;
  steps: number;
  batch: number;
  lr: number;
  weightDecay: number;
  previewImages: number;
}

/**
 * One LoRA fine-tuning of a classifier built from the model at an evaluation step (recipes/session-satmae.ts): ExPLoRA's
 * fine-tuning rule (LoRA on Q,V of every block + a new head, mean-pool into a frozen identity fc_norm, label smoothing,
 * AdamW 0.9/0.999, wd 0), `steps` of `batch` at peak `lr` (linear warm-up, cosine to `minLr`), then top-1 on `test`.
 * `source` null = the recipe's data source (EuroSAT transfer names its own).
 */
export interface FinetuneTaskSpec {
  /** Metric prefix of the evaluation row: `<name>Test`, `<name>TrainLoss`. */
  name: string;
  source: SourceSpec | null;
  train: SplitSet;
  test: SplitSet;
  numClasses: number;
  rank: number;
  alpha: number;
  steps: number;
  batch: number;
  lr: number;
  warmupSteps: number;
  minLr: number;
  labelSmoothing: number;
  dropPath: number;
  headInitStd: number;
  evalBatch: number;
}

export type OptimizerSpec =
  | { kind: 'adamw'; betas: [number, number]; eps: number; layerDecay: number; patchEmbedLrMult: number }
  | { kind: 'sgd'; momentum: number; dampening: number; nesterov: boolean; layerDecay: number; patchEmbedLrMult: number };

export type LrSpec = number | { base: number; scale: 'linear-256' | 'sqrt-1024' };

/** A length in steps or epochs. */
export type Length = { steps: number } | { epochs: number };

export type ScheduleSpec =
  | { kind: 'constant'; warmup: Length }
  | { kind: 'cosine'; warmup: Length; minLr: number; warmupStart: number };

/** A resolved recipe (every field present). */
export interface Recipe {
  format: typeof RECIPE_FORMAT;
  /** Run name: the run folder is `<runs>/<name>-<UTC time>`. */
  name: string;
  description: string;
  /** Free labels stored with the run (scale, experiment, method, …). */
  tags: Record<string, string | number | boolean>;
  seed: number;
  model: ModelSpec;
  weights: WeightsSpec;
  adapters: AdapterSpec;
  objective: ObjectiveSpec;
  data: DataSpec;
  batch: number;
  steps: number | null;
  epochs: number | null;
  epochLength: number | null;
  optimizer: OptimizerSpec;
  lr: LrSpec;
  schedule: ScheduleSpec;
  /** Constant, or cosine from `start` to `end` over the run (DINOv2: 0.04 → 0.4). */
  weightDecay: number | { start: number; end: number };
  /** Gradient-norm clip (0 = none; DINOv2: per student sub-module). */
  clipGrad: number;
  eval: EvalSpec;
  /** Save a resumable state every this many steps (0: only at evaluations and the end). */
  checkpointEvery: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Schema

const name = str({ pattern: /^[A-Za-z0-9][\w.-]*$/, what: "a name of letters, digits, '_', '-', '.' (starting with a letter or digit)" });
const path = str({ nonEmpty: true, what: 'a file or folder path' });
const pos = int({ min: 1 });
const prob = num({ min: 0, max: 1 });
const vitPreset = oneOf(Object.keys(VIT_PRESETS) as VitPresetName[]);
const satPreset = oneOf(Object.keys(SATMAE_GROUP_PRESETS) as SatMaeGroupPresetName[]);
const temporalPreset = oneOf(Object.keys(SATMAE_TEMPORAL_PRESETS) as SatMaeTemporalPresetName[]);
/** Any plain object (copied); its contents are checked by a kit validator afterwards. */
function jsonObject<T>(): Check<T> {
  return (v, at) => {
    if (!isPlainObject(v)) throw new RecipeError(at, `expected an object, got ${JSON.stringify(v)}`);
    return JSON.parse(JSON.stringify(v)) as T;
  };
}
const headPolicy = oneOf<HeadPolicy>(['keep', 'reinit']);
const sliceList = arr(oneOf<QkvSlice>(['q', 'k', 'v']), { min: 1 });
const loraInit = oneOf<LoraInit>(['kaiming', 'truncNormal']);
const statsName = oneOf<NormStatsName>(['imagenet', 'fmow', 'sentinel2']);
const blockRef: Check<BlockRef> = (v, at) => {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1) return v;
  if (v === 'L' || (typeof v === 'string' && /^L-[1-9]\d*$/.test(v))) return v as BlockRef;
  throw new RecipeError(at, `expected a 1-based block number, 'L' or 'L-k', got ${JSON.stringify(v)}`);
};

/** Partial object: only present keys are checked (unknown keys still errors). */
function partial<T>(fields: Fields<T>): Check<Partial<T>> {
  const keys = Object.keys(fields) as Array<keyof T & string>;
  return (v, at) => {
    if (!isPlainObject(v)) throw new RecipeError(at, `expected an object with some of the keys ${keys.join(', ')}, got ${JSON.stringify(v)}`);
    const out: Partial<T> = {};
    for (const [k, x] of Object.entries(v)) {
      if (!(k in fields)) throw new RecipeError(`${at}.${k}`, `unknown key; valid keys: ${keys.join(', ')}`);
      if (x === undefined) continue;
      const f = fields[k as keyof T] as Check<T[keyof T]> | { check: Check<T[keyof T]> };
      out[k as keyof T] = typeof f === 'function' ? f(x, `${at}.${k}`) : f.check(x, `${at}.${k}`);
    }
    return out;
  };
}

const side: Check<number | [number, number]> = either(pos, tuple(pos, pos), 'an integer ≥ 1 or [height, width]');
const vitOverrides = partial<VitConfig>({
  imgSize: side,
  patchSize: pos,
  inChans: pos,
  embedDim: pos,
  depth: pos,
  numHeads: pos,
  mlpRatio: num({ gt: 0 }),
  qkvBias: bool,
  layerScale: nullable(num({ gt: 0 })),
  numRegisters: int({ min: 0 }),
  distillToken: bool,
  maskToken: bool,
  posEmbed: oneOf(['learned', 'sincos'] as const),
  posEmbedGrid: nullable(side),
  posEmbedInterp: oneOf(['size', 'size-antialias', 'dinov2-offset'] as const),
  normEps: num({ gt: 0 }),
  pool: oneOf(['cls', 'avg'] as const),
  numClasses: int({ min: 0 }),
  dropPathRate: num({ min: 0, lt: 1 }),
  dropPathMode: oneOf(['linear', 'uniform'] as const),
  init: oneOf(['timm', 'dinov2', 'mae'] as const),
});
const decoderOverrides = partial<DecoderConfig>({
  embedDim: pos,
  depth: pos,
  numHeads: pos,
  mlpRatio: num({ gt: 0 }),
  qkvBias: bool,
  normEps: num({ gt: 0 }),
});

const modelSpec = tagged<ModelSpec>('kind', {
  vit: delegateFull(
    obj<Extract<ModelSpec, { kind: 'vit' }>>({ kind: lit('vit'), preset: vitPreset, overrides: opt(vitOverrides, {}) }),
    (m) => vitConfig(m.preset, m.overrides),
    'overrides',
  ),
  mae: delegateFull(
    obj<Extract<ModelSpec, { kind: 'mae' }>>({
      kind: lit('mae'),
      preset: vitPreset,
      encoder: opt(vitOverrides, {}),
      decoder: opt(decoderOverrides, {}),
    }),
    (m) => {
      vitConfig(m.preset, m.encoder);
      decoderConfig(m.decoder);
    },
    'encoder',
  ),
  'satmae-group': delegateFull(
    obj<Extract<ModelSpec, { kind: 'satmae-group' }>>({ kind: lit('satmae-group'), preset: satPreset, overrides: opt(jsonObject<SatMaeGroupOverrides>(), {}) }),
    (m) => satMaeGroupConfig(m.preset, m.overrides),
    'overrides',
  ),
  'satmae-temporal': delegateFull(
    obj<Extract<ModelSpec, { kind: 'satmae-temporal' }>>({ kind: lit('satmae-temporal'), preset: temporalPreset, overrides: opt(jsonObject<SatMaeTemporalOverrides>(), {}) }),
    (m) => satMaeTemporalConfig(m.preset, m.overrides),
    'overrides',
  ),
});

/** Check the shape with `c`, then a kit validator; its error is reported at `<path>.<key>`. */
function delegateFull<T>(c: Check<T>, validate: (v: T) => unknown, key: string): Check<T> {
  return (v, at) => {
    const out = c(v, at);
    delegate('invalid', () => validate(out))(out, `${at}.${key}`);
    return out;
  };
}

const regexSource: Check<string> = (v, at) => {
  const s = str()(v, at);
  try {
    new RegExp(s);
  } catch (e) {
    throw new RecipeError(at, `expected a regular expression source, got ${JSON.stringify(s)} (${(e as Error).message})`);
  }
  return s;
};

const weightsSpec = tagged<WeightsSpec>('kind', {
  init: obj({ kind: lit('init') }),
  asset: obj({ kind: lit('asset'), name, head: opt(headPolicy, 'reinit') }),
  checkpoint: obj({
    kind: lit('checkpoint'),
    path,
    head: opt(headPolicy, 'keep'),
    stripPrefixes: opt(arr(str()), []),
    ignore: opt(nullable(regexSource), null),
    allowMissing: opt(nullable(regexSource), null),
  }),
  timm: obj({ kind: lit('timm'), path, head: opt(headPolicy, 'keep') }),
});

const exploraOverrides = partial<Required<ExploraOverrides>>({
  family: oneOf(['D', 'M'] as const),
  unfrozen: arr(blockRef),
  rank: nullable(pos),
  alpha: num({ gt: 0 }),
  slices: sliceList,
  loraProj: bool,
  loraMlp: bool,
  unfreezeNorms: bool,
  unfreezeCls: bool,
  unfreezeEmbed: bool,
  unfreezeMaskToken: bool,
  decoderRank: nullable(pos),
  extraTrainable: arr(str()),
}) as Check<ExploraOverrides>;

const loraTarget = obj<LoraTargetSpec>({
  sites: either(arr(str({ nonEmpty: true }), { min: 1 }), (v, at) => [str({ nonEmpty: true })(v, at)], 'a glob string or a list of them'),
  exclude: opt(arr(str()), []),
  layers: opt(nullable(arr(int({ min: 0 }))), null),
  kind: opt(oneOf<LoraKind>(['linear', 'qkv', 'shared-qkv']), 'linear'),
  slices: opt(sliceList, ['q', 'v']),
  rank: opt(nullable(pos), null),
  alpha: opt(nullable(num({ gt: 0 })), null),
  scaling: opt(nullable(num({ gt: 0 })), null),
  dropout: opt(nullable(num({ min: 0, lt: 1 })), null),
  init: opt(nullable(loraInit), null),
});

const adapterSpec = tagged<AdapterSpec>('kind', {
  full: obj({ kind: lit('full') }),
  frozen: obj({ kind: lit('frozen') }),
  explora: delegateFull(
    obj({ kind: lit('explora'), notation: str({ what: "ExPLoRA notation such as 'D-ExPLoRA-[L]-r64'" }), overrides: opt(exploraOverrides, {}) }),
    (a) => exploraRecipe(a.notation, a.overrides as Partial<ExploraRecipe>),
    'notation',
  ),
  lora: obj({
    kind: lit('lora'),
    rank: pos,
    alpha: opt(num({ gt: 0 }), 1),
    dropout: opt(num({ min: 0, lt: 1 }), 0),
    init: opt(loraInit, 'kaiming'),
    targets: arr(loraTarget, { min: 1 }),
    train: opt(arr(str({ nonEmpty: true })), []),
  }),
  pyra: obj({
    kind: lit('pyra'),
    method: oneOf(['pyra', 'tome', 'lora'] as const),
    backbone: vitPreset,
    schedule: either(oneOf(['low', 'high'] as const), nullable(arr(int({ min: 0 }), { min: 1 })), "'low', 'high', a list of per-block merge counts or null"),
    loraRank: pos,
    loraInit: opt(loraInit, 'truncNormal'),
    loraDropout: opt(num({ min: 0, lt: 1 }), 0.1),
    propAttn: opt(bool, true),
    trainHead: opt(bool, true),
    // absent stays absent (resolved recipes of the released form are unchanged)
    variant: opt(
      delegate('a PYRA variant', (v) => {
        if (!isPlainObject(v)) throw new Error(`expected an object with some of ${PYRA_VARIANT_KEYS.join(', ')}, got ${JSON.stringify(v)}`);
        pyraVariant(v as Partial<PyraVariant>);
        return { ...(v as Partial<PyraVariant>) };
      }),
      undefined,
    ),
  }),
  'finetune-lora': obj({
    kind: lit('finetune-lora'),
    rank: opt(pos, 8),
    alpha: opt(num({ gt: 0 }), 1),
    slices: opt(sliceList, ['q', 'v']),
    headInitStd: opt(num({ gt: 0 }), 2e-5),
  }),
});

const dinoSettingsFields = partial<Required<DinoSettings>>({
  head: partial<Dinov2Objective['head']>({
    hiddenDim: pos,
    bottleneckDim: pos,
    outDim: pos,
    nlayers: pos,
    mlpBias: bool,
    normEps: num({ gt: 0 }),
  }) as Check<Dinov2Objective['head']>,
  separateIbotHead: bool,
  studentTemp: num({ gt: 0 }),
  teacherTemp: partial<Dinov2Objective['teacherTemp']>({ warmup: num({ gt: 0 }), final: num({ gt: 0 }), warmupEpochs: num({ min: 0 }) }) as Check<
    Dinov2Objective['teacherTemp']
  >,
  targets: tagged<TeacherTargetMode>('kind', {
    centering: obj({ kind: lit('centering'), momentum: num({ min: 0, lt: 1 }) }),
    sinkhorn_knopp: obj({ kind: lit('sinkhorn_knopp'), iterations: pos }),
  }),
  weights: partial<Dinov2Objective['weights']>({ dino: num({ min: 0 }), koleo: num({ min: 0 }), ibot: num({ min: 0 }) }) as Check<
    Dinov2Objective['weights']
  >,
  masking: partial<IbotMaskConfig>({
    ratioMinMax: tuple(prob, prob),
    maskProbability: prob,
    maxRatio: num({ gt: 0, max: 1 }),
    minNumPatches: pos,
    minAspect: num({ gt: 0, max: 1 }),
  }) as Check<IbotMaskConfig>,
  nLocalCrops: int({ min: 0 }),
  globalCropSize: pos,
  localCropSize: pos,
});

const dinoSettings: Check<DinoSettings> = (v, at) => {
  const p = dinoSettingsFields(v, at);
  return delegate('invalid', () => JSON.parse(JSON.stringify(dinov2Objective(p))) as DinoSettings)(p, at);
};

const objectiveSpec = tagged<ObjectiveSpec>('kind', {
  mae: obj({ kind: lit('mae'), maskRatio: opt(num({ gt: 0, lt: 1 }), 0.75), normPixLoss: opt(bool, true) }),
  supervised: obj({ kind: lit('supervised'), labelSmoothing: opt(num({ min: 0, lt: 1 }), 0) }),
  dinov2: obj({
    kind: lit('dinov2'),
    settings: opt(dinoSettings, JSON.parse(JSON.stringify(dinov2Objective({}))) as DinoSettings),
    teacherMomentum: opt(tuple(prob, prob), [0.992, 1]),
    freezeLastLayerEpochs: opt(num({ min: 0 }), 1),
    dropPathRate: opt(num({ min: 0, lt: 1 }), 0.3),
  }),
});

const splitRef = obj<SplitRef>({
  split: str({ nonEmpty: true }),
  subset: opt(nullable(obj({ n: pos, key: opt(nullable(str()), null), sorted: opt(bool, false) })), null),
});

const size = int({ min: 1 });
const transformSpec = tagged<TransformSpec, 'name'>('name', {
  normalize: obj({ name: lit('normalize'), stats: opt(statsName, 'imagenet') }),
  'mae-pretrain': obj({ name: lit('mae-pretrain'), size, stats: opt(statsName, 'imagenet') }),
  supervised: obj({
    name: lit('supervised'),
    size,
    rrcScale: opt(nullable(tuple(num({ gt: 0, max: 1 }), num({ gt: 0, max: 1 }))), null),
    hflip: opt(bool, false),
    stats: opt(statsName, 'imagenet'),
  }),
  vtab: obj({ name: lit('vtab'), size }),
  'fmow-train': obj({ name: lit('fmow-train'), size }),
  'fmow-eval': obj({ name: lit('fmow-eval'), size }),
  'fmow-temporal': obj({ name: lit('fmow-temporal'), size }),
  'linear-probe-eval': obj({ name: lit('linear-probe-eval'), size }),
  'sentinel-train': obj({ name: lit('sentinel-train'), size, droppedBands: opt(arr(int({ min: 0, max: 12 })), [...SENTINEL2_DROPPED_BANDS]) }),
  'sentinel-eval': obj({ name: lit('sentinel-eval'), size, droppedBands: opt(arr(int({ min: 0, max: 12 })), [...SENTINEL2_DROPPED_BANDS]) }),
  'dino-multicrop': obj({ name: lit('dino-multicrop'), blurMode: opt(oneOf(['effective', 'intended'] as const), 'effective'), rgb: opt(bool, true) }),
});

const splitSet = obj<SplitSet>({ splits: arr(splitRef, { min: 1 }), transform: transformSpec });

const sourceSpec = tagged<SourceSpec>('kind', {
  embedded: obj({
    kind: lit('embedded'),
    domain: oneOf(['satellite-rgb', 'satellite-ms', 'natural', 'objects', 'count', 'orientation', 'pathology', 'camera-traps', 'sites-ms', 'sites-temporal', 'buildings'] as const),
    seed: opt(int({ min: 0 }), 0),
    size: opt(int({ min: 8, max: 512 }), 32),
    satellitePerClass: opt(int({ min: 5 }), 100),
    naturalPerClass: opt(int({ min: 5 }), 100),
    count: opt(nullable(int({ min: 4 })) as Check<number | null | undefined>, undefined),
    product: opt(oneOf(['3band', '8band', '13band'] as const) as Check<'3band' | '8band' | '13band' | undefined>, undefined),
  }),
  imagefolder: obj({ kind: lit('imagefolder'), root: path }),
  eurosat: obj({ kind: lit('eurosat'), root: path, variant: opt(oneOf(['rgb', 'ms'] as const), 'rgb'), splits: record(path) }),
  vtab1k: obj({ kind: lit('vtab1k'), root: path, task: str({ nonEmpty: true }) }),
  'fmow-rgb': obj({ kind: lit('fmow-rgb'), csv: record(path) }),
  'fmow-temporal': obj({ kind: lit('fmow-temporal'), csv: record(path) }),
  'fmow-sentinel': obj({ kind: lit('fmow-sentinel'), csv: record(path) }),
  camelyon17: obj({
    kind: lit('camelyon17'),
    root: path,
    unlabeledRoot: path,
    pretrainSplits: opt(arr(oneOf(['train_unlabeled', 'val_unlabeled', 'test_unlabeled'] as const), { min: 1 }), ['val_unlabeled', 'test_unlabeled']),
  }),
  iwildcam: obj({ kind: lit('iwildcam'), root: path }),
  spacenet1: obj({
    kind: lit('spacenet1'),
    root: path,
    product: opt(oneOf(['3band', '8band'] as const), '3band'),
    valFraction: opt(num({ min: 0, lt: 1 }), 0.1),
    testFraction: opt(num({ gt: 0, lt: 1 }), 0.28),
  }),
});

const dataSpec = obj<DataSpec>({ source: sourceSpec, train: splitSet });

const evalAt: Check<EvalAt> = (v, at) => {
  if (!isPlainObject(v) || Object.keys(v).length !== 1) {
    throw new RecipeError(at, `expected one of {steps: [...]}, {epochs: [...]}, {every: n}, {everyEpochs: n}, got ${JSON.stringify(v)}`);
  }
  const [k] = Object.keys(v);
  switch (k) {
    case 'steps':
      return { steps: arr(int({ min: 0 }))(v.steps, `${at}.steps`) };
    case 'epochs':
      return { epochs: arr(num({ min: 0 }))(v.epochs, `${at}.epochs`) };
    case 'every':
      return { every: pos(v.every, `${at}.every`) };
    case 'everyEpochs':
      return { everyEpochs: num({ gt: 0 })(v.everyEpochs, `${at}.everyEpochs`) };
    default:
      throw new RecipeError(`${at}.${k}`, 'unknown key; valid keys: steps, epochs, every, everyEpochs (one of them)');
  }
};

const probeSpec = obj<ProbeSpec>({
  nLastBlocks: opt(arr(pos, { min: 1 }), [...DINOV2_LINEAR_PROBE.nLastBlocks]),
  avgpool: opt(arr(bool, { min: 1 }), [...DINOV2_LINEAR_PROBE.avgpool]),
  lrs: opt(arr(num({ gt: 0 }), { min: 1 }), [...DINOV2_LINEAR_PROBE.lrs]),
  batchSize: opt(pos, DINOV2_LINEAR_PROBE.batchSize),
  epochs: opt(num({ gt: 0 }), DINOV2_LINEAR_PROBE.epochs),
  itersPerEpoch: opt(nullable(pos), DINOV2_LINEAR_PROBE.itersPerEpoch),
  momentum: opt(num({ min: 0, lt: 1 }), DINOV2_LINEAR_PROBE.momentum),
  weightDecay: opt(num({ min: 0 }), DINOV2_LINEAR_PROBE.weightDecay),
  initStd: opt(num({ gt: 0 }), DINOV2_LINEAR_PROBE.initStd),
});

const evalSpec = tagged<EvalSpec>('kind', {
  none: obj({ kind: lit('none') }),
  accuracy: obj({ kind: lit('accuracy'), test: splitSet, at: opt(evalAt, { steps: [] }), batch: opt(pos, 100) }),
  probe: obj({
    kind: lit('probe'),
    train: splitSet,
    val: splitSet,
    test: splitSet,
    at: opt(evalAt, { steps: [] }),
    featureBatch: opt(pos, 200),
    probe: opt(probeSpec, probeSpec({}, '')),
    knn: opt(nullable(obj({ k: pos, temperature: num({ gt: 0 }) })), { k: 20, temperature: 0.07 }),
    saveEncoder: opt(bool, true),
    macroF1: opt(bool as Check<boolean | undefined>, undefined),
  }),
  segmentation: obj<SegmentationEval>({
    kind: lit('segmentation'),
    train: splitSet,
    test: splitSet,
    at: opt(evalAt, { steps: [] }),
    featureBatch: opt(pos, 64),
    head: opt(obj({ mode: opt(oneOf(['linear', 'patch'] as const), 'linear'), layers: opt(pos, 1) }), { mode: 'linear', layers: 1 }),
    numClasses: opt(int({ min: 2 }), 2),
    encoder: opt(oneOf(['frozen', 'lora'] as const), 'frozen'),
    loraRank: opt(pos, 4),
    steps: opt(int({ min: 0 }), 200),
    batch: opt(pos, 32),
    lr: opt(num({ gt: 0 }), 1e-3),
    weightDecay: opt(num({ min: 0 }), 0),
    previewImages: opt(int({ min: 0 }), 0),
  }),
  finetune: obj({
    kind: lit('finetune'),
    at: opt(evalAt, { steps: [] }),
    tasks: arr(
      obj<FinetuneTaskSpec>({
        name: str({ pattern: /^[a-z][A-Za-z0-9]*$/, what: 'a metric prefix (letters and digits, starting lower-case)' }),
        source: opt(nullable(sourceSpec), null),
        train: splitSet,
        test: splitSet,
        numClasses: pos,
        rank: opt(pos, 8),
        alpha: opt(num({ gt: 0 }), 1),
        steps: int({ min: 0 }),
        batch: pos,
        lr: num({ gt: 0 }),
        warmupSteps: opt(int({ min: 0 }), 0),
        minLr: opt(num({ min: 0 }), 0),
        labelSmoothing: opt(num({ min: 0, lt: 1 }), 0.1),
        dropPath: opt(num({ min: 0, lt: 1 }), 0.2),
        headInitStd: opt(num({ gt: 0 }), 2e-5),
        evalBatch: opt(pos, 100),
      }),
      { min: 1 },
    ),
  }),
});

const optimizerSpec = tagged<OptimizerSpec>('kind', {
  adamw: obj({
    kind: lit('adamw'),
    betas: opt(tuple(num({ min: 0, lt: 1 }), num({ min: 0, lt: 1 })), [0.9, 0.999]),
    eps: opt(num({ gt: 0 }), 1e-8),
    layerDecay: opt(num({ gt: 0, max: 1 }), 1),
    patchEmbedLrMult: opt(num({ gt: 0, max: 1 }), 1),
  }),
  sgd: obj({
    kind: lit('sgd'),
    momentum: opt(num({ min: 0, lt: 1 }), 0.9),
    dampening: opt(num({ min: 0, max: 1 }), 0),
    nesterov: opt(bool, false),
    layerDecay: opt(num({ gt: 0, max: 1 }), 1),
    patchEmbedLrMult: opt(num({ gt: 0, max: 1 }), 1),
  }),
});

const lrSpec: Check<LrSpec> = either(
  num({ gt: 0 }),
  obj<{ base: number; scale: 'linear-256' | 'sqrt-1024' }>({ base: num({ gt: 0 }), scale: oneOf(['linear-256', 'sqrt-1024'] as const) }),
  "a number > 0 or {base, scale: 'linear-256' | 'sqrt-1024'}",
);

const length: Check<Length> = (v, at) => {
  if (!isPlainObject(v) || Object.keys(v).length !== 1 || !('steps' in v || 'epochs' in v)) {
    throw new RecipeError(at, `expected {steps: n} or {epochs: x}, got ${JSON.stringify(v)}`);
  }
  return 'steps' in v ? { steps: int({ min: 0 })(v.steps, `${at}.steps`) } : { epochs: num({ min: 0 })(v.epochs, `${at}.epochs`) };
};

const scheduleSpec = tagged<ScheduleSpec>('kind', {
  constant: obj({ kind: lit('constant'), warmup: opt(length, { steps: 0 }) }),
  cosine: obj({ kind: lit('cosine'), warmup: opt(length, { steps: 0 }), minLr: opt(num({ min: 0 }), 0), warmupStart: opt(num({ min: 0 }), 0) }),
});

const recipeFields = obj<Recipe>({
  format: lit(RECIPE_FORMAT),
  name,
  description: opt(str(), ''),
  tags: opt(record(either(either(str(), num(), 'a string or number'), bool, 'a string, number or boolean')), {}),
  seed: opt(int({ min: 0 }), 0),
  model: modelSpec,
  weights: opt(weightsSpec, { kind: 'init' }),
  adapters: adapterSpec,
  objective: objectiveSpec,
  data: dataSpec,
  batch: pos,
  steps: opt(nullable(int({ min: 0 })), null),
  epochs: opt(nullable(num({ min: 0 })), null),
  epochLength: opt(nullable(pos), null),
  optimizer: opt(optimizerSpec, { kind: 'adamw', betas: [0.9, 0.999], eps: 1e-8, layerDecay: 1, patchEmbedLrMult: 1 }),
  lr: lrSpec,
  schedule: opt(scheduleSpec, { kind: 'constant', warmup: { steps: 0 } }),
  weightDecay: opt(
    either(num({ min: 0 }), obj<{ start: number; end: number }>({ start: num({ min: 0 }), end: num({ min: 0 }) }), 'a number ≥ 0 or {start, end}'),
    0,
  ),
  clipGrad: opt(num({ min: 0 }), 0),
  eval: opt(evalSpec, { kind: 'none' }),
  checkpointEvery: opt(int({ min: 0 }), 0),
});

/** Input accepted by `recipe()`: a recipe object, possibly with defaulted fields left out (as in a JSON file). */
export type RecipeInput = Partial<Recipe> & Pick<Recipe, 'name' | 'model' | 'adapters' | 'objective' | 'data' | 'batch' | 'lr'>;

/**
 * Validate a recipe and fill its defaults. Throws a `RecipeError` naming the first bad key path (`recipe.…`).
 * Cross-field rules: exactly one of steps / epochs; `epochs` needs a dataset size (or `epochLength`) at run time;
 * the objective fits the model (MAE ↔ mae / satmae-group, DINOv2 ↔ a ViT with a mask token, supervised ↔ a ViT with
 * a head); a frozen recipe trains 0 steps; ExPLoRA's family fits the objective (D- ↔ DINOv2, M- ↔ MAE).
 */
export function recipe(input: unknown, at = 'recipe'): Recipe {
  const base = isPlainObject(input) && input.format === undefined ? { ...input, format: RECIPE_FORMAT } : input;
  if (isPlainObject(base) && typeof base.format === 'string' && base.format !== RECIPE_FORMAT) {
    throw new RecipeError(`${at}.format`, `unsupported recipe format '${base.format}'; this kit reads '${RECIPE_FORMAT}'`);
  }
  const r = recipeFields(base, at);
  crossCheck(r, at);
  return r;
}

function crossCheck(r: Recipe, at: string): void {
  if ((r.steps === null) === (r.epochs === null)) {
    throw new RecipeError(`${at}.steps`, `give the run length as steps or as epochs (set the other to null), got steps ${r.steps} and epochs ${r.epochs}`);
  }
  const m = r.model;
  const o = r.objective;
  if (o.kind === 'mae' && m.kind === 'vit') {
    throw new RecipeError(`${at}.objective.kind`, `the MAE objective needs model.kind 'mae', 'satmae-group' or 'satmae-temporal', got '${m.kind}'`);
  }
  if (o.kind !== 'mae' && m.kind !== 'vit') throw new RecipeError(`${at}.objective.kind`, `model.kind '${m.kind}' trains with the MAE objective only, got '${o.kind}'`);
  if (m.kind === 'vit') {
    const cfg = vitConfig(m.preset, m.overrides);
    if (o.kind === 'dinov2' && !cfg.maskToken) throw new RecipeError(`${at}.model`, `the DINOv2 objective needs a ViT with a mask token (a *_dinov2 preset), got ${m.preset}`);
    if (o.kind === 'supervised' && cfg.numClasses === 0 && r.adapters.kind !== 'frozen') {
      throw new RecipeError(`${at}.model.overrides.numClasses`, 'the supervised objective needs a classification head (numClasses > 0)');
    }
  }
  if (r.adapters.kind === 'explora') {
    const fam = exploraRecipe(r.adapters.notation, r.adapters.overrides as Partial<ExploraRecipe>).family;
    if ((fam === 'D') !== (o.kind === 'dinov2')) {
      throw new RecipeError(`${at}.adapters.notation`, `${fam}-ExPLoRA goes with the ${fam === 'D' ? 'DINOv2' : 'MAE'} objective, got objective '${o.kind}'`);
    }
  } else if (o.kind === 'dinov2') {
    throw new RecipeError(`${at}.adapters.kind`, `the DINOv2 objective runs D-ExPLoRA (adapters.kind 'explora'), got '${r.adapters.kind}'`);
  }
  if (r.adapters.kind === 'frozen' && (r.steps ?? r.epochs) !== 0) {
    throw new RecipeError(`${at}.adapters.kind`, `a frozen recipe trains nothing: set steps to 0, got ${r.steps ?? `${r.epochs} epochs`}`);
  }
  if ((r.adapters.kind === 'pyra' || r.adapters.kind === 'finetune-lora' || r.adapters.kind === 'lora') && m.kind !== 'vit') {
    throw new RecipeError(`${at}.adapters.kind`, `adapters '${r.adapters.kind}' attach to a ViT (model.kind 'vit'), got '${m.kind}'`);
  }
  if (o.kind === 'dinov2' && r.epochLength === null) {
    throw new RecipeError(`${at}.epochLength`, 'the DINOv2 objective schedules per "epoch" of epochLength iterations (upstream 1250); set it');
  }
  if (o.kind === 'dinov2' && r.data.train.transform.name !== 'dino-multicrop') {
    throw new RecipeError(`${at}.data.train.transform.name`, `the DINOv2 objective trains on multi-crop views: expected 'dino-multicrop', got '${r.data.train.transform.name}'`);
  }
  if (o.kind !== 'dinov2' && r.data.train.transform.name === 'dino-multicrop') {
    throw new RecipeError(`${at}.data.train.transform.name`, `'dino-multicrop' views are for the DINOv2 objective, got objective '${o.kind}'`);
  }
  if (typeof r.lr !== 'number' && r.lr.scale === 'linear-256' && o.kind === 'dinov2') {
    throw new RecipeError(`${at}.lr.scale`, "the DINOv2 objective scales its lr by √(batch/1024): use 'sqrt-1024' or a plain number");
  }
  if (r.eval.kind === 'probe' && (m.kind === 'satmae-group' || m.kind === 'satmae-temporal')) {
    throw new RecipeError(`${at}.eval.kind`, `the probe evaluates a ViT encoder; a '${m.kind}' model has none (evaluate it with 'finetune')`);
  }
  if (r.eval.kind === 'segmentation') {
    if (m.kind === 'satmae-group' || m.kind === 'satmae-temporal') throw new RecipeError(`${at}.eval.kind`, `the segmentation evaluation reads a ViT encoder's patch tokens; a '${m.kind}' model has none`);
    if (r.eval.encoder === 'lora' && r.eval.steps === 0) throw new RecipeError(`${at}.eval.steps`, "encoder 'lora' trains LoRA with the head: give steps ≥ 1");
  }
  if (r.eval.kind === 'finetune') {
    if (m.kind !== 'satmae-group' && m.kind !== 'satmae-temporal') {
      throw new RecipeError(`${at}.eval.kind`, `'finetune' evaluates the downstream classifier of a 'satmae-group' or 'satmae-temporal' model, got model.kind '${m.kind}'`);
    }
    const names = r.eval.tasks.map((t) => t.name);
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup !== undefined) throw new RecipeError(`${at}.eval.tasks`, `task name '${dup}' is used twice (it prefixes the metrics)`);
    r.eval.tasks.forEach((t, i) => {
      if (t.warmupSteps > t.steps) throw new RecipeError(`${at}.eval.tasks[${i}].warmupSteps`, `warm-up of ${t.warmupSteps} steps is longer than the fine-tuning (${t.steps} steps)`);
    });
  }
  if (r.eval.kind === 'accuracy' && o.kind !== 'supervised') {
    throw new RecipeError(`${at}.eval.kind`, `accuracy evaluates the classifier a supervised run trains; objective '${o.kind}' has none (use 'probe')`);
  }
}

/** Peak learning rate of a recipe (after its batch scaling rule). */
export function peakLr(r: Pick<Recipe, 'lr' | 'batch'>): number {
  if (typeof r.lr === 'number') return r.lr;
  return r.lr.scale === 'linear-256' ? (r.lr.base * r.batch) / 256 : r.lr.base * Math.sqrt(r.batch / 1024);
}

/** A JSON copy (what a run folder stores). */
export function recipeJson(r: Recipe): string {
  return `${JSON.stringify(r, null, 2)}\n`;
}

/** The recipe with every relative path resolved against `baseDir` (what a run folder stores: it may be run from anywhere). */
export function resolveRecipePaths(r: Recipe, baseDir: string): Recipe {
  const abs = (p: string): string => pathResolve(baseDir, p);
  const absAll = (m: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, abs(v)]));
  const w = r.weights;
  const weights: WeightsSpec = w.kind === 'checkpoint' || w.kind === 'timm' ? { ...w, path: abs(w.path) } : w;
  const source = absSource(r.data.source, abs, absAll);
  const ev = r.eval.kind === 'finetune' ? { ...r.eval, tasks: r.eval.tasks.map((t) => (t.source ? { ...t, source: absSource(t.source, abs, absAll) } : t)) } : r.eval;
  return { ...r, weights, data: { ...r.data, source }, eval: ev };
}

function absSource(s: SourceSpec, abs: (p: string) => string, absAll: (m: Record<string, string>) => Record<string, string>): SourceSpec {
  let source: SourceSpec;
  switch (s.kind) {
    case 'embedded':
      source = s;
      break;
    case 'imagefolder':
    case 'vtab1k':
      source = { ...s, root: abs(s.root) };
      break;
    case 'eurosat':
      source = { ...s, root: abs(s.root), splits: absAll(s.splits) };
      break;
    case 'camelyon17':
      source = { ...s, root: abs(s.root), unlabeledRoot: abs(s.unlabeledRoot) };
      break;
    case 'iwildcam':
    case 'spacenet1':
      source = { ...s, root: abs(s.root) };
      break;
    case 'fmow-rgb':
    case 'fmow-temporal':
    case 'fmow-sentinel':
      source = { ...s, csv: absAll(s.csv) };
      break;
    default: {
      const never: never = s;
      throw new Error(`resolveRecipePaths: unknown source ${JSON.stringify(never)}`);
    }
  }
  return source;
}
