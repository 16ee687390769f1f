/**
 * Notebook 07's experiment as recipes: M-ExPLoRA on the SatMAE temporal model (fMoW-temporal: every sample is a site
 * seen at three dates — the anchor image and two other images of the same location — each frame patch-embedded by the
 * shared RGB patch embedding, each token coded by [2-D position ‖ year ‖ month ‖ hour]), then ExPLoRA's LoRA
 * fine-tuning of the temporal classifier.
 *
 * One recipe per seed: the temporal MAE is built from notebook 01's source MAE (the RGB patch embedding, blocks and
 * decoder fit; the position tables are narrower by the time codes and stay the model's fixed sin-cos), trained with
 * M-ExPLoRA-[L] (the reference notes give r32 for the temporal run, UNCONFIRMED; rank scaled to the width) on the
 * embedded multi-date sites, and evaluated by LoRA fine-tuning of the downstream temporal classifier at step 0 (the
 * source: RGB blocks that never saw time codes, LoRA B = 0) and after the last step — a paired difference per seed.
 *
 * Paper numbers: ExPLoRA's fMoW-temporal table was not retrieved (unknown here); the SatMAE README's temporal ViT-L
 * fine-tuning result (79.99 % top-1, full pre-training) is shown as the reference point.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'fs';
import * as path from 'path';
import type { RunResult, RunOptions } from './run';
import { runRecipe } from './run';
import { Recipe, SourceSpec, SplitSet, FinetuneTaskSpec, recipe, RECIPE_FORMAT } from './recipe';
import { BEYOND_RGB_SMOKE } from './beyondrgb-smoke';
import { SOURCE_MAE_ASSET, SOURCE_MAE_MODEL } from './source-mae';
import { assetFile } from './model';
import { openSource, sampleTransform } from './data';
import { ClaimRecord, claimFromPairs } from '../lib/report/claims';
import { tInterval } from '../lib/report/stats';
import type { PlotlyFigure } from '../lib/report/plot';
import { titleLayout } from '../lib/report/plot';
import { Loader } from '../data-loaders/dataset';

export type TemporalScale = 'ci' | 'smoke' | 'paper';

/** Where the real data and weights live (the `paper` scale; relative to the notebook folder). */
export interface TemporalPaths {
  /** fMoW-RGB CSVs with timestamps (SatMAE's `train_62classes.csv` / `val_62classes.csv`), images under their folder. */
  fmowTrain: string;
  fmowVal: string;
  /** MAE ViT-L/16 (`mae_visualize_vit_large`, converted to safetensors). */
  maeVitLarge: string;
}

export const TEMPORAL_DEFAULT_PATHS: TemporalPaths = {
  fmowTrain: 'data/fmow/train_62classes.csv',
  fmowVal: 'data/fmow/val_62classes.csv',
  maeVitLarge: 'assets/mae_visualize_vit_large.safetensors',
};

/** Throw, naming every missing file, when the `paper` scale's data or weights are absent. */
export function checkTemporalPaths(p: TemporalPaths, baseDir: string = process.cwd()): void {
  const missing = Object.entries(p).filter(([, f]) => !existsSync(path.resolve(baseDir, f)));
  if (missing.length) throw new Error(`scale 'paper' needs ${missing.map(([k, f]) => `${k} = ${f}`).join(', ')} (fMoW-RGB CSVs with timestamps + images, MAE ViT-L/16 as safetensors); a GPU job`);
}

/** Reference numbers: SatMAE's temporal ViT-L fine-tuning (README); ExPLoRA's temporal table not retrieved. */
export const TEMPORAL_PAPER = Object.freeze({ satmaeTemporalTop1: 79.99, explora: null });

export interface TemporalSettings {
  scale: TemporalScale;
  seeds: number[];
  recipe: Recipe;
  description: string;
}

const T = BEYOND_RGB_SMOKE.temporal;
const split = (transform: SplitSet['transform'], name: string): SplitSet => ({ splits: [{ split: name, subset: null }], transform });

