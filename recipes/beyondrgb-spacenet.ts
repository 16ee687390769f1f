/**
 * Notebook 09's experiment as recipes: SpaceNet-v1 building segmentation (IoU) after ExPLoRA, in miniature.
 *
 * One M-ExPLoRA recipe per seed: extended MAE pre-training of the source MAE on the **unlabelled** target scenes (the
 * building chips of the `pretrain` split = the training chips, masks never read), evaluated by the segmentation
 * protocol of recipes/session-seg.ts — a new segmentation head trained on the training masks over the encoder's patch
 * tokens, the encoder frozen or adapted by a new LoRA (`protocol: 'lora'`), IoU of the building class on the test chips —
 * **at step 0** (the source encoder: ExPLoRA's LoRA B = 0) and **after the last step**. Both evaluations share the seed,
 * the head initialisation, the batch order and the data, so "ExPLoRA − source" is a paired difference per seed.
 *
 * The paper's SpaceNet-v1 protocol (head, split, epochs) and its table were not available: SatMAE released no
 * segmentation code (SatMAE issue #2) and used UperNet-style heads; the kit's head is the matMul-only 'linear' head
 * (lib/seg/head.ts). The paper's numbers are unknown here and the claim tests the direction only.
 */
import * as tf from '@tensorflow/tfjs';
import type { RunResult, RunOptions } from './run';
import { runRecipe } from './run';
import { Recipe, RecipeInput, SegmentationEval, SourceSpec, recipe } from './recipe';
import { RECIPES } from './presets';
import { BEYOND_RGB_SMOKE } from './beyondrgb-smoke';
import { openSource } from './data';
import { decodeSegPreview } from './session-seg';
import { Loader } from '../data-loaders/dataset';
import { ClaimRecord, claimFromPairs } from '../lib/report/claims';
import { tInterval } from '../lib/report/stats';
import type { PlotlyFigure } from '../lib/report/plot';

export type SpacenetScale = 'ci' | 'smoke' | 'paper';

/** Where the real data lives (the `paper` scale; relative to the notebook folder). */
export interface SpacenetPaths {
  /** Holds `SN1_buildings/train/{3band,geojson}` (torchgeo's SpaceNet-v1 layout). */
  spacenet: string;
  /** MAE ViT-L/16 (`mae_visualize_vit_large`, converted to safetensors). */
  maeVitLarge: string;
}

export const SPACENET_DEFAULT_PATHS: SpacenetPaths = {
  spacenet: 'data/spacenet',
  maeVitLarge: 'assets/mae_visualize_vit_large.safetensors',
};

/** The files the `paper` scale reads (the notebook throws naming the first missing one). */
export function spacenetPaperFiles(p: SpacenetPaths): string[] {
  return [`${p.spacenet}/SN1_buildings/train/3band`, `${p.spacenet}/SN1_buildings/train/geojson`, p.maeVitLarge];
}

/** What the notebook varies by scale. */
export interface SpacenetSettings {
  scale: SpacenetScale;
  seeds: number[];
  /** The M-ExPLoRA recipe of seed 0 (the other seeds differ only in `seed` and `name`). */
  recipe: Recipe;
  /** In words, for the claims. */
  description: string;
}

const norm = { name: 'normalize', stats: 'imagenet' } as const;

function buildings(count: number | null): SourceSpec {
  return { kind: 'embedded', domain: 'buildings', seed: 0, size: 32, satellitePerClass: 100, naturalPerClass: 100, count, product: '3band' };
}

/**
 * The segmentation evaluation of the smoke scale: the 'patch' head (p·p·K values per patch token) on the last block,
 * 600 steps of 32 at lr 1e-2, frozen encoder. Measured on the source encoder (step 0, seed 0; LOG.md "seg09"): the
 * 'linear' head (K logits per 4-px patch, bilinear upsampling) reached building IoU 0.11 (600 steps, lr 3e-2) —
 * buildings cover 7 % of the pixels and are a few pixels wide, finer than an 8 × 8 logit map — the 'patch' head 0.22.
 */
