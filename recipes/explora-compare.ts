/**
 * Notebook 01's experiment as recipes: ExPLoRA against its ablations and baselines, in miniature (the paper's Tables
 * 2–3 and Fig. 3). From one M-ExPLoRA recipe `exploraComparison` derives the five runs — the source model frozen,
 * ExPLoRA, unfreeze-only (`[L]`, no LoRA), LoRA-only (no unfrozen block) and MAE from scratch on the target with the
 * same step budget — which differ only in what the comparison varies. The rest turns their run results into the
 * notebook's tables, figures and verdicts, with the paper's numbers beside ours.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../lib/rng';
import { vitShapes } from '../lib/peft/shapes';
import { countExplora, exploraRecipe, ExploraRecipe, formatExploraNotation } from '../lib/peft/explora';
import { vitConfig, VitPresetName } from '../lib/vit/config';
import { Mae, maeForward } from '../lib/mae/mae';
import type { RunResult } from './run';
import { randomMasking } from '../lib/mae/masking';
import { maeReconstruction, disposeViews } from '../lib/mae/recon';
import { mergeLora } from '../lib/peft/lora';
import { disposeTree } from '../lib/tree';
import { batchToImages, ImageCell } from '../lib/report/image';
import { lineFigure, PlotlyFigure } from '../lib/report/plot';
import { IMAGENET_STATS } from '../data-loaders/transforms';
import { LrSpec, Length, Recipe, recipe } from './recipe';
import type { RecipeSession } from './session';
import { decodeImages, firstOfEachClass, openSource, splitSetData, withSubset } from './data';
import { Dataset, Loader } from '../data-loaders/dataset';
import { mergeExploraMaeEncoder } from './explora-mae';
import { DINOV2_PROBE, RECIPES, probeEval } from './presets';
import { assetFile, assetProblem } from './model';
import { runRecipe, RunOptions } from './run';
import { sourceMaeRecipe, SOURCE_MAE_FORMAT, SOURCE_MAE_MODEL } from './source-mae';
import { WORKSTATION_M_EXPLORA } from './workstation-presets';
import { saveCheckpoint } from '../lib/io/checkpoint';
import { readSafetensors } from '../lib/io/safetensors';
import { maeVariables } from '../lib/mae/mae';
import * as path from 'path';

/** The five runs of the comparison. */
export interface ExploraComparison {
  /** The source model, frozen (evaluated once: ExPLoRA's step 0). */
  source: Recipe;
  explora: Recipe;
  /** `[L]` without LoRA (the paper's "unfreeze [L], no LoRA" row). */
  unfreeze: Recipe;
  /** LoRA on every block, no unfrozen block. */
  lora: Recipe;
  /** A fresh MAE of the same size, every parameter trained with MAE's own recipe, same data, steps and batch. */
  scratch: Recipe;
}

/**
 * Derive the comparison from an M-ExPLoRA recipe: only the adapters change for the ablations (same decoder side,
 * data, steps, optimiser, schedule, evaluation; evaluated after the last step); the scratch run starts from a fresh
 * initialisation and trains everything with `scratch`'s lr, weight decay and warm-up; the frozen source is evaluated
 * once. Run names are `<prefix>-<method>`.
 */
export function exploraComparison(explora: Recipe, o: { prefix: string; scratch: { lr: LrSpec; weightDecay: number; warmup: Length } }): ExploraComparison {
  const r = recipe(explora);
  if (r.adapters.kind !== 'explora') throw new Error(`exploraComparison: the recipe's adapters are '${r.adapters.kind}', expected 'explora'`);
  const a = r.adapters;
  const rec = exploraRecipe(a.notation, a.overrides as Partial<ExploraRecipe>);
  const notation = (x: Pick<ExploraRecipe, 'family' | 'unfrozen' | 'rank'>): string => formatExploraNotation(x);
  const finalOnly = r.eval.kind === 'none' ? r.eval : { ...r.eval, at: { steps: [] } };
  return {
    source: recipe({ ...r, name: `${o.prefix}-source`, adapters: { kind: 'frozen' }, steps: 0, epochs: null, eval: finalOnly }),
    explora: recipe({ ...r, name: `${o.prefix}-explora` }),
    unfreeze: recipe({ ...r, name: `${o.prefix}-unfreeze`, adapters: { ...a, notation: notation({ ...rec, rank: null }) }, eval: finalOnly }),
    lora: recipe({ ...r, name: `${o.prefix}-lora`, adapters: { ...a, notation: notation({ ...rec, unfrozen: [] }) }, eval: finalOnly }),
    scratch: recipe({
      ...r,
      name: `${o.prefix}-scratch`,
      weights: { kind: 'init' },
      adapters: { kind: 'full' },
      lr: o.scratch.lr,
      weightDecay: o.scratch.weightDecay,
      schedule: { ...r.schedule, warmup: o.scratch.warmup },
    }),
  };
}