/** The smoke recipe: temporal MAE D 96 × 6 from the source MAE, 3 frames of 16 px (3 × 16 tokens), M-ExPLoRA-[L]-r4. */
export function temporalSmokeRecipe(): Recipe {
  const b = SOURCE_MAE_MODEL;
  const sites: SourceSpec = { kind: 'embedded', domain: 'sites-temporal', seed: 0, size: 32, satellitePerClass: 100, naturalPerClass: 100, count: null };
  const tr = { name: 'fmow-temporal', size: T.imgSize } as const;
  const ft: FinetuneTaskSpec = {
    name: 'sites',
    source: null,
    train: split(tr, 'train'),
    test: split(tr, 'test'),
    numClasses: 62,
    rank: T.finetune.rank,
    alpha: 1,
    steps: T.finetune.steps,
    batch: T.finetune.batch,
    lr: T.finetune.lr,
    warmupSteps: Math.round(T.finetune.steps / 10),
    minLr: 0,
    labelSmoothing: T.finetune.labelSmoothing,
    dropPath: T.finetune.dropPath,
    headInitStd: 2e-5,
    evalBatch: 100,
  };
  return recipe({
    format: RECIPE_FORMAT,
    name: 'nb07-temporal-explora',
    description: 'M-ExPLoRA-[L]-r4 on the SatMAE temporal model from the kit source MAE, embedded multi-date sites, 3 × 16 px (notebook 07, smoke scale)',
    tags: { experiment: 'nb07', scale: 'smoke' },
    seed: 0,
    model: {
      kind: 'satmae-temporal',
      preset: 'satmae_temporal_vit_base_patch16',
      overrides: {
        imgSize: T.imgSize, patchSize: b.encoder.patchSize, embedDim: b.encoder.embedDim, depth: b.encoder.depth, numHeads: b.encoder.numHeads,
        timeEmbedDim: T.timeEmbedDim, decoderTimeEmbedDim: T.decoderTimeEmbedDim, decoder: { ...b.decoder },
      },
    },
    // the RGB MAE's position tables do not fit (narrower by the time codes): the model keeps its fixed sin-cos
    weights: { kind: 'checkpoint', path: assetFile(SOURCE_MAE_ASSET), head: 'keep', stripPrefixes: [], ignore: '^(pos_embed|decoder_pos_embed)$', allowMissing: '^(pos_embed|decoder_pos_embed)$' },
    adapters: { kind: 'explora', notation: 'M-ExPLoRA-[L]-r4', overrides: { decoderRank: 4 } },
    objective: { kind: 'mae', maskRatio: 0.75, normPixLoss: true },
    data: { source: sites, train: split(tr, 'train') },
    batch: T.explora.batch,
    steps: T.explora.steps,
    epochs: null,
    epochLength: null,
    optimizer: { kind: 'adamw', betas: [0.9, 0.95], eps: 1e-8, layerDecay: 1, patchEmbedLrMult: 1 },
    lr: { base: T.explora.blr, scale: 'linear-256' },
    schedule: { kind: 'cosine', warmup: { steps: Math.round(T.explora.steps / 10) }, minLr: 0, warmupStart: 0 },
    weightDecay: 0,
    clipGrad: 0,
    eval: { kind: 'finetune', at: { steps: [0] }, tasks: [ft] },
    checkpointEvery: 0,
  });
}

/** The `ci` scale: 5 sites per class, 3 steps of 16, fine-tuning 3 steps of 16. */
export function temporalCiRecipe(): Recipe {
  const s = temporalSmokeRecipe();
  const e = s.eval as Extract<Recipe['eval'], { kind: 'finetune' }>;
  return recipe({
    ...s,
    description: s.description.replace('smoke scale', 'ci scale: 5 sites per class, 3 steps of 16, fine-tuning 3 steps of 16'),
    tags: { ...s.tags, scale: 'ci' },
    data: { ...s.data, source: { ...(s.data.source as Extract<SourceSpec, { kind: 'embedded' }>), count: 5 } },
    batch: 16,
    steps: 3,
    schedule: { kind: 'cosine', warmup: { steps: 1 }, minLr: 0, warmupStart: 0 },
    eval: { ...e, tasks: [{ ...e.tasks[0], steps: 3, batch: 16, warmupSteps: 1 }] },
  });
}

/**
 * The paper scale (a GPU job, not run here): M-ExPLoRA-[L]-r32 on the temporal ViT-L/16 at 224 px from MAE ViT-L/16 on
 * fMoW-temporal triplets, LoRA-r8 fine-tuning (lr 5e-4 at batch 128, drop-path 0.2). The temporal script is not
 * published: unfrozen set, rank and step counts are UNCONFIRMED.
 */
