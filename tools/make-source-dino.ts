/**
 * Make the DINOv2-style source model of the D-ExPLoRA miniature (issue 15): a small DINOv2 ViT (mask token,
 * LayerScale) pre-trained **from scratch with the DINOv2 objective** (DINO CLS + iBOT masked patches + KoLeo, EMA
 * teacher) on the kit's embedded **natural** domain — the stand-in for DINOv2's LVD-142M — and saved as
 * `notebooks/assets/source-dino-<tag>.safetensors` plus a JSON sidecar.
 *
 * Full pre-training is the kit's own D-ExPLoRA machinery with every parameter trainable (all blocks, patch and
 * position embeddings, mask token, CLS, norms; heads from scratch), so the objective, schedules, teacher EMA and
 * parameter groups are exactly those the ExPLoRA stage continues with. The file stores the **teacher** backbone (what
 * DINOv2 releases and evaluates) in PyTorch / DINOv2 key layout, plus the teacher's heads under `dino_head.*` (DINOv2
 * ships no heads; ExPLoRA trains new ones — loaders ignore them unless asked).
 *
 * Deterministic from the seed on a given backend (initialisation, data order and augmentation, iBOT masks, drop path).
 * The metadata (`__metadata__.vitpeft`) and the sidecar record the spec, the loss curve, kNN checks on the natural
 * labels during training (train → val; never used for training), wall and process-CPU time, backend and git commit.
 *
 *   npx tsx tools/make-source-dino.ts                        # the committed asset (SOURCE_DINO_SPEC)
 *   npx tsx tools/make-source-dino.ts --spec workstation     # the ViT-S source of the workstation scale (a GPU / 16-core job)
 *   npx tsx tools/make-source-dino.ts --stop-after 150 --eval-every 75 --out /tmp/x.safetensors   # the first 150 steps of the schedule
 *   npx tsx tools/make-source-dino.ts --set objective.localScale=[0.2,0.5] --stop-after 150 --out /tmp/y.safetensors  # a variant
 *   npx tsx tools/make-source-dino.ts --help
 */
import { createHash } from 'crypto';
import { readFileSync, writeFileSync, mkdirSync } from 'fs';
import * as path from 'path';
import { execFileSync } from 'child_process';
import * as tf from '@tensorflow/tfjs';
import { init, backendReport } from '../lib/backend';
import { Vit } from '../lib/vit/params';
import { disposeTree, flattenTree } from '../lib/tree';
import { saveCheckpoint } from '../lib/io/checkpoint';
import { SINKHORN_KNOPP, CENTERING } from '../lib/dino/teacher';
import { dinoHeadVariables } from '../lib/dino/head';
import { exploraRecipe } from '../lib/peft/explora';
import { loadEmbedded } from '../data-loaders/embedded';
import { Loader, disposeBatch } from '../data-loaders/dataset';
import { createExploraDino, dExploraConfig, exploraDinoViews, mergeExploraDinoEncoder, DExploraConfig, DinoStepMetrics } from '../recipes/explora-dino';
import { decodeSplit, knnTop1, cpuSeconds, seededSubset, DecodedSplit } from '../recipes/miniature-eval';

/** A DINOv2-style source model: backbone, objective, optimisation, data, seed (plain data; the file records it). */
export interface SourceDinoSpec {
  model: { preset: 'vit_small_patch14_dinov2'; overrides: { imgSize: number; patchSize: number; embedDim: number; depth: number; numHeads: number; posEmbedGrid: null; layerScale: number } };
  objective: {
    head: { hiddenDim: number; bottleneckDim: number; outDim: number };
    nLocalCrops: number;
    globalCropSize: number;
    localCropSize: number;
    targets: 'sinkhorn_knopp' | 'centering';
    teacherTemp: { warmup: number; final: number; warmupEpochs: number };
    /** RandomResizedCrop scale ranges (DINOv2 defaults (0.32, 1) / (0.05, 0.32) are 224-px values); absent: the defaults. */
    globalScale?: [number, number];
    localScale?: [number, number];
    /** Loss weights DINO / KoLeo / iBOT (absent: DINOv2's 1 / 0.1 / 1). */
    weights?: { dino: number; koleo: number; ibot: number };
  };
  train: { batch: number; epochs: number; baseLr: number; warmupEpochs: number; minLr: number; freezeLastLayerEpochs: number; dropPathRate: number; momentumTeacher: number };
  data: { seed: number; size: number; naturalPerClass: number };
  seed: number;
}

