/**
 * The ExPLoRA miniature (issue 15): multi-seed comparisons of a source model frozen, ExPLoRA, its ablations and
 * pre-training from scratch on the embedded satellite target, for the MAE objective (M-ExPLoRA) and the DINOv2
 * objective (D-ExPLoRA). One function per method and seed; every evaluation is one JSON-serialisable record with the
 * linear-probe and kNN accuracies, per-test-image correctness (for item-level intervals), and process CPU time per
 * phase (the machine is shared: wall time is only meaningful as a ratio).
 *
 * Pairing: within a seed every method sees the same pre-training batches (same Loader seed → same order and
 * augmentation), the same masking / drop-path streams (per-step Rng derived from the seed), the same LoRA/head init, and
 * its evaluation uses the same probe initialisation and order — so per-seed differences between methods are paired.
 *
 * `tools/explora-miniature.ts` is the command line; `tools/miniature-claims.ts` turns its JSON lines into claims.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../lib/rng';
import { VitConfig, VitPresetName } from '../lib/vit/config';
import { Vit, createVit, disposeVit } from '../lib/vit/params';
import { disposeTree, flattenTree } from '../lib/tree';
import { Optimizer, ADAMW_MAE } from '../lib/train/optim';
import { trainLoop, StepInfo } from '../lib/train/step';
import { Schedule, scaledLr } from '../lib/train/schedule';
import { loadCheckpoint } from '../lib/io/checkpoint';
import { readSafetensors } from '../lib/io/safetensors';
import { exploraRecipe, formatExploraNotation, ExploraRecipe } from '../lib/peft/explora';
import { createMae, maeForward, maeVariables, disposeMae, Mae } from '../lib/mae/mae';
import { SINKHORN_KNOPP, CENTERING } from '../lib/dino/teacher';
import { loadEmbedded, EmbeddedOptions } from '../data-loaders/embedded';
import { Loader, Dataset, disposeBatch } from '../data-loaders/dataset';
import { maePretrain } from '../data-loaders/presets';
import { IMAGENET_STATS } from '../data-loaders/transforms';
import { setupExploraMae, mergeExploraMaeEncoder } from './explora-mae';
import { createExploraDino, setupExploraDino, dExploraConfig, exploraDinoViews, mergeExploraDinoEncoder, DExploraConfig, DExploraRun } from './explora-dino';
import { EvalFeatures, EvalSets, FrozenEval, FrozenEvalConfig, MINIATURE_EVAL, decodeSplit, disposeEvalSets, evaluateFrozen, extractEvalFeatures, seededSubset, cpuSeconds } from './miniature-eval';
import { disposeFeatures } from '../lib/eval/features';
import { WorkersOption, resolveWorkers } from '../lib/parallel/cores';
import { defaultWorkers } from './run';
import { runMiniatureOnWorkers } from './miniature-workers';

/** A method of the comparison: the source frozen, an ExPLoRA-style recipe from the source, or pre-training from scratch. */
export type MiniMethod =
  | { name: string; kind: 'source' }
  /** `alpha`: LoRA scale numerator (update = α/r·BA; default 1, the paper's — ExPLoRA's LoRA uses α = 1). */
  | { name: string; kind: 'recipe'; unfrozen: ExploraRecipe['unfrozen']; rank: number | null; alpha?: number }
  | { name: string; kind: 'scratch' }
  /** every parameter of the source trains (full continued pre-training). */
  | { name: string; kind: 'full' };

/** The usual set: source frozen, ExPLoRA [L]-r, unfreeze-only [L], LoRA-only []-r, from scratch. */
export function standardMethods(rank: number): MiniMethod[] {
  return [
    { name: 'source', kind: 'source' },
    { name: 'explora', kind: 'recipe', unfrozen: ['L'], rank },
    { name: 'unfreeze', kind: 'recipe', unfrozen: ['L'], rank: null },
    { name: 'lora', kind: 'recipe', unfrozen: [], rank },
    { name: 'scratch', kind: 'scratch' },
  ];
}

