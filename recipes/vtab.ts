/**
 * A VTAB-style multi-task runner: recipes in, one table out.
 *
 * Protocol (VTAB-1k as NOAH / Consolidator / PYRA run it, scaled): for every (method, task)
 * 1. hyper-parameter search: each grid point (lr × weight decay) trains on the task's `train` split and is scored on
 *    `val` (the train800 / val200 search); the best point by val accuracy wins (ties: the first in grid order);
 * 2. final runs: the winner trains on `train ∪ val` (train800val200) with every seed and is scored on `test`.
 * The per-task number is the best test accuracy over the logged evaluations (the PYRA / Consolidator collectors'
 * "max accuracy"; the last evaluation is kept too). Group means over natural / specialized / structured, and the
 * VTAB average = mean of the three group means (not of the tasks) — per seed, so the averages get intervals.
 *
 * Every run is a `runRecipe` run folder (recipe.json, metrics.jsonl …) under `root`, named
 * `<prefix>-<method>-<task>-{lr…wd…|s<seed>}`. A method is one recipe (model, weights, adapters, optimiser, budget);
 * the runner replaces only its data, head size, seed, lr and weight decay.
 */
import { RECIPE_FORMAT, Recipe, SourceSpec, recipe } from './recipe';
import { RunOptions, RunResult, runRecipe } from './run';
import { runRecipesSideBySide } from './run-side-by-side';
import { WorkersOption, resolveWorkers } from '../lib/parallel/cores';
import { tInterval } from '../lib/report/stats';

export const VTAB_GROUPS = ['natural', 'specialized', 'structured'] as const;
export type VtabGroup = (typeof VTAB_GROUPS)[number];

/** One task: where its images come from (with `train`, `val` and `test` splits) and its class count. */
export interface VtabTask {
  name: string;
  group: VtabGroup;
  source: SourceSpec;
  numClasses: number;
}

/**
 * The embedded VTAB-style tasks, each with train / val / test (60 / 20 / 20 per class), so every group is covered:
 * natural = `objects` (the natural domain's ten shapes on outdoor-like scenes), specialized = the satellite domain
 * (EuroSAT classes, RGB), structured = `count` (how many objects, 1–6) and `orientation` (a bar's angle, 8 bins).
 * `perClass` images per class (the satellite domain's split is its own 60 / 20 / 20).
 */
export function embeddedVtabTasks(o: { size?: number; perClass?: number; seed?: number } = {}): VtabTask[] {
  const size = o.size ?? 32;
  const per = o.perClass ?? 60;
  const seed = o.seed ?? 0;
  const src = (domain: Extract<SourceSpec, { kind: 'embedded' }>['domain']): SourceSpec => ({
    kind: 'embedded', domain, seed, size, satellitePerClass: Math.max(per, 5), naturalPerClass: Math.max(per, 5),
  });
  return [
    { name: 'objects', group: 'natural', source: src('objects'), numClasses: 10 },
    { name: 'satellite', group: 'specialized', source: src('satellite-rgb'), numClasses: 10 },
    { name: 'count', group: 'structured', source: src('count'), numClasses: 6 },
    { name: 'orientation', group: 'structured', source: src('orientation'), numClasses: 8 },
  ];
}

/** The hyper-parameter grid of the per-task search (the paper's protocol searches lr and weight decay). */
export interface VtabGrid {
  lr: number[];
  weightDecay: number[];
}

export interface VtabOptions {
  grid: VtabGrid;
  /** Seeds of the final runs (≥ 3 for intervals); the search uses the first. */
  seeds: number[];
  /** Run-folder name prefix (default 'vtab'). */
  prefix?: string;
  root?: RunOptions['root'];
  progress?: RunOptions['progress'];
  /**
   * Runs at once (`runRecipesSideBySide`: one worker thread each; 'auto' = the physical cores). Default 1: one run at a
   * time, each with `runRecipe`'s default workers. A run's numbers do not depend on the lanes; its `seconds` are then
   * measured beside the other lanes' runs (one core each).
   */
  lanes?: WorkersOption;
  /** Called after every run (a notebook can print a line). */
  onRun?: (what: { method: string; task: string; phase: 'search' | 'final'; lr: number; weightDecay: number; seed: number; acc: number }) => void;
}

/** One (method, task) outcome. */
export interface VtabCell {
  method: string;
  task: string;
  group: VtabGroup;
  /** The search: val accuracy per grid point, and the winner. */
  search: Array<{ lr: number; weightDecay: number; valAcc: number }>;
  chosen: { lr: number; weightDecay: number };
  /** Final runs, per seed (same order as `seeds`): best and last test accuracy (%), seconds of training. */
  best: number[];
  last: number[];
  seconds: number[];
}

