/**
 * Notebook 03 (D-ExPLoRA, the paper's main pipeline) as calls: the scale settings, the multi-seed miniature run
 * (recipes/miniature.ts), its tables, the Fig. 3 curve (probe accuracy against pre-training iterations, mean over
 * seeds with a t interval), the claims (recipes/miniature-claims.ts → lib/report/claims.ts JSON lines in the
 * notebook's output folder) and the paper-scale run (the unchanged `RECIPES.d_explora_l_r64` preset on
 * `timm/vit_large_patch14_dinov2` weights through the timm loader).
 */
import { existsSync } from 'fs';
import * as path from 'path';
import { PlotlyFigure } from '../lib/report/plot';
import { runsRoot } from '../lib/report/runs';
import { ClaimRecord } from '../lib/report/claims';
import { tInterval } from '../lib/report/stats';
import { DinoMiniConfig, MiniMethod, MiniRecord, runMiniature, readSafetensorsMeta } from './miniature';
import { DINO_MINI, DINO_MINI_CI, SOURCE_DINO_ASSET, SOURCE_DINO_CI_ASSET } from './miniature-presets';
import { DINO_MINI_WORKSTATION, SOURCE_DINO_WORKSTATION_ASSET } from './workstation-presets';
import { miniFig3, miniLinearProbeTable, miniNotebookClaims } from './miniature-notebook';
import { Recipe, recipe } from './recipe';
import { dinoArmRecipes } from './explora-dino-arms';
import type { RunResult } from './run';
import { RECIPES } from './presets';

export type DinoNotebookScale = 'ci' | 'smoke' | 'workstation' | 'paper';

/** What a scale runs: the miniature config, the seeds, and the scale as stated beside every number. */
export interface DinoNotebookSettings {
  scale: DinoNotebookScale;
  config: DinoMiniConfig;
  seeds: number[];
  /** One line: model, data, steps, seeds (shown beside the paper's numbers). */
  describe: string;
  /** Where the notebook writes its claims (`<runs root>/nb03-explora-dino-<scale>`; VITPEFT_RUNS_DIR moves it). */
  outDir: string;
}

/** ExPLoRA with more unfrozen blocks, for Fig. 3 (the paper's [1,L-1,L] row). */
const EXPLORA_THREE_BLOCKS: MiniMethod = { name: 'explora-[1,L-1,L]', kind: 'recipe', unfrozen: [1, 'L-1', 'L'], rank: 8 };

/**
 * The settings of a scale. `ci`: the 2-block source, 4 steps, small evaluation sets (mechanics only). `smoke`: the
 * committed DINOv2-style source (d64×4, patch 8, 32 px), 96 steps of batch 32, evaluated at 32 / 64 / 96 steps
 * for Fig. 3 (step 0 is the source), 3 seeds. `workstation`: `DINO_MINI_WORKSTATION` (ViT-S at 64 px, 600 steps of 64;
 * recipes/workstation-presets.ts; not measured). `paper` returns the smoke miniature too (the paper-scale run is `dinoPaperRecipe`).
 */
export function dinoNotebookSettings(scale: DinoNotebookScale, o: { seeds?: number[] } = {}): DinoNotebookSettings {
  const seeds = o.seeds ?? [0, 1, 2];
  const config: DinoMiniConfig =
    scale === 'ci'
      ? DINO_MINI_CI
      : scale === 'workstation'
        ? DINO_MINI_WORKSTATION
        : { ...DINO_MINI, methods: [...DINO_MINI.methods.filter((m) => m.name !== 'lora'), EXPLORA_THREE_BLOCKS], evalAt: [32, 64] };
  const m = config.model as { overrides: { embedDim: number; depth: number; patchSize: number; imgSize: number } };
  const e = config.data.evalImages;
  const describe =
    `${scale}: ViT d${m.overrides.embedDim}×${m.overrides.depth}, patch ${m.overrides.patchSize}, ${m.overrides.imgSize} px; ` +
    `${config.pretrain.steps} steps of batch ${config.pretrain.batch}; probe ${e.train || 'all'}/${e.val || 'all'}/${e.test || 'all'} images; seeds ${seeds.join(',')} ` +
    `(paper: ViT-L/14, 224 px, fMoW-RGB 363k images, 200 epochs of batch 1024)`;
  return { scale, config, seeds, describe, outDir: path.join(runsRoot(), `nb03-explora-dino-${scale}`) };
}

/** Run the miniature of the settings (every method × seed), reporting each evaluation to `onRecord`. */
export async function runDinoNotebook(s: DinoNotebookSettings, onRecord?: (r: MiniRecord) => void): Promise<MiniRecord[]> {
  return runMiniature(s.config, s.seeds, { onRecord });
}

/** One line per evaluation (method, seed, step, accuracies in %) for progress tables. */
export function recordRow(r: MiniRecord): Record<string, string | number> {
  return { method: r.method, seed: r.seed, step: r.step, 'LP %': +(100 * r.probeTest).toFixed(1), 'kNN %': +(100 * r.knn).toFixed(1), 'ridge %': +(100 * r.ridgeTest).toFixed(1), 'train CPU s': Math.round(r.trainCpu) };
}