/** What the committed source model is made of. */
export const SOURCE_DINO_SPEC: SourceDinoSpec = {
  /**
   * DINOv2 layout (mask token, LayerScale, cls pooling, final norm) at 32 px with patch 8: 4×4 = 16 patches; 64 wide,
   * 4 blocks (the earlier d96×6 spec with 4 local crops measured 1.48 s CPU/step, ≈ 55 CPU-min for 30 epochs: too
   * dear on a shared 2-core host; this one measured 0.44 s CPU/step).
   */
  model: {
    preset: 'vit_small_patch14_dinov2',
    overrides: { imgSize: 32, patchSize: 8, embedDim: 64, depth: 4, numHeads: 2, posEmbedGrid: null, layerScale: 1 },
  },
  /** DINOv2 objective, shrunk: 2 global 32-px + 2 local 16-px crops, head 256 → 64 → 128 prototypes, Sinkhorn-Knopp targets. */
  objective: {
    head: { hiddenDim: 256, bottleneckDim: 64, outDim: 128 },
    nLocalCrops: 2,
    globalCropSize: 32,
    localCropSize: 16,
    targets: 'sinkhorn_knopp',
    teacherTemp: { warmup: 0.04, final: 0.07, warmupEpochs: 5 },
  },
  /** DINOv2 optimisation, shrunk: AdamW, lr = baseLr·√(batch/1024) with warm-up + cosine, wd 0.04 → 0.4, EMA 0.992 → 1. */
  train: { batch: 32, epochs: 8, baseLr: 1.4e-2, warmupEpochs: 1, minLr: 1e-6, freezeLastLayerEpochs: 1, dropPathRate: 0.1, momentumTeacher: 0.99 },
  /** Embedded natural domain, 300 images per class (2,400 train / 600 val); labels are never used for training. */
  data: { seed: 0, size: 32, naturalPerClass: 300 },
  seed: 0,
};
export const SOURCE_DINO_FORMAT = 'vitpeft-source-dino/1';

/**
 * The ViT-S source of notebook 03's `workstation` scale (recipes/workstation-presets.ts, not made here: a 16-core CPU or
 * GPU job): D 384, 12 blocks, 6 heads, patch 8 at 64 px; 2 global 64-px + 4 local 32-px crops, head 1024 → 128 → 1,024
 * prototypes; 30 epochs of batch 64 over 4,000 natural images (1,875 steps).
 */
export const SOURCE_DINO_WORKSTATION_SPEC: SourceDinoSpec = {
  model: { preset: 'vit_small_patch14_dinov2', overrides: { imgSize: 64, patchSize: 8, embedDim: 384, depth: 12, numHeads: 6, posEmbedGrid: null, layerScale: 1 } },
  objective: { ...SOURCE_DINO_SPEC.objective, head: { hiddenDim: 1024, bottleneckDim: 128, outDim: 1024 }, nLocalCrops: 4, globalCropSize: 64, localCropSize: 32 },
  train: { ...SOURCE_DINO_SPEC.train, batch: 64, epochs: 30, baseLr: 4e-3, warmupEpochs: 3, freezeLastLayerEpochs: 1, momentumTeacher: 0.992 },
  data: { seed: 0, size: 64, naturalPerClass: 500 },
  seed: 0,
};

/** Full DINOv2 pre-training as a recipe: every block, the embeddings, the mask token, norms, CLS and the heads train. */
export function fullDinoRecipe(depth: number) {
  return exploraRecipe(
    { family: 'D', unfrozen: Array.from({ length: depth }, (_, i) => i + 1), rank: null },
    { unfreezeEmbed: true, unfreezeMaskToken: true, extraTrainable: ['dino_head.*', 'ibot_head.*', 'pos_embed'] },
  );
}

