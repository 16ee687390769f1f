/**
 * PYRA's VTAB-1k tables read against a `runVtab` result (recipes/vtab.ts): the paper's averages beside ours, the
 * paper's claims as scoreboard records with verdicts from intervals over seeds (lib/report/claims.ts), the ablation
 * table, and training cost per method (seconds per run, analytic MACs of the schedule).
 *
 * Paper numbers: PYRA (ECCV 2024) Tables 2–3 (VTAB-1k averages, ViT-B/16 and ViT-L/16) and the §4 ablation table.
 */
import { ClaimRecord, ClaimTest, claimFromPairs } from '../lib/report/claims';
import { Recipe, recipe } from './recipe';
import type { PyraVariant } from '../lib/tome/pyra';
import { PYRA_PAPER_AVERAGES, PYRA_METHOD_LABEL, PyraRunName } from './pyra-compare';
import { PYRA_ABLATION_PAPER, pyraAblationPresets } from './pyra-presets';
import { VtabResult, vtabAverages, VTAB_GROUPS } from './vtab';
import { vitConfig } from '../lib/vit/config';
import { vitMacs } from '../lib/tome/flops';
import { RECIPES } from './presets';
import { SOURCE_VIT_SPECS } from './source-vit';
import type { PyraExperiment } from './pyra-compare';
import type { PlotlyFigure } from '../lib/report/plot';
import { tInterval } from '../lib/report/stats';

const PAPER = 'PYRA (ECCV 2024, arXiv 2403.09192)';

/** The paper's VTAB-1k average per method: `column` 'B' (ViT-B/16, smaller = ViT-S/16) or 'L' (ViT-L/16, smaller = ViT-B/16). */
export function pyraPaperAverage(column: 'B' | 'L'): Record<string, number> {
  return Object.fromEntries(PYRA_PAPER_AVERAGES.map((p) => [p.method, column === 'B' ? p.bAcc : p.lAcc]));
}

/**
 * The paper's claims about the six methods as claim records: adverse compression (ToMe + LoRA high < smaller-model
 * LoRA), PYRA's recovery (PYRA high > ToMe + LoRA high, PYRA high ≥ smaller model), low compression costs little
 * (PYRA low ≥ LoRA − 1 point). Each is a paired difference of VTAB averages over the same seeds; a claim whose methods
 * were not run is left out.
 */
export function pyraVtabClaims(res: VtabResult, o: { scale: string; column: 'B' | 'L'; source: string }): ClaimRecord[] {
  const av = (m: PyraRunName): number[] => vtabAverages(res, m).average;
  const paper = pyraPaperAverage(o.column);
  const model = o.column === 'B' ? 'ViT-B/16 (smaller: ViT-S/16)' : 'ViT-L/16 (smaller: ViT-B/16)';
  const pair = (a: PyraRunName, b: PyraRunName, claim: string, test: ClaimTest, table: string): ClaimRecord =>
    claimFromPairs(
      {
        paper: PAPER, tableOrFigure: table, row: `${PYRA_METHOD_LABEL[a]} − ${PYRA_METHOD_LABEL[b]}, ${model}`,
        metric: 'VTAB average difference (points; mean of group means, best test accuracy per task)',
        paperValue: +(paper[a] - paper[b]).toFixed(2), claim, test, scale: o.scale, seeds: res.seeds, source: o.source,
      },
      av(a),
      av(b),
    );
  const have = (...ms: PyraRunName[]): boolean => ms.every((m) => res.methods.includes(m));
  return [
    have('small-lora', 'tome-high') && pair('small-lora', 'tome-high', 'adverse compression: ToMe + LoRA at high compression falls below LoRA on a smaller model', { kind: 'greater', margin: 0 }, 'Table 3'),
    have('pyra-high', 'tome-high') && pair('pyra-high', 'tome-high', 'PYRA recovers the accuracy ToMe + LoRA loses at high compression', { kind: 'greater', margin: 0 }, 'Table 3'),
    have('pyra-high', 'small-lora') && pair('pyra-high', 'small-lora', 'PYRA at high compression beats the smaller model of equal throughput', { kind: 'greater', margin: 0 }, 'Table 3'),
    have('pyra-low', 'lora') && pair('pyra-low', 'lora', 'at low compression PYRA loses (almost) nothing against uncompressed LoRA (tolerance 1 point)', { kind: 'not-less', tolerance: 1 }, 'Table 2'),
  ].filter((c): c is ClaimRecord => c !== false); // claims whose methods were run
}

