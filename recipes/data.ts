/**
 * The data half of a recipe: open a source (the embedded domains or a paper format on disk), assemble split sets
 * (seeded subsets, concatenation) and build the named transforms. Everything here is a function of the recipe and its
 * seed, so a run folder rebuilds the same batches.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../lib/rng';
import { Dataset, Loader, SampleTransform, ViewsTransform, concatDatasets, subset } from '../data-loaders/dataset';
import { compose, dinoMultiCrop, normalizeWith, randomHFlip, randomResizedCrop } from '../data-loaders/augment';
import { NORM_PRESETS } from '../data-loaders/transforms';
import { fmowEval, fmowTrain, linearProbeEval, maePretrain, sentinelEval, sentinelTrain, vtab } from '../data-loaders/presets';
import { EmbeddedDatasets, defaultCacheDir, loadEmbedded } from '../data-loaders/embedded';
import { loadStructured } from '../data-loaders/embedded-structured';
import { imageFolder } from '../data-loaders/formats/imagefolder';
import { eurosat } from '../data-loaders/formats/eurosat';
import { VTAB_SPLITS, VtabSplit, vtab1k } from '../data-loaders/formats/vtab';
import { fmowRgb, fmowTemporal, fmowTemporalJointCrop } from '../data-loaders/formats/fmow';
import { fmowSentinel } from '../data-loaders/formats/fmow-sentinel';
import { camelyon17Protocol, Camelyon17ProtocolDatasets, iwildcam } from '../data-loaders/formats/wilds';
import { EmbeddedTemporalDatasets, loadEmbeddedCameraTraps, loadEmbeddedPathology, loadEmbeddedTemporal } from '../data-loaders/embedded-beyond';
import { BUILDING_SPLITS, checkBuildingOptions, isBuildingSource, openBuildingSplits } from './data-seg';
import type { Dinov2Objective } from '../lib/dino/dinov2';
import { RecipeError } from './schema';
import type { Recipe, SourceSpec, SplitRef, SplitSet, TransformSpec } from './recipe';

/** Opens the splits of a source by name (each split opened once). */
export interface DataSource {
  readonly spec: SourceSpec;
  /** The split names this source has (null when any name may exist, e.g. an ImageFolder's subfolders). */
  readonly splits: readonly string[] | null;
  split(name: string, at: string): Promise<Dataset>;
}

const embeddedCache = new Map<string, Promise<EmbeddedDatasets>>();

/** The Camelyon17 hospital-protocol splits by name (`camelyon17Protocol`). */
export const CAMELYON17_PROTOCOL_SPLITS = ['pretrain', 'train', 'id_val', 'val', 'test'] as const;
/** The iWildCam-WILDS splits by name. */
export const IWILDCAM_SPLIT_NAMES = ['train', 'val', 'test', 'id_val', 'id_test'] as const;

function protocolSplit(d: Camelyon17ProtocolDatasets, name: string): Dataset {
  return name === 'id_val' ? d.idVal : d[name as 'pretrain' | 'train' | 'val' | 'test'];
}

