/**
 * Small supervised "source" backbones for the notebooks: the kit's stand-in for the ImageNet-21k supervised ViTs that
 * PYRA fine-tunes (PYRA `scripts/pyra_vit-l.sh`: Google's `imagenet21k_ViT-L_16.npz`), pre-trained from scratch on the embedded natural domain (10 shape classes, 32 px) by
 * `tools/make-source-vit.ts`, deterministic from a seed.
 *
 * A spec is plain data (model config, data, recipe, seed) and names the checkpoint
 * `notebooks/assets/source-vit-<tag>.safetensors`. The file stores the whole classifier (PyTorch layout) and, in
 * `__metadata__.vitpeft`, `{kind: 'source-vit', spec, vitConfig, result, ...}`; a JSON sidecar next to it holds the
 * same record plus the per-step losses. Loading checks the stored spec against the requested one field by field, so a
 * notebook never fine-tunes a backbone made with other settings by accident.
 */
import { existsSync, readFileSync } from 'fs';
import { checkKeys, lookup } from '../lib/check';
import { VitConfig, VitPresetName, vitConfig } from '../lib/vit/config';
import { Vit, createVit, disposeVit } from '../lib/vit/params';
import { saveCheckpoint, loadCheckpoint } from '../lib/io/checkpoint';
import { readSafetensors, writeFileAtomic } from '../lib/io/safetensors';
import { backendReport } from '../lib/backend';
import { SupervisedRecipe, SupervisedResult, SUPERVISED_RECIPE, checkRecipe, trainSupervised } from './supervised';
import { StepInfo } from '../lib/train/step';
import { loadEmbedded } from '../data-loaders/embedded';
import { Dataset } from '../data-loaders/dataset';

export interface SourceVitSpec {
  /** Names the file: `source-vit-<tag>.safetensors`. */
  tag: string;
  preset: VitPresetName;
  /** Overrides of the preset (image size, patch, width, depth, heads, classes, pool, drop-path). */
  overrides: Partial<VitConfig>;
  /** Pre-training data: the embedded natural domain (`loadEmbedded` options). */
  data: { dataset: 'embedded-natural'; seed: number; size: number; naturalPerClass: number };
  recipe: SupervisedRecipe;
  /** Seed of the initialisation, batch order and augmentation. */
  seed: number;
}

const SPEC_KEYS: readonly (keyof SourceVitSpec)[] = ['tag', 'preset', 'overrides', 'data', 'recipe', 'seed'];

/** 32 px, patch 4 → 8×8 = 64 patch tokens + cls (enough tokens for merging to matter); d_head 32. */
const SMALL_VIT = { imgSize: 32, patchSize: 4, depth: 6, mlpRatio: 4, numClasses: 10, pool: 'cls', dropPathRate: 0.1 } as const;
const NATURAL = { dataset: 'embedded-natural', seed: 0, size: 32, naturalPerClass: 300 } as const;

/**
 * The backbones the ToMe/PYRA notebook uses: a D = 128 ViT (the "large" model that gets merged) and a D = 64 ViT of the
 * same depth (the "smaller model" baseline: ≈ 27 % of the MACs, as ViT-S is ≈ 26 % of ViT-B), same data and recipe.
 */
export const SOURCE_VIT_SPECS = {
  d128x6: {
    tag: 'd128x6',
    preset: 'vit_tiny_patch16_224',
    overrides: { ...SMALL_VIT, embedDim: 128, numHeads: 4 },
    data: NATURAL,
    recipe: SUPERVISED_RECIPE,
    seed: 0,
  },
  d64x6: {
    tag: 'd64x6',
    preset: 'vit_tiny_patch16_224',
    overrides: { ...SMALL_VIT, embedDim: 64, numHeads: 2 },
    data: NATURAL,
    recipe: SUPERVISED_RECIPE,
    seed: 0,
  },
} as const satisfies Record<string, SourceVitSpec>;

export type SourceVitName = keyof typeof SOURCE_VIT_SPECS;

