/**
 * Make the source model of notebook 01 (ExPLoRA with MAE): a small MAE pre-trained on the embedded **natural** domain
 * (the stand-in for ImageNet), saved as `notebooks/assets/source-mae-<tag>.safetensors` plus a JSON sidecar.
 *
 * Deterministic from the seed on a given backend: the initialisation, the data order and augmentations (Loader,
 * `Rng.derive(seed, ...)`), the masking and drop-path streams (`trainLoop`'s per-step rng) all derive from it. The
 * file's metadata (`__metadata__.vitpeft`) and the sidecar record the model config, the training recipe, the seed,
 * the number of steps, the loss curve (mean per `logEvery` steps), the backend, the kit's git commit, and a kNN check
 * on the natural labels (a sanity check that the features are not trivial; the labels are never used in training).
 *
 * Usage:
 *   npx tsx tools/make-source-mae.ts                 # the committed checkpoint's recipe (see notebooks/assets/README.md)
 *   npx tsx tools/make-source-mae.ts --spec workstation   # the ViT-S source of the workstation scale (WORKSTATION_SOURCE_MAE; a GPU / 16-core job)
 *   npx tsx tools/make-source-mae.ts --steps 200 --out /tmp/x.safetensors   # a quick variant elsewhere
 *   npx tsx tools/make-source-mae.ts --help
 */
import { createHash } from 'crypto';
import { readFileSync, mkdirSync } from 'fs';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { init, backendReport } from '../lib/backend';
import { createMae, maeForward, maeVariables, disposeMae, Mae } from '../lib/mae/mae';
import { Optimizer, ADAMW_MAE } from '../lib/train/optim';
import { trainLoop } from '../lib/train/step';
import { Schedule } from '../lib/train/schedule';
import { saveCheckpoint } from '../lib/io/checkpoint';
import { writeFileAtomic } from '../lib/io/atomic';
import { extractFeatures, disposeFeatures, LabelledBatch } from '../lib/eval/features';
import { knnEvaluate } from '../lib/eval/knn';
import { loadEmbedded } from '../data-loaders/embedded';
import { Loader, Dataset } from '../data-loaders/dataset';
import { maePretrain } from '../data-loaders/presets';
import { normalizeWith } from '../data-loaders/augment';
import { IMAGENET_STATS } from '../data-loaders/transforms';
import { SOURCE_MAE_MODEL, SOURCE_MAE_TRAIN, SOURCE_MAE_FORMAT, sourceMaeTag } from '../recipes/source-mae';
import { WORKSTATION_SOURCE_MAE } from '../recipes/workstation-presets';
import { seededSubset } from '../recipes/miniature-eval';
import type { Recipe } from '../recipes/recipe';

/** A source MAE: the model (recorded in the file; the loaders compare it), its training, the embedded data it sees. */
interface SourceMaeSpec {
  model: {
    preset: string;
    encoder: { imgSize: number; patchSize: number; embedDim: number; depth: number; numHeads: number };
    decoder: { embedDim: number; depth: number; numHeads: number };
    maskRatio: number;
    normPixLoss: boolean;
  };
  train: { steps: number; batch: number; lr: number; minLr: number; warmupSteps: number; weightDecay: number; augment: string; data: string; seed: number };
  /** `loadEmbedded` options (the natural train split is the training set; its val split the kNN check). */
  data: { seed: number; size: number; satellitePerClass: number; naturalPerClass: number };
}

/** The committed d96×6 source (`SOURCE_MAE_MODEL`, `SOURCE_MAE_TRAIN`, the default embedded set). */
const SOURCE_MAE_SPEC: SourceMaeSpec = {
  model: SOURCE_MAE_MODEL,
  train: SOURCE_MAE_TRAIN,
  data: { seed: 0, size: 32, satellitePerClass: 100, naturalPerClass: 100 },
};

/** The spec of a source-MAE recipe (`sourceMaeRecipe`'s shape: MAE, embedded natural domain, steps, a plain lr, warm-up in steps). */
function sourceMaeSpecOf(r: Recipe): SourceMaeSpec {
  const m = r.model;
  const o = r.objective;
  const src = r.data.source;
  const w = r.schedule.warmup;
  if (m.kind !== 'mae' || o.kind !== 'mae') throw new Error(`${r.name}: not an MAE recipe (model.kind '${m.kind}', objective.kind '${o.kind}')`);
  if (src.kind !== 'embedded' || src.domain !== 'natural') throw new Error(`${r.name}: data.source must be the embedded natural domain`);
  if (typeof r.steps !== 'number' || typeof r.lr !== 'number' || !('steps' in w) || r.schedule.kind !== 'cosine') {
    throw new Error(`${r.name}: expected steps, a plain lr and a cosine schedule with a warm-up in steps`);
  }
  const e = m.encoder as SourceMaeSpec['model']['encoder'];
  const d = m.decoder as SourceMaeSpec['model']['decoder'];
  const t = r.data.train.transform as { name: string; size?: number };
  if (t.name !== 'mae-pretrain' || t.size !== src.size || e.imgSize !== src.size) throw new Error(`${r.name}: the transform (${JSON.stringify(t)}), the data (${src.size} px) and the model (${e.imgSize} px) disagree`);
  return {
    model: { preset: m.preset, encoder: { imgSize: e.imgSize, patchSize: e.patchSize, embedDim: e.embedDim, depth: e.depth, numHeads: e.numHeads }, decoder: { embedDim: d.embedDim, depth: d.depth, numHeads: d.numHeads }, maskRatio: o.maskRatio, normPixLoss: o.normPixLoss },
    train: {
      steps: r.steps, batch: r.batch, lr: r.lr, minLr: r.schedule.minLr, warmupSteps: w.steps, weightDecay: r.weightDecay as number,
      augment: `maePretrain(${src.size}, IMAGENET_STATS)`, data: `embedded natural train (${src.naturalPerClass} per class at ${src.size} px, 10 shape classes; labels unused)`, seed: r.seed,
    },
    data: { seed: src.seed, size: src.size, satellitePerClass: src.satellitePerClass, naturalPerClass: src.naturalPerClass },
  };
}