/** Open a data source (embedded datasets are generated once per process and options, then cached on disk). */
export function openSource(spec: SourceSpec): DataSource {
  const opened = new Map<string, Promise<Dataset>>();
  const once = (name: string, f: () => Promise<Dataset>): Promise<Dataset> => {
    let p = opened.get(name);
    if (!p) {
      p = f();
      opened.set(name, p);
    }
    return p;
  };
  const unknown = (name: string, at: string, valid: readonly string[]): never => {
    throw new RecipeError(at, `no split '${name}' in ${spec.kind} data; valid: ${valid.join(', ')}`);
  };
  checkBuildingOptions(spec);
  if (isBuildingSource(spec)) {
    // SpaceNet-v1 building chips, real or embedded (recipes/data-seg.ts)
    const open = openBuildingSplits(spec);
    const splits = [...BUILDING_SPLITS];
    return { spec, splits, split: (name, at) => (splits.includes(name as (typeof splits)[number]) ? once(name, () => open(name)) : unknown(name, at, splits)) };
  }
  switch (spec.kind) {
    case 'embedded': {
      if (spec.domain === 'pathology' || spec.domain === 'camera-traps') {
        const beyond = spec.domain === 'pathology' ? [...CAMELYON17_PROTOCOL_SPLITS] : [...IWILDCAM_SPLIT_NAMES];
        const c = spec.count ?? null;
        const sizes =
          c === null ? {} : spec.domain === 'pathology' ? { labelledPerHospital: c, unlabeledPerHospital: c } : { trainSequences: c, idSequences: Math.floor(c / 5) + 1, oodSequences: Math.floor(c / 4) + 1 };
        const opts = { seed: spec.seed, size: spec.size, ...sizes };
        let all: Promise<(name: string) => Dataset> | null = null;
        const load = (): Promise<(name: string) => Dataset> =>
          (all ??=
            spec.domain === 'pathology'
              ? loadEmbeddedPathology(opts).then((d) => (name: string) => protocolSplit(d, name))
              : loadEmbeddedCameraTraps(opts).then((d) => (name: string) => (name === 'id_val' ? d.idVal : name === 'id_test' ? d.idTest : d[name as 'train' | 'val' | 'test'])));
        return {
          spec,
          splits: beyond,
          split: (name, at) => {
            if (!(beyond as string[]).includes(name)) unknown(name, at, beyond);
            return once(name, async () => (await load())(name));
          },
        };
      }
      if (spec.domain === 'sites-ms' || spec.domain === 'sites-temporal') {
        // the embedded multi-date sites (data-loaders/embedded-beyond.ts): fMoW-Sentinel-like 13-band single dates, or
        // fMoW-temporal RGB triplets (anchor + two other dates of the site)
        const splits = ['train', 'val', 'test'];
        const opts = { seed: spec.seed, size: spec.size, ...(spec.count ? { locationsPerClass: spec.count } : {}) };
        let all: Promise<EmbeddedTemporalDatasets> | null = null;
        return {
          spec,
          splits,
          split: (name, at) => {
            if (!splits.includes(name)) unknown(name, at, splits);
            return once(name, async () => (await (all ??= loadEmbeddedTemporal(opts)))[spec.domain === 'sites-ms' ? 'sentinel' : 'temporal'][name as 'train' | 'val' | 'test']);
          },
        };
      }
      if (spec.count !== undefined && spec.count !== null) {
        throw new RecipeError('recipe.data.source.count', `sizes the 'pathology' and 'camera-traps' domains only (and 'sites-ms': sites per class); '${spec.domain}' uses satellitePerClass / naturalPerClass`);
      }
      const splits = spec.domain === 'natural' ? ['train', 'val'] : ['train', 'val', 'test'];
      const opts = { seed: spec.seed, size: spec.size, satellitePerClass: spec.satellitePerClass, naturalPerClass: spec.naturalPerClass };
      const key = JSON.stringify({ ...opts, cache: defaultCacheDir() });
      const load = (): Promise<EmbeddedDatasets> => {
        let p = embeddedCache.get(key);
        if (!p) {
          p = loadEmbedded(opts);
          embeddedCache.set(key, p);
          p.catch(() => embeddedCache.delete(key));
        }
        return p;
      };
      return {
        spec,
        splits,
        split: (name, at) => {
          if (!splits.includes(name)) unknown(name, at, splits);
          return once(name, async () => {
            if (spec.domain === 'objects' || spec.domain === 'count' || spec.domain === 'orientation') {
              const t = await loadStructured(spec.domain, { seed: spec.seed, size: spec.size, perClass: spec.naturalPerClass, cacheDir: defaultCacheDir() });
              return t[name as 'train' | 'val' | 'test'];
            }
            const e = await load();
            if (spec.domain === 'natural') return e.natural[name as 'train' | 'val'];
            return e.satellite[spec.domain === 'satellite-rgb' ? 'rgb' : 'ms'][name as 'train' | 'val' | 'test'];
          });
        },
      };
    }
    case 'imagefolder':
      return { spec, splits: null, split: (name) => once(name, () => imageFolder(path.join(spec.root, name), { name: `${path.basename(spec.root)}-${name}` })) };
    case 'eurosat': {
      const splits = Object.keys(spec.splits);
      return {
        spec,
        splits,
        split: (name, at) => {
          if (!splits.includes(name)) unknown(name, at, splits);
          return once(name, () => eurosat(spec.root, { variant: spec.variant, split: spec.splits[name], name: `eurosat-${spec.variant}-${name}` }));
        },
      };
    }
    case 'vtab1k':
      return {
        spec,
        splits: VTAB_SPLITS,
        split: (name, at) => {
          if (!(VTAB_SPLITS as readonly string[]).includes(name)) unknown(name, at, VTAB_SPLITS);
          return once(name, () => vtab1k(spec.root, spec.task, name as VtabSplit));
        },
      };
    case 'fmow-rgb':
    case 'fmow-temporal':
    case 'fmow-sentinel': {
      const splits = Object.keys(spec.csv);
      return {
        spec,
        splits,
        split: (name, at) => {
          if (!splits.includes(name)) unknown(name, at, splits);
          return once(name, () =>
            spec.kind === 'fmow-rgb' ? fmowRgb(spec.csv[name]) : spec.kind === 'fmow-temporal' ? fmowTemporal(spec.csv[name], { name: `fmow-temporal-${name}` }) : fmowSentinel(spec.csv[name], { split: name }),
          );
        },
      };
    }
    case 'camelyon17': {
      const splits = [...CAMELYON17_PROTOCOL_SPLITS];
      let all: Promise<Camelyon17ProtocolDatasets> | null = null;
      return {
        spec,
        splits,
        split: (name, at) => {
          if (!splits.includes(name as (typeof splits)[number])) unknown(name, at, splits);
          return once(name, async () => protocolSplit(await (all ??= camelyon17Protocol(spec.root, spec.unlabeledRoot, { pretrainSplits: spec.pretrainSplits })), name));
        },
      };
    }
    case 'iwildcam': {
      const splits = [...IWILDCAM_SPLIT_NAMES];
      return {
        spec,
        splits,
        split: (name, at) => {
          if (!splits.includes(name as (typeof splits)[number])) unknown(name, at, splits);
          return once(name, () => iwildcam(spec.root, { split: name }));
        },
      };
    }
    default: {
      const never: never = spec;
      throw new Error(`openSource: unknown source ${JSON.stringify(never)}`);
    }
  }
}