/** The ablation table: per variant our group means and average beside the paper's (ViT-B/16, high compression). */
export function pyraAblationRows(res: VtabResult, labels: Record<string, string>): Array<Record<string, string | number | null>> {
  return res.methods.map((m) => {
    const av = vtabAverages(res, m);
    const p = PYRA_ABLATION_PAPER[m as keyof typeof PYRA_ABLATION_PAPER] ?? null;
    const mean = (xs: number[] | undefined): number | null => (xs ? +(xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1) : null);
    const row: Record<string, string | number | null> = { configuration: labels[m] ?? m };
    for (const g of VTAB_GROUPS) row[`${g} (ours)`] = mean(av.groups[g]);
    row['avg (ours)'] = mean(av.average);
    row['paper Nat. / Spec. / Struct.'] = p && p.natural !== null ? `${p.natural} / ${p.specialized} / ${p.structured}` : '—';
    row['paper avg'] = p ? p.avg : null;
    return row;
  });
}

/** Claims of the ablation table: every variant against ToMe + LoRA (the paper: each one gains), paired over seeds. */
export function pyraAblationClaims(res: VtabResult, labels: Record<string, string>, o: { scale: string; source: string }): ClaimRecord[] {
  const tome = vtabAverages(res, 'tome').average;
  const paperTome = PYRA_ABLATION_PAPER.tome!.avg;
  return res.methods
    .filter((m) => m !== 'tome')
    .map((m) => {
      const p = PYRA_ABLATION_PAPER[m as keyof typeof PYRA_ABLATION_PAPER];
      return claimFromPairs(
        {
          paper: PAPER, tableOrFigure: 'ablation table (§4)', row: `${labels[m] ?? m} − ToMe + LoRA, ViT-B/16 high`,
          metric: 'VTAB average difference (points)', paperValue: p ? +(p.avg - paperTome).toFixed(2) : null,
          claim: `${labels[m] ?? m} improves on ToMe + LoRA at high compression`, test: { kind: 'greater', margin: 0 }, scale: o.scale, seeds: res.seeds, source: o.source,
        },
        vtabAverages(res, m).average,
        tome,
      );
    });
}

/**
 * Training cost per method: mean seconds of a final run (same steps and batch for all), analytic MACs per image of
 * its schedule (forward; ToMe's §2.6 rule) and both relative to unmerged LoRA (or, when LoRA was not run, to the
 * first method; the column names say which).
 */