/** Data of a miniature: the embedded generator's options and the evaluation-split sizes (0 = whole split). */
export interface MiniData {
  embedded: Pick<EmbeddedOptions, 'seed' | 'size' | 'satellitePerClass' | 'naturalPerClass'> & Record<string, unknown>;
  /** Images of the satellite train split used for extended pre-training (0 = all). */
  pretrainImages: number;
  /** Probe train / val / test images (seeded subsets of the satellite splits; 0 = whole split). */
  evalImages: { train: number; val: number; test: number };
  /**
   * true: every seed draws its own datasets (generator seed = embedded.seed + run seed), so a seed is an independent
   * replicate of data, training and probe, and intervals over seeds cover the sampling of the evaluation sets too.
   * false: one dataset for all seeds (only training and probe randomness vary).
   */
  perSeed: boolean;
}

export interface MaeMiniConfig {
  objective: 'mae';
  data: MiniData;
  /** Source MAE checkpoint (kit-made, `vitpeft-source-mae/1`) and the model it must record. */
  source: { checkpoint: string };
  model: { preset: VitPresetName; encoder: Partial<VitConfig>; decoder: { embedDim: number; depth: number; numHeads: number }; maskRatio: number; normPixLoss: boolean };
  /** Extended pre-training (ExPLoRA and ablations): steps of `batch`, lr = blr·batch/256, warm-up then half-cycle cosine. */
  pretrain: { steps: number; batch: number; blr: number; warmupSteps: number; decoderRank: number };
  /** From scratch on the target: MAE's own recipe (everything trains, wd 0.05), same steps and batch. */
  scratch: { blr: number; weightDecay: number; warmupSteps: number };
  methods: MiniMethod[];
  /** Evaluate at these steps too (0 = before training; the last step is always evaluated). */
  evalAt: number[];
  eval: FrozenEvalConfig;
}

export interface DinoMiniConfig {
  objective: 'dino';
  data: MiniData;
  /** Source checkpoint made by tools/make-source-dino.ts (teacher backbone + heads). */
  source: { checkpoint: string };
  model: { preset: VitPresetName; overrides: Partial<VitConfig> };
  /** DINOv2 objective at this scale (crops, head, targets, teacher temperature). */
  ssl: {
    head: { hiddenDim: number; bottleneckDim: number; outDim: number };
    nLocalCrops: number;
    globalCropSize: number;
    localCropSize: number;
    targets: 'sinkhorn_knopp' | 'centering';
    teacherTemp: { warmup: number; final: number; warmupSteps: number };
  };
  /** D-ExPLoRA optimisation: lr = baseLr·√(batch/1024), warm-up + cosine; wd cosine; EMA momentum cosine → 1. */
  pretrain: { steps: number; batch: number; baseLr: number; warmupSteps: number; freezeLastLayerSteps: number; momentumTeacher: number; dropPathRate: number; weightDecay: number; weightDecayEnd: number };
  /** From scratch on the target: full DINOv2 pre-training from a fresh init with these overrides. */
  scratch: { baseLr: number };
  methods: MiniMethod[];
  evalAt: number[];
  eval: FrozenEvalConfig;
}

export type MiniConfig = MaeMiniConfig | DinoMiniConfig;

/** One evaluation of one method at one step of one seed. */
export interface MiniRecord extends FrozenEval {
  kind: 'eval';
  objective: 'mae' | 'dino';
  method: string;
  /** The recipe in the paper's notation, or 'source' / 'scratch' / 'full'. */
  recipe: string;
  seed: number;
  step: number;
  /** Trainable encoder parameters (the paper's count; heads / decoder excluded). */
  trainableEncoder: number;
  /** Mean training loss over the last 10 steps before this evaluation (null before training). */
  loss: number | null;
  /** Process CPU seconds of the training steps so far (this method, this seed). */
  trainCpu: number;
  trainSteps: number;
}

// ------------------------------------------------------------------------------------------------------------------
// data

export interface MiniDatasets {
  pretrain: Dataset;
  evalSets: EvalSets;
  dispose(): void;
}