/** The kit config of a spec (`itersPerEpoch` = full batches of the training set). */
export function sourceDinoConfig(spec: Pick<SourceDinoSpec, 'model' | 'objective' | 'train'>, itersPerEpoch: number): DExploraConfig {
  const o = spec.objective;
  const t = spec.train;
  return dExploraConfig('D_EXPLORA_SMALL', {
    model: spec.model.preset,
    modelOverrides: { ...spec.model.overrides },
    recipe: fullDinoRecipe(spec.model.overrides.depth),
    objective: {
      head: { ...o.head },
      nLocalCrops: o.nLocalCrops,
      globalCropSize: o.globalCropSize,
      localCropSize: o.localCropSize,
      targets: o.targets === 'sinkhorn_knopp' ? SINKHORN_KNOPP : CENTERING,
      teacherTemp: { ...o.teacherTemp, warmupEpochs: Math.min(o.teacherTemp.warmupEpochs, t.epochs) },
      ...(o.weights ? { weights: { ...o.weights } } : {}),
    },
    train: {
      baseLr: t.baseLr,
      batchSize: t.batch,
      epochs: t.epochs,
      itersPerEpoch,
      warmupEpochs: Math.min(t.warmupEpochs, t.epochs),
      minLr: t.minLr,
      freezeLastLayerEpochs: Math.min(t.freezeLastLayerEpochs, t.epochs),
      dropPathRate: t.dropPathRate,
      momentumTeacher: t.momentumTeacher,
    },
  });
}

/** The crop scale ranges of a spec for `exploraDinoViews` (absent: DINOv2's defaults). */
function sourceDinoCrops(spec: Pick<SourceDinoSpec, 'objective'>): { globalScale?: [number, number]; localScale?: [number, number] } {
  const o = spec.objective;
  return { ...(o.globalScale ? { globalScale: [...o.globalScale] as [number, number] } : {}), ...(o.localScale ? { localScale: [...o.localScale] as [number, number] } : {}) };
}

/** File tag, e.g. `d96x6-p4-32px-60ep-seed0`. */
export function sourceDinoTag(spec: Pick<SourceDinoSpec, 'model' | 'train' | 'seed'>): string {
  const m = spec.model.overrides;
  return `d${m.embedDim}x${m.depth}-p${m.patchSize}-${m.imgSize}px-${spec.train.epochs}ep-seed${spec.seed}`;
}

function gitCommit(): string | null {
  try {
    return execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: path.resolve(__dirname, '..'), stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return null;
  }
}

interface Args {
  spec: SourceDinoSpec;
  evalEvery: number;
  saveEvery: number;
  /** Stop after this many steps of the planned schedule (0: run it whole). */
  stopAfter: number;
  logEvery: number;
  out: string;
  note: string;
}

/** Optional spec fields `--set` may add. */
const OPTIONAL_SPEC_KEYS = ['objective.globalScale', 'objective.localScale', 'objective.weights'];

