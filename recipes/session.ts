/**
 * A recipe, built: the model with its weights, the adapters and the trainable set, the optimiser, the data loader,
 * the schedules and the evaluation — each piece made by the kit's own entry points (`setupExploraMae`,
 * `setupExploraDino` / `trainExploraDino`, `buildPyraModel`, `setupFinetune`, `createLora`, `trainLoop`), so a
 * notebook can take a session apart and step through it cell by cell:
 *
 *   const s = await prepareRecipe({...RECIPES.d_explora_small, steps: 10});
 *   s.encoder; s.hooks; s.summary;            // the model, its adapters, what trains
 *   const b = await s.batch(0);               // the batch of step 0 (dispose it, or hand it to the loss)
 *   await s.train(0, 1);                      // one step
 *   s.dispose();
 *
 * `runRecipe` (run.ts) drives a session from step to step, evaluates, checkpoints and records the run.
 */
import * as tf from '@tensorflow/tfjs';
import type { Rng } from '../lib/rng';
import { Vit } from '../lib/vit/params';
import { VitHooks, vitForward } from '../lib/vit/forward';
import { layerId, Optimizer, OptimizerConfig, OptimizerOptions } from '../lib/train/optim';
import { Schedule, checkSchedule } from '../lib/train/schedule';
import { StepInfo, trainLoop } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { saveCheckpoint, saveCheckpointAsync, loadCheckpoint, SaveParts } from '../lib/io/checkpoint';
import { readValues, syncReads } from '../lib/reads';
import { ExploraRecipe, ExploraSetup, exploraRecipe } from '../lib/peft/explora';
import { FREEZE_REST, TrainRule, TrainSummary, selectTrainable } from '../lib/peft/trainable';
import { LoraAdapters, LoraTarget, createLora, disposeLora, loraHooks, mergeLora } from '../lib/peft/lora';
import { disposeTree, flattenTree } from '../lib/tree';
import { maeForward } from '../lib/mae/mae';
import { satMaeGroupForward } from '../lib/mae/satmae-group';
import { satMaeTemporalForward } from '../lib/mae/satmae-temporal';
import { isDataParallel, parallelContext, shardRange } from '../lib/parallel/context';
import { extractFeatures, disposeFeatures, FeatureCache, LabelledBatch } from '../lib/eval/features';
import { linearProbe, linearProbeAsync } from '../lib/eval/linear-probe';
import { knnEvaluate, knnEvaluateAsync } from '../lib/eval/knn';
import { argmaxRows, macroF1 } from '../lib/eval/metrics';
import { Dataset, Loader, disposeBatch } from '../data-loaders/dataset';
import { RecipeError } from './schema';
import { Recipe, RecipeInput, SplitSet, peakLr, recipe as checkRecipe, resolveRecipePaths } from './recipe';
import { DataSource, itersPerEpoch, multiCropViews, openSource, sampleTransform, splitSetData } from './data';
import { BuiltModel, WeightsOrigin, buildModel, disposeModel, loadWeights, modelEncoder, modelVariables } from './model';
import { ExploraMaeRun, TemporalBatch, mergeExploraMaeEncoder, setupExploraMae, setupExploraSatMaeGroup, setupExploraSatMaeTemporal } from './explora-mae';
import {
  DExploraRun, dinoTrain, loadExploraDinoCheckpoint, mergeExploraDinoEncoder, exploraDinoCheckpointParts, setupExploraDino, trainExploraDino,
} from './explora-dino';
import { PyraModel, buildPyraModel } from './pyra-presets';
import { EXPLORA_FINETUNE, FinetuneSetup, setupFinetune } from './finetune';
import { evaluateSegmentation } from './session-seg';
import { satMaeFinetuneEval, satMaeInput } from './session-satmae';

/** One logged training step: flat numeric metrics (`step` is the 0-based index of the step). */
export type StepRow = { step: number; loss: number } & Record<string, number>;

/** One evaluation: `step` is the number of steps done when it ran. */
export type EvalRow = { step: number } & Record<string, number | string>;

/** An encoder to evaluate (merged adapters, or the live model with its hooks), freed by `dispose`. */
export interface EvalEncoder {
  vit: Vit;
  hooks: VitHooks;
  /** Whether this is a separate merged copy (its own variables) rather than the live model. */
  merged: boolean;
  dispose(): void;
}