/** The embedded generator's options of a config's data for a seed (its own generator seed with `perSeed`). */
export function miniEmbeddedOptions(d: MiniData, seed: number): EmbeddedOptions {
  const opts = { ...(d.embedded as EmbeddedOptions) };
  if (d.perSeed) opts.seed = (opts.seed ?? 0) + seed;
  return opts;
}

/** Open the embedded datasets of a config, choose the pre-training set and decode the evaluation splits once. */
export async function miniDatasets(d: MiniData, seed = 0, stats = IMAGENET_STATS): Promise<MiniDatasets> {
  const emb = await loadEmbedded(miniEmbeddedOptions(d, seed));
  const sat = emb.satellite.rgb;
  const evalSets: EvalSets = {
    train: await decodeSplit(seededSubset(sat.train, d.evalImages.train, 0, 'probe-train'), stats),
    val: await decodeSplit(seededSubset(sat.val, d.evalImages.val, 0, 'probe-val'), stats),
    test: await decodeSplit(seededSubset(sat.test, d.evalImages.test, 0, 'probe-test'), stats),
  };
  return { pretrain: seededSubset(sat.train, d.pretrainImages, 0, 'pretrain'), evalSets, dispose: () => disposeEvalSets(evalSets) };
}

function imgSide(s: VitConfig['imgSize'] | undefined): number {
  return s === undefined ? 32 : typeof s === 'number' ? s : s[0];
}

function meanLast(xs: number[], k = 10): number | null {
  if (!xs.length) return null;
  const s = xs.slice(-k);
  return s.reduce((a, b) => a + b, 0) / s.length;
}

function evalSteps(evalAt: number[], total: number): number[] {
  return [...new Set([...evalAt.filter((s) => s >= 0 && s <= total), total])].sort((a, b) => a - b);
}

// ------------------------------------------------------------------------------------------------------------------
// MAE

/** Load the source MAE of a config (checks the recorded model against the config). The caller disposes it. */
export function loadSourceMae(c: MaeMiniConfig): Mae {
  const meta = readSafetensorsMeta(c.source.checkpoint);
  if (meta.kind !== 'vitpeft-source-mae/1') throw new Error(`${c.source.checkpoint}: not a kit source MAE (metadata kind '${String(meta.kind)}')`);
  const m = meta.model as Record<string, unknown>;
  const want = { preset: c.model.preset, encoder: c.model.encoder, decoder: c.model.decoder, maskRatio: c.model.maskRatio, normPixLoss: c.model.normPixLoss };
  if (JSON.stringify(sortKeys(m)) !== JSON.stringify(sortKeys(want))) {
    throw new Error(`${c.source.checkpoint} records model ${JSON.stringify(m)}, the config asks for ${JSON.stringify(want)}`);
  }
  const mae = newMae(c, 0, true);
  try {
    loadCheckpoint(c.source.checkpoint, { params: maeVariables(mae) });
    return mae;
  } catch (e) {
    disposeMae(mae);
    throw e;
  }
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => [k, sortKeys(x)]));
  return v;
}

function newMae(c: MaeMiniConfig, seed: number, skipInit: boolean): Mae {
  return createMae(c.model.preset, { encoder: { ...c.model.encoder }, decoder: { ...c.model.decoder }, maskRatio: c.model.maskRatio, normPixLoss: c.model.normPixLoss, seed, skipInit });
}

function copyMae(c: MaeMiniConfig, src: Mae): Mae {
  const m = newMae(c, 0, true);
  const s = maeVariables(src);
  for (const [k, v] of maeVariables(m)) v.assign(s.get(k)!);
  return m;
}

/** A cache of the frozen source's evaluation features across calls with the same source and data (the owner disposes `features`). */
type SourceFeatureCache = { data?: MiniDatasets; features?: EvalFeatures };

/**
 * Run one MAE method for one seed: train (unless 'source') with evaluations at `evalAt` and at the end.
 * `onRecord` receives each evaluation as soon as it exists. `o.sourceFeatures`: a cache owned by the caller (one
 * source model): a 'source' evaluation on the same data reuses its features (bit-identical: the encoder is frozen
 * and extraction has no randomness; only the probe's seed differs) and reports `cpu.extract` 0.
 */