export interface VtabResult {
  tasks: VtabTask[];
  methods: string[];
  seeds: number[];
  cells: VtabCell[];
}

function maxAcc(r: RunResult): { best: number; last: number } {
  const accs = r.evals.map((e) => e.testAcc).filter((a): a is number => typeof a === 'number' && Number.isFinite(a));
  if (!accs.length) throw new Error(`runVtab: run ${r.name} logged no accuracy`);
  return { best: 100 * Math.max(...accs), last: 100 * accs[accs.length - 1] };
}

/** The recipe of one run: `base` on `task`, trained on `trainSplits`, scored on `testSplit`. */
export function vtabRunRecipe(base: Recipe, task: VtabTask, o: { name: string; seed: number; lr: number; weightDecay: number; trainSplits: string[]; testSplit: string }): Recipe {
  const r = recipe(base);
  if (r.model.kind !== 'vit') throw new Error(`runVtab: method ${base.name} must be a ViT recipe (model.kind 'vit'), got '${r.model.kind}'`);
  if (r.eval.kind !== 'accuracy') throw new Error(`runVtab: method ${base.name} must evaluate accuracy (eval.kind 'accuracy'), got '${r.eval.kind}'`);
  const split = (s: string) => ({ split: s, subset: null });
  return recipe({
    ...r,
    format: RECIPE_FORMAT,
    name: o.name,
    seed: o.seed,
    lr: o.lr,
    weightDecay: o.weightDecay,
    tags: { ...r.tags, vtabTask: task.name, vtabGroup: task.group },
    model: { ...r.model, overrides: { ...r.model.overrides, numClasses: task.numClasses } },
    weights: r.weights.kind === 'init' ? r.weights : { ...r.weights, head: 'reinit' } as Recipe['weights'],
    data: { ...r.data, source: task.source, train: { ...r.data.train, splits: o.trainSplits.map(split) } },
    eval: { ...r.eval, test: { ...r.eval.test, splits: [split(o.testSplit)] } },
  });
}

const tag = (x: number): string => x.toExponential(0).replace('+', '');

/**
 * Run every method on every task with the per-task search, then the final seeds.
 * @example const res = await runVtab({lora: r1, 'pyra-high': r2}, embeddedVtabTasks(), {grid: {lr: [3e-3, 1e-2], weightDecay: [1e-4]}, seeds: [0, 1, 2]})
 */
export async function runVtab(methods: Record<string, Recipe>, tasks: readonly VtabTask[], o: VtabOptions): Promise<VtabResult> {
  if (!o.seeds.length) throw new Error('runVtab: seeds must not be empty');
  if (!o.grid.lr.length || !o.grid.weightDecay.length) throw new Error('runVtab: the grid needs at least one lr and one weightDecay');
  for (const t of tasks) if (!VTAB_GROUPS.includes(t.group)) throw new Error(`runVtab: task ${t.name} has group '${t.group}'; valid: ${VTAB_GROUPS.join(', ')}`);
  const prefix = o.prefix ?? 'vtab';
  const lanes = resolveWorkers(o.lanes ?? 1);
  // one batch of independent runs: side by side with lanes > 1, else one after another (the original behaviour)
  const runAll = async (rs: Recipe[]): Promise<RunResult[]> => {
    if (lanes > 1) return runRecipesSideBySide(rs, { lanes, root: o.root });
    const out: RunResult[] = [];
    for (const r of rs) out.push(await runRecipe(r, { root: o.root, progress: o.progress ?? false }));
    return out;
  };
  const pairs = Object.entries(methods).flatMap(([method, base]) => tasks.map((task) => ({ method, base, task })));
  const searched = o.grid.lr.length * o.grid.weightDecay.length > 1;
  const grid = o.grid.lr.flatMap((lr) => o.grid.weightDecay.map((weightDecay) => ({ lr, weightDecay })));
  // phase 1: the per-task search (val accuracy per grid point; nothing to choose with one point: no search run)
  const searchJobs = searched ? pairs.flatMap((p) => grid.map((g) => ({ ...p, ...g }))) : [];
  const searchRes = await runAll(searchJobs.map((j) => vtabRunRecipe(j.base, j.task, { name: `${prefix}-${j.method}-${j.task.name}-lr${tag(j.lr)}wd${tag(j.weightDecay)}`, seed: o.seeds[0], lr: j.lr, weightDecay: j.weightDecay, trainSplits: ['train'], testSplit: 'val' })));
  const cells: VtabCell[] = pairs.map(({ method, task }, pi) => {
    const search: VtabCell['search'] = grid.map((g, gi) => {
      if (!searched) return { ...g, valAcc: NaN };
      const acc = maxAcc(searchRes[pi * grid.length + gi]).best;
      o.onRun?.({ method, task: task.name, phase: 'search', lr: g.lr, weightDecay: g.weightDecay, seed: o.seeds[0], acc });
      return { ...g, valAcc: acc };
    });
    const win = search.reduce((a, b) => (b.valAcc > a.valAcc ? b : a), search[0]);
    return { method, task: task.name, group: task.group, search, chosen: { lr: win.lr, weightDecay: win.weightDecay }, best: [], last: [], seconds: [] };
  });
  // phase 2: the final seeds at the chosen point, trained on train + val, scored on test
  const finalRes = await runAll(pairs.flatMap(({ method, base, task }, pi) => o.seeds.map((seed) => vtabRunRecipe(base, task, { name: `${prefix}-${method}-${task.name}-s${seed}`, seed, ...cells[pi].chosen, trainSplits: ['train', 'val'], testSplit: 'test' }))));
  cells.forEach((cell, pi) => {
    o.seeds.forEach((seed, si) => {
      const res = finalRes[pi * o.seeds.length + si];
      const a = maxAcc(res);
      cell.best.push(a.best);
      cell.last.push(a.last);
      cell.seconds.push(Number(res.summary.seconds ?? NaN));
      o.onRun?.({ method: cell.method, task: cell.task, phase: 'final', ...cell.chosen, seed, acc: a.best });
    });
  });
  return { tasks: [...tasks], methods: Object.keys(methods), seeds: [...o.seeds], cells };
}

