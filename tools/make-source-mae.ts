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

interface Args {
  steps: number;
  batch: number;
  lr: number;
  seed: number;
  out: string;
  logEvery: number;
  note: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    steps: SOURCE_MAE_TRAIN.steps,
    batch: SOURCE_MAE_TRAIN.batch,
    lr: SOURCE_MAE_TRAIN.lr,
    seed: SOURCE_MAE_TRAIN.seed,
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
      console.log('npx tsx tools/make-source-mae.ts [--steps N] [--batch B] [--lr X] [--seed S] [--log-every N] [--note text] [--out file.safetensors]');
      process.exit(0);
    } else if (k === '--steps') a.steps = num();
    else if (k === '--batch') a.batch = num();
    else if (k === '--lr') a.lr = num();
    else if (k === '--seed') a.seed = num();
    else if (k === '--log-every') a.logEvery = num();
    else if (k === '--note') {
      a.note = v ?? '';
      i++;
    } else if (k === '--out') {
      if (!v) throw new Error('--out: expected a file name');
      a.out = v;
      i++;
    } else throw new Error(`unknown argument '${k}'; valid: --steps, --batch, --lr, --seed, --log-every, --note, --out, --help`);
  }
  for (const k of ['steps', 'batch', 'logEvery'] as const) {
    if (!Number.isInteger(a[k]) || a[k] < 1) throw new Error(`--${k}: expected a positive integer, got ${a[k]}`);
  }
  if (!a.out) a.out = path.resolve(__dirname, '..', 'notebooks', 'assets', `source-mae-${sourceMaeTag(a)}.safetensors`);
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

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const backend = await init();
  const emb = await loadEmbedded();
  const mae: Mae = createMae(SOURCE_MAE_MODEL.preset, {
    encoder: { ...SOURCE_MAE_MODEL.encoder },
    decoder: { ...SOURCE_MAE_MODEL.decoder },
    maskRatio: SOURCE_MAE_MODEL.maskRatio,
    normPixLoss: SOURCE_MAE_MODEL.normPixLoss,
    seed: a.seed,
  });
  // Everything trains except the fixed sin-cos tables (created with trainable = false).
  const params = new Map([...maeVariables(mae)].filter(([, v]) => v.trainable));
  const optimizer = new Optimizer(ADAMW_MAE, params);
  const loader = new Loader(emb.natural.train, { batchSize: a.batch, seed: a.seed, transform: maePretrain(32, IMAGENET_STATS) });
  const lr: Schedule = { kind: 'cosine', base: a.lr, min: SOURCE_MAE_TRAIN.minLr, totalIters: a.steps, warmupIters: Math.min(SOURCE_MAE_TRAIN.warmupSteps, a.steps) };
  const curve: number[] = [];
  let acc = 0;
  const t0 = Date.now();
  await trainLoop({
    params, optimizer, steps: a.steps, seed: a.seed, lr,
    weightDecay: { kind: 'constant', value: SOURCE_MAE_TRAIN.weightDecay },
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
  const trF = await extractFeatures(mae.encoder, evalBatches(emb.natural.train, 100), { nLast: 1 });
  const vaF = await extractFeatures(mae.encoder, evalBatches(emb.natural.val, 100), { nLast: 1 });
  const knn = knnEvaluate(trF, vaF, { k: 20 })[0].top1;
  disposeFeatures(trF);
  disposeFeatures(vaF);
  console.log(`kNN (k 20) natural val top-1: ${knn}`);

  const br = backendReport();
  const meta = {
    kind: SOURCE_MAE_FORMAT,
    model: SOURCE_MAE_MODEL,
    train: { ...SOURCE_MAE_TRAIN, steps: a.steps, batch: a.batch, lr: a.lr, seed: a.seed, logEvery: a.logEvery },
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
  console.log(`wrote ${a.out} (${(readFileSync(a.out).length / 1e6).toFixed(2)} MB, sha256 ${sha256.slice(0, 16)}…) and ${sidecar}; ${seconds.toFixed(0)} s on ${backend.backend}`);
  optimizer.dispose();
  disposeMae(mae);
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
