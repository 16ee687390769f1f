/**
 * One interface for every dataset: a typed, seekable list of samples, and a `Loader` that batches it.
 *
 * - `Dataset`: `length`, `info(i)` (cheap: path, label, metadata, no decoding) and `get(i, rng?)` (async decode).
 * - `Loader`: seeded shuffle per epoch, per-sample transforms (plain JS on `Img`s, deterministic), async decoding with a
 *   bounded number of decodes in flight and a bounded number of batches prefetched, then one synchronous `tf.tidy` that
 *   stacks the batch into NHWC tensors and runs the optional tensor `batchTransform`.
 *
 * Determinism: the order of epoch e is a permutation drawn from `Rng.derive(seed, 'order', e)`; sample i at epoch e is
 * loaded and augmented with `Rng.derive(seed, 'sample', e, i)`. So `loader.batchAt(step)` returns the same data
 * whether a run is fresh or resumed from a checkpoint at `step`, and prefetching never changes what is produced.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../lib/rng';
import { checkBoolean, checkKeys, checkNumber, fmtValue } from '../lib/check';
import { Img, checkImg, shapeOf } from './image';
import { Shard, parallelContext, shardRange, shardingActive, takeShard } from '../lib/parallel/context';
import { checkStatsValues } from './transforms';

/** Metadata attached to a sample (format specific: timestamps, hospital, bounding boxes, ...). */
export type Meta = Record<string, unknown>;

/** What a dataset knows about sample i without decoding it. */
export interface SampleInfo {
  /** Main file (image) of the sample. */
  path?: string;
  /** Other files the sample reads (mask, JSON, temporal siblings...). */
  extraPaths?: string[];
  label?: number;
  meta?: Meta;
}

/** A decoded sample. `image` is HWC; `frames` (temporal stacks) include the anchor as frames[0]. */
export interface Sample {
  /** Index in its dataset. */
  index: number;
  image: Img;
  frames?: Img[];
  /** Segmentation mask, 1 channel (values 0/1 or class ids), same H×W as `image`. */
  mask?: Img;
  label?: number;
  meta?: Meta;
  path?: string;
}

/** A seekable list of samples. */
export interface Dataset {
  readonly name: string;
  readonly length: number;
  /** Class names in label order (classification datasets). */
  readonly classes?: readonly string[];
  /** Cheap description of sample i (no decoding). */
  info(i: number): SampleInfo;
  /**
   * Decode sample i. `rng` (given by the loader, derived from (seed, epoch, i)) is used by datasets whose loading is
   * itself random, e.g. picking the two extra images of an fMoW-temporal triplet.
   */
  get(i: number, rng?: Rng): Promise<Sample>;
}

/** Throw unless 0 ≤ i < n. */
export function checkIndex(name: string, i: number, n: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= n) throw new Error(`${name}: index ${fmtValue(i)} out of range [0, ${n})`);
}

/**
 * A dataset over an array of records (one per sample) and an async `load(record, i, rng)`. Every format module builds
 * one of these. An empty record list is an error (`source` names the file or folder it came from).
 */
export class RecordDataset<R extends SampleInfo> implements Dataset {
  readonly length: number;
  constructor(
    readonly name: string,
    readonly records: readonly R[],
    private readonly load: (r: R, i: number, rng?: Rng) => Promise<Omit<Sample, 'index'>>,
    readonly classes?: readonly string[],
    source?: string,
  ) {
    if (records.length === 0) throw new Error(`${name}: empty split, no samples${source ? ` in ${source}` : ''}`);
    this.length = records.length;
  }
  info(i: number): SampleInfo {
    checkIndex(this.name, i, this.length);
    return this.records[i];
  }
  async get(i: number, rng?: Rng): Promise<Sample> {
    checkIndex(this.name, i, this.length);
    const s = await this.load(this.records[i], i, rng);
    return { ...s, index: i };
  }
}

/** The samples `indices` of `ds`, re-indexed 0..k−1 (same classes). */
export function subset(ds: Dataset, indices: readonly number[], name = `${ds.name}[subset]`): Dataset {
  indices.forEach((i) => checkIndex(ds.name, i, ds.length));
  if (indices.length === 0) throw new Error(`${name}: empty subset`);
  const idx = indices.slice();
  return {
    name,
    length: idx.length,
    classes: ds.classes,
    info: (i: number) => {
      checkIndex(name, i, idx.length);
      return ds.info(idx[i]);
    },
    get: async (i: number, rng?: Rng) => {
      checkIndex(name, i, idx.length);
      return { ...(await ds.get(idx[i], rng)), index: i };
    },
  };
}