/** The seeded subset of one split (the whole split when `subset` is null or asks for all of it). */
export function subsetOf(ds: Dataset, ref: SplitRef, seed: number): Dataset {
  const s = ref.subset;
  if (s === null || s.n >= ds.length) return ds;
  const picked = Rng.derive(seed, 'subset', s.key ?? ds.name).permutation(ds.length).slice(0, s.n);
  return subset(ds, s.sorted ? picked.sort((a, b) => a - b) : picked);
}

/** The images of a split set: each split's subset, concatenated in order (no transform applied). */
export async function splitSetData(source: DataSource, set: SplitSet, seed: number, at: string): Promise<Dataset> {
  const parts: Dataset[] = [];
  for (let i = 0; i < set.splits.length; i++) {
    const ref = set.splits[i];
    parts.push(subsetOf(await source.split(ref.split, `${at}.splits[${i}].split`), ref, seed));
  }
  return concatDatasets(parts);
}

/** A per-sample transform by name (throws for the multi-view 'dino-multicrop'). */
export function sampleTransform(t: TransformSpec, at: string): SampleTransform {
  switch (t.name) {
    case 'normalize':
      return normalizeWith(NORM_PRESETS[t.stats]);
    case 'mae-pretrain':
      return maePretrain(t.size, NORM_PRESETS[t.stats]);
    case 'supervised': {
      // The small-data supervised augmentation of recipes/supervised.ts: RandomResizedCrop + flip, then normalise.
      const ts: SampleTransform[] = [];
      if (t.rrcScale) ts.push(randomResizedCrop({ size: t.size, scale: [t.rrcScale[0], t.rrcScale[1]] }));
      if (t.hflip) ts.push(randomHFlip(0.5));
      ts.push(normalizeWith(NORM_PRESETS[t.stats]));
      return compose(...ts);
    }
    case 'vtab':
      return vtab(t.size);
    case 'fmow-train':
      return fmowTrain(t.size);
    case 'fmow-eval':
      return fmowEval(t.size);
    case 'linear-probe-eval':
      return linearProbeEval(t.size);
    case 'fmow-temporal':
      return fmowTemporalJointCrop(t.size);
    case 'sentinel-train':
      return sentinelTrain(t.size, t.droppedBands);
    case 'sentinel-eval':
      return sentinelEval(t.size, t.droppedBands);
    case 'dino-multicrop':
      throw new RecipeError(`${at}.name`, "'dino-multicrop' gives several views per image; it is the DINOv2 objective's training transform only");
    default: {
      const never: never = t;
      throw new Error(`sampleTransform: unknown transform ${JSON.stringify(never)}`);
    }
  }
}