export const SPACENET_SMOKE_SEG: SegmentationEval = {
  kind: 'segmentation',
  train: { splits: [{ split: 'train', subset: null }], transform: norm },
  test: { splits: [{ split: 'test', subset: null }], transform: norm },
  at: { steps: [0] },
  featureBatch: 64,
  head: { mode: 'patch', layers: 1 },
  numClasses: 2,
  encoder: 'frozen',
  loraRank: BEYOND_RGB_SMOKE.spacenet.finetune.rank,
  steps: 600,
  batch: 32,
  lr: 1e-2,
  weightDecay: 0,
  previewImages: 6,
};

/**
 * The LoRA protocol at smoke (the encoder fine-tuned with the head, as the paper's segmentation protocol fine-tunes):
 * a new LoRA r4 on Q,V of every block trained with the 'patch' head, 150 steps of 16 at lr 1e-2. Seed 0 (LOG.md
 * "beyond3"; 180 train / 60 test chips): building IoU 27.9 % (source) → 26.4 % (M-ExPLoRA), 88 / 76 s CPU per
 * evaluation, vs the frozen protocol's 22.4 → 22.0 % at 29 / 24 s (12.9 → 12.4 % with the same 150 × 16 head steps).
 */
const SMOKE_LORA = { encoder: 'lora', steps: 150, batch: 16 } as const;

/**
 * The smoke recipe: notebook 01's miniature (the kit's source MAE D 96 × 6, 32 px, M-ExPLoRA-[L]-r8, decoder r2,
 * AdamW(0.9, 0.95), warm-up + cosine) with `BEYOND_RGB_SMOKE.spacenet`'s steps and batch, pre-trained on the embedded
 * building chips (3-band RGB product, 180 training chips, masks not read), segmentation-evaluated at step 0 and the end
 * by the frozen-encoder protocol (`SPACENET_SMOKE_SEG`) or the LoRA one (`protocol: 'lora'`).
 */
export function spacenetSmokeRecipe(protocol: 'frozen' | 'lora' = 'frozen'): Recipe {
  const base = RECIPES.m_explora_small;
  const x = BEYOND_RGB_SMOKE.spacenet.explora;
  return recipe({
    ...base,
    name: 'nb09-spacenet-explora',
    description: 'M-ExPLoRA-[L]-r8 on the kit source MAE, embedded SpaceNet-v1-like building chips (3-band), 32 px (notebook 09, smoke scale)',
    tags: { experiment: 'nb09', task: 'spacenet1', scale: 'smoke' },
    data: { source: buildings(null), train: { splits: [{ split: 'pretrain', subset: null }], transform: { name: 'mae-pretrain', size: 32, stats: 'imagenet' } } },
    batch: x.batch,
    steps: x.steps,
    epochs: null,
    schedule: { kind: 'cosine', warmup: { steps: Math.round(x.steps / 10) }, minLr: 0, warmupStart: 0 },
    lr: { base: x.blr, scale: 'linear-256' },
    eval: protocol === 'lora' ? { ...SPACENET_SMOKE_SEG, ...SMOKE_LORA } : SPACENET_SMOKE_SEG,
  });
}

/**
 * The `ci` scale (the test suite's ≤ 60 s): 40 chips (24 / 8 / 8), 3 steps of 8, 30 head steps of 8 (frozen) or 10
 * LoRA + head steps of 8. Pipeline only.
 */
export function spacenetCiRecipe(protocol: 'frozen' | 'lora' = 'frozen'): Recipe {
  const s = spacenetSmokeRecipe(protocol);
  const headSteps = protocol === 'lora' ? 10 : 30;
  return recipe({
    ...s,
    description: s.description.replace('smoke scale', `ci scale: 40 chips, 3 steps of 8, ${headSteps} ${protocol === 'lora' ? 'LoRA + head' : 'head'} steps`),
    tags: { ...s.tags, scale: 'ci' },
    data: { ...s.data, source: buildings(40) },
    batch: 8,
    steps: 3,
    schedule: { kind: 'cosine', warmup: { steps: 1 }, minLr: 0, warmupStart: 0 },
    eval: { ...(s.eval as SegmentationEval), steps: headSteps, batch: 8, previewImages: 4 },
  });
}