export function temporalPaperRecipe(p: TemporalPaths = TEMPORAL_DEFAULT_PATHS): Recipe {
  const s = temporalSmokeRecipe();
  const e = s.eval as Extract<Recipe['eval'], { kind: 'finetune' }>;
  const tr = { name: 'fmow-temporal', size: 224 } as const;
  return recipe({
    ...s,
    description: 'M-ExPLoRA-[L]-r32 on the SatMAE temporal ViT-L/16 from mae_visualize_vit_large, fMoW-temporal 3 × 224 px, LoRA-r8 fine-tuning (notebook 07, paper scale; a GPU job, settings UNCONFIRMED)',
    tags: { experiment: 'nb07', scale: 'paper' },
    seed: 42,
    model: { kind: 'satmae-temporal', preset: 'satmae_temporal_vit_large_patch16', overrides: {} },
    weights: { ...(s.weights as Extract<Recipe['weights'], { kind: 'checkpoint' }>), path: p.maeVitLarge },
    adapters: { kind: 'explora', notation: 'M-ExPLoRA-[L]-r32', overrides: { decoderRank: 32 } },
    data: { source: { kind: 'fmow-temporal', csv: { train: p.fmowTrain, test: p.fmowVal } }, train: split(tr, 'train') },
    batch: 1024,
    steps: 50000,
    lr: { base: 1e-3, scale: 'linear-256' },
    schedule: { kind: 'cosine', warmup: { steps: 2500 }, minLr: 0, warmupStart: 0 },
    eval: { ...e, tasks: [{ ...e.tasks[0], train: split(tr, 'train'), test: split(tr, 'test'), rank: 8, dropPath: 0.2, steps: 20000, batch: 128, lr: 5e-4, warmupSteps: 1000, minLr: 1e-6 }] },
  });
}

export function temporalSettings(scale: TemporalScale, paths: TemporalPaths = TEMPORAL_DEFAULT_PATHS): TemporalSettings {
  const r = scale === 'ci' ? temporalCiRecipe() : scale === 'smoke' ? temporalSmokeRecipe() : temporalPaperRecipe(paths);
  const e = r.eval as Extract<Recipe['eval'], { kind: 'finetune' }>;
  const description =
    scale === 'paper'
      ? 'paper: SatMAE temporal ViT-L/16 from MAE ViT-L/16, M-ExPLoRA-[L]-r32, 3 × 224 px, fMoW-temporal'
      : `${scale}: temporal MAE D96×6 from the kit source MAE, M-ExPLoRA-[L]-r4, 3 frames × 16 px, ${r.steps} steps of ${r.batch}, LoRA-r4 fine-tuning ${e.tasks[0].steps} steps of ${e.tasks[0].batch}, embedded multi-date sites`;
  return { scale, seeds: [...BEYOND_RGB_SMOKE.seeds], recipe: r, description };
}

/** Splits of the recipe's source: samples (sites × dates as anchors), classes, frames per sample, the dates of the first. */
export async function temporalDataRows(r: Recipe): Promise<Array<Record<string, string | number>>> {
  const src = openSource(r.data.source);
  const rows: Array<Record<string, string | number>> = [];
  for (const name of src.splits ?? []) {
    const ds = await src.split(name, 'data');
    const labels = new Set<number>();
    for (let i = 0; i < ds.length; i++) {
      const l = ds.info(i).label;
      if (typeof l === 'number') labels.add(l);
    }
    const first = await ds.get(0);
    const ts = (first.meta as { timestamps?: number[][] } | undefined)?.timestamps ?? [];
    rows.push({ split: name, samples: ds.length, classes: labels.size, frames: first.frames?.length ?? 0, 'first sample [year−2002, month−1, hour]': ts.map((t) => `[${t.join(', ')}]`).join(' ') });
  }
  return rows;
}

/** The first `n` training samples' frames, transformed and de-normalised to [0, 1]: [n·T, H, W, 3], one row per sample. */
export async function temporalFrames(r: Recipe, n = 6): Promise<tf.Tensor4D> {
  const ds = await openSource(r.data.source).split('train', 'data');
  const b = await new Loader(ds, { batchSize: n, seed: 1, transform: sampleTransform(r.data.train.transform, 'transform') }).batchAt(0);
  b.labels?.dispose();
  const out = tf.tidy(() => {
    const x = tf.stack(b.frames!, 1); // [n, T, H, W, 3]
    const [N, TT, H, W, C] = x.shape;
    const flat = x.reshape([N * TT, H, W, C]);
    const lo = flat.min([1, 2, 3], true);
    const hi = flat.max([1, 2, 3], true);
    return flat.sub(lo).div(hi.sub(lo).add(1e-6)) as tf.Tensor4D; // per-frame min-max, for display only
  });
  tf.dispose([...(b.frames ?? []), ...(b.images ? [b.images] : [])]);
  return out;
}

/** One run per seed. */
export async function runTemporal(s: TemporalSettings, o: Pick<RunOptions, 'progress' | 'root'> = {}): Promise<RunResult[]> {
  const out: RunResult[] = [];
  for (const seed of s.seeds) out.push(await runRecipe(recipe({ ...s.recipe, seed, name: `${s.recipe.name}-s${seed}`, tags: { ...s.recipe.tags, seed } }), { progress: o.progress ?? false, root: o.root }));
  return out;
}