/**
 * The samples of several datasets one after another (re-indexed 0..Σn−1; the classes must agree), e.g. VTAB-1k's
 * train800 + val200 or the embedded train + val splits.
 */
export function concatDatasets(parts: readonly Dataset[], name = parts.map((d) => d.name).join('+')): Dataset {
  if (parts.length === 0) throw new Error('concatDatasets: no dataset');
  if (parts.length === 1) return parts[0];
  const classes = parts[0].classes;
  for (const d of parts.slice(1)) {
    if (JSON.stringify(d.classes ?? null) !== JSON.stringify(classes ?? null)) {
      throw new Error(`concatDatasets(${name}): ${d.name} has classes [${(d.classes ?? []).join(', ')}], ${parts[0].name} has [${(classes ?? []).join(', ')}]`);
    }
  }
  const starts: number[] = [];
  let n = 0;
  for (const d of parts) {
    starts.push(n);
    n += d.length;
  }
  const locate = (i: number): [Dataset, number] => {
    checkIndex(name, i, n);
    let k = parts.length - 1;
    while (starts[k] > i) k--;
    return [parts[k], i - starts[k]];
  };
  return {
    name,
    length: n,
    classes,
    info: (i: number) => {
      const [d, j] = locate(i);
      return d.info(j);
    },
    get: async (i: number, rng?: Rng) => {
      const [d, j] = locate(i);
      return { ...(await d.get(j, rng)), index: i };
    },
  };
}

/** Samples of `ds` whose info satisfies `pred` (e.g. a WILDS split id), as a subset. */
export function filterDataset(ds: Dataset, pred: (info: SampleInfo, i: number) => boolean, name?: string): Dataset {
  const keep: number[] = [];
  for (let i = 0; i < ds.length; i++) if (pred(ds.info(i), i)) keep.push(i);
  return subset(ds, keep, name ?? `${ds.name}[filtered]`);
}