/** Set `path` (dotted) in a deep copy of `obj` (the field must exist). */
function setPath<T>(obj: T, dotted: string, value: unknown): T {
  const out = JSON.parse(JSON.stringify(obj)) as Record<string, unknown>;
  const keys = dotted.split('.');
  let cur: Record<string, unknown> = out;
  keys.forEach((k, i) => {
    if (!(k in cur) && !(i === keys.length - 1 && OPTIONAL_SPEC_KEYS.includes(dotted))) throw new Error(`--set ${dotted}: '${keys.slice(0, i + 1).join('.')}' is not a field (have: ${Object.keys(cur).join(', ')})`);
    if (i === keys.length - 1) cur[k] = value;
    else cur = cur[k] as Record<string, unknown>;
  });
  return out as T;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { spec: SOURCE_DINO_SPEC, evalEvery: 0, saveEvery: 0, stopAfter: 0, logEvery: 10, out: '', note: '' };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    if (k === '--help' || k === '-h') {
      console.log('npx tsx tools/make-source-dino.ts [--spec smoke|workstation] [--set spec.path=json ...] [--eval-every N] [--save-every N] [--stop-after N] [--log-every N] [--note text] [--out file.safetensors]');
      console.log(`spec: ${JSON.stringify(SOURCE_DINO_SPEC)}`);
      process.exit(0);
    }
    if (v === undefined) throw new Error(`${k}: expected a value`);
    i++;
    if (k === '--spec') {
      if (v !== 'smoke' && v !== 'workstation') throw new Error(`--spec: expected 'smoke' or 'workstation', got '${v}'`);
      a.spec = v === 'smoke' ? SOURCE_DINO_SPEC : SOURCE_DINO_WORKSTATION_SPEC;
    } else if (k === '--set') {
      const eq = v.indexOf('=');
      if (eq < 0) throw new Error(`--set ${v}: expected path=value`);
      let val: unknown;
      try {
        val = JSON.parse(v.slice(eq + 1));
      } catch {
        val = v.slice(eq + 1);
      }
      a.spec = setPath(a.spec, v.slice(0, eq), val);
    } else if (k === '--eval-every' || k === '--save-every' || k === '--log-every' || k === '--stop-after') {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${k}: expected an integer ≥ 0, got '${v}'`);
      if (k === '--eval-every') a.evalEvery = n;
      else if (k === '--save-every') a.saveEvery = n;
      else if (k === '--stop-after') a.stopAfter = n;
      else a.logEvery = Math.max(1, n);
    } else if (k === '--note') a.note = v;
    else if (k === '--out') a.out = v;
    else throw new Error(`unknown argument '${k}'; see --help`);
  }
  return a;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const spec = a.spec;
  const out = a.out || path.resolve(__dirname, '..', 'notebooks', 'assets', `source-dino-${sourceDinoTag(spec)}.safetensors`);
  const backend = await init();
  const emb = await loadEmbedded({ seed: spec.data.seed, size: spec.data.size, naturalPerClass: spec.data.naturalPerClass });
  const train = emb.natural.train;
  const loaderProbe = new Loader(train, { batchSize: spec.train.batch, seed: spec.seed });
  const ipe = loaderProbe.stepsPerEpoch;
  const cfg = sourceDinoConfig(spec, ipe);
  const run = createExploraDino(cfg, { seed: spec.seed });
  const loader = new Loader(train, { batchSize: spec.train.batch, seed: spec.seed, views: exploraDinoViews(cfg, sourceDinoCrops(spec)) });
  const planned = cfg.train.epochs * ipe;
  const steps = a.stopAfter > 0 ? Math.min(a.stopAfter, planned) : planned;
  console.log(`backend ${backend.backend}; ${steps} of ${planned} steps (${spec.train.epochs} epochs × ${ipe}) of batch ${spec.train.batch}; trainable ${run.explora.selection.summary.trainableEncoder} encoder + heads; peak lr ${run.lr.toExponential(3)}`);
  // kNN sanity checks on the natural labels (a fixed 600/300 subset, never used for training).
  const knnTrain: DecodedSplit = await decodeSplit(seededSubset(train, 600, 0, 'knn-train'));
  const knnVal: DecodedSplit = await decodeSplit(seededSubset(emb.natural.val, 300, 0, 'knn-val'));
  const knnAt: Array<{ step: number; knn: number }> = [];
  // The random initialisation's kNN (step 0), the baseline the trained model must beat besides chance.
  const knnRandomInit = await knnTop1(run.teacher.vit, knnTrain, knnVal);
  knnAt.push({ step: 0, knn: knnRandomInit });
  console.log(`  kNN (k 20) natural val top-1 at random init: ${knnRandomInit} (chance ${(1 / (train.classes?.length ?? 10)).toFixed(3)})`);
  const teacherVit = (): Vit => run.teacher.vit;
  const curve: Array<{ step: number; loss: number; dino: number; ibot: number; koleo: number; targetEntropy: number; featureStd: number }> = [];
  const acc: DinoStepMetrics[] = [];
  const t0 = Date.now();
  const c0 = process.cpuUsage();
  const br = backendReport();
  /** Write the teacher backbone (+ teacher heads under dino_head.*) and the sidecar, recording training up to `step`. */
  const save = (file: string, step: number, extra: Record<string, unknown>): void => {
    const meta = {
      kind: SOURCE_DINO_FORMAT,
      spec,
      config: { ...cfg, recipe: run.explora.notation },
      itersPerEpoch: ipe,
      steps: step,
      plannedSteps: planned,
      lossCurve: curve,
      knnCurve: knnAt,
      ...extra,
      seconds: Math.round((Date.now() - t0) / 1000),
      cpuSeconds: Math.round(cpuSeconds(c0)),
      backend: { backend: br.backend, simd: br.simd, threads: br.threads, tfjs: br.versions['tfjs-core'], cpu: br.cpuModel },
      git: gitCommit(),
      embedded: emb.paths.manifest,
      created: new Date().toISOString(),
      tool: 'tools/make-source-dino.ts',
      ...(a.note ? { note: a.note } : {}),
    };
    const merged = mergeExploraDinoEncoder(run, 'teacher'); // no LoRA: a plain copy of the teacher backbone
    try {
      const params = new Map<string, tf.Variable>();
      for (const [k, v] of flattenTree(merged.params)) params.set(k, v);
      for (const [k, v] of dinoHeadVariables(run.teacherHeads)) params.set(k, v);
      mkdirSync(path.dirname(file), { recursive: true });
      saveCheckpoint(file, { params, meta });
    } finally {
      disposeTree(merged.params);
    }
    const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex');
    const sidecar = file.replace(/\.safetensors$/, '') + '.json';
    writeFileSync(sidecar, `${JSON.stringify({ file: path.basename(file), sha256, ...meta }, null, 1)}\n`);
    console.log(`wrote ${file} (${(readFileSync(file).length / 1e6).toFixed(2)} MB) and ${sidecar}`);
  };
  for (let it = 0; it < steps; it++) {
    const b = await loader.batchAt(it);
    let m: DinoStepMetrics;
    try {
      m = run.step(b.views!, it);
    } finally {
      disposeBatch(b);
    }
    acc.push(m);
    if ((it + 1) % a.logEvery === 0 || it === steps - 1) {
      const mean = (f: (x: DinoStepMetrics) => number): number => +(acc.reduce((s, x) => s + f(x), 0) / acc.length).toFixed(5);
      const row = { step: it + 1, loss: mean((x) => x.loss), dino: mean((x) => x.dino), ibot: mean((x) => x.ibot), koleo: mean((x) => x.koleo), targetEntropy: mean((x) => x.targetEntropy), featureStd: mean((x) => x.featureStd) };
      curve.push(row);
      acc.length = 0;
      const el = (Date.now() - t0) / 1000;
      console.log(`step ${it + 1}/${steps} ${JSON.stringify(row)} lr ${m.lr.toExponential(2)} ${el.toFixed(0)} s wall, ${(cpuSeconds(c0) / (it + 1)).toFixed(2)} s CPU/step`);
    }
    const last = it === steps - 1;
    if (!last && a.evalEvery > 0 && (it + 1) % a.evalEvery === 0) {
      const knn = await knnTop1(teacherVit(), knnTrain, knnVal);
      knnAt.push({ step: it + 1, knn });
      console.log(`  kNN (k 20) natural val top-1 at step ${it + 1}: ${knn}`);
    }
    if (!last && a.saveEvery > 0 && (it + 1) % a.saveEvery === 0) save(out.replace(/\.safetensors$/, `-step${it + 1}.safetensors`), it + 1, {});
  }
  const knn = await knnTop1(teacherVit(), knnTrain, knnVal);
  knnAt.push({ step: steps, knn });
  const studentKnn = await knnTop1(run.student.vit, knnTrain, knnVal);
  console.log(`kNN (k 20) natural val top-1: teacher ${knn}, student ${studentKnn}`);
  tf.dispose([knnTrain.x, knnVal.x]);
  save(out, steps, { knnNaturalVal: knn, knnNaturalValStudent: studentKnn, knnNaturalValRandomInit: knnRandomInit, knnChance: 1 / (train.classes?.length ?? 10) });
  console.log(`${((Date.now() - t0) / 1000).toFixed(0)} s wall, ${cpuSeconds(c0).toFixed(0)} s CPU`);
  run.dispose();
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