export interface TemporalSeedResult {
  seed: number;
  /** Fine-tuned temporal classifier top-1 (%) from the source (step 0) and after M-ExPLoRA. */
  source: number;
  explora: number;
}

export function temporalResults(runs: readonly RunResult[]): TemporalSeedResult[] {
  return runs.map((r) => {
    const first = r.evals[0];
    const last = r.evals[r.evals.length - 1];
    if (!first || first.step !== 0 || r.evals.length < 2) throw new Error(`temporalResults: run ${r.name} lacks the step-0 and final evaluations (evals at steps ${r.evals.map((e) => e.step).join(', ')})`);
    return { seed: r.recipe.seed, source: 100 * (first.sitesTest as number), explora: 100 * (last.sitesTest as number) };
  });
}

const r1 = (x: number): number => Math.round(x * 10) / 10;

/** Rows per seed, mean [95 % t interval], and the reference row. */
export function temporalResultRows(res: readonly TemporalSeedResult[], s: Pick<TemporalSettings, 'scale'>): Array<Record<string, string | number | null>> {
  const cols: Array<[string, (x: TemporalSeedResult) => number]> = [
    ['source → fine-tune: top-1 %', (x) => x.source],
    ['M-ExPLoRA → fine-tune: top-1 %', (x) => x.explora],
    ['Δ (points)', (x) => x.explora - x.source],
  ];
  const rows: Array<Record<string, string | number | null>> = res.map((x) => Object.fromEntries([['seed', x.seed], ...cols.map(([k, g]) => [k, r1(g(x))])]));
  const sum: Record<string, string | number | null> = { seed: `mean [95 % CI], n = ${res.length}` };
  for (const [k, g] of cols) {
    const v = res.map(g);
    sum[k] = v.length >= 2 ? (() => { const iv = tInterval(v); return `${r1(iv.mean)} [${r1(iv.lo)}, ${r1(iv.hi)}]`; })() : v.length === 1 ? r1(v[0]) : null;
  }
  rows.push(sum);
  rows.push({ seed: `paper (ViT-L/16, fMoW-temporal 62 classes; ours: ${s.scale})`, [cols[0][0]]: `SatMAE temporal, full pre-training: ${TEMPORAL_PAPER.satmaeTemporalTop1} (SatMAE README)`, [cols[1][0]]: 'ExPLoRA: unknown (table not retrieved)', [cols[2][0]]: 'unknown' });
  return rows;
}

/** Bars: mean ± 95 % t interval of the fine-tuned top-1, source vs M-ExPLoRA; dots per seed. */
export function temporalFigure(res: readonly TemporalSeedResult[]): PlotlyFigure {
  const data: Array<Record<string, unknown>> = [];
  for (const [side, label, color] of [['source', 'source → LoRA fine-tune', '#999999'], ['explora', 'M-ExPLoRA → LoRA fine-tune', '#1f77b4']] as const) {
    const v = res.map((x) => x[side]);
    const iv = v.length >= 2 ? tInterval(v) : null;
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    data.push({ type: 'bar', name: label, x: [label], y: [mean], marker: { color }, error_y: { type: 'data', symmetric: false, array: [iv ? iv.hi - mean : 0], arrayminus: [iv ? mean - iv.lo : 0] } });
    data.push({ type: 'scatter', mode: 'markers', name: `${label} (seeds)`, x: v.map(() => label), y: v, marker: { color: '#000000', size: 7 }, showlegend: false });
  }
  return { data, layout: { title: titleLayout(`fine-tuned temporal classifier, top-1 % (${res.length} seeds, 95 % t intervals)`), yaxis: { title: { text: 'top-1 %' }, automargin: true }, margin: { t: 50, r: 20, b: 50, l: 60 } } };
}

/** The claim of notebook 07: M-ExPLoRA on multi-date images raises the fine-tuned temporal classifier over the source. */
export function temporalClaims(res: readonly TemporalSeedResult[], s: Pick<TemporalSettings, 'description'>): ClaimRecord[] {
  return [
    claimFromPairs(
      {
        paper: 'ExPLoRA (arXiv 2406.10973)',
        tableOrFigure: 'fMoW-temporal table (not retrieved)',
        row: 'M-ExPLoRA-[L] (temporal model, 3 dates) → LoRA fine-tuning vs the source model → LoRA fine-tuning',
        metric: 'fine-tuned temporal classifier top-1 difference (points)',
        paperValue: null,
        claim: 'extended pre-training of the temporal model on multi-date images raises the fine-tuned accuracy over the RGB source model',
        test: { kind: 'greater', margin: 0 },
        scale: s.description,
        seeds: res.map((x) => x.seed),
        source: 'notebooks/07-temporal.ipynb',
      },
      res.map((x) => x.explora),
      res.map((x) => x.source),
    ),
  ];
}