/** The ViT-S source MAE of the workstation scale (`WORKSTATION_SOURCE_MAE`): what `--spec workstation` makes. */
export const SOURCE_MAE_WORKSTATION_SPEC: SourceMaeSpec = sourceMaeSpecOf(WORKSTATION_SOURCE_MAE);

/** File name of a spec's asset (`notebooks/assets/<name>.safetensors`), e.g. `source-mae-d384x12-p8-64px-6000s-seed0`. */
export function sourceMaeAssetName(spec: SourceMaeSpec): string {
  return `source-mae-${sourceMaeTag(spec.train, spec.model.encoder)}`;
}

interface Args {
  spec: SourceMaeSpec;
  /** kNN check on this many natural train images (and half as many val images); 0 = every image. */
  knnImages: number;
  steps: number;
  batch: number;
  lr: number;
  seed: number;
  out: string;
  logEvery: number;
  note: string;
}

function parseArgs(argv: string[]): Args {
  // --spec first: the other options override its values wherever they stand.
  const at = argv.indexOf('--spec');
  const name = at >= 0 ? argv[at + 1] : 'smoke';
  if (name !== 'smoke' && name !== 'workstation') throw new Error(`--spec: expected 'smoke' or 'workstation', got '${name}'`);
  const spec = name === 'smoke' ? SOURCE_MAE_SPEC : SOURCE_MAE_WORKSTATION_SPEC;
  const a: Args = {
    spec,
    knnImages: 0,
    steps: spec.train.steps,
    batch: spec.train.batch,
    lr: spec.train.lr,
    seed: spec.train.seed,
    out: '',
    logEvery: 25,
    note: '',
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    const num = (): number => {
      const n = Number(v);
      if (v === undefined || !Number.isFinite(n)) throw new Error(`${k}: expected a number, got '${v}'`);
      i++;
      return n;
    };
    if (k === '--help' || k === '-h') {
      console.log('npx tsx tools/make-source-mae.ts [--spec smoke|workstation] [--steps N] [--batch B] [--lr X] [--seed S] [--knn-images N] [--log-every N] [--note text] [--out file.safetensors]');
      process.exit(0);
    } else if (k === '--spec') i++;
    else if (k === '--steps') a.steps = num();
    else if (k === '--batch') a.batch = num();
    else if (k === '--lr') a.lr = num();
    else if (k === '--seed') a.seed = num();
    else if (k === '--knn-images') a.knnImages = num();
    else if (k === '--log-every') a.logEvery = num();
    else if (k === '--note') {
      a.note = v ?? '';
      i++;
    } else if (k === '--out') {
      if (!v) throw new Error('--out: expected a file name');
      a.out = v;
      i++;
    } else throw new Error(`unknown argument '${k}'; valid: --spec, --steps, --batch, --lr, --seed, --knn-images, --log-every, --note, --out, --help`);
  }
  for (const k of ['steps', 'batch', 'logEvery'] as const) {
    if (!Number.isInteger(a[k]) || a[k] < 1) throw new Error(`--${k}: expected a positive integer, got ${a[k]}`);
  }
  if (!Number.isInteger(a.knnImages) || a.knnImages < 0) throw new Error(`--knn-images: expected an integer ≥ 0, got ${a.knnImages}`);
  if (!a.out) a.out = path.resolve(__dirname, '..', 'notebooks', 'assets', `${sourceMaeAssetName({ ...spec, train: { ...spec.train, steps: a.steps, seed: a.seed } })}.safetensors`);
  return a;
}

function gitCommit(): string | null {
  try {
    return execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: path.resolve(__dirname, '..'), stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return null;
  }
}

async function* evalBatches(ds: Dataset, bs: number): AsyncGenerator<LabelledBatch> {
  const l = new Loader(ds, { batchSize: bs, shuffle: false, transform: normalizeWith(IMAGENET_STATS) });
  for await (const b of l.epoch(0)) yield { images: b.images!, labels: b.labels! };
}