/**
 * Notebook 01 at the paper's scale (ExPLoRA `scripts/pretrain_mae.sh`, `scripts/linprobe.sh`): M-ExPLoRA-[L]-r64 with
 * decoder r8 on MAE ViT-L/16 at 224 px from `mae_visualize_vit_large` (expected converted at
 * `notebooks/assets/mae_visualize_vit_large.safetensors`), blr 4.5e-4 × 1024/256, 400 epochs, evaluated after 0,
 * 100, 200 and 400 epochs with the DINOv2 probe (10 × 1500 iterations), on the embedded satellite domain at 224 px;
 * from scratch with MAE's own recipe (blr 1.5e-4, wd 0.05, 40 warm-up epochs). A GPU job.
 */
export function exploraPaperScale(): { explora: Recipe; scratch: { lr: LrSpec; weightDecay: number; warmup: Length } } {
  const m = RECIPES.m_explora_l_r64;
  const small = RECIPES.m_explora_small;
  return {
    explora: recipe({
      ...m,
      name: 'nb01-explora',
      weights: { kind: 'checkpoint', path: 'assets/mae_visualize_vit_large.safetensors', head: 'keep', stripPrefixes: [], ignore: null, allowMissing: null },
      data: { source: { ...small.data.source, size: 224, satellitePerClass: 2000 }, train: { ...small.data.train, transform: { name: 'mae-pretrain', size: 224, stats: 'imagenet' } } },
      eval: probeEval({ name: 'normalize', stats: 'imagenet' }, { train: 'train', val: 'val', test: 'test' }, DINOV2_PROBE, { epochs: [0, 100, 200, 400] }),
    }),
    scratch: { lr: { base: 1.5e-4, scale: 'linear-256' }, weightDecay: 0.05, warmup: { epochs: 40 } },
  };
}