export async function runMaeMethod(
  c: MaeMiniConfig,
  source: Mae,
  data: MiniDatasets,
  method: MiniMethod,
  seed: number,
  onRecord: (r: MiniRecord) => void | Promise<void>,
  o: { sourceFeatures?: { data?: MiniDatasets; features?: EvalFeatures } } = {},
): Promise<MiniRecord[]> {
  const out: MiniRecord[] = [];
  const emit = async (r: MiniRecord): Promise<void> => {
    out.push(r);
    await onRecord(r);
  };
  const base = { kind: 'eval' as const, objective: 'mae' as const, method: method.name, seed };
  const live = tf.memory().numTensors;
  if (method.kind === 'source') {
    // The source's features depend on nothing but the data: with a cache, extracted on the first seed only.
    const c0 = process.cpuUsage();
    const reuse = o.sourceFeatures?.features !== undefined && o.sourceFeatures.data === data;
    if (o.sourceFeatures && !reuse) {
      if (o.sourceFeatures.features) Object.values(o.sourceFeatures.features).forEach(disposeFeatures);
      o.sourceFeatures.features = undefined;
      o.sourceFeatures.features = await extractEvalFeatures(source.encoder, data.evalSets);
      o.sourceFeatures.data = data;
    }
    const extract = o.sourceFeatures && !reuse ? cpuSeconds(c0) : 0;
    const e = await evaluateFrozen(source.encoder, data.evalSets, seed, c.eval, undefined, o.sourceFeatures?.features);
    await emit({ ...base, ...e, cpu: { ...e.cpu, extract: o.sourceFeatures ? extract : e.cpu.extract }, recipe: 'source', step: 0, trainableEncoder: 0, loss: null, trainCpu: 0, trainSteps: 0 });
    return out;
  }
  const P = c.pretrain;
  const loader = new Loader(data.pretrain, { batchSize: P.batch, seed, transform: maePretrain(imgSide(c.model.encoder.imgSize), IMAGENET_STATS) });
  const ipe = loader.stepsPerEpoch;
  const batch = async (step: number): Promise<tf.Tensor4D> => {
    const b = await loader.batchAt(step);
    b.labels?.dispose();
    return b.images!;
  };
  let mae: Mae;
  let params: Map<string, tf.Variable>;
  let optimizer: Optimizer;
  let lr: Schedule;
  let weightDecay: Schedule;
  let loss: (x: tf.Tensor4D, rng: Rng) => tf.Scalar;
  let encoder: () => { vit: Vit; dispose: () => void };
  let recipe: string;
  let trainableEncoder: number;
  let dispose: () => void;
  if (method.kind === 'scratch') {
    mae = newMae(c, seed, false);
    params = new Map([...maeVariables(mae)].filter(([, v]) => v.trainable));
    optimizer = new Optimizer(ADAMW_MAE, params);
    lr = { kind: 'cosine', base: scaledLr(c.scratch.blr, P.batch), min: 0, totalIters: P.steps, warmupIters: Math.min(c.scratch.warmupSteps, P.steps), warmupStart: 0 };
    weightDecay = { kind: 'constant', value: c.scratch.weightDecay };
    loss = (x, rng) => maeForward(mae, x, { rng, training: true }).loss;
    encoder = () => ({ vit: mae.encoder, dispose: () => undefined });
    recipe = 'scratch';
    trainableEncoder = [...flattenTree(mae.encoder.params)].filter(([, v]) => v.trainable).reduce((n, [, v]) => n + v.size, 0);
    dispose = () => {
      optimizer.dispose();
      disposeMae(mae);
    };
  } else {
    mae = copyMae(c, source);
    if (method.kind === 'full') throw new Error(`runMaeMethod(${method.name}): 'full' continued pre-training is implemented for the DINO miniature only`);
    const r = exploraRecipe({ family: 'M', unfrozen: [...method.unfrozen], rank: method.rank }, { decoderRank: P.decoderRank, ...(method.alpha === undefined ? {} : { alpha: method.alpha }) });
    const run = setupExploraMae(mae, r, { seed, train: { blr: P.blr, effectiveBatch: P.batch, epochs: P.steps / ipe, warmupEpochs: Math.min(P.warmupSteps, P.steps) / ipe } });
    params = run.trainable;
    optimizer = run.optimizer;
    lr = run.schedule(ipe); // epochs = steps / ipe ⇒ totalIters = steps, warm-up = warmupSteps
    weightDecay = run.weightDecay;
    loss = (x, rng) => run.loss(x, rng);
    encoder = () => {
      const vit = mergeExploraMaeEncoder(run);
      return { vit, dispose: () => disposeTree(vit.params) };
    };
    recipe = formatExploraNotation(r);
    trainableEncoder = run.explora.selection.summary.trainableEncoder;
    dispose = () => {
      run.dispose();
      disposeMae(mae);
    };
  }
  try {
    const losses: number[] = [];
    let trainCpu = 0;
    let at = 0;
    for (const p of evalSteps(c.evalAt, P.steps)) {
      if (p > at) {
        const c0 = process.cpuUsage();
        const infos: StepInfo[] = await trainLoop({ params, optimizer, steps: P.steps, startStep: at, endStep: p, seed, lr, weightDecay, batch, loss });
        trainCpu += cpuSeconds(c0);
        losses.push(...infos.map((i) => i.loss));
        at = p;
      }
      const enc = encoder();
      try {
        const e = await evaluateFrozen(enc.vit, data.evalSets, seed, c.eval);
        await emit({ ...base, ...e, recipe, step: p, trainableEncoder, loss: meanLast(losses), trainCpu, trainSteps: at });
      } finally {
        enc.dispose();
      }
    }
  } finally {
    dispose();
  }
  const leaked = tf.memory().numTensors - live;
  if (leaked !== 0) throw new Error(`runMaeMethod(${method.name}, seed ${seed}): ${leaked} tensors leaked`);
  return out;
}