/** Labels of all samples (from `info`, no decoding); an unlabelled sample is an error naming its index/path. */
export function labelsOf(ds: Dataset): Int32Array {
  const out = new Int32Array(ds.length);
  for (let i = 0; i < ds.length; i++) {
    const inf = ds.info(i);
    if (inf.label === undefined) throw new Error(`${ds.name}: sample ${i}${inf.path ? ` (${inf.path})` : ''} has no label`);
    out[i] = inf.label;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------------------------
// Loader

/** Per-sample transform (plain JS, synchronous, deterministic given `rng`). */
export type SampleTransform = (s: Sample, rng: Rng) => Sample;
/** Multi-view transform: one sample → several views (e.g. DINOv2's 2 global + n local crops). */
export type ViewsTransform = (s: Sample, rng: Rng) => Sample[];

/** Progress of a loader or a scan. */
export interface Progress {
  phase: string;
  done: number;
  total: number;
  epoch?: number;
  step?: number;
}

/** A batch. Tensors are owned by the caller: release them with `disposeBatch`. */
export interface Batch {
  /** [B, H, W, C] float32 (single-view loaders; for temporal samples the anchor frame = frames[0]). */
  images?: tf.Tensor4D;
  /** Multi-view loaders: one [B, h_v, w_v, C] tensor per view. */
  views?: tf.Tensor4D[];
  /** Temporal samples: one [B, H, W, C] tensor per frame (frames[0] is the anchor). */
  frames?: tf.Tensor4D[];
  /** Segmentation masks [B, H, W, 1] float32 (single-view loaders, when samples carry masks). */
  masks?: tf.Tensor4D;
  /** [B] int32, present when every sample of the batch has a label. */
  labels?: tf.Tensor1D;
  /** Dataset indices of the batch rows. */
  indices: number[];
  meta: Array<Meta | undefined>;
  epoch: number;
  step: number;
  /** Set when a data-parallel worker got its rows [start, end) of the step's batch of `total` (see `Loader.batchAt`). */
  shard?: Shard;
}

/** Release every tensor of a batch (shared tensors disposed once). */
export function disposeBatch(b: Batch): void {
  const seen = new Set<tf.Tensor>();
  const add = (t?: tf.Tensor): void => {
    if (t && !seen.has(t)) seen.add(t);
  };
  add(b.images);
  add(b.masks);
  add(b.labels);
  b.views?.forEach(add);
  b.frames?.forEach(add);
  seen.forEach((t) => t.dispose());
}

export interface LoaderOptions {
  batchSize: number;
  /** Seed of the order and augmentation streams (default 0). */
  seed?: number;
  /** Reshuffle every epoch (default true). false: dataset order, e.g. for evaluation. */
  shuffle?: boolean;
  /** Drop the last incomplete batch (default: true when shuffling, false otherwise). */
  dropLast?: boolean;
  /** Per-sample transform (exclusive with `views`). */
  transform?: SampleTransform;
  /** Multi-view transform (exclusive with `transform`); batches carry `views`. */
  views?: ViewsTransform;
  /** Tensor transform of the stacked batch, run inside the same synchronous tf.tidy (e.g. `normalizeBatch`). */
  batchTransform?: (b: Batch) => Batch;
  /** Batches prepared ahead of the one requested (default 2; 0 disables prefetch). */
  prefetch?: number;
  /** Decodes in flight at once (default 8). */
  concurrency?: number;
  /** Called after each batch is delivered. */
  onProgress?: (p: Progress) => void;
}

const LOADER_KEYS = [
  'batchSize',
  'seed',
  'shuffle',
  'dropLast',
  'transform',
  'views',
  'batchTransform',
  'prefetch',
  'concurrency',
  'onProgress',
] as const;

/** Samples of one batch after loading and augmentation (plain arrays, no tensors yet). */
interface Prepared {
  step: number;
  epoch: number;
  indices: number[];
  /** views[v][b]: view v of row b (single-view loaders have one view). */
  views: Sample[][];
}

/** A tiny counting semaphore bounding concurrent decodes. */
class Semaphore {
  private waiting: Array<() => void> = [];
  private active = 0;
  constructor(private readonly max: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((res) => this.waiting.push(res));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      const next = this.waiting.shift();
      if (next) next();
    }
  }
}

/**
 * Batches a dataset. Address batches by global step (`batchAt(step)`: epoch = ⌊step / stepsPerEpoch⌋) or iterate an
 * epoch (`for await (const b of loader.epoch(e))`). The loader holds no tensors; each delivered batch is new tensors
 * that the caller disposes (`disposeBatch`).
 */
export class Loader {
  readonly batchSize: number;
  readonly seed: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;
  readonly stepsPerEpoch: number;
  private readonly opt: LoaderOptions;
  private readonly sem: Semaphore;
  private readonly pending = new Map<number | string, Promise<Prepared>>();
  private orderCache: { epoch: number; order: number[] } | null = null;

  constructor(
    readonly dataset: Dataset,
    opt: LoaderOptions,
  ) {
    checkKeys('LoaderOptions', opt, LOADER_KEYS);
    if (!Number.isInteger(opt.batchSize) || opt.batchSize <= 0) {
      throw new Error(`LoaderOptions.batchSize must be a positive integer, got ${fmtValue(opt.batchSize)}`);
    }
    if (opt.transform && opt.views) throw new Error('LoaderOptions: give either `transform` or `views`, not both');
    if (opt.seed !== undefined) checkNumber('LoaderOptions.seed', opt.seed, { integer: true });
    for (const k of ['shuffle', 'dropLast'] as const) if (opt[k] !== undefined) checkBoolean(`LoaderOptions.${k}`, opt[k]);
    if (opt.prefetch !== undefined) checkNumber('LoaderOptions.prefetch', opt.prefetch, { integer: true, min: 0 });
    if (opt.concurrency !== undefined) checkNumber('LoaderOptions.concurrency', opt.concurrency, { integer: true, min: 1 });
    for (const k of ['transform', 'views', 'batchTransform', 'onProgress'] as const) {
      if (opt[k] !== undefined && typeof opt[k] !== 'function') throw new Error(`LoaderOptions.${k}: expected a function, got ${fmtValue(opt[k])}`);
    }
    this.opt = opt;
    this.batchSize = opt.batchSize;
    this.seed = opt.seed ?? 0;
    this.shuffle = opt.shuffle ?? true;
    this.dropLast = opt.dropLast ?? this.shuffle;
    const n = dataset.length;
    this.stepsPerEpoch = this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
    if (this.stepsPerEpoch === 0) {
      throw new Error(
        `Loader(${dataset.name}): ${n} samples make no full batch of ${this.batchSize} (dropLast); use a smaller batch or dropLast: false`,
      );
    }
    this.sem = new Semaphore(Math.max(1, opt.concurrency ?? 8));
  }

  /** Sample order of epoch `e` (a permutation of the dataset indices when shuffling). */
  order(epoch: number): number[] {
    if (this.orderCache && this.orderCache.epoch === epoch) return this.orderCache.order;
    const n = this.dataset.length;
    const order = this.shuffle
      ? Rng.derive(this.seed, 'order', epoch).permutation(n)
      : Array.from({ length: n }, (_, i) => i);
    this.orderCache = { epoch, order };
    return order;
  }

  /** Dataset indices of global step `step`. */
  indicesAt(step: number): number[] {
    if (!Number.isInteger(step) || step < 0) throw new Error(`Loader.indicesAt: step must be an integer ≥ 0, got ${fmtValue(step)}`);
    const epoch = Math.floor(step / this.stepsPerEpoch);
    const k = step % this.stepsPerEpoch;
    return this.order(epoch).slice(k * this.batchSize, (k + 1) * this.batchSize);
  }

  /** The random stream sample `index` sees at `epoch` (exposed for tests and for reproducing one sample). */
  sampleRng(epoch: number, index: number): Rng {
    return Rng.derive(this.seed, 'sample', epoch, index);
  }

  /** Load and transform one sample exactly as the loader does (no tensors). */
  async prepareSample(epoch: number, index: number): Promise<Sample[]> {
    const rng = this.sampleRng(epoch, index);
    const loadRng = rng.fork('load');
    const augRng = rng.fork('augment');
    const s = await this.sem.run(() => this.dataset.get(index, loadRng));
    if (this.opt.views) return this.opt.views(s, augRng);
    return [this.opt.transform ? this.opt.transform(s, augRng) : s];
  }

  /** This worker's rows of step `step`'s batch when sharding (a data-parallel worker inside a shard region), else null. */
  private rowsAt(step: number): [number, number] | null {
    if (!shardingActive()) return null;
    const ctx = parallelContext()!;
    return shardRange(this.indicesAt(step).length, ctx.rank, ctx.size);
  }

  private prepare(step: number, rows: [number, number] | null = null): Promise<Prepared> {
    const key = rows ? `${step}@${rows[0]}-${rows[1]}` : step;
    let p = this.pending.get(key);
    if (!p) {
      const epoch = Math.floor(step / this.stepsPerEpoch);
      const all = this.indicesAt(step);
      const indices = rows ? all.slice(rows[0], rows[1]) : all;
      p = Promise.all(indices.map((i) => this.prepareSample(epoch, i))).then((perSample) => {
        const nViews = perSample[0].length;
        perSample.forEach((v, r) => {
          if (v.length !== nViews) {
            throw new Error(`Loader(${this.dataset.name}): sample ${indices[r]} gave ${v.length} views, sample ${indices[0]} gave ${nViews}`);
          }
        });
        const views = Array.from({ length: nViews }, (_, v) => perSample.map((s) => s[v]));
        return { step, epoch, indices, views };
      });
      p.catch(() => undefined); // a failed prefetch is reported when (if) that step is requested
      this.pending.set(key, p);
    }
    return p;
  }

  /** Drop prefetched work outside [from, to]. */
  private evict(from: number, to: number): void {
    for (const k of [...this.pending.keys()]) {
      const s = typeof k === 'number' ? k : Number(k.slice(0, k.indexOf('@')));
      if (s < from || s > to) this.pending.delete(k);
    }
  }

  /**
   * The batch of global step `step` (deterministic in (seed, step)); prefetches the following steps. In a
   * data-parallel worker inside a shard region (lib/parallel/context.ts) it is this worker's rows [start, end) of that
   * batch — the same samples and augmentations as those rows of the whole batch — and `batch.shard` says which.
   */
  async batchAt(step: number): Promise<Batch> {
    const ahead = Math.max(0, this.opt.prefetch ?? 2);
    this.evict(step, step + ahead);
    const rows = this.rowsAt(step);
    const shard = rows ? takeShard(this.indicesAt(step).length, `${this.dataset.name}: the batch of step ${step}`) : null;
    const p = this.prepare(step, rows);
    for (let k = 1; k <= ahead; k++) this.prepare(step + k, this.rowsAt(step + k));
    const prepared = await p;
    this.pending.delete(rows ? `${step}@${rows[0]}-${rows[1]}` : step);
    const batch = this.collate(prepared);
    if (shard) batch.shard = shard;
    this.opt.onProgress?.({
      phase: 'batch',
      done: (step % this.stepsPerEpoch) + 1,
      total: this.stepsPerEpoch,
      epoch: prepared.epoch,
      step,
    });
    return batch;
  }

  /** Iterate the batches of epoch `epoch` in order. */
  async *epoch(epoch: number): AsyncGenerator<Batch> {
    for (let k = 0; k < this.stepsPerEpoch; k++) yield await this.batchAt(epoch * this.stepsPerEpoch + k);
  }

  /** Iterate `count` batches starting at global step `from` (crossing epochs). */
  async *steps(from: number, count: number): AsyncGenerator<Batch> {
    for (let s = from; s < from + count; s++) yield await this.batchAt(s);
  }

  /** Stack prepared samples into tensors inside one tidy (plus the batch transform). */
  private collate(p: Prepared): Batch {
    const multi = !!this.opt.views;
    const first = p.views[0];
    const labelled = first.every((s) => s.label !== undefined);
    const name = this.dataset.name;
    const tensors = tf.tidy(() => {
      const viewTensors = p.views.map((samples, v) => stackImages(samples.map((s) => s.image), `${name} view ${v}`, p.indices));
      const out: Batch = { indices: p.indices, meta: [], epoch: p.epoch, step: p.step };
      if (multi) out.views = viewTensors;
      else {
        out.images = viewTensors[0];
        if (first[0].frames) {
          const T = first[0].frames.length;
          out.frames = [];
          for (let t = 0; t < T; t++) {
            out.frames.push(
              stackImages(
                first.map((s, r) => {
                  if (!s.frames || s.frames.length !== T) {
                    throw new Error(`${name}: sample ${p.indices[r]} has ${s.frames?.length ?? 0} frames, expected ${T}`);
                  }
                  return s.frames[t];
                }),
                `${name} frame ${t}`,
                p.indices,
              ),
            );
          }
          out.images.dispose();
          out.images = out.frames[0];
        }
        if (first[0].mask) {
          out.masks = stackImages(
            first.map((s, r) => {
              if (!s.mask) throw new Error(`${name}: sample ${p.indices[r]} has no mask but sample ${p.indices[0]} has one`);
              checkMaskShape(s, name);
              return s.mask;
            }),
            `${name} masks`,
            p.indices,
          );
        }
      }
      if (labelled) out.labels = tf.tensor1d(first.map((s) => s.label as number), 'int32');
      const res = this.opt.batchTransform ? this.opt.batchTransform(out) : out;
      return { images: res.images, views: res.views, frames: res.frames, masks: res.masks, labels: res.labels } as never;
    }) as Pick<Batch, 'images' | 'views' | 'frames' | 'masks' | 'labels'>;
    const batch: Batch = { indices: p.indices, meta: first.map((s) => s.meta), epoch: p.epoch, step: p.step };
    for (const k of ['images', 'views', 'frames', 'masks', 'labels'] as const) {
      if (tensors[k] !== undefined) (batch as unknown as Record<string, unknown>)[k] = tensors[k];
    }
    return batch;
  }
}

/**
 * A segmentation sample's mask must be one channel with its image's height and width (after the transforms, which
 * must move masks with the image); otherwise an error naming the dataset, the sample and its file.
 */
export function checkMaskShape(s: Sample, dataset: string): void {
  if (!s.mask) return;
  const m = s.mask;
  const im = s.image;
  if (m.channels !== 1 || m.height !== im.height || m.width !== im.width) {
    throw new Error(
      `${dataset}: sample ${s.index}${s.path ? ` (${s.path})` : ''}: mask is ${shapeOf(m)} but the image is ${shapeOf(im)}; a mask must be H×W×1 with the image's H×W (geometric transforms must move the mask too)`,
    );
  }
}

/** Stack same-shaped images into a [B, H, W, C] tensor (shape mismatch → error naming the dataset indices). */
export function stackImages(imgs: Img[], what: string, indices?: number[]): tf.Tensor4D {
  if (imgs.length === 0) throw new Error(`${what}: nothing to stack`);
  const { height: h, width: w, channels: c } = imgs[0];
  const n = h * w * c;
  const buf = new Float32Array(n * imgs.length);
  imgs.forEach((img, r) => {
    checkImg(img, `${what} row ${r}`);
    if (img.height !== h || img.width !== w || img.channels !== c) {
      const id = indices ? `sample ${indices[r]}` : `row ${r}`;
      const id0 = indices ? `sample ${indices[0]}` : 'row 0';
      throw new Error(
        `${what}: ${id} is ${shapeOf(img)} but ${id0} is ${h}×${w}×${c}; add a resize/crop transform so a batch has one shape`,
      );
    }
    buf.set(img.data, r * n);
  });
  return tf.tensor4d(buf, [imgs.length, h, w, c]);
}

/**
 * Visit every sample of a dataset (decoded, untransformed) with bounded concurrency, reporting progress, e.g. to
 * compute per-band statistics. `fn` is called in index order.
 */
export async function scan(
  ds: Dataset,
  fn: (s: Sample) => void,
  opt: { concurrency?: number; onProgress?: (p: Progress) => void; limit?: number } = {},
): Promise<void> {
  const n = Math.min(ds.length, opt.limit ?? ds.length);
  const conc = Math.max(1, opt.concurrency ?? 8);
  const every = Math.max(1, Math.floor(n / 100));
  for (let start = 0; start < n; start += conc) {
    const idx = Array.from({ length: Math.min(conc, n - start) }, (_, k) => start + k);
    const samples = await Promise.all(idx.map((i) => ds.get(i)));
    for (const s of samples) {
      fn(s);
      const done = s.index + 1;
      if (opt.onProgress && (done % every === 0 || done === n)) opt.onProgress({ phase: `scan ${ds.name}`, done, total: n });
    }
  }
}

/** Per-channel mean and standard deviation (population) over all pixels of all samples. */
export async function channelStats(
  ds: Dataset,
  opt: { concurrency?: number; onProgress?: (p: Progress) => void; limit?: number } = {},
): Promise<{ mean: number[]; std: number[]; count: number }> {
  let sum: Float64Array | null = null;
  let sq: Float64Array | null = null;
  let count = 0;
  await scan(
    ds,
    (s) => {
      const c = s.image.channels;
      if (!sum) {
        sum = new Float64Array(c);
        sq = new Float64Array(c);
      }
      if (sum.length !== c) throw new Error(`${ds.name}: sample ${s.index} has ${c} channels, earlier ones ${sum.length}`);
      const d = s.image.data;
      for (let i = 0; i < d.length; i++) {
        sum[i % c] += d[i];
        sq![i % c] += d[i] * d[i];
      }
      count += s.image.height * s.image.width;
    },
    opt,
  );
  const s = sum as Float64Array | null;
  const q = sq as Float64Array | null;
  if (!s || !q) throw new Error(`${ds.name}: no samples`);
  const mean = Array.from(s, (v) => v / count);
  const std = Array.from(q, (v, k) => Math.sqrt(Math.max(0, v / count - mean[k] * mean[k])));
  return { mean, std, count };
}

/**
 * A `batchTransform` that normalises `images`/`views`/`frames` per channel on the tensors ((x − mean) / std), for
 * pipelines that keep [0, 1] pixels through the sample transforms. Runs inside the loader's tidy.
 */
export function normalizeBatch(stats: { mean: readonly number[]; std: readonly number[] }): (b: Batch) => Batch {
  checkStatsValues(stats, 'normalizeBatch');
  const norm = (t: tf.Tensor4D): tf.Tensor4D => {
    const c = t.shape[3];
    if (stats.mean.length !== c || stats.std.length !== c) {
      throw new Error(`normalizeBatch: statistics for ${stats.mean.length} channels, batch has ${c} ([${t.shape.join(', ')}])`);
    }
    return tf.div(tf.sub(t, tf.tensor1d(stats.mean as number[])), tf.tensor1d(stats.std as number[])) as tf.Tensor4D;
  };
  return (b) => {
    const out: Batch = { ...b };
    if (b.frames) {
      out.frames = b.frames.map(norm);
      out.images = out.frames[0];
    } else if (b.images) out.images = norm(b.images);
    if (b.views) out.views = b.views.map(norm);
    return out;
  };
}