/** Resolve a spec name or check a spec (unknown keys rejected). */
export function sourceVitSpec(s: SourceVitName | SourceVitSpec): SourceVitSpec {
  const spec: SourceVitSpec = typeof s === 'string' ? lookup('source ViT spec', SOURCE_VIT_SPECS, s) : s;
  checkKeys('SourceVitSpec', spec, SPEC_KEYS);
  if (!/^[A-Za-z0-9][\w.-]*$/.test(spec.tag)) throw new Error(`SourceVitSpec.tag '${spec.tag}' must use only letters, digits, '_', '-', '.'`);
  checkKeys('SourceVitSpec.data', spec.data, ['dataset', 'seed', 'size', 'naturalPerClass']);
  if (spec.data.dataset !== 'embedded-natural') throw new Error(`SourceVitSpec.data.dataset: only 'embedded-natural' is supported, got '${spec.data.dataset}'`);
  checkRecipe(spec.recipe);
  const cfg = vitConfig(spec.preset, spec.overrides);
  if (cfg.imgSize !== spec.data.size) throw new Error(`SourceVitSpec: model imgSize ${String(cfg.imgSize)} ≠ data size ${spec.data.size}`);
  return spec;
}

/** File name of a spec's checkpoint. */
export function sourceVitFile(spec: Pick<SourceVitSpec, 'tag'>): string {
  return `source-vit-${spec.tag}.safetensors`;
}

/** What a source-ViT checkpoint records (metadata and sidecar). */
export interface SourceVitRecord {
  kind: 'source-vit';
  spec: SourceVitSpec;
  vitConfig: VitConfig;
  result: { finalLoss: number; evals: Array<{ step: number; accuracy: number }>; valAccuracy: number | null; seconds: number };
  backend: { backend: string; threads: number; simd: boolean | null; tfjs: string };
  /** Free text (e.g. which kit commit / branch produced it). */
  note: string;
  created: string;
}

/** Pre-train a source ViT from its spec on the embedded natural domain. The caller owns (disposes) the model. */
export async function pretrainSourceVit(
  s: SourceVitName | SourceVitSpec,
  opts: {
    evalEvery?: number;
    onStep?: (info: StepInfo) => void | Promise<void>;
    onEval?: (e: { step: number; accuracy: number }) => void;
    /** Other data than the spec's (tests); default: `loadEmbedded(spec.data)` natural train / val. */
    datasets?: { train: Dataset; val?: Dataset };
  } = {},
): Promise<{ vit: Vit; result: SupervisedResult }> {
  checkKeys('pretrainSourceVit options', opts, ['evalEvery', 'onStep', 'onEval', 'datasets']);
  const spec = sourceVitSpec(s);
  const data =
    opts.datasets ??
    (await loadEmbedded({ seed: spec.data.seed, size: spec.data.size, naturalPerClass: spec.data.naturalPerClass })).natural;
  const vit = createVit(spec.preset, spec.overrides, { seed: spec.seed });
  try {
    const result = await trainSupervised(vit, data.train, spec.recipe, {
      seed: spec.seed,
      val: data.val,
      evalEvery: opts.evalEvery,
      onStep: opts.onStep,
      onEval: opts.onEval,
    });
    return { vit, result };
  } catch (e) {
    disposeVit(vit);
    throw e;
  }
}

/** Save a pre-trained source ViT (safetensors + `<name>.json` sidecar with the losses). Returns the record. */
export function saveSourceVit(file: string, vit: Vit, s: SourceVitName | SourceVitSpec, result: SupervisedResult, note = ''): SourceVitRecord {
  const spec = sourceVitSpec(s);
  const rep = backendReport();
  const last = result.evals[result.evals.length - 1];
  const record: SourceVitRecord = {
    kind: 'source-vit',
    spec: JSON.parse(JSON.stringify(spec)) as SourceVitSpec,
    vitConfig: JSON.parse(JSON.stringify(vit.config)) as VitConfig,
    result: { finalLoss: result.finalLoss, evals: result.evals, valAccuracy: last ? last.accuracy : null, seconds: result.seconds },
    backend: { backend: rep.backend, threads: rep.threads, simd: rep.simd, tfjs: rep.versions['tfjs-core'] ?? '' },
    note,
    created: new Date().toISOString(),
  };
  saveCheckpoint(file, { params: vit.params, meta: { ...record } });
  writeFileAtomic(file.replace(/\.safetensors$/, '') + '.json', `${JSON.stringify({ ...record, losses: result.losses }, null, 1)}\n`);
  return record;
}