/** Per-seed group means and VTAB average (mean of the group means) of one method; groups without a task are absent. */
export function vtabAverages(res: VtabResult, method: string, which: 'best' | 'last' = 'best'): { groups: Partial<Record<VtabGroup, number[]>>; average: number[] } {
  const groups: Partial<Record<VtabGroup, number[]>> = {};
  for (const g of VTAB_GROUPS) {
    const cs = res.cells.filter((c) => c.method === method && c.group === g);
    if (!cs.length) continue;
    groups[g] = res.seeds.map((_, i) => cs.reduce((s, c) => s + c[which][i], 0) / cs.length);
  }
  const present = Object.values(groups) as number[][];
  if (!present.length) throw new Error(`vtabAverages: no cells for method '${method}'`);
  const average = res.seeds.map((_, i) => present.reduce((s, g) => s + g[i], 0) / present.length);
  return { groups, average };
}

const fmtCi = (xs: number[]): string => {
  if (xs.length < 2) return xs.length ? xs[0].toFixed(1) : '—';
  const iv = tInterval(xs);
  return `${iv.mean.toFixed(1)} ± ${((iv.hi - iv.lo) / 2).toFixed(1)}`;
};

/**
 * The table: one row per method, one column per task, the group means and the VTAB average, each "mean ± half-width
 * of the 95 % t interval over seeds"; `paper` adds the paper's average beside ours (by method name).
 */
export function vtabTable(res: VtabResult, paper: Record<string, number | null> = {}, which: 'best' | 'last' = 'best'): Array<Record<string, string | number | null>> {
  return res.methods.map((m) => {
    const row: Record<string, string | number | null> = { method: m };
    for (const t of res.tasks) {
      const c = res.cells.find((x) => x.method === m && x.task === t.name);
      row[t.name] = c ? fmtCi(c[which]) : '—';
    }
    const av = vtabAverages(res, m, which);
    for (const g of VTAB_GROUPS) row[g] = av.groups[g] ? fmtCi(av.groups[g]!) : '—';
    row['VTAB avg (ours)'] = fmtCi(av.average);
    if (m in paper) row['VTAB avg (paper)'] = paper[m];
    return row;
  });
}

/** The search of every (method, task): the grid's val accuracies and the chosen point. */
export function vtabSearchRows(res: VtabResult): Array<Record<string, string | number>> {
  return res.cells.map((c) => ({
    method: c.method,
    task: c.task,
    ...Object.fromEntries(c.search.map((s) => [`lr ${s.lr} wd ${s.weightDecay}`, Number.isFinite(s.valAcc) ? +s.valAcc.toFixed(1) : '—'])),
    chosen: `lr ${c.chosen.lr}, wd ${c.chosen.weightDecay}`,
    'train s / run': +(c.seconds.reduce((a, b) => a + b, 0) / c.seconds.length).toFixed(1),
  }));
}