// ------------------------------------------------------------------------------------------------------------------
// DINO

/** Load the DINOv2-style source backbone of a config (teacher weights; heads ignored). The caller disposes it. */
export function loadSourceDino(c: DinoMiniConfig): Vit {
  const meta = readSafetensorsMeta(c.source.checkpoint);
  if (meta.kind !== 'vitpeft-source-dino/1') throw new Error(`${c.source.checkpoint}: not a kit source DINO (metadata kind '${String(meta.kind)}')`);
  const spec = meta.spec as { model: { preset: string; overrides: Record<string, unknown> } };
  const want = { preset: c.model.preset, overrides: c.model.overrides };
  if (JSON.stringify(sortKeys(spec.model)) !== JSON.stringify(sortKeys(want))) {
    throw new Error(`${c.source.checkpoint} records model ${JSON.stringify(spec.model)}, the config asks for ${JSON.stringify(want)}`);
  }
  const vit = createVit(c.model.preset, c.model.overrides, { skipInit: true });
  try {
    loadCheckpoint(c.source.checkpoint, { params: vit.params }, { ignore: /^(dino_head|ibot_head)\./ });
    return vit;
  } catch (e) {
    disposeVit(vit);
    throw e;
  }
}

/** The kit D-ExPLoRA config of a miniature for a recipe (steps as epochs of `itersPerEpoch`). */
export function dinoMiniRunConfig(c: DinoMiniConfig, recipe: ExploraRecipe, itersPerEpoch: number, baseLr = c.pretrain.baseLr): DExploraConfig {
  const P = c.pretrain;
  const o = c.ssl;
  const ep = (steps: number): number => Math.min(steps, P.steps) / itersPerEpoch;
  return dExploraConfig('D_EXPLORA_SMALL', {
    model: c.model.preset,
    modelOverrides: { ...c.model.overrides },
    recipe,
    objective: {
      head: { ...o.head },
      nLocalCrops: o.nLocalCrops,
      globalCropSize: o.globalCropSize,
      localCropSize: o.localCropSize,
      targets: o.targets === 'sinkhorn_knopp' ? SINKHORN_KNOPP : CENTERING,
      teacherTemp: { warmup: o.teacherTemp.warmup, final: o.teacherTemp.final, warmupEpochs: ep(o.teacherTemp.warmupSteps) },
    },
    train: {
      baseLr,
      batchSize: P.batch,
      epochs: P.steps / itersPerEpoch,
      itersPerEpoch,
      warmupEpochs: ep(P.warmupSteps),
      freezeLastLayerEpochs: ep(P.freezeLastLayerSteps),
      momentumTeacher: P.momentumTeacher,
      dropPathRate: P.dropPathRate,
      weightDecay: P.weightDecay,
      weightDecayEnd: P.weightDecayEnd,
    },
  });
}