/** Paper LP beside ours (mean and 95 % t interval over seeds) per method (`miniLinearProbeTable`, recipes/miniature-notebook.ts). */
export function dinoLinearProbeTable(records: readonly MiniRecord[]): Array<Record<string, string | number>> {
  return miniLinearProbeTable(records);
}

/** Fig. 3 of the D-ExPLoRA miniature (`miniFig3`, recipes/miniature-notebook.ts). */
export function dinoFig3(input: readonly MiniRecord[]): PlotlyFigure {
  return miniFig3(input);
}

/**
 * The claims of the run (`miniNotebookClaims`, recipes/miniature-notebook.ts): paired over seeds, verdicts only from
 * intervals, written to `<outDir>/claims.jsonl` (replacing that file) and recorded for the scoreboard.
 */
export function dinoNotebookClaims(records: readonly MiniRecord[], s: DinoNotebookSettings, outDir: string = s.outDir): ReturnType<typeof miniNotebookClaims> {
  return miniNotebookClaims(records, { notebook: '03-explora-dino', scale: s.scale, describe: s.describe, outDir });
}

/**
 * The paper-scale D-ExPLoRA run: `RECIPES.d_explora_l_r64` unchanged (ViT-L/14, D-ExPLoRA-[L]-r64, fMoW-RGB CSVs,
 * batch 1024, the paper's schedule) except that the DINOv2 ViT-L/14 weights come as a timm file
 * (`timm/vit_large_patch14_dinov2`, model.safetensors) through the timm loader. Throws, naming the file, when the
 * weights or the fMoW-RGB CSVs are absent (paths relative to the working directory).
 */
export function dinoPaperRecipe(o: { timmWeights: string }): Recipe {
  const base = RECIPES.d_explora_l_r64;
  if (!existsSync(o.timmWeights)) {
    throw new Error(`paper scale needs the DINOv2 ViT-L/14 weights from the Hugging Face hub (timm/vit_large_patch14_dinov2, model.safetensors) at ${path.resolve(o.timmWeights)}`);
  }
  const src = base.data.source as { csv?: Record<string, string> };
  for (const f of Object.values(src.csv ?? {})) if (!existsSync(f)) throw new Error(`paper scale needs fMoW-RGB (SatMAE CSV layout): ${path.resolve(f)} is missing`);
  return recipe({ ...base, weights: { kind: 'timm', path: o.timmWeights, head: 'keep' } });
}

/**
 * What the source checkpoint of the settings records (file, steps, kNN check on the natural labels, CPU time, git), as
 * key/value rows. Throws, naming the tool that makes it, when the file is missing.
 */
export function dinoSourceRows(s: DinoNotebookSettings): Array<{ key: string; value: unknown }> {
  const file = s.config.source.checkpoint;
  if (!existsSync(file)) {
    const name = s.scale === 'ci' ? SOURCE_DINO_CI_ASSET : s.scale === 'workstation' ? SOURCE_DINO_WORKSTATION_ASSET : SOURCE_DINO_ASSET;
    const tool = s.scale === 'workstation' ? 'npx tsx tools/make-source-dino.ts --spec workstation' : 'npx tsx tools/make-source-dino.ts';
    throw new Error(`the DINOv2-style source ${file} is missing: make it with '${tool}' (${name}; see notebooks/assets/README.md)`);
  }
  const meta = readSafetensorsMeta(file);
  const rows = { file, kind: meta.kind, steps: meta.steps, 'kNN natural val (teacher)': meta.knnNaturalVal, 'CPU s': meta.cpuSeconds, git: meta.git, note: meta.note ?? '' };
  return Object.entries(rows).map(([key, value]) => ({ key, value }));
}

/**
 * "What this run shows / does not show", written from the numbers it printed: the linear-probe means with their t
 * intervals per method, each claim's paired Δ with its interval and verdict beside the paper's Δ, the Fig. 3 reading
 * (ExPLoRA's mean LP at each evaluated step) and the caveats that follow from the settings (shared or per-seed
 * evaluation sets, test-set size, ci = mechanics only). Markdown.
 */