/**
 * The paper scale (a GPU job, not run here): M-ExPLoRA-[L]-r64 on MAE ViT-L/16 (`mae_visualize_vit_large`) with the
 * RGB optimisation recipe, pre-trained on the real SpaceNet-v1 3-band training chips at 224 px; then the segmentation
 * protocol with LoRA r8 on Q,V + a linear head on the last 4 blocks, 224-px resize + centre crop (masks nearest).
 * UNCONFIRMED (not published): ExPLoRA's SpaceNet split, epochs and head (UperNet in SatMAE's line of work); the split
 * is the kit's hash rule (10 % val, 28 % test ≈ SatMAE's 1,940 of 6,940).
 */
export function spacenetPaperRecipe(p: SpacenetPaths = SPACENET_DEFAULT_PATHS): Recipe {
  const m = RECIPES.m_explora_l_r64;
  const evalT = { name: 'linear-probe-eval', size: 224 } as const;
  return recipe({
    ...m,
    name: 'nb09-spacenet-explora',
    description: 'M-ExPLoRA-[L]-r64 on MAE ViT-L/16 from mae_visualize_vit_large, SpaceNet-v1 3-band at 224 px (notebook 09, paper scale; a GPU job, protocol UNCONFIRMED)',
    tags: { experiment: 'nb09', task: 'spacenet1', scale: 'paper' },
    weights: { kind: 'checkpoint', path: p.maeVitLarge, head: 'keep', stripPrefixes: [], ignore: null, allowMissing: null },
    data: {
      source: { kind: 'spacenet1', root: p.spacenet, product: '3band', valFraction: 0.1, testFraction: 0.28 },
      train: { splits: [{ split: 'pretrain', subset: null }], transform: { name: 'mae-pretrain', size: 224, stats: 'imagenet' } },
    },
    epochs: 20,
    eval: {
      ...SPACENET_SMOKE_SEG,
      train: { splits: [{ split: 'train', subset: null }], transform: evalT },
      test: { splits: [{ split: 'test', subset: null }], transform: evalT },
      head: { mode: 'linear', layers: 4 },
      encoder: 'lora',
      loraRank: 8,
      steps: 10000,
      batch: 32,
      lr: 1e-3,
      featureBatch: 64,
    },
  });
}

/**
 * The settings of a scale (seeds 0, 1, 2 at every scale: the claim needs an interval). `protocol` picks the segmentation
 * evaluation of `ci` / `smoke`: the head on the frozen encoder (default) or the head trained with a new LoRA in the
 * encoder; the `paper` scale always fine-tunes with LoRA r8.
 */
export function spacenetSettings(scale: SpacenetScale, paths: SpacenetPaths = SPACENET_DEFAULT_PATHS, protocol: 'frozen' | 'lora' = 'frozen'): SpacenetSettings {
  const r = scale === 'ci' ? spacenetCiRecipe(protocol) : scale === 'smoke' ? spacenetSmokeRecipe(protocol) : spacenetPaperRecipe(paths);
  const e = r.eval as SegmentationEval;
  const description =
    scale === 'paper'
      ? 'paper: MAE ViT-L/16, M-ExPLoRA-[L]-r64, 224 px, real SpaceNet-v1 3-band, LoRA r8 + linear head'
      : `${scale}: source MAE D96×6 (0.68 M), M-ExPLoRA-[L]-r8, 32 px, ${r.steps} steps of ${r.batch}, embedded building chips, ${e.encoder === 'lora' ? `LoRA-r${e.loraRank} encoder + ${e.head.mode} head (${e.steps} steps of ${e.batch})` : `frozen encoder + ${e.head.mode} head (${e.steps} steps)`}`;
  return { scale, seeds: [...BEYOND_RGB_SMOKE.seeds], recipe: r, description };
}