export function pyraCostRows(res: VtabResult, methods: Record<string, Recipe>): Array<Record<string, string | number>> {
  const sec = (m: string): number => {
    const xs = res.cells.filter((c) => c.method === m).flatMap((c) => c.seconds);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  const macs = (m: string): number => {
    const r = methods[m];
    if (r.model.kind !== 'vit' || r.adapters.kind !== 'pyra') throw new Error(`pyraCostRows: ${m} is not a PYRA-form ViT recipe`);
    const cfg = vitConfig(r.model.preset, r.model.overrides);
    const sched = Array.isArray(r.adapters.schedule) ? r.adapters.schedule : new Array<number>(cfg.depth).fill(0);
    return vitMacs(cfg, { schedule: sched, ...(r.adapters.method === 'pyra' ? { pyra: r.adapters.variant ?? true } : {}) }).total;
  };
  const base = 'lora' in methods ? 'lora' : Object.keys(methods)[0];
  const ref = base === 'lora' ? 'LoRA' : PYRA_METHOD_LABEL[base as PyraRunName] ?? base;
  return res.methods.map((m) => ({
    method: PYRA_METHOD_LABEL[m as PyraRunName] ?? m,
    'train s / run': +sec(m).toFixed(1),
    [`time vs ${ref}`]: +(sec(m) / sec(base)).toFixed(2),
    'MMACs / image': +(macs(m) / 1e6).toFixed(2),
    [`MACs vs ${ref}`]: +(macs(m) / macs(base)).toFixed(2),
  }));
}

/**
 * The ablation rows as recipes: `pyraHigh` (a PYRA-form recipe, method 'pyra') with each variant of the paper's
 * ablation (lib/tome/pyra.ts `PYRA_ABLATIONS`), and its ToMe + LoRA baseline ('tome': method 'tome', no variant).
 */
export function pyraAblationPresetsForRecipe(pyraHigh: Recipe): Record<string, { label: string; variant: Partial<PyraVariant> | null; recipe: Recipe }> {
  const a = pyraHigh.adapters;
  if (a.kind !== 'pyra' || a.method !== 'pyra') throw new Error(`pyraAblationPresetsForRecipe: expected a PYRA recipe (adapters.kind 'pyra', method 'pyra'), got ${a.kind}${a.kind === 'pyra' ? ` method '${a.method}'` : ''}`);
  const { variant: _v, ...plain } = a;
  const rows = pyraAblationPresets({ method: 'pyra', backbone: a.backbone, schedule: a.schedule, loraRank: a.loraRank, loraInit: a.loraInit, loraDropout: a.loraDropout, propAttn: a.propAttn });
  const out: Record<string, { label: string; variant: Partial<PyraVariant> | null; recipe: Recipe }> = {};
  for (const [k, row] of Object.entries(rows)) {
    const variant = row.preset.method === 'pyra' ? (row.preset.variant ?? null) : null;
    const adapters = row.preset.method === 'tome' ? { ...plain, method: 'tome' as const } : { ...plain, variant: { ...variant } };
    out[k] = { label: row.label, variant, recipe: recipe({ ...pyraHigh, name: `${pyraHigh.name}-${k}`, tags: { ...pyraHigh.tags, ablation: k }, adapters }) };
  }
  return out;
}

/**
 * Notebook 02's experiment as notebooks 10 and 11 run it: LoRA r8 (PYRA's released form) on the d128×6 source ViT, the
 * smaller d64×6 model, the low / high merge schedules; every method's recipe is derived from it (`pyraComparison`).
 */
export const PYRA_VTAB_EXPERIMENT: PyraExperiment = {
  name: 'ours',
  main: { label: 'ViT d128×6', recipe: RECIPES.tome_pyra_small },
  small: {
    label: 'ViT d64×6',
    model: { kind: 'vit', preset: SOURCE_VIT_SPECS.d64x6.preset, overrides: { ...SOURCE_VIT_SPECS.d64x6.overrides, numClasses: 10 } },
    weights: { kind: 'asset', name: 'source-vit-d64x6', head: 'reinit' },
    loraRank: 4,
  },
  low: [10, 10, 10, 10, 10, 7],
  high: [26, 15, 10, 5, 3, 1],
};

/** One scale of the VTAB-style protocol: training budget, evaluation period, images per class, search grid, seeds. */
export interface VtabScale {
  budget: { steps: number; batch: number };
  evalEvery: number;
  /** Images per class of the embedded tasks (0: the tasks come from disk). */
  perClass: number;
  /** The lr × weight-decay grid of the per-task search (one point: no search, that point is used). */
  grid: { lr: number[]; weightDecay: number[] };
  seeds: number[];
  /** Methods to run (null: all of the notebook's). */
  methods: string[] | null;
  /** Embedded tasks to run, by name (null: all of `embeddedVtabTasks`). */
  tasks: string[] | null;
}

/**
 * The scales of notebooks 10 and 11 (plain data: spread and tweak, e.g. `{...PYRA_VTAB_SCALES.smoke, seeds: [0]}`).
 * `smoke` fits the 15-minute budget of a 2-core machine: one task per VTAB group, no search — lr 1e-2 and weight decay
 * 1e-4 fixed (lr: notebook 02's choice among 5e-3 / 1e-2 / 2e-2 on the satellite task, LOG.md "Notebook 02"; wd: the
 * release's) — 48 steps of 32, three seeds; each notebook runs three methods at this scale. `workstation` is the
 * full miniature protocol (four tasks, the lr search, every method: 120–200 recipe runs, 1.5–2.5 CPU-hours).
 */
export const PYRA_VTAB_SCALES: Record<'ci' | 'smoke' | 'workstation' | 'paper', VtabScale> = {
  // 3 tasks (natural / specialized / structured), 60 images per class (36 train / 12 val / 12 test), 48 steps of 32
  smoke: { budget: { steps: 48, batch: 32 }, evalEvery: 16, perClass: 60, grid: { lr: [1e-2], weightDecay: [1e-4] }, seeds: [0, 1, 2], methods: null, tasks: ['objects', 'satellite', 'count'] },
  // 4 tasks, 60 steps of 32, a 2-point lr search per (method, task), 3 seeds, every method
  workstation: { budget: { steps: 60, batch: 32 }, evalEvery: 20, perClass: 60, grid: { lr: [3e-3, 1e-2], weightDecay: [1e-4] }, seeds: [0, 1, 2], methods: null, tasks: null },
  // mechanics only: 2 steps, 5 images per class, no search, 2 seeds, one task per group (the notebooks pick fewer methods)
  ci: { budget: { steps: 2, batch: 8 }, evalEvery: 2, perClass: 5, grid: { lr: [1e-2], weightDecay: [1e-4] }, seeds: [0, 1], methods: null, tasks: ['objects', 'satellite', 'count'] },
  // the paper: 19 VTAB-1k tasks on disk, 100 epochs, lr × wd grid of Consolidator; a GPU job (not run here)
  paper: { budget: { steps: 3100, batch: 32 }, evalEvery: 310, perClass: 0, grid: { lr: [1e-3, 3e-3], weightDecay: [1e-4, 1e-3] }, seeds: [0, 1, 2], methods: null, tasks: null },
};

/** A recipe with a scale's budget: steps, batch, warm-up (a tenth of the steps, ≥ 1) and the evaluation period. */
export function withVtabBudget(r: Recipe, hp: Pick<VtabScale, 'budget' | 'evalEvery'>): Recipe {
  return {
    ...r,
    steps: hp.budget.steps,
    batch: hp.budget.batch,
    schedule: { ...r.schedule, warmup: { steps: Math.max(1, Math.floor(hp.budget.steps / 10)) } } as Recipe['schedule'],
    eval: { ...r.eval, at: { every: hp.evalEvery } } as Recipe['eval'],
  };
}

const halfWidth = (xs: readonly number[]): number => (xs.length > 1 ? (tInterval(xs).hi - tInterval(xs).lo) / 2 : 0);
const meanOf = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * Group means and the VTAB average per method as a grouped bar chart, error bars = half-width of the 95 % t interval
 * over seeds (`labels` renames methods). A dotted line per task group would mislead (chance differs per task), so the
 * per-task chance level is in `vtabReadout`'s text instead.
 */
export function vtabFigure(res: VtabResult, labels: Record<string, string>, title: string): PlotlyFigure {
  const cats = [...VTAB_GROUPS.filter((g) => res.tasks.some((t) => t.group === g)), 'VTAB avg'];
  return {
    data: res.methods.map((m) => {
      const av = vtabAverages(res, m);
      const series = cats.map((c) => (c === 'VTAB avg' ? av.average : av.groups[c as (typeof VTAB_GROUPS)[number]]!));
      return { type: 'bar', name: labels[m] ?? m, x: cats, y: series.map((xs) => +meanOf(xs).toFixed(2)), error_y: { type: 'data', array: series.map((xs) => +halfWidth(xs).toFixed(2)), visible: true } };
    }),
    layout: {
      title: { text: title, x: 0, xref: 'paper', xanchor: 'left' }, barmode: 'group',
      yaxis: { title: { text: 'best test accuracy (%), mean ± 95 % t half-width over seeds' }, automargin: true },
      margin: { t: 50, r: 20, b: 50, l: 60 },
    },
  };
}

/**
 * "What this run shows / does not show", written from the numbers: every claim with our paired difference, its 95 %
 * interval, the paper's value and the verdict; every task's accuracy (mean over methods and seeds) against chance, so
 * a task that did not learn is named; then what the scale cannot show (`notShown`, the notebook's own lines).
 */
export function vtabReadout(res: VtabResult, claims: readonly ClaimRecord[], o: { scale: string; notShown: string[] }): string {
  const f = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '—');
  const lines = [`**What this run shows** (scale: ${o.scale}; ${res.seeds.length} seeds, paired over seeds):`, ''];
  for (const c of claims) {
    const e = c.ours;
    lines.push(`- ${c.claim}: ours ${f(e.mean)} points [${f(e.lo)}, ${f(e.hi)}] (paper ${c.paperValue ?? '—'}) → **${c.verdict}**.`);
  }
  const count = (v: string): number => claims.filter((c) => c.verdict === v).length;
  lines.push(`- ${count('reproduced')} reproduced, ${count('not reproduced')} not reproduced, ${count('inconclusive')} inconclusive of ${claims.length}` +
    (count('inconclusive') === claims.length ? ': at this scale every interval reaches across the threshold — the run does not resolve the paper\'s effects, in either direction.' : '.'));
  for (const t of res.tasks) {
    const accs = res.cells.filter((c) => c.task === t.name).flatMap((c) => c.best);
    const chance = 100 / t.numClasses;
    const m = meanOf(accs);
    lines.push(`- task \`${t.name}\` (${t.group}): best test accuracy ${f(m)} % averaged over methods and seeds, chance ${f(chance)} %` +
      (m < chance + 10 ? ' — barely above chance: this task contributes mostly noise at this budget.' : '.'));
  }
  lines.push('', '**What it does not show:**', '', ...o.notShown.map((l) => `- ${l}`));
  return lines.join('\n');
}