/** Full DINOv2 pre-training: every block, the embeddings, the mask token, norms, CLS and the heads train (the scratch and `full` arms). */
export function fullDino(depth: number): ExploraRecipe {
  return exploraRecipe(
    { family: 'D', unfrozen: Array.from({ length: depth }, (_, i) => i + 1), rank: null },
    { unfreezeEmbed: true, unfreezeMaskToken: true, extraTrainable: ['dino_head.*', 'ibot_head.*', 'pos_embed'] },
  );
}

/** Run one DINO method for one seed (see `runMaeMethod`). */
export async function runDinoMethod(c: DinoMiniConfig, source: Vit, data: MiniDatasets, method: MiniMethod, seed: number, onRecord: (r: MiniRecord) => void | Promise<void>): Promise<MiniRecord[]> {
  const out: MiniRecord[] = [];
  const emit = async (r: MiniRecord): Promise<void> => {
    out.push(r);
    await onRecord(r);
  };
  const base = { kind: 'eval' as const, objective: 'dino' as const, method: method.name, seed };
  const live = tf.memory().numTensors;
  if (method.kind === 'source') {
    const e = await evaluateFrozen(source, data.evalSets, seed, c.eval);
    await emit({ ...base, ...e, recipe: 'source', step: 0, trainableEncoder: 0, loss: null, trainCpu: 0, trainSteps: 0 });
    return out;
  }
  const P = c.pretrain;
  const depth = source.config.depth;
  // iters per epoch of the pre-training set at this batch (schedules are per iteration anyway)
  const ipe = Math.max(1, Math.floor(data.pretrain.length / P.batch));
  let run: DExploraRun;
  let recipe: string;
  let copy: Vit | null = null;
  if (method.kind === 'scratch') {
    const cfg = dinoMiniRunConfig(c, fullDino(depth), ipe, c.scratch.baseLr);
    run = createExploraDino(cfg, { seed });
    recipe = 'scratch';
  } else {
    const r = method.kind === 'full' ? fullDino(depth) : exploraRecipe({ family: 'D', unfrozen: [...method.unfrozen], rank: method.rank }, method.alpha === undefined ? {} : { alpha: method.alpha });
    const cfg = dinoMiniRunConfig(c, r, ipe);
    copy = createVit(c.model.preset, c.model.overrides, { skipInit: true });
    const src = flattenTree(source.params);
    for (const [k, v] of flattenTree(copy.params)) v.assign(src.get(k)!);
    try {
      run = setupExploraDino(copy, cfg, { seed });
    } catch (e) {
      disposeVit(copy);
      throw e;
    }
    recipe = method.kind === 'full' ? 'full' : formatExploraNotation(r);
  }
  const loader = new Loader(data.pretrain, { batchSize: P.batch, seed, views: exploraDinoViews(run.config) });
  try {
    const losses: number[] = [];
    let trainCpu = 0;
    let at = 0;
    for (const p of evalSteps(c.evalAt, P.steps)) {
      const c0 = process.cpuUsage();
      for (; at < p; at++) {
        const b = await loader.batchAt(at);
        try {
          losses.push(run.step(b.views!, at).loss);
        } finally {
          disposeBatch(b);
        }
      }
      trainCpu += cpuSeconds(c0);
      const enc = mergeExploraDinoEncoder(run, 'teacher');
      try {
        const e = await evaluateFrozen(enc, data.evalSets, seed, c.eval);
        await emit({ ...base, ...e, recipe, step: p, trainableEncoder: run.explora.selection.summary.trainableEncoder, loss: meanLast(losses), trainCpu, trainSteps: at });
      } finally {
        disposeTree(enc.params);
      }
    }
  } finally {
    run.dispose();
    if (copy) disposeVit(copy);
  }
  const leaked = tf.memory().numTensors - live;
  if (leaked !== 0) throw new Error(`runDinoMethod(${method.name}, seed ${seed}): ${leaked} tensors leaked`);
  return out;
}