/** DINOv2 multi-crop views with the objective's crop sizes and local-crop count. */
export function multiCropViews(t: Extract<TransformSpec, { name: 'dino-multicrop' }>, obj: Pick<Dinov2Objective, 'globalCropSize' | 'localCropSize' | 'nLocalCrops'>): ViewsTransform {
  return dinoMultiCrop({ globalSize: obj.globalCropSize, localSize: obj.localCropSize, nLocal: obj.nLocalCrops, blurMode: t.blurMode, rgb: t.rgb });
}

/** Iterations of one epoch of a recipe over `n` training images (its `epochLength`, else ⌊n / batch⌋). */
export function itersPerEpoch(r: Pick<Recipe, 'epochLength' | 'batch'>, n: number): number {
  if (r.epochLength !== null) return r.epochLength;
  const k = Math.floor(n / r.batch);
  if (k < 1) throw new RecipeError('recipe.batch', `${n} training images make no full batch of ${r.batch}`);
  return k;
}

/**
 * Decode samples of a dataset once into tensors (a notebook's figures and checks): images [N, H, W, C] after the
 * transform and labels [N] (or null when unlabelled). `indices` picks samples (default: all, in order).
 */
export async function decodeImages(ds: Dataset, transform: TransformSpec, indices?: readonly number[]): Promise<{ x: tf.Tensor4D; y: tf.Tensor1D | null }> {
  const pick = indices ? subset(ds, indices) : ds;
  const loader = new Loader(pick, { batchSize: Math.min(100, pick.length), shuffle: false, transform: sampleTransform(transform, 'transform'), prefetch: 0 });
  const xs: tf.Tensor4D[] = [];
  const ys: tf.Tensor1D[] = [];
  let labelled = true;
  for await (const b of loader.epoch(0)) {
    xs.push(b.images!);
    if (b.labels) ys.push(b.labels);
    else labelled = false;
  }
  const x = xs.length === 1 ? xs[0] : (tf.concat(xs) as tf.Tensor4D);
  const y = labelled ? (ys.length === 1 ? ys[0] : (tf.concat(ys) as tf.Tensor1D)) : null;
  if (xs.length > 1) tf.dispose(xs);
  if (ys.length > 1 || !labelled) tf.dispose(ys.filter((t) => t !== y));
  return { x, y };
}

/** Index of the first sample of each class, in class order (`limit` classes at most). */
export function firstOfEachClass(ds: Dataset, limit = Infinity): number[] {
  const first = new Map<number, number>();
  for (let i = 0; i < ds.length; i++) {
    const l = ds.info(i).label;
    if (typeof l === 'number' && !first.has(l)) first.set(l, i);
  }
  return [...first.entries()].sort((a, b) => a[0] - b[0]).slice(0, limit).map(([, i]) => i);
}

/**
 * A split set whose every split is a seeded subset of `n` images (the notebooks' `ci` scale): drawn by
 * `Rng.derive(seed, 'subset', key ?? split's dataset name)`, in index order when `sorted`.
 */
export function withSubset(set: SplitSet, n: number, o: { key?: string | null; sorted?: boolean } = {}): SplitSet {
  return { ...set, splits: set.splits.map((s) => ({ ...s, subset: { n, key: o.key ?? null, sorted: o.sorted ?? false } })) };
}