/** Rows "what trains" of the comparison: ours (counted from shapes) and the paper's ViT-L/16, with formula checks. */
export function exploraCountRows(c: ExploraComparison, paper: VitPresetName = 'mae_vit_large_patch16'): { rows: Array<Record<string, unknown>>; check: string } {
  const m = c.explora.model;
  if (m.kind !== 'mae') throw new Error('exploraCountRows: an MAE comparison');
  const cfg = vitConfig(m.preset, m.encoder);
  const ours = vitShapes(m.preset, m.encoder);
  const vitL = vitShapes(paper);
  const total = (s: Map<string, { shape: readonly number[] }>, skip?: string): number =>
    [...s].filter(([k]) => k !== skip).reduce((n, [, v]) => n + v.shape.reduce((x, y) => x * y, 1), 0);
  const rows: Array<Record<string, unknown>> = [];
  const rank = exploraRecipe((c.explora.adapters as { notation: string }).notation).rank ?? 0;
  const paperNotation: Record<'explora' | 'unfreeze' | 'lora', string> = { explora: 'M-ExPLoRA-[L]-r64', unfreeze: 'M-ExPLoRA-[L]', lora: 'M-ExPLoRA-[]-r64' };
  const D = cfg.embedDim;
  const L = cfg.depth;
  // block = 12D² + 13D; LoRA Q,V = 4rD per block; norms 4D per block + 2D; CLS D
  const formula = {
    explora: 12 * D * D + 13 * D + (L - 1) * (4 * rank * D + 4 * D) + 2 * D + D,
    unfreeze: 12 * D * D + 13 * D + (L - 1) * 4 * D + 2 * D + D,
    lora: L * (4 * rank * D + 4 * D) + 2 * D + D,
  };
  for (const k of ['explora', 'unfreeze', 'lora'] as const) {
    const a = c[k].adapters as { notation: string; overrides: Partial<ExploraRecipe> };
    const rec = exploraRecipe(a.notation, a.overrides);
    const o = countExplora(ours, rec);
    const p = countExplora(vitL, paperNotation[k]);
    if (o.trainableEncoder !== formula[k]) throw new Error(`${a.notation}: counted ${o.trainableEncoder} trainable encoder parameters, the formula gives ${formula[k]}`);
    rows.push({
      method: k, ours: formatExploraNotation(rec), 'trainable (ours)': o.trainableEncoder, '% encoder (ours)': o.pctEncoder,
      'paper (ViT-L/16)': paperNotation[k], 'trainable (ViT-L/16)': p.trainableEncoder, '% encoder (ViT-L/16)': p.pctEncoder,
    });
  }
  // From scratch everything trains except the fixed sin-cos position table.
  rows.push({
    method: 'scratch', ours: 'full MAE', 'trainable (ours)': total(ours, 'pos_embed'), '% encoder (ours)': (100 * total(ours, 'pos_embed')) / total(ours),
    'paper (ViT-L/16)': 'full pre-training', 'trainable (ViT-L/16)': total(vitL, 'pos_embed'), '% encoder (ViT-L/16)': (100 * total(vitL, 'pos_embed')) / total(vitL),
  });
  const paperL = rows[0]['trainable (ViT-L/16)'] as number;
  if (paper === 'mae_vit_large_patch16' && (total(vitL) !== 303_301_632 || paperL !== 18_722_816)) {
    throw new Error(`ViT-L/16: ${total(vitL)} encoder parameters and M-ExPLoRA-[L]-r64 ${paperL}; the paper's are 303,301,632 and 18,722,816`);
  }
  const pct = (rows[0]['% encoder (ViT-L/16)'] as number).toFixed(2);
  return {
    rows,
    check: `counts check: ours = formula for all three recipes; ViT-L/16 M-ExPLoRA-[L]-r64 = ${paperL.toLocaleString('en')} (${pct} % of ${total(vitL).toLocaleString('en')})`,
  };
}

/** The paper's fMoW-RGB linear-probing table (ExPLoRA project page, Table 1). */
export const EXPLORA_PAPER_LINEAR_PROBE = [
  { method: 'SatMAE', backbone: 'ViT-L', 'pre-train params': '303M', 'LP top-1': 65.94 },
  { method: 'ScaleMAE', backbone: 'ViT-B', 'pre-train params': '86M', 'LP top-1': 67.3 },
  { method: 'CrossScaleMAE', backbone: 'ViT-B', 'pre-train params': '86M', 'LP top-1': 69.2 },
  { method: 'DinoV2', backbone: 'ViT-L', 'pre-train params': '-', 'LP top-1': 69.0 },
  { method: 'ExPLoRA', backbone: 'ViT-B', 'pre-train params': '9M', 'LP top-1': 75.11 },
  { method: 'ExPLoRA', backbone: 'ViT-L', 'pre-train params': '18M', 'LP top-1': 77.48 },
] as const;

/** The MAE of an M-ExPLoRA session with every adapter merged (encoder and decoder): what ExPLoRA hands on. */
export function mergedMae(s: RecipeSession): Mae {
  const run = s.parts.exploraMae;
  if (!run || s.model.kind !== 'mae') throw new Error('mergedMae: an M-ExPLoRA session');
  const mae = s.model.mae;
  const encoder = mergeExploraMaeEncoder(run as Parameters<typeof mergeExploraMaeEncoder>[0]);
  const decoder = run.explora.lora ? mergeLora(mae.decoder, run.explora.lora, { allowMissing: true }) : mergeLora(mae.decoder, [], { allowMissing: true });
  return { ...mae, encoder, decoder };
}

/** Free a `mergedMae` copy. */
export function disposeMergedMae(m: Mae): void {
  disposeTree(m.encoder.params);
  disposeTree(m.decoder);
}