/** A recipe, built and ready to train (see the module comment). */
export interface RecipeSession {
  /** The validated recipe with absolute paths (what the run folder stores). */
  readonly recipe: Recipe;
  readonly model: BuiltModel;
  /** Where the weights came from. */
  readonly origin: WeightsOrigin;
  /** The ViT encoder that trains (the D-ExPLoRA student; null for a SatMAE group model). */
  readonly encoder: Vit | null;
  /** The adapters' forward hooks on `encoder` (LoRA `linear`, ToMe / PYRA `merge`). */
  readonly hooks: VitHooks;
  /** What trains, in optimizer order, and everything else. */
  readonly trainable: ReadonlyMap<string, tf.Variable>;
  readonly frozen: ReadonlyMap<string, tf.Variable>;
  readonly summary: TrainSummary;
  /** The training images (before transforms). */
  readonly trainData: Dataset;
  readonly itersPerEpoch: number;
  readonly totalSteps: number;
  /** Per-step schedules. */
  readonly lr: Schedule;
  readonly weightDecay: Schedule;
  /** Steps after which the recipe evaluates (the last step included; empty without evaluation). */
  readonly evalSteps: readonly number[];
  /** The method objects, for stepping through by hand. */
  readonly parts: {
    explora: ExploraSetup | null;
    exploraMae: ExploraMaeRun<unknown, tf.Tensor4D> | null;
    dino: DExploraRun | null;
    pyra: PyraModel | null;
    finetune: FinetuneSetup | null;
    lora: LoraAdapters | null;
    optimizer: Optimizer | null;
  };
  /** Steps done so far. */
  readonly step: number;
  /** The training batch of `step` (tensors owned by the caller; what `loss` takes). */
  batch(step: number): Promise<unknown>;
  /** The training loss of a batch (not for the DINOv2 objective, whose step is `parts.dino.step`). */
  loss(batch: unknown, rng: Rng): tf.Scalar;
  /** Train steps [from, to). */
  train(from: number, to: number, onStep?: (row: StepRow) => void | Promise<void>): Promise<StepRow[]>;
  /** The encoder to evaluate: adapters merged into a copy when they can be (`merged`), else the live model + hooks. */
  evalEncoder(merged?: boolean): EvalEncoder | null;
  /** Evaluate after `step` steps (null without evaluation); `keepEncoder` sees the evaluated encoder while it lives. */
  evaluate(step: number, keepEncoder?: (vit: Vit, row: EvalRow) => void): Promise<EvalRow | null>;
  /** The first `n` evaluation images (the eval test split, else the training split), transformed, for checks. */
  probeImages(n: number): Promise<tf.Tensor4D | null>;
  /** max |Δ| of the last two blocks' CLS tokens with and without the adapters (null when there are none). */
  identityGap(x: tf.Tensor4D): Promise<{ gap: number; scale: number } | null>;
  /** max |Δ| of the last two blocks' CLS tokens between the merged copy and the live model (null when not mergeable). */
  mergeGap(x: tf.Tensor4D): Promise<{ gap: number; scale: number } | null>;
  /** Method-specific end-of-run diagnostics (PYRA: the last merging block's W_D, which gets no gradient). */
  diagnostics(): Promise<Record<string, number>>;
  /** What a resumable state checkpoint holds. */
  saveState(file: string, meta: Record<string, unknown>): Promise<void>;
  /** Load a state checkpoint; returns the step it was saved at. */
  loadState(file: string): number;
  dispose(): void;
}

export interface PrepareOptions {
  /** Folder the recipe's relative paths resolve against (default: the current folder). */
  baseDir?: string;
}

function optimizerConfig(r: Recipe): OptimizerConfig {
  const o = r.optimizer;
  return o.kind === 'adamw'
    ? { kind: 'adamw', beta1: o.betas[0], beta2: o.betas[1], eps: o.eps }
    : { kind: 'sgd', momentum: o.momentum, dampening: o.dampening, nesterov: o.nesterov };
}

/** lr multipliers of the optimizer spec (none when both are 1, so the optimizer is exactly a plain one). */
function optimizerOptions(r: Recipe, depth: number): OptimizerOptions {
  const { layerDecay, patchEmbedLrMult } = r.optimizer;
  if (layerDecay === 1 && patchEmbedLrMult === 1) return {};
  return {
    lrScale: (p) => Math.pow(layerDecay, depth + 1 - layerId(p, depth)) * (/(^|\.)patch_embed\./.test(p) ? patchEmbedLrMult : 1),
  };
}

function plainOptimizer(r: Recipe, at: string): void {
  if (r.optimizer.layerDecay !== 1 || r.optimizer.patchEmbedLrMult !== 1) {
    throw new RecipeError(`recipe.optimizer.layerDecay`, `${at} builds its own optimizer without lr multipliers: layerDecay and patchEmbedLrMult must be 1`);
  }
}

function steps(len: { steps: number } | { epochs: number }, ipe: number): number {
  return 'steps' in len ? len.steps : Math.round(len.epochs * ipe);
}

function lrSchedule(r: Recipe, total: number, ipe: number): Schedule {
  const peak = peakLr(r);
  const s = r.schedule;
  const warmupIters = steps(s.warmup, ipe);
  if (warmupIters > Math.max(total, 0) && total > 0) throw new RecipeError('recipe.schedule.warmup', `warm-up of ${warmupIters} steps is longer than the run (${total} steps)`);
  if (s.kind === 'constant' || total === 0) return checkSchedule({ kind: 'constant', value: peak, warmupIters: Math.min(warmupIters, total) }, 'lr schedule');
  return checkSchedule({ kind: 'cosine', base: peak, min: s.minLr, totalIters: total, warmupIters, warmupStart: s.warmupStart }, 'lr schedule');
}

function wdSchedule(r: Recipe, total: number): Schedule {
  const w = r.weightDecay;
  if (typeof w === 'number' || total === 0) return { kind: 'constant', value: typeof w === 'number' ? w : w.start };
  return checkSchedule({ kind: 'cosine', base: w.start, min: w.end, totalIters: total, warmupIters: 0 }, 'weight-decay schedule');
}