/** The kit metadata (`__metadata__.vitpeft`) of a safetensors file, or {} (errors name the file). */
export function readSafetensorsMeta(file: string): Record<string, unknown> {
  const raw = readSafetensors(file).metadata.vitpeft;
  if (raw === undefined) return {};
  try {
    return JSON.parse(raw) as Record<string, unknown>;
  } catch {
    throw new Error(`${file}: __metadata__.vitpeft is not valid JSON`);
  }
}

/**
 * Run every method of a config for every seed (the source loaded once; datasets once, or per seed with
 * `data.perSeed`), calling `onRecord` for each evaluation. Returns all records. `onData` reports each dataset opening;
 * `seedsOf` restricts a method to some seeds.
 */
export async function runMiniature(
  cfg: MiniConfig,
  seeds: readonly number[],
  o: {
    onRecord?: (r: MiniRecord) => void | Promise<void>;
    onData?: (d: MiniDatasets, seed: number, cpu: number) => void;
    /** Methods run only on some of the seeds (e.g. `{scratch: [0]}` when its gap is far larger than the seed noise). */
    seedsOf?: Readonly<Record<string, readonly number[]>>;
    /**
     * Worker threads for the (seed, method) jobs (recipes/miniature-workers.ts): an integer ≥ 1 or 'auto'; default
     * `$VITPEFT_WORKERS`, else 1 (as `runRecipe`). With more than one (and more than one job) each worker runs whole
     * jobs; the records and their order are the one-thread ones (CPU / time fields aside). `onData` needs one worker.
     */
    workers?: WorkersOption;
  } = {},
): Promise<MiniRecord[]> {
  const methodsFor = (seed: number): MiniMethod[] => cfg.methods.filter((m) => !o.seedsOf?.[m.name] || o.seedsOf[m.name].includes(seed));
  const jobs = seeds.flatMap((seed) => methodsFor(seed).map((method) => ({ seed, method })));
  const workers = Math.min(resolveWorkers(o.workers ?? defaultWorkers()), Math.max(1, jobs.length));
  if (workers > 1) {
    if (o.onData) throw new Error(`runMiniature: onData sees the datasets of the main thread; with ${workers} workers they open in the workers (pass workers: 1)`);
    return runMiniatureOnWorkers(cfg, jobs, workers, o.onRecord);
  }
  const records: MiniRecord[] = [];
  const emit = async (r: MiniRecord): Promise<void> => {
    records.push(r);
    await o.onRecord?.(r);
  };
  let data: MiniDatasets | null = null;
  const dataFor = async (seed: number): Promise<MiniDatasets> => {
    if (data && !cfg.data.perSeed) return data;
    data?.dispose();
    data = null;
    const d0 = process.cpuUsage();
    data = await miniDatasets(cfg.data, seed);
    o.onData?.(data, seed, cpuSeconds(d0));
    return data;
  };
  try {
    if (cfg.objective === 'mae') {
      const source = loadSourceMae(cfg);
      const sourceFeatures: SourceFeatureCache = {};
      try {
        for (const seed of seeds) {
          const d = await dataFor(seed);
          for (const m of methodsFor(seed)) await runMaeMethod(cfg, source, d, m, seed, emit, { sourceFeatures });
        }
      } finally {
        if (sourceFeatures.features) Object.values(sourceFeatures.features).forEach(disposeFeatures);
        disposeMae(source);
      }
    } else {
      const source = loadSourceDino(cfg);
      try {
        for (const seed of seeds) {
          const d = await dataFor(seed);
          for (const m of methodsFor(seed)) await runDinoMethod(cfg, source, d, m, seed, emit);
        }
      } finally {
        disposeVit(source);
      }
    }
  } finally {
    (data as MiniDatasets | null)?.dispose();
  }
  return records;
}