/**
 * MAE reconstructions of one test image per class through several models with the same masks: image-table rows
 * (input, masked, each model's reconstruction with the visible patches pasted back, captioned with its masked-patch
 * loss) and the mean loss per model.
 */
export async function reconstructionRows(
  c: ExploraComparison,
  models: ReadonlyArray<readonly [string, Mae]>,
  o: { images: number },
): Promise<{ rows: ImageCell[][]; header: string[]; meanLoss: Record<string, number>; n: number }> {
  const e = c.explora.eval;
  if (e.kind !== 'probe') throw new Error('reconstructionRows: the comparison evaluates with the probe');
  const ds = await splitSetData(openSource(c.explora.data.source), e.test, c.explora.seed, 'recipe.eval.test');
  const { x, y } = await decodeImages(ds, e.test.transform, firstOfEachClass(ds, o.images));
  y?.dispose();
  try {
    const cfg = models[0][1].config.encoder;
    const grid = (cfg.imgSize as number) / cfg.patchSize;
    const plan = randomMasking(Rng.derive(c.explora.seed, 'recon'), x.shape[0], grid * grid, models[0][1].config.maskRatio);
    const toImgs = (t: tf.Tensor4D) => batchToImages(t, { mean: IMAGENET_STATS.mean, std: IMAGENET_STATS.std });
    const views = models.map(([, m]) => maeReconstruction(m, x, { plan }));
    const N = plan.numTokens;
    const lossOf = (mae: Mae, i: number): number =>
      tf.tidy(() => {
        const one = x.slice(i, 1) as tf.Tensor4D;
        const p = { ...plan, batch: 1, idsShuffle: plan.idsShuffle.slice(i * N, (i + 1) * N), idsRestore: plan.idsRestore.slice(i * N, (i + 1) * N), mask: plan.mask.slice(i * N, (i + 1) * N) };
        return maeForward(mae, one, { plan: p }).loss.dataSync()[0];
      });
    const inp = toImgs(views[0].input);
    const masked = toImgs(views[0].masked);
    const recs = views.map((v) => toImgs(v.pasted));
    views.forEach(disposeViews);
    const sums: Record<string, number> = Object.fromEntries(models.map(([k]) => [k, 0]));
    const rows = inp.map((im, i) => [
      { image: im, caption: 'input' },
      { image: masked[i], caption: `masked ${Math.round(100 * models[0][1].config.maskRatio)} %` },
      ...models.map(([label, m], j) => {
        const l = lossOf(m, i);
        sums[label] += l;
        return { image: recs[j][i], caption: `${label} ${l.toFixed(3)}` };
      }),
    ]);
    const meanLoss = Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / inp.length]));
    return { rows, header: ['input', 'masked', ...models.map(([k]) => k)], meanLoss, n: inp.length };
  } finally {
    x.dispose();
  }
}

/** The images of the comparison: source pre-training (natural), target pre-training (unlabelled) and the probe splits. */
export async function exploraDataRows(c: ExploraComparison): Promise<{ rows: Array<{ split: string; images: number }>; pretrain: number; test: number; size: number | null }> {
  const r = c.explora;
  const e = r.eval;
  if (e.kind !== 'probe') throw new Error('exploraDataRows: the comparison evaluates with the probe');
  const src = openSource(r.data.source);
  const natural = r.data.source.kind === 'embedded' ? await openSource({ ...r.data.source, domain: 'natural' }).split('train', 'natural') : null;
  const n = async (set: typeof e.train, at: string): Promise<number> => (await splitSetData(src, set, r.seed, at)).length;
  const pretrain = await n(r.data.train, 'recipe.data.train');
  const test = await n(e.test, 'recipe.eval.test');
  return {
    rows: [
      ...(natural ? [{ split: 'natural train (source pre-training)', images: natural.length }] : []),
      { split: 'target train (extended pre-training, unlabelled)', images: pretrain },
      { split: 'target train (probe / kNN train)', images: await n(e.train, 'recipe.eval.train') },
      { split: 'target val (probe selection)', images: await n(e.val, 'recipe.eval.val') },
      { split: 'target test (reported)', images: test },
    ],
    pretrain,
    test,
    size: r.data.source.kind === 'embedded' ? r.data.source.size : null,
  };
}