/** The record stored in a source-ViT checkpoint (throws naming the file if it is not one). */
export function readSourceVitRecord(file: string): SourceVitRecord {
  const { metadata } = readSafetensors(file);
  let meta: Record<string, unknown>;
  try {
    meta = JSON.parse(metadata.vitpeft ?? 'null') as Record<string, unknown>;
  } catch {
    throw new Error(`${file}: __metadata__.vitpeft is not valid JSON`);
  }
  if (!meta || meta.kind !== 'source-vit') throw new Error(`${file}: not a source-ViT checkpoint (metadata kind '${String(meta?.kind)}')`);
  return meta as unknown as SourceVitRecord;
}

/** Differences between two JSON values as 'path: a ≠ b' lines (empty when equal). */
export function jsonDiff(a: unknown, b: unknown, at = ''): string[] {
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const keys = [...new Set([...Object.keys(a as object), ...Object.keys(b as object)])].sort();
    return keys.flatMap((k) => jsonDiff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], at ? `${at}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [`${at || '(value)'}: ${JSON.stringify(a)} ≠ ${JSON.stringify(b)}`];
}

/** Why `file` cannot stand for `spec` (missing, not a source ViT, other settings), or null when it matches. */
export function sourceVitMismatch(file: string, s: SourceVitName | SourceVitSpec): string | null {
  const spec = sourceVitSpec(s);
  if (!existsSync(file)) return `${file} does not exist`;
  let rec: SourceVitRecord;
  try {
    rec = readSourceVitRecord(file);
  } catch (e) {
    return (e as Error).message;
  }
  const d = jsonDiff(JSON.parse(JSON.stringify(rec.spec)), JSON.parse(JSON.stringify(spec)));
  return d.length ? `${file} was made with other settings (stored ≠ requested): ${d.join('; ')}` : null;
}

/**
 * Load a source ViT for fine-tuning: the spec's backbone with `overrides` applied (e.g. another head size or
 * drop-path), weights from `file` after checking its spec. The pre-training head is loaded only when the head shape
 * is unchanged and `keepHead` is set; otherwise the new head keeps its seeded init (trunc-normal 0.02, bias 0).
 */
export function loadSourceVit(
  file: string,
  s: SourceVitName | SourceVitSpec,
  opts: { overrides?: Partial<VitConfig>; seed?: number; keepHead?: boolean } = {},
): { vit: Vit; record: SourceVitRecord } {
  checkKeys('loadSourceVit options', opts, ['overrides', 'seed', 'keepHead']);
  const spec = sourceVitSpec(s);
  const why = sourceVitMismatch(file, spec);
  if (why) throw new Error(`loadSourceVit: ${why}`);
  const record = readSourceVitRecord(file);
  const vit = createVit(spec.preset, { ...spec.overrides, ...opts.overrides }, { seed: opts.seed ?? 0 });
  try {
    const keepHead = opts.keepHead ?? false;
    loadCheckpoint(file, { params: vit.params }, keepHead ? {} : { ignore: /^head\./, allowMissing: /^head\./ });
    return { vit, record };
  } catch (e) {
    disposeVit(vit);
    throw e;
  }
}

/** The sidecar of a checkpoint (record + losses), or null when absent. */
export function readSourceVitSidecar(file: string): (SourceVitRecord & { losses: number[] }) | null {
  const side = file.replace(/\.safetensors$/, '') + '.json';
  if (!existsSync(side)) return null;
  return JSON.parse(readFileSync(side, 'utf8')) as SourceVitRecord & { losses: number[] };
}