function evalPoints(r: Recipe, total: number, ipe: number): number[] {
  const e = r.eval;
  if (e.kind === 'none') return [];
  const a = e.at;
  let pts: number[];
  if ('steps' in a) pts = a.steps;
  else if ('epochs' in a) pts = a.epochs.map((x) => Math.round(x * ipe));
  else {
    const every = 'every' in a ? a.every : Math.max(1, Math.round(a.everyEpochs * ipe));
    pts = [];
    for (let k = every; k < total; k += every) pts.push(k);
  }
  for (const p of pts) {
    if (p > total) throw new RecipeError('recipe.eval.at', `evaluation after step ${p} is past the end of the run (${total} steps)`);
  }
  return [...new Set([...pts, total])].sort((x, y) => x - y);
}

/** The rule list of a "train everything that can train" selection (fixed tables such as sin-cos stay frozen). */
function fullSpec(vars: ReadonlyMap<string, tf.Variable>): TrainRule[] {
  const fixed = [...vars].filter(([, v]) => !v.trainable).map(([k]) => k);
  const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return [
    ...(fixed.length ? [{ match: new RegExp(`^(${fixed.map(esc).join('|')})$`), train: false, group: 'fixed tables' }] : []),
    { match: /.*/, train: true, group: 'all parameters' },
  ];
}

const FROZEN_SPEC: TrainRule[] = [{ ...FREEZE_REST, group: 'frozen (evaluation only)' }];

/** A recipe's LoRA target as the kit's `LoraTarget` (also for planning from shapes, recipes/plan.ts). */
export function toLoraTarget(t: Extract<Recipe['adapters'], { kind: 'lora' }>['targets'][number]): LoraTarget {
  const out: LoraTarget = { sites: t.sites, kind: t.kind };
  if (t.exclude.length) out.exclude = t.exclude;
  if (t.layers !== null) out.layers = t.layers;
  if (t.kind === 'qkv') out.slices = t.slices;
  if (t.rank !== null) out.rank = t.rank;
  if (t.alpha !== null) out.alpha = t.alpha;
  if (t.scaling !== null) out.scaling = t.scaling;
  if (t.dropout !== null) out.dropout = t.dropout;
  if (t.init !== null) out.init = t.init;
  return out;
}

/** CLS tokens of the last two blocks, [2, B, D] (a tidy of its own). */
function lastCls(vit: Vit, x: tf.Tensor4D, hooks?: VitHooks): tf.Tensor {
  return tf.tidy(() => tf.stack(vitForward(vit, x, { hooks, returnLayers: Math.min(2, vit.config.depth) }).intermediates.map((l) => l.cls)));
}

async function gapOf(a: tf.Tensor, b: tf.Tensor): Promise<{ gap: number; scale: number }> {
  const both = tf.tidy(() => tf.stack([tf.max(tf.abs(tf.sub(a, b))), tf.max(tf.abs(a))])); // [2]: gap, scale
  tf.dispose([a, b]);
  try {
    const [gap, scale] = await readValues(both);
    return { gap, scale };
  } finally {
    both.dispose();
  }
}

/** Save a checkpoint with synchronous reads where the backend can, else awaited ones (webgpu): the same bytes. */
async function saveAuto(file: string, parts: SaveParts): Promise<void> {
  if (syncReads()) saveCheckpoint(file, parts);
  else await saveCheckpointAsync(file, parts);
}

/** Batches of a split set in dataset order (for evaluation). */
async function* orderedBatches(ds: Dataset, set: SplitSet, batch: number, at: string): AsyncGenerator<LabelledBatch & { labels: tf.Tensor1D }> {
  const loader = new Loader(ds, { batchSize: batch, shuffle: false, transform: sampleTransform(set.transform, `${at}.transform`) });
  for await (const b of loader.epoch(0)) {
    if (!b.labels) {
      disposeBatch(b);
      throw new RecipeError(at, `${ds.name} has unlabelled samples; evaluation needs labels`);
    }
    yield { images: b.images!, labels: b.labels };
  }
}

/**
 * Build a recipe: validate it, resolve its paths, build the model and load its weights, open its data, attach its
 * adapters, make its optimizer and schedules. Dispose the session when done (or let `runRecipe` do it).
 */
export async function prepareRecipe(input: RecipeInput | Recipe, opts: PrepareOptions = {}): Promise<RecipeSession> {
  const r = resolveRecipePaths(checkRecipe(input), opts.baseDir ?? process.cwd());
  const disposers: Array<() => void> = [];
  const cleanup = (): void => {
    for (const d of disposers.splice(0).reverse()) d();
  };
  try {
    return await build(r, disposers, cleanup);
  } catch (e) {
    cleanup();
    throw e;
  }
}