/** `n` training images of the source (natural) domain above `n` of the target domain, as loaded (seeded, raw pixels). */
export async function domainShiftImages(c: ExploraComparison, n = 10): Promise<tf.Tensor4D> {
  const s = c.explora.data.source;
  if (s.kind !== 'embedded') throw new Error('domainShiftImages: the embedded domains');
  const first = async (ds: Dataset): Promise<tf.Tensor4D> => {
    const b = await new Loader(ds, { batchSize: n, seed: 1 }).batchAt(0);
    b.labels?.dispose();
    return b.images!;
  };
  const a = await first(await openSource({ ...s, domain: 'natural' }).split('train', 'natural'));
  const b = await first(await openSource(s).split('train', 'target'));
  const out = tf.concat([a, b]) as tf.Tensor4D;
  tf.dispose([a, b]);
  return out;
}

/** The MAE of a session (for reconstructions). */
export function sessionMae(s: RecipeSession): Mae {
  if (s.model.kind !== 'mae') throw new Error(`sessionMae: the session's model is a '${s.model.kind}'`);
  return s.model.mae;
}

/** Where the comparison's source model comes from, what it records, and its pre-training loss curve. */
export interface SourceModel {
  weights: Recipe['weights'];
  info: Record<string, unknown>;
  curve: { x: number[]; y: number[] };
}

/**
 * The source MAE of the comparison: the kit asset named by the ExPLoRA recipe when it exists and records this model,
 * else pre-trained here with `sourceMaeRecipe(fallbackSteps)` (a recipe run of its own; its model is saved in that run
 * folder and the comparison loads it from there).
 */
export async function sourceMae(c: ExploraComparison, o: { fallbackSteps: number; prefix: string; root?: string; progress?: RunOptions['progress'] }): Promise<SourceModel> {
  const w = c.explora.weights;
  if (w.kind !== 'asset') return { weights: w, info: { weights: w.kind, file: w.kind === 'init' ? null : w.path }, curve: { x: [], y: [] } };
  const file = assetFile(w.name);
  const why = assetProblem(c.source);
  if (!why) {
    const meta = JSON.parse(readSafetensors(file).metadata.vitpeft ?? '{}') as Record<string, any>;
    const every = meta.train?.logEvery ?? 1;
    const curve = (meta.lossCurve ?? []) as number[];
    return {
      weights: w,
      info: {
        file: `notebooks/assets/${w.name}.safetensors`, steps: meta.steps, seed: meta.seed, 'final loss': meta.finalLoss, 'kNN natural val (sanity)': meta.knnNaturalVal,
        backend: JSON.stringify(meta.backend), created: meta.created, 'pre-training seconds': meta.seconds,
      },
      curve: { x: curve.map((_, i) => Math.min((i + 1) * every, meta.steps)), y: curve },
    };
  }
  if (o.fallbackSteps <= 0) {
    throw new Error(`the source MAE cannot be used (${why}) and this scale trains none here: make the asset with its tool (notebooks/assets/README.md; the workstation scale's: 'npx tsx tools/make-source-mae.ts --spec workstation')`);
  }
  const fb = { ...sourceMaeRecipe(o.fallbackSteps, c.explora.seed), name: `${o.prefix}-source-mae` };
  const run = await runRecipe(fb, { root: o.root, progress: o.progress, keep: true });
  try {
    const s = run.session!;
    if (s.model.kind !== 'mae') throw new Error('sourceMae: the fallback recipe builds an MAE');
    const out = path.join(run.dir, 'checkpoints', 'source-mae.safetensors');
    saveCheckpoint(out, { params: maeVariables(s.model.mae), meta: { kind: SOURCE_MAE_FORMAT, model: SOURCE_MAE_MODEL, steps: o.fallbackSteps, seed: fb.seed } });
    return {
      weights: { kind: 'checkpoint', path: out, head: 'keep', stripPrefixes: [], ignore: null, allowMissing: null },
      info: { trained: 'here (the asset is missing or records another model)', why, steps: o.fallbackSteps, 'final loss': run.summary.finalLoss, run: run.dir },
      curve: { x: run.steps.map((r) => r.step + 1), y: run.steps.map((r) => r.loss) },
    };
  } finally {
    run.session?.dispose();
  }
}