/** The recipe of one seed. */
export function spacenetSeedRecipe(base: Recipe, seed: number): Recipe {
  return recipe({ ...base, seed, name: `${base.name}-s${seed}`, tags: { ...base.tags, seed } });
}

/** Split sizes and the building fraction of each labelled split (reads every mask once). */
export async function spacenetDataRows(r: RecipeInput): Promise<Array<Record<string, string | number>>> {
  const src = openSource(recipe(r).data.source);
  const rows: Array<Record<string, string | number>> = [];
  for (const name of src.splits ?? []) {
    const ds = await src.split(name, 'data');
    let px = 0;
    let on = 0;
    let masked = false;
    for (let i = 0; i < ds.length; i++) {
      const s = await ds.get(i);
      if (!s.mask) continue;
      masked = true;
      for (const v of s.mask.data) on += v;
      px += s.mask.data.length;
    }
    rows.push({ split: name, chips: ds.length, masks: masked ? 'yes' : 'no (unlabelled)', 'building pixels %': masked ? Math.round((1000 * on) / px) / 10 : '—' });
  }
  return rows;
}

/** Run the recipe for every seed (each run disposes its session; one thread: the segmentation evaluation is not data-parallel). */
export async function runSpacenet(s: SpacenetSettings, o: Pick<RunOptions, 'progress' | 'root'> = {}): Promise<RunResult[]> {
  const runs: RunResult[] = [];
  for (const seed of s.seeds) runs.push(await runRecipe(spacenetSeedRecipe(s.recipe, seed), { progress: o.progress ?? false, root: o.root, workers: 1 }));
  return runs;
}

/** Per-seed metrics (×100): the source encoder (step-0 evaluation) and ExPLoRA (last evaluation). */
export interface SpacenetSeedResult {
  seed: number;
  source: { iou: number; miou: number; acc: number };
  explora: { iou: number; miou: number; acc: number };
  finalLoss: number;
}

function segMetrics(row: Record<string, unknown>): { iou: number; miou: number; acc: number } {
  const g = (k: string): number => (typeof row[k] === 'number' ? 100 * (row[k] as number) : NaN);
  return { iou: g('segIoU'), miou: g('segMIoU'), acc: g('segPixelAcc') };
}

/** The first and last evaluation of a run (checks that it evaluated at step 0 and at its end). */
function firstLast(r: RunResult): [Record<string, unknown>, Record<string, unknown>] {
  const first = r.evals[0];
  const last = r.evals[r.evals.length - 1];
  if (!first || first.step !== 0 || r.evals.length < 2) throw new Error(`spacenet: run ${r.name} lacks the step-0 and final evaluations (evals at steps ${r.evals.map((e) => e.step).join(', ')})`);
  return [first, last];
}

/** The per-seed results of the runs. */
export function spacenetResults(runs: readonly RunResult[]): SpacenetSeedResult[] {
  return runs.map((r) => {
    const [first, last] = firstLast(r);
    return { seed: r.recipe.seed, source: segMetrics(first), explora: segMetrics(last), finalLoss: r.steps.length ? r.steps[r.steps.length - 1].loss : NaN };
  });
}

const r1 = (x: number): number => Math.round(x * 10) / 10;