async function build(r: Recipe, disposers: Array<() => void>, cleanup: () => void): Promise<RecipeSession> {
  const model = buildModel(r);
  disposers.push(() => disposeModel(model));
  const origin = loadWeights(r, model);
  const source: DataSource = openSource(r.data.source);
  const trainData = await splitSetData(source, r.data.train, r.seed, 'recipe.data.train');
  const ipe = itersPerEpoch(r, trainData.length);
  const totalSteps = r.steps ?? Math.round(r.epochs! * ipe);
  const evalSteps = evalPoints(r, totalSteps, ipe);
  let lr = lrSchedule(r, totalSteps, ipe);
  let weightDecay = wdSchedule(r, totalSteps);
  const a = r.adapters;
  const o = r.objective;
  const optCfg = optimizerConfig(r);
  const encoder0 = modelEncoder(model);
  const depth = encoder0?.config.depth ?? (model.kind === 'satmae-group' || model.kind === 'satmae-temporal' ? model.model.config.depth : 0);
  if (r.eval.kind === 'probe') {
    const bad = r.eval.probe.nLastBlocks.find((n) => n > depth);
    if (bad !== undefined) throw new RecipeError('recipe.eval.probe.nLastBlocks', `${bad} blocks asked for, the encoder has ${depth}`);
  }

  const parts: RecipeSession['parts'] = { explora: null, exploraMae: null, dino: null, pyra: null, finetune: null, lora: null, optimizer: null };
  let trainable: Map<string, tf.Variable> = new Map();
  let frozen: Map<string, tf.Variable> = new Map();
  let summary: TrainSummary;
  let hooks: VitHooks = {};
  let encoder: Vit | null = encoder0;
  let lossOf: ((batch: unknown, rng: Rng) => tf.Scalar) | null = null;
  let mergedEncoder: (() => Vit) | null = null;
  let evalHooks: () => { vit: Vit; hooks: VitHooks } | null = () => (encoder ? { vit: encoder, hooks } : null);
  let diagnostics = async (): Promise<Record<string, number>> => ({});
  let finetuneEval: ((step: number) => Promise<Record<string, number>>) | null = null;

  const select = (sources: Parameters<typeof selectTrainable>[0], spec: TrainRule[]): void => {
    const sel = selectTrainable(sources, spec);
    trainable = sel.trainable;
    frozen = sel.frozen;
    summary = sel.summary;
  };
  const newOptimizer = (): Optimizer | null => {
    if (trainable.size === 0) return null;
    const opt = new Optimizer(optCfg, trainable, optimizerOptions(r, depth));
    disposers.push(() => opt.dispose());
    return opt;
  };

  if (o.kind === 'dinov2') {
    // D-ExPLoRA (recipes/explora-dino.ts): student + EMA teacher, heads, DINOv2 parameter groups, its own step.
    if (model.kind !== 'vit' || a.kind !== 'explora') throw new Error('unreachable: recipe() checks the DINOv2 objective');
    if (r.schedule.kind !== 'cosine' || r.schedule.warmupStart !== 0) {
      throw new RecipeError('recipe.schedule', 'the DINOv2 objective uses its own schedule: cosine with a linear warm-up from 0 (warmupStart 0)');
    }
    const [baseLr, batchSize] = typeof r.lr === 'number' ? [r.lr, 1024] : [r.lr.base, r.batch];
    const [wd0, wd1] = typeof r.weightDecay === 'number' ? [r.weightDecay, r.weightDecay] : [r.weightDecay.start, r.weightDecay.end];
    const train = dinoTrain({
      baseLr,
      batchSize,
      epochs: Math.max(totalSteps, 1) / ipe,
      itersPerEpoch: ipe,
      warmupEpochs: steps(r.schedule.warmup, ipe) / ipe,
      minLr: r.schedule.minLr,
      weightDecay: wd0,
      weightDecayEnd: wd1,
      layerDecay: r.optimizer.layerDecay,
      patchEmbedLrMult: r.optimizer.patchEmbedLrMult,
      clipGrad: r.clipGrad,
      freezeLastLayerEpochs: o.freezeLastLayerEpochs,
      momentumTeacher: o.teacherMomentum[0],
      finalMomentumTeacher: o.teacherMomentum[1],
      optimizer: optCfg,
      dropPathRate: o.dropPathRate,
    });
    const m = r.model as Extract<Recipe['model'], { kind: 'vit' }>;
    const run = setupExploraDino(model.vit, {
      model: m.preset,
      modelOverrides: m.overrides,
      recipe: exploraRecipe(a.notation, a.overrides as Partial<ExploraRecipe>),
      objective: o.settings,
      train,
    }, { seed: r.seed });
    disposers.push(() => run.dispose());
    parts.dino = run;
    parts.explora = run.explora;
    trainable = run.trainable;
    frozen = run.explora.selection.frozen;
    summary = run.explora.selection.summary;
    hooks = run.student.hooks;
    encoder = run.student.vit;
    lr = run.schedules.lr;
    weightDecay = run.schedules.weightDecay;
    const views = multiCropViews(r.data.train.transform as Extract<Recipe['data']['train']['transform'], { name: 'dino-multicrop' }>, run.config.objective);
    const loader = new Loader(trainData, { batchSize: r.batch, seed: r.seed, views });
    mergedEncoder = () => mergeExploraDinoEncoder(run, 'teacher');
    evalHooks = () => ({ vit: run.teacher.vit, hooks: run.teacher.hooks });
    return session({
      r, model, origin, encoder, hooks, trainable, frozen, summary: summary!, trainData, ipe, totalSteps, lr, weightDecay, evalSteps, parts, source,
      cleanup, mergedEncoder, evalHooks, diagnostics, finetuneEval: null,
      stepOf: () => run.optimizers.main.step,
      batch: async (s) => loader.batchAt(s),
      loss: () => {
        throw new Error('the DINOv2 objective has no separate loss function: step with session.parts.dino.step(views, it) or session.train');
      },
      train: async (from, to, onStep) => {
        const out: StepRow[] = [];
        await trainExploraDino(run, loader, {
          steps: to - from,
          startStep: from,
          onStep: async (mm) => {
            const { gradNorm, skipped, ...rest } = mm;
            const row: StepRow = { ...rest, ...(skipped ? { skipped: 1 } : {}) };
            for (const [k, v] of Object.entries(gradNorm)) if (v !== undefined) row[`gradNorm.${k}`] = v;
            out.push(row);
            if (onStep) await onStep(row);
          },
        });
        return out;
      },
      saveState: (file, meta) => saveAuto(file, exploraDinoCheckpointParts(run, meta)),
      loadState: (file) => {
        const rep = loadExploraDinoCheckpoint(file, run);
        return typeof rep.meta.step === 'number' ? rep.meta.step : 0;
      },
    });
  }

  if (o.kind === 'mae') {
    if (model.kind === 'vit') throw new Error('unreachable: recipe() checks the MAE objective');
    switch (a.kind) {
      case 'explora': {
        plainOptimizer(r, "adapters 'explora' with the MAE objective (setupExploraMae)");
        const rec = exploraRecipe(a.notation, a.overrides as Partial<ExploraRecipe>);
        const ex = {
          blr: typeof r.lr === 'number' ? r.lr : peakLr(r),
          effectiveBatch: 256,
          epochs: Math.max(totalSteps, 1) / ipe,
          warmupEpochs: Math.min(steps(r.schedule.warmup, ipe), Math.max(totalSteps, 1)) / ipe,
          minLr: r.schedule.kind === 'cosine' ? r.schedule.minLr : 0,
          weightDecay: typeof r.weightDecay === 'number' ? r.weightDecay : r.weightDecay.start,
          optimizer: optCfg,
          maskRatio: o.maskRatio,
          normPixLoss: o.normPixLoss,
        };
        const run: ExploraMaeRun<unknown, tf.Tensor4D> | ExploraMaeRun<unknown, TemporalBatch> =
          model.kind === 'mae'
            ? setupExploraMae(model.mae, rec, { seed: r.seed, train: ex })
            : model.kind === 'satmae-group'
              ? setupExploraSatMaeGroup(model.model, rec, { seed: r.seed, train: ex })
              : setupExploraSatMaeTemporal(model.model, rec, { seed: r.seed, train: ex });
        disposers.push(() => run.dispose());
        parts.exploraMae = run as ExploraMaeRun<unknown, tf.Tensor4D>;
        parts.explora = run.explora;
        parts.optimizer = run.optimizer;
        trainable = run.trainable;
        frozen = run.explora.selection.frozen;
        summary = run.explora.selection.summary;
        hooks = run.hooks;
        lossOf = (b, rng) => (run as ExploraMaeRun<unknown, unknown>).loss(b, rng);
        if (model.kind === 'mae') mergedEncoder = () => mergeExploraMaeEncoder(run as ExploraMaeRun<typeof model.mae, tf.Tensor4D>);
        break;
      }
      case 'full': {
        const vars = modelVariables(model);
        select(model.kind === 'mae' ? [model.mae.encoder.params, model.mae.decoder] : [model.model.params], fullSpec(vars));
        parts.optimizer = newOptimizer();
        lossOf =
          model.kind === 'mae'
            ? (b, rng) => maeForward(model.mae, b as tf.Tensor4D, { rng, training: true }).loss
            : model.kind === 'satmae-group'
              ? (b, rng) => satMaeGroupForward(model.model, b as tf.Tensor4D, { rng, training: true }).loss
              : (b, rng) => satMaeTemporalForward(model.model, (b as TemporalBatch).images, (b as TemporalBatch).timestamps, { rng, training: true }).loss;
        break;
      }
      case 'frozen':
        select(model.kind === 'mae' ? [model.mae.encoder.params, model.mae.decoder] : [model.model.params], FROZEN_SPEC);
        break;
      default:
        throw new RecipeError('recipe.adapters.kind', `the MAE objective trains with adapters 'explora', 'full' or 'frozen', got '${a.kind}'`);
    }
    // SatMAE models: evaluated by fine-tuning their downstream classifier (recipes/session-satmae.ts)
    if (model.kind !== 'mae' && r.eval.kind === 'finetune') finetuneEval = satMaeFinetuneEval(r, source, model, () => parts.explora?.lora ?? null);
  } else {
    // supervised classification of a ViT
    if (model.kind !== 'vit') throw new Error('unreachable: recipe() checks the supervised objective');
    const vit = model.vit;
    const ls = o.labelSmoothing;
    const ce = (h: VitHooks) => (b: unknown, rng: Rng): tf.Scalar => {
      const x = b as { images: tf.Tensor4D; labels: tf.Tensor1D };
      return crossEntropy(vitForward(vit, x.images, { hooks: h, training: true, rng }).logits!, x.labels, ls);
    };
    switch (a.kind) {
      case 'full':
        select([vit.params], fullSpec(flattenTree(vit.params)));
        parts.optimizer = newOptimizer();
        lossOf = ce({});
        break;
      case 'frozen':
        select([vit.params], FROZEN_SPEC);
        break;
      case 'pyra': {
        const pm = buildPyraModel(
          vit,
          { method: a.method, backbone: a.backbone, schedule: a.schedule, loraRank: a.loraRank, loraInit: a.loraInit, loraDropout: a.loraDropout, propAttn: a.propAttn, ...(a.variant ? { variant: a.variant } : {}) },
          { seed: r.seed, trainHead: a.trainHead },
        );
        disposers.push(() => pm.dispose());
        parts.pyra = pm;
        trainable = pm.trainable;
        frozen = new Map([...flattenTree(vit.params)].filter(([k]) => !pm.trainable.has(k)));
        summary = pm.summary;
        hooks = pm.hooks;
        parts.optimizer = newOptimizer();
        lossOf = ce(hooks);
        if (a.method === 'pyra') {
          diagnostics = async () => {
            // With cls pooling the last merging block's PYRA parameters cannot reach the loss (only per-token MLPs
            // follow its merge): W_D gets no gradient and stays exactly 0 (LOG.md, ToMe / PYRA).
            const last = pm.schedule.reduce((acc, rr, i) => (rr > 0 ? i : acc), -1);
            const wd = pm.pyra!.params.blocks[last]!.pyra_b; // absent in the W_r-only and other-design variants
            const out: Record<string, number> = {};
            if (!wd) return out;
            const m = tf.tidy(() => tf.max(tf.abs(wd)));
            try {
              out.lastBlockWD = (await readValues(m))[0];
            } finally {
              m.dispose();
            }
            return out;
          };
        }
        break;
      }
      case 'finetune-lora': {
        plainOptimizer(r, "adapters 'finetune-lora'");
        if (vit.config.pool !== 'avg') {
          throw new RecipeError('recipe.model.overrides.pool', `ExPLoRA's fine-tuning protocol mean-pools the patch tokens into fc_norm: set pool 'avg', got '${vit.config.pool}'`);
        }
        const setup = setupFinetune(
          vit,
          {
            ...EXPLORA_FINETUNE,
            rank: a.rank,
            alpha: a.alpha,
            slices: a.slices,
            headInitStd: a.headInitStd,
            dropPath: vit.config.dropPathRate,
            labelSmoothing: ls,
            optimizer: optCfg,
            weightDecay: typeof r.weightDecay === 'number' ? r.weightDecay : r.weightDecay.start,
            layerDecay: r.optimizer.layerDecay,
          },
          { seed: r.seed },
        );
        disposers.push(() => setup.dispose());
        parts.finetune = setup;
        parts.lora = setup.lora;
        trainable = setup.selection.trainable;
        frozen = setup.selection.frozen;
        summary = setup.selection.summary;
        hooks = setup.hooks;
        const opt = setup.optimizer();
        disposers.push(() => opt.dispose());
        parts.optimizer = opt;
        lossOf = (b, rng) => setup.loss(b as { images: tf.Tensor4D; labels: tf.Tensor1D }, rng);
        mergedEncoder = () => ({ ...vit, params: mergeLora(vit.params, setup.lora) });
        break;
      }
      case 'lora': {
        const lora = createLora(vit.params, { rank: a.rank, alpha: a.alpha, dropout: a.dropout, init: a.init, targets: a.targets.map(toLoraTarget) }, { seed: r.seed });
        disposers.push(() => disposeLora(lora));
        parts.lora = lora;
        select([vit.params, lora.params], [
          { match: /(^|\.)lora_[AB]\./, train: true, group: 'LoRA' },
          ...(a.train.length ? [{ match: a.train, train: true, group: `also trained (${a.train.join(', ')})` }] : []),
          FREEZE_REST,
        ]);
        hooks = { linear: loraHooks(lora) };
        parts.optimizer = newOptimizer();
        lossOf = ce(hooks);
        mergedEncoder = () => ({ ...vit, params: mergeLora(vit.params, lora) });
        break;
      }
      case 'explora':
        throw new RecipeError('recipe.adapters.kind', "ExPLoRA adapters train with a self-supervised objective ('mae' or 'dinov2'), not 'supervised'");
      default: {
        const never: never = a;
        throw new Error(`prepareRecipe: unknown adapters ${JSON.stringify(never)}`);
      }
    }
  }

  // The generic path: trainLoop over the trainable set, batches from a seeded loader.
  const optimizer = parts.optimizer;
  const transform = sampleTransform(r.data.train.transform, 'recipe.data.train.transform');
  const loader = new Loader(trainData, { batchSize: r.batch, seed: r.seed, transform });
  const supervised = o.kind === 'supervised';
  const batchAt = async (s: number): Promise<unknown> => {
    const b = await loader.batchAt(s);
    if (supervised) {
      if (!b.labels) {
        disposeBatch(b);
        throw new RecipeError('recipe.data.train', `${trainData.name}: batch ${s} has unlabelled samples; the supervised objective needs labels`);
      }
      return { images: b.images!, labels: b.labels };
    }
    b.labels?.dispose();
    // SatMAE models: band-count / date checks naming the data; temporal batches of frames + timestamps
    if (model.kind === 'satmae-group' || model.kind === 'satmae-temporal') return satMaeInput(model, { ...b, labels: undefined }, trainData.name, 'recipe.data.train');
    return b.images!;
  };
  return session({
    r, model, origin, encoder, hooks, trainable, frozen, summary: summary!, trainData, ipe, totalSteps, lr, weightDecay, evalSteps, parts, source,
    cleanup, mergedEncoder, evalHooks, diagnostics, finetuneEval,
    stepOf: () => optimizer?.step ?? 0,
    batch: batchAt,
    loss: (b, rng) => {
      if (!lossOf) throw new Error(`recipe '${r.name}' trains nothing (adapters '${a.kind}')`);
      return lossOf(b, rng);
    },
    train: async (from, to, onStep) => {
      if (to <= from) return [];
      if (!optimizer || !lossOf) throw new Error(`recipe '${r.name}' trains nothing (adapters '${a.kind}'); cannot run steps ${from}–${to}`);
      const loss = lossOf;
      const out: StepRow[] = [];
      await trainLoop({
        params: trainable,
        optimizer,
        steps: totalSteps,
        startStep: from,
        endStep: to,
        seed: r.seed,
        lr,
        weightDecay,
        clipGradNorm: r.clipGrad,
        batch: batchAt,
        loss: (b, rng) => loss(b, rng),
        onStep: async (info: StepInfo) => {
          const row: StepRow = { ...info.metrics, step: info.step, loss: info.loss, gradNorm: info.gradNorm, lr: info.lr, weightDecay: info.weightDecay, seconds: info.seconds, ...(info.skipped ? { skipped: 1 } : {}) };
          out.push(row);
          if (onStep) await onStep(row);
        },
      });
      return out;
    },
    saveState: (file, meta) => saveAuto(file, { params: trainable, optimizer: optimizer ?? undefined, meta: { ...meta, step: optimizer?.step ?? 0 } }),
    loadState: (file) => {
      const rep = loadCheckpoint(file, { params: trainable, optimizer: optimizer ?? undefined });
      return typeof rep.meta.step === 'number' ? rep.meta.step : 0;
    },
  });
}