/** The comparison with its ExPLoRA-side runs (all but scratch) starting from `weights`. */
export function withSourceWeights(c: ExploraComparison, weights: Recipe['weights']): ExploraComparison {
  return { ...c, source: { ...c.source, weights }, explora: { ...c.explora, weights }, unfreeze: { ...c.unfreeze, weights }, lora: { ...c.lora, weights } };
}

/** One scale of notebook 01: the M-ExPLoRA recipe, the from-scratch settings and the notebook's sizes. */
export interface ExploraNotebookScale {
  explora: Recipe;
  scratch: { lr: LrSpec; weightDecay: number; warmup: Length };
  /** Pre-training steps of the source MAE, used only if the committed source checkpoint is missing or records another model (0: none, stop). */
  sourceFallbackSteps: number;
  reconImages: number;
}

/**
 * Notebook 01's scales as plain data (spread and tweak one in the notebook). `smoke`: the walkthrough's
 * M-ExPLoRA-[L]-r8 (r/D = 8/96 ≈ the paper's 64/1024) on the kit's source MAE, 4 epochs (36 steps) of the 600 satellite
 * images at batch 64, probe + kNN at the end only (the frozen source's run is its step 0; the 12-epoch
 * `RECIPES.m_explora_small` with evaluations after 0, 4 and 12 epochs cost ≈ 1.5 CPU-min more, and the science of
 * notebook 01 is its multi-seed comparison, not this run); from scratch with MAE's own recipe (everything trains, wd 0.05), same steps and batch. `ci`: the same
 * on 64 images, one epoch. `workstation`: a 16-core CPU or one GPU, about an hour (not measured here):
 * `WORKSTATION_M_EXPLORA` (M-ExPLoRA-[L]-r24 on the ViT-S source MAE, 64 px, 3,000 target images, 600 steps of 64,
 * probes after 0, 150, 300 and 600 steps), no fallback source (the asset is made by `tools/make-source-mae.ts --spec
 * workstation`). `paper`: the ViT-L/16 recipe (`exploraPaperScale`), a GPU job.
 */
export function exploraNotebookScales(): Record<'ci' | 'smoke' | 'workstation' | 'paper', ExploraNotebookScale> {
  const SMOKE = RECIPES.m_explora_small;
  const scratch = { lr: { base: 6e-3, scale: 'linear-256' as const }, weightDecay: 0.05, warmup: { epochs: 1 } };
  return {
    smoke: { explora: { ...SMOKE, epochs: 4, eval: { ...SMOKE.eval, at: { epochs: [4] } } } as Recipe, scratch, sourceFallbackSteps: 1200, reconImages: 6 },
    ci: {
      explora: {
        ...SMOKE, batch: 16, epochs: 1, schedule: { ...SMOKE.schedule, warmup: { epochs: 0.25 } },
        data: { ...SMOKE.data, train: withSubset(SMOKE.data.train, 64, { key: 'pretrain', sorted: true }) },
        eval: {
          ...SMOKE.eval, at: { epochs: [0, 1] }, probe: { ...SMOKE.eval.probe, epochs: 2, itersPerEpoch: 5, batchSize: 50 },
          train: withSubset(SMOKE.eval.train, 60, { key: 'probe-train', sorted: true }),
          val: withSubset(SMOKE.eval.val, 30, { key: 'probe-val', sorted: true }),
          test: withSubset(SMOKE.eval.test, 30, { key: 'probe-test', sorted: true }),
        },
      } as Recipe,
      scratch, sourceFallbackSteps: 20, reconImages: 2,
    },
    workstation: { explora: WORKSTATION_M_EXPLORA, scratch, sourceFallbackSteps: 0, reconImages: 8 },
    paper: { ...exploraPaperScale(), sourceFallbackSteps: 0, reconImages: 8 },
  };
}