/** Rows per seed plus mean [95 % t interval] per column. */
export function spacenetResultRows(res: readonly SpacenetSeedResult[]): Array<Record<string, string | number | null>> {
  const cols: Array<[string, (x: SpacenetSeedResult) => number]> = [
    ['source: building IoU %', (x) => x.source.iou],
    ['ExPLoRA: building IoU %', (x) => x.explora.iou],
    ['Δ IoU (points)', (x) => x.explora.iou - x.source.iou],
    ['source: mIoU %', (x) => x.source.miou],
    ['ExPLoRA: mIoU %', (x) => x.explora.miou],
    ['source: pixel acc %', (x) => x.source.acc],
    ['ExPLoRA: pixel acc %', (x) => x.explora.acc],
  ];
  const rows: Array<Record<string, string | number | null>> = res.map((x) => Object.fromEntries([['seed', x.seed], ...cols.map(([k, g]) => [k, Number.isFinite(g(x)) ? r1(g(x)) : null])]));
  const summary: Record<string, string | number | null> = { seed: `mean [95 % CI], n = ${res.length}` };
  for (const [k, g] of cols) {
    const v = res.map(g).filter((x) => Number.isFinite(x));
    if (v.length >= 2) {
      const iv = tInterval(v);
      summary[k] = `${r1(iv.mean)} [${r1(iv.lo)}, ${r1(iv.hi)}]`;
    } else summary[k] = v.length === 1 ? r1(v[0]) : null;
  }
  rows.push(summary);
  return rows;
}

/** The paper's numbers beside ours: unknown for SpaceNet-v1 (the table was not retrieved); ours stated with the scale. */
export function spacenetPaperRows(res: readonly SpacenetSeedResult[], s: Pick<SpacenetSettings, 'description'>): Array<Record<string, string | number | null>> {
  const mean = (f: (x: SpacenetSeedResult) => number): number | null => (res.length ? r1(res.reduce((a, x) => a + f(x), 0) / res.length) : null);
  return [
    { method: 'source MAE (no extended pre-training)', 'paper: building IoU': 'unknown (table not retrieved)', 'ours: building IoU %': mean((x) => x.source.iou), scale: s.description },
    { method: 'M-ExPLoRA on the target scenes', 'paper: building IoU': 'unknown (table not retrieved)', 'ours: building IoU %': mean((x) => x.explora.iou), scale: s.description },
  ];
}

/**
 * The claim of notebook 09: ExPLoRA's extended pre-training on the unlabelled target scenes raises building IoU over
 * the source encoder under the same segmentation protocol (paired over seeds; 'greater' than 0). Paper value unknown.
 */
export function spacenetClaims(res: readonly SpacenetSeedResult[], s: Pick<SpacenetSettings, 'description'>): ClaimRecord[] {
  return [
    claimFromPairs(
      {
        paper: 'ExPLoRA (arXiv 2406.10973)',
        tableOrFigure: 'SpaceNet-v1 segmentation table (not retrieved)',
        paperValue: null,
        test: { kind: 'greater', margin: 0 },
        scale: s.description,
        seeds: res.map((x) => x.seed),
        source: 'notebooks/09-spacenet.ipynb',
        row: 'SpaceNet-v1: M-ExPLoRA (unlabelled target scenes) vs the source MAE',
        metric: 'test building IoU difference (points), same segmentation head protocol',
        claim: 'extended pre-training on the unlabelled building scenes raises building IoU over the source encoder',
      },
      res.map((x) => x.explora.iou),
      res.map((x) => x.source.iou),
    ),
  ];
}

/** Per-seed IoU of both encoders with the mean and its 95 % t interval (a plotly figure). */
export function spacenetIouFigure(res: readonly SpacenetSeedResult[]): PlotlyFigure {
  const trace = (name: string, f: (x: SpacenetSeedResult) => number, color: string): Record<string, unknown>[] => {
    const v = res.map(f);
    const iv = v.length >= 2 ? tInterval(v) : null;
    return [
      { type: 'scatter', mode: 'markers', name: `${name} (per seed)`, x: res.map(() => name), y: v, text: res.map((x) => `seed ${x.seed}`), marker: { color, size: 9, opacity: 0.6 } },
      ...(iv ? [{ type: 'scatter', mode: 'markers', name: `${name} mean ± 95 % CI`, x: [name], y: [iv.mean], marker: { color, size: 14, symbol: 'diamond' }, error_y: { type: 'data', symmetric: false, array: [iv.hi - iv.mean], arrayminus: [iv.mean - iv.lo] } }] : []),
    ];
  };
  return {
    data: [...trace('source encoder', (x) => x.source.iou, '#888888'), ...trace('M-ExPLoRA encoder', (x) => x.explora.iou, '#1f77b4')],
    layout: { title: { text: 'Test building IoU (%), same segmentation protocol, per seed' }, yaxis: { title: { text: 'IoU %' } }, showlegend: true },
  };
}