interface SessionParts {
  r: Recipe;
  model: BuiltModel;
  origin: WeightsOrigin;
  encoder: Vit | null;
  hooks: VitHooks;
  trainable: Map<string, tf.Variable>;
  frozen: Map<string, tf.Variable>;
  summary: TrainSummary;
  trainData: Dataset;
  ipe: number;
  totalSteps: number;
  lr: Schedule;
  weightDecay: Schedule;
  evalSteps: number[];
  parts: RecipeSession['parts'];
  source: DataSource;
  cleanup: () => void;
  mergedEncoder: (() => Vit) | null;
  evalHooks: () => { vit: Vit; hooks: VitHooks } | null;
  diagnostics: () => Promise<Record<string, number>>;
  /** The 'finetune' evaluation (SatMAE group models), else null. */
  finetuneEval: ((step: number) => Promise<Record<string, number>>) | null;
  stepOf: () => number;
  batch: (step: number) => Promise<unknown>;
  loss: (batch: unknown, rng: Rng) => tf.Scalar;
  train: (from: number, to: number, onStep?: (row: StepRow) => void | Promise<void>) => Promise<StepRow[]>;
  saveState: (file: string, meta: Record<string, unknown>) => Promise<void>;
  loadState: (file: string) => number;
}

function session(p: SessionParts): RecipeSession {
  const { r } = p;
  const evalData = new Map<string, Promise<Dataset>>();
  const dataOf = (key: 'train' | 'val' | 'test', set: SplitSet): Promise<Dataset> => {
    let d = evalData.get(key);
    if (!d) {
      d = splitSetData(p.source, set, r.seed, `recipe.eval.${key}`);
      evalData.set(key, d);
    }
    return d;
  };
  let disposed = false;
  const evalEncoder = (merged = true): EvalEncoder | null => {
    if (merged && p.mergedEncoder) {
      const vit = p.mergedEncoder();
      return { vit, hooks: {}, merged: true, dispose: () => disposeTree(vit.params) };
    }
    const live = p.evalHooks();
    return live ? { vit: live.vit, hooks: live.hooks, merged: false, dispose: () => undefined } : null;
  };
  const s: RecipeSession = {
    recipe: r,
    model: p.model,
    origin: p.origin,
    encoder: p.encoder,
    hooks: p.hooks,
    trainable: p.trainable,
    frozen: p.frozen,
    summary: p.summary,
    trainData: p.trainData,
    itersPerEpoch: p.ipe,
    totalSteps: p.totalSteps,
    lr: p.lr,
    weightDecay: p.weightDecay,
    evalSteps: p.evalSteps,
    parts: p.parts,
    get step() {
      return p.stepOf();
    },
    batch: p.batch,
    loss: p.loss,
    train: async (from, to, onStep) => {
      if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to < from || to > p.totalSteps) {
        throw new Error(`session.train: steps [${from}, ${to}) are outside the run's [0, ${p.totalSteps}]`);
      }
      if (from !== p.stepOf()) throw new Error(`session.train: the session has done ${p.stepOf()} steps; continue from there, not from ${from}`);
      return p.train(from, to, onStep);
    },
    evalEncoder,
    evaluate: async (step, keepEncoder) => {
      const e = r.eval;
      if (e.kind === 'none') return null;
      const t0 = Date.now();
      if (e.kind === 'finetune') {
        if (!p.finetuneEval) return null;
        const row: EvalRow = { step, ...(await p.finetuneEval(step)) };
        row.seconds = (Date.now() - t0) / 1000;
        return row;
      }
      if (e.kind === 'accuracy') {
        const live = p.evalHooks();
        if (!live) return null;
        const ds = await dataOf('test', e.test);
        let correct = 0;
        let seen = 0;
        const spmd = isDataParallel() ? parallelContext() : null; // a data-parallel worker: its rows of every batch
        for await (const b of orderedBatches(ds, e.test, e.batch, 'recipe.eval.test')) {
          try {
            const B = b.labels.shape[0];
            const [r0, r1] = spmd ? shardRange(B, spmd.rank, spmd.size) : [0, B];
            if (r1 > r0) {
              const hits = tf.tidy(() => {
                const x = spmd ? b.images.slice([r0, 0, 0, 0], [r1 - r0, -1, -1, -1]) : b.images; // [rows, H, W, C]
                const pred = tf.argMax(vitForward(live.vit, x, { hooks: live.hooks }).logits!, 1);
                return tf.sum(tf.equal(pred, spmd ? b.labels.slice([r0], [r1 - r0]) : b.labels));
              });
              try {
                correct += (await readValues(hits))[0]; // dataSync where the backend can, else await data() (webgpu)
              } finally {
                hits.dispose();
              }
            }
            seen += B;
          } finally {
            tf.dispose([b.images, b.labels]);
          }
        }
        if (spmd) correct = spmd.collective.allReduce(Float32Array.of(correct))[0]; // counts: exact in fp32 below 2^24
        return { step, testAcc: correct / seen, seconds: (Date.now() - t0) / 1000 };
      }
      if (e.kind === 'segmentation') {
        // a new segmentation head on the encoder's patch tokens, IoU on the test masks (recipes/session-seg.ts)
        const enc = evalEncoder(true);
        if (!enc) return null;
        try {
          const row = await evaluateSegmentation({ vit: enc.vit, hooks: enc.hooks, spec: e, data: dataOf, step, seed: r.seed });
          return { step, ...row, seconds: (Date.now() - t0) / 1000 };
        } finally {
          enc.dispose();
        }
      }
      const enc = evalEncoder(true);
      if (!enc) return null;
      const f: Partial<Record<'train' | 'val' | 'test', FeatureCache>> = {};
      try {
        const nLast = Math.max(...e.probe.nLastBlocks);
        for (const k of ['train', 'val', 'test'] as const) {
          f[k] = await extractFeatures(enc.vit, orderedBatches(await dataOf(k, e[k]), e[k], e.featureBatch, `recipe.eval.${k}`), { nLast, hooks: enc.hooks });
        }
        // synchronous reads where the backend can (wasm / cpu / tensorflow), awaited ones on webgpu: the same numbers
        const sync = syncReads();
        const pcfg = { ...e.probe, seed: r.seed };
        const probe = sync ? linearProbe(f.train!, f.val!, pcfg) : await linearProbeAsync(f.train!, f.val!, pcfg);
        let row: EvalRow;
        try {
          row = { step, probeVal: probe.best.valAcc, probeTest: sync ? probe.accuracy(f.test!) : await probe.accuracyAsync(f.test!), probeBest: probe.best.name };
          if (e.macroF1) {
            // iWildCam's metric (synchronous reads: wasm / cpu / tensorflow)
            const logits = tf.tidy(() => probe.predict(f.test!));
            try {
              row.probeTestMacroF1 = macroF1(f.test!.labels.dataSync(), argmaxRows(logits));
            } finally {
              logits.dispose();
            }
          }
        } finally {
          probe.dispose();
        }
        if (e.knn) {
          const kcfg = { k: Math.min(e.knn.k, f.train!.labels.shape[0]), temperature: e.knn.temperature };
          row.knn = (sync ? knnEvaluate(f.train!, f.test!, kcfg) : await knnEvaluateAsync(f.train!, f.test!, kcfg))[0].top1;
        }
        if (keepEncoder) keepEncoder(enc.vit, row);
        row.seconds = (Date.now() - t0) / 1000;
        return row;
      } finally {
        Object.values(f).forEach((c) => c && disposeFeatures(c));
        enc.dispose();
      }
    },
    probeImages: async (n) => {
      const e = r.eval;
      const set = e.kind === 'none' || e.kind === 'finetune' ? null : e.test;
      let ds: Dataset;
      let transform: SplitSet['transform'];
      if (set) {
        ds = await dataOf('test', set);
        transform = set.transform;
      } else {
        if (r.data.train.transform.name === 'dino-multicrop') return null;
        ds = p.trainData;
        transform = r.data.train.transform;
      }
      const loader = new Loader(ds, { batchSize: Math.min(n, ds.length), shuffle: false, transform: sampleTransform(transform, 'recipe.eval.test.transform'), prefetch: 0 });
      const b = await loader.batchAt(0);
      b.labels?.dispose();
      b.masks?.dispose(); // segmentation splits carry masks
      b.frames?.forEach((f) => f !== b.images && f.dispose()); // temporal samples: the anchor frame is `images`
      return b.images ?? null;
    },
    identityGap: async (x) => {
      if (!p.encoder || !p.hooks.linear) return null;
      return gapOf(lastCls(p.encoder, x, p.hooks), lastCls(p.encoder, x));
    },
    mergeGap: async (x) => {
      if (!p.mergedEncoder) return null;
      const live = p.evalHooks()!;
      const merged = p.mergedEncoder();
      try {
        return await gapOf(lastCls(merged, x), lastCls(live.vit, x, live.hooks));
      } finally {
        disposeTree(merged.params);
      }
    },
    diagnostics: p.diagnostics,
    saveState: p.saveState,
    loadState: p.loadState,
    dispose: () => {
      if (disposed) return;
      disposed = true;
      p.cleanup();
    },
  };
  return s;
}