/**
 * Train the source MAE of `a.spec` (steps, batch, lr, seed as overridden in `a`) and write `a.out` + its JSON sidecar
 * (metadata kind `vitpeft-source-mae/1`, the model the loaders compare, the training record, loss curve, kNN check).
 */
export async function makeSourceMae(a: Args): Promise<{ file: string; sidecar: string; seconds: number }> {
  const spec = a.spec;
  const M = spec.model;
  const emb = await loadEmbedded({ ...spec.data });
  const mae: Mae = createMae(M.preset as Parameters<typeof createMae>[0], {
    encoder: { ...M.encoder },
    decoder: { ...M.decoder },
    maskRatio: M.maskRatio,
    normPixLoss: M.normPixLoss,
    seed: a.seed,
  });
  // Everything trains except the fixed sin-cos tables (created with trainable = false).
  const params = new Map([...maeVariables(mae)].filter(([, v]) => v.trainable));
  const optimizer = new Optimizer(ADAMW_MAE, params);
  const loader = new Loader(emb.natural.train, { batchSize: a.batch, seed: a.seed, transform: maePretrain(spec.data.size, IMAGENET_STATS) });
  const lr: Schedule = { kind: 'cosine', base: a.lr, min: spec.train.minLr, totalIters: a.steps, warmupIters: Math.min(spec.train.warmupSteps, a.steps) };
  const curve: number[] = [];
  let acc = 0;
  const t0 = Date.now();
  await trainLoop({
    params, optimizer, steps: a.steps, seed: a.seed, lr,
    weightDecay: { kind: 'constant', value: spec.train.weightDecay },
    batch: async (step) => {
      const b = await loader.batchAt(step);
      const x = b.images!;
      b.labels?.dispose();
      return x;
    },
    loss: (x, rng) => maeForward(mae, x, { rng, training: true }).loss,
    onStep: (info) => {
      acc += info.loss;
      if ((info.step + 1) % a.logEvery === 0 || info.step === a.steps - 1) {
        const n = (info.step % a.logEvery) + 1;
        curve.push(+(acc / n).toFixed(5));
        acc = 0;
        const el = (Date.now() - t0) / 1000;
        console.log(`step ${info.step + 1}/${a.steps} loss ${curve[curve.length - 1]} lr ${info.lr.toExponential(2)} ${el.toFixed(0)} s (${(el / (info.step + 1)).toFixed(2)} s/step)`);
      }
    },
  });
  const seconds = (Date.now() - t0) / 1000;
  // Sanity check of the features (labels never seen in training): weighted kNN, natural train → natural val.
  const knnTrain = seededSubset(emb.natural.train, a.knnImages, 0, 'knn-train');
  const knnVal = seededSubset(emb.natural.val, Math.ceil(a.knnImages / 2), 0, 'knn-val');
  const trF = await extractFeatures(mae.encoder, evalBatches(knnTrain, 100), { nLast: 1 });
  const vaF = await extractFeatures(mae.encoder, evalBatches(knnVal, 100), { nLast: 1 });
  const k = Math.min(20, knnTrain.length);
  const knn = knnEvaluate(trF, vaF, { k })[0].top1;
  disposeFeatures(trF);
  disposeFeatures(vaF);
  console.log(`kNN (k ${k}) natural val top-1: ${knn}`);

  const br = backendReport();
  const meta = {
    kind: SOURCE_MAE_FORMAT,
    model: M,
    train: { ...spec.train, steps: a.steps, batch: a.batch, lr: a.lr, seed: a.seed, logEvery: a.logEvery, ...(a.knnImages ? { knnImages: a.knnImages } : {}) },
    seed: a.seed,
    steps: a.steps,
    lossCurve: curve,
    finalLoss: curve[curve.length - 1],
    knnNaturalVal: knn,
    seconds: Math.round(seconds),
    backend: { backend: br.backend, simd: br.simd, threads: br.threads, tfjs: br.versions['tfjs-core'], cpu: br.cpuModel },
    git: gitCommit(),
    embedded: emb.paths.manifest,
    created: new Date().toISOString(),
    tool: 'tools/make-source-mae.ts',
    ...(a.note ? { note: a.note } : {}),
  };
  mkdirSync(path.dirname(a.out), { recursive: true });
  saveCheckpoint(a.out, { params: maeVariables(mae), meta });
  const sha256 = createHash('sha256').update(readFileSync(a.out)).digest('hex');
  const sidecar = a.out.replace(/\.safetensors$/, '') + '.json';
  writeFileAtomic(sidecar, `${JSON.stringify({ file: path.basename(a.out), sha256, ...meta }, null, 2)}\n`);
  console.log(`wrote ${a.out} (${(readFileSync(a.out).length / 1e6).toFixed(2)} MB, sha256 ${sha256.slice(0, 16)}…) and ${sidecar}; ${seconds.toFixed(0)} s on ${br.backend}`);
  optimizer.dispose();
  disposeMae(mae);
  return { file: a.out, sidecar, seconds };
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  await init();
  await makeSourceMae(a);
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