export function dinoFindings(records: readonly MiniRecord[], claims: readonly ClaimRecord[], s: DinoNotebookSettings): string {
  const f1 = (x: number): string => x.toFixed(1);
  const lpOf = (m: string, step?: number): number[] => {
    const bySeed = new Map<number, MiniRecord>();
    for (const r of records) {
      if (r.method !== m || (step !== undefined && r.step !== step)) continue;
      const cur = bySeed.get(r.seed);
      if (!cur || r.step > cur.step) bySeed.set(r.seed, r);
    }
    return [...bySeed.values()].map((r) => 100 * r.probeTest);
  };
  const iv = (v: number[]): string => {
    if (!v.length) return '–';
    if (v.length < 2) return f1(v[0]);
    const t = tInterval(v);
    return `${f1(t.mean)} [${f1(t.lo)}, ${f1(t.hi)}]`;
  };
  const methods = [...new Set(records.map((r) => r.method))];
  const nTest = records[0]?.probeCorrect.length ?? 0;
  const out: string[] = [`**Measured at ${s.describe}.** Linear-probe test top-1 (%), mean [95 % t over seeds]: ` + methods.map((m) => `${m} ${iv(lpOf(m))}`).join('; ') + '.', ''];
  out.push('| claim | ours: Δ points [95 % paired t] | paper Δ | verdict |', '|---|---|---|---|');
  for (const c of claims) out.push(`| ${c.claim} | ${f1(c.ours.mean)} [${f1(c.ours.lo)}, ${f1(c.ours.hi)}] (per seed ${c.ours.perSeed.map(f1).join(', ')}) | ${c.paperValue === null ? '–' : f1(c.paperValue)} | **${c.verdict}** |`);
  const shown = claims.filter((c) => c.verdict === 'reproduced').map((c) => c.claim);
  const notShown = claims.filter((c) => c.verdict !== 'reproduced').map((c) => `${c.claim} (${c.verdict})`);
  out.push('', `**Shows:** ${shown.length ? shown.join('; ') : 'no claim reproduced at this scale'}.`);
  out.push(`**Does not show:** ${notShown.length ? notShown.join('; ') : '–'}.`);
  const steps = [...new Set(records.filter((r) => r.method === 'explora').map((r) => r.step))].sort((a, b) => a - b);
  if (steps.length > 1) {
    out.push(`**Fig. 3 (the steps knob):** ExPLoRA's mean LP by pre-training step: source ${iv(lpOf('source'))} at 0, ` + steps.map((st) => `${iv(lpOf('explora', st))} at ${st}`).join(', ') + '.');
  }
  const caveats = [
    s.config.data.perSeed
      ? 'each seed draws its own datasets, so the intervals over seeds include the sampling of the evaluation sets'
      : `one dataset for all seeds: the intervals over seeds carry training and probe noise only, not the sampling of the ${nTest} test images (one image = ${f1(100 / Math.max(1, nTest))} points; see the item bootstrap per seed)`,
    'a miniature tests the direction of the paper’s claims, not its absolute numbers (32-px synthetic domains, a 4-block source, hundreds of steps instead of 200 epochs on 363k images)',
  ];
  if (s.scale === 'ci') caveats.unshift('**ci scale: mechanics only** — a few steps barely move a prediction, many differences are exactly 0 and the verdicts mean nothing');
  out.push('', '**Caveats:** ' + caveats.join('; ') + '.');
  return out.join('\n');
}

/** The small probe of the `ci` arm runs (mechanics only): one readout, one lr, two iterations. */
const CI_ARM_PROBE = { nLastBlocks: [1], avgpool: [false], lrs: [1e-2], batchSize: 50, epochs: 1, itersPerEpoch: 2, momentum: 0.9, weightDecay: 0, initStd: 0.01 };

/**
 * The notebook's trained arms as recipes for the first seed (recipes/explora-dino-arms.ts), and whether this scale runs
 * them through `runRecipe` (a run folder per arm): `ci` (mechanics: 2 steps on 64 images, a one-lr probe on 60 / 30 / 30
 * images) and `workstation` do; `smoke` only
 * shows them — its 15-minute budget holds the paired multi-seed comparison, which runs the same parameters and
 * schedule through `runMiniature`.
 */
export function dinoArmRuns(s: DinoNotebookSettings): { run: boolean; recipes: Record<string, Recipe> } {
  const run = s.scale === 'ci' || s.scale === 'workstation';
  if (s.scale !== 'ci') return { run, recipes: dinoArmRecipes(s.config, s.seeds[0]) };
  // ci: 2 steps on 64 images, probe 60 / 30 / 30 — the run folders' mechanics within the notebook's minute
  const c = s.config;
  const small: DinoMiniConfig = { ...c, data: { ...c.data, pretrainImages: 64, evalImages: { train: 60, val: 30, test: 30 } }, pretrain: { ...c.pretrain, steps: 2 } };
  return { run, recipes: dinoArmRecipes(small, s.seeds[0], { probe: CI_ARM_PROBE }) };
}

/** One row per arm run: its recipe, starting weights, trainable encoder count, steps, first and last evaluation, run folder. */
export function dinoArmRows(runs: readonly RunResult[]): Array<Record<string, string | number>> {
  const pct = (v: unknown): string | number => (typeof v === 'number' ? +(100 * v).toFixed(1) : '–');
  return runs.map((r) => {
    const first = r.evals[0] ?? { step: 0 };
    const last = r.evals[r.evals.length - 1] ?? { step: 0 };
    const a = r.recipe.adapters;
    return {
      arm: String(r.recipe.tags.arm ?? r.name),
      recipe: a.kind === 'explora' ? a.notation : a.kind,
      from: r.recipe.weights.kind === 'init' ? 'fresh init' : 'source',
      'trainable (encoder)': Number(r.summary.trainableEncoder),
      steps: Number(r.summary.steps),
      'LP % first': `${pct(first.probeTest)} (step ${first.step})`,
      'LP % last': `${pct(last.probeTest)} (step ${last.step})`,
      'kNN % last': pct(last.knn),
      folder: r.dir,
    };
  });
}