/**
 * Test chips, ground truth and the predicted masks of the source and ExPLoRA encoders (from a run's `segPreview`):
 * rows = chips, columns = image | truth | source | ExPLoRA. Returns [4n, H, W, 3] in [0, 1] (caller disposes).
 */
export async function spacenetMaskFigure(run: RunResult): Promise<{ images: tf.Tensor4D; n: number }> {
  const [first, last] = firstLast(run);
  if (typeof first.segPreview !== 'string' || typeof last.segPreview !== 'string') throw new Error(`spacenetMaskFigure: run ${run.name} stored no segPreview (set eval.previewImages)`);
  const a = decodeSegPreview(first.segPreview);
  const b = decodeSegPreview(last.segPreview);
  const e = run.recipe.eval as SegmentationEval;
  const ds = await openSource(run.recipe.data.source).split(e.test.splits[0].split, 'test');
  const batch = await new Loader(ds, { batchSize: a.n, shuffle: false, prefetch: 0 }).batchAt(0);
  try {
    return {
      n: a.n,
      images: tf.tidy(() => {
        const gray = (t: tf.Tensor): tf.Tensor4D => tf.tile(t.reshape([a.n, a.H, a.W, 1]).toFloat(), [1, 1, 1, 3]) as tf.Tensor4D;
        const img = batch.images!.slice([0, 0, 0, 0], [a.n, -1, -1, 3]); // [n, H, W, 3]
        const cols = [img, gray(batch.masks!), gray(tf.tensor(a.ids)), gray(tf.tensor(b.ids))]; // 4 × [n, H, W, 3]
        return tf.stack(cols, 1).reshape([4 * a.n, a.H, a.W, 3]) as tf.Tensor4D; // row-major: chip, then its 4 columns
      }),
    };
  } finally {
    tf.dispose([batch.images!, batch.masks!, ...(batch.labels ? [batch.labels] : [])]);
  }
}

/**
 * "What this run shows / does not show", read from the numbers it printed (markdown): the per-seed IoUs, the paired
 * difference with its interval and verdict, and what the scale is not.
 */
export function spacenetSummary(res: readonly SpacenetSeedResult[], claim: ClaimRecord, s: Pick<SpacenetSettings, 'scale' | 'description'>): string {
  const f = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
  const est = claim.ours;
  const iv = est ? `${f(est.mean)} points, 95 % paired interval [${f(est.lo)}, ${f(est.hi)}]` : 'no interval';
  const moved = res.map((x) => x.explora.iou - x.source.iou);
  const up = moved.filter((d) => d > 0).length;
  return [
    `**Measured at \`${s.scale}\`** (${s.description}; ${res.length} seeds):`,
    '',
    `- Test building IoU of the source encoder: ${res.map((x) => f(x.source.iou)).join(' / ')} %; after M-ExPLoRA on the unlabelled target scenes: ${res.map((x) => f(x.explora.iou)).join(' / ')} % (seeds ${res.map((x) => x.seed).join(', ')}).`,
    `- ExPLoRA − source: ${iv} → **${claim.verdict}** (${up} of ${res.length} seeds up). The same head protocol, seed and data on both sides, so the difference is the encoder's.`,
    `- Does **not** show the paper's result: the paper's SpaceNet-v1 number and protocol were not available (no number beside ours), its backbone is ViT-L at 224 px with a heavier head; here ${s.scale === 'paper' ? 'the paper-scale recipe with the kit head' : 'a 0.68 M-parameter encoder, 32-px synthetic chips and a small head on the last block\'s tokens'}.`,
    s.scale === 'ci' ? '- At `ci` (3 pre-training steps, 30 head steps) the numbers test the pipeline only, not the science.' : '',
  ]
    .filter((l) => l !== '')
    .join('\n');
}
