/**
 * Accuracy, throughput, training time and memory against the compression rate (notebook 12): one merge-schedule
 * family (lib/tome/sweep.ts) on notebook 02's experiment, ToMe + LoRA and PYRA at each schedule, unmerged LoRA and the
 * smaller model as the two reference points.
 *
 * - Accuracy: a few schedules of the family, every seed, through the VTAB-style runner (recipes/vtab.ts: no search,
 *   train ∪ val → test, best and last test accuracy of the logged evaluations).
 * - Throughput: every schedule of the family (many points, not two), measured interleaved — one timed measurement of
 *   every method per round, the order rotated each round, the median per method and the per-round ratios to unmerged
 *   LoRA and of PYRA to ToMe at the same schedule (bench/pyra-speed.ts's protocol, in the notebook's process).
 * - Training time per run (the accuracy runs' seconds) and the planner's peak bytes of one training step
 *   (recipes/plan.ts `planRun`).
 *
 * Paper: PYRA (ECCV 2024) Tables 2–3 (throughput, img/s on the authors' GPU) and its accuracy-vs-compression figure
 * (curves only; its numbers are not published in text).
 */
import { vitConfig } from '../lib/vit/config';
import { vitMacs } from '../lib/tome/flops';
import { compressionSweep, SweepPoint, SweepRule } from '../lib/tome/sweep';
import { WorkersOption } from '../lib/parallel/cores';
import { measureModelThroughput, measureModelThroughputAsync } from '../lib/tome/throughput';
import { syncReads } from '../lib/reads';
import { PlotlyFigure } from '../lib/report/plot';
import { ClaimRecord, claimFromPairs } from '../lib/report/claims';
import { tInterval } from '../lib/report/stats';
import { Recipe, recipe } from './recipe';
import { prepareRecipe, RecipeSession } from './session';
import { planRun } from './plan';
import { PyraExperiment, pyraComparison, PYRA_PAPER_AVERAGES } from './pyra-compare';
import { VtabResult, vtabAverages } from './vtab';

/** One scale of notebook 12 (plain data). */
export interface CompressionScale {
  /** The schedule family (lib/tome/sweep.ts): 'pyraHigh' = PYRA's high profile to T final tokens. */
  rule: SweepRule;
  /** Values of the family trained for accuracy (final token counts for 'pyraHigh'), besides unmerged and the smaller model. */
  accuracy: number[];
  /** Values of the family timed for throughput (null: every schedule of the family). */
  throughput: number[] | null;
  task: string;
  perClass: number;
  budget: { steps: number; batch: number };
  evalEvery: number;
  seeds: number[];
  lr: number;
  weightDecay: number;
  /** Throughput measurement: images per forward, untimed warm-up forwards, timed forwards per measurement, rounds. */
  timing: { batch: number; warmup: number; iters: number; rounds: number };
  /** Training runs at once (`runVtab`'s `lanes`: one worker thread each, 'auto' = the physical cores; 1 = one at a time). */
  lanes: WorkersOption;
}

/**
 * Notebook 12's scales. `smoke`: the satellite task (the embedded task that learns fastest, notebook 02), accuracy at
 * 2 merged schedules (T = 17 and T = 5 final tokens; T = 5 ends at the experiment's "high" 5 tokens, by the rescaled
 * profile [23,17,10,6,2,2] rather than its [26,15,10,5,3,1]) + unmerged + the smaller model,
 * 5 seeds (30 runs side by side, 2 lanes), 48 steps of 32, lr / wd as notebooks 10–11; throughput at 11 'pyraHigh'
 * schedules (65 → 5 final tokens), 3 rounds. Measured whole: 722 s wall idle (457 s at 3 seeds; LOG.md). `workstation` (not measured): 5 merged accuracy points, 5 seeds, 100 steps, 18 schedules timed, 5 rounds.
 */
export const PYRA_COMPRESSION_SCALES: Record<'ci' | 'smoke' | 'workstation', CompressionScale> = {
  ci: { rule: 'pyraHigh', accuracy: [5], throughput: [65, 33, 5], task: 'satellite', perClass: 5, budget: { steps: 2, batch: 8 }, evalEvery: 2, seeds: [0, 1], lr: 1e-2, weightDecay: 1e-4, timing: { batch: 8, warmup: 1, iters: 1, rounds: 2 }, lanes: 1 },
  smoke: { rule: 'pyraHigh', accuracy: [17, 5], throughput: [65, 57, 49, 41, 33, 25, 17, 13, 9, 7, 5], task: 'satellite', perClass: 60, budget: { steps: 48, batch: 32 }, evalEvery: 16, seeds: [0, 1, 2, 3, 4], lr: 1e-2, weightDecay: 1e-4, timing: { batch: 32, warmup: 1, iters: 2, rounds: 3 }, lanes: 'auto' },
  workstation: { rule: 'pyraHigh', accuracy: [49, 33, 17, 9, 5], throughput: [65, 61, 57, 53, 49, 45, 41, 37, 33, 29, 25, 21, 17, 13, 9, 7, 5, 3], task: 'satellite', perClass: 60, budget: { steps: 100, batch: 32 }, evalEvery: 25, seeds: [0, 1, 2, 3, 4], lr: 1e-2, weightDecay: 1e-4, timing: { batch: 64, warmup: 2, iters: 4, rounds: 5 }, lanes: 'auto' },
};

/** The schedule family of the experiment's large model (token counts, MACs, compression per point). */
export function experimentSweep(e: PyraExperiment, rule: SweepRule, values?: readonly number[]): SweepPoint[] {
  const m = e.main.recipe.model;
  if (m.kind !== 'vit') throw new Error(`experimentSweep(${e.name}): the main recipe must be a ViT (model.kind 'vit'), got '${m.kind}'`);
  return compressionSweep(vitConfig(m.preset, m.overrides), rule, values ? { values } : {});
}

/** MACs of the smaller model ÷ MACs of the unmerged large model (the smaller model's place on the compression axis). */
export function smallMacsRatio(e: PyraExperiment): number {
  const big = e.main.recipe.model;
  const small = e.small.model;
  if (big.kind !== 'vit' || small.kind !== 'vit') throw new Error(`smallMacsRatio(${e.name}): both models must be ViTs`);
  return vitMacs(vitConfig(small.preset, small.overrides)).total / vitMacs(vitConfig(big.preset, big.overrides)).total;
}

/** Method name of a merged point: `tome-T17`, `pyra-T17` ('pyraHigh': T = final tokens; else `-r<r>`). */
const pointMethod = (kind: 'tome' | 'pyra', p: SweepPoint): string => `${kind}-${p.rule === 'pyraHigh' ? 'T' : 'r'}${p.param}`;

/**
 * The recipes of a sweep: 'lora' (unmerged) and 'small-lora' from `pyraComparison`, and ToMe + LoRA / PYRA at every
 * merged point (a point with no merging is the 'lora' run).
 */
export function compressionRecipes(e: PyraExperiment, points: readonly SweepPoint[], o: { prefix: string; tags?: Recipe['tags'] }): Record<string, Recipe> {
  const base = pyraComparison(e, o);
  const a = base.lora.adapters;
  if (a.kind !== 'pyra') throw new Error('compressionRecipes: the main recipe must be LoRA in PYRA\'s form');
  const out: Record<string, Recipe> = { lora: base.lora, 'small-lora': base['small-lora'] };
  for (const p of points) {
    if (p.schedule.every((r) => r === 0)) continue;
    for (const kind of ['tome', 'pyra'] as const) {
      const name = pointMethod(kind, p);
      out[name] = recipe({ ...base.lora, name: `${o.prefix}-${name}`, tags: { ...base.lora.tags, method: name, compression: +p.compression.toFixed(3) }, adapters: { ...a, method: kind, schedule: [...p.schedule] } });
    }
  }
  return out;
}

/** Throughput of one method over the rounds. */
export interface SweepSpeed {
  method: string;
  imgPerSec: number[];
  /** Per round: this method's img/s ÷ unmerged LoRA's of the same round. */
  speedup: number[];
  /** PYRA only, per round: PYRA's time ÷ ToMe's at the same schedule, same round. */
  overTome: number[] | null;
}

const median = (v: readonly number[]): number => {
  const s = [...v].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * Interleaved throughput of every recipe (eval mode, LoRA unmerged as PYRA's latency test runs it): the sessions are
 * prepared once, then each round measures every method once, in an order rotated per round.
 */
export async function measureSweepThroughput(recipes: Record<string, Recipe>, t: CompressionScale['timing']): Promise<SweepSpeed[]> {
  if (!('lora' in recipes)) throw new Error('measureSweepThroughput: a \'lora\' (unmerged) recipe is the reference');
  const names = Object.keys(recipes);
  const sessions = new Map<string, RecipeSession>();
  const ips = new Map<string, number[]>(names.map((n) => [n, []]));
  try {
    for (const n of names) sessions.set(n, await prepareRecipe(recipes[n]));
    for (let round = 0; round < t.rounds; round++) {
      for (let j = 0; j < names.length; j++) {
        const n = names[(round + j) % names.length];
        const s = sessions.get(n)!;
        const o = { batch: t.batch, warmup: t.warmup, iters: t.iters, minSeconds: 0, seed: round, label: n };
        const rec = syncReads() ? measureModelThroughput(s.encoder!, s.parts.pyra!, o) : await measureModelThroughputAsync(s.encoder!, s.parts.pyra!, o);
        ips.get(n)!.push(rec.imgPerSec);
      }
    }
  } finally {
    for (const s of sessions.values()) s.dispose();
  }
  const ref = ips.get('lora')!;
  return names.map((n) => {
    const v = ips.get(n)!;
    const tome = n.startsWith('pyra-') ? ips.get(n.replace(/^pyra-/, 'tome-')) : undefined;
    return { method: n, imgPerSec: v, speedup: v.map((x, i) => x / ref[i]), overTome: tome ? v.map((x, i) => tome[i] / x) : null };
  });
}

/** Row per schedule: tokens, MACs, measured img/s (median), speed-up and PYRA ÷ ToMe time (medians of per-round ratios). */
export function sweepSpeedRows(points: readonly SweepPoint[], speeds: readonly SweepSpeed[], smallRatio: number): Array<Record<string, string | number | null>> {
  const by = new Map(speeds.map((s) => [s.method, s]));
  const lora = by.get('lora')!;
  const f = (x: number | undefined, d = 2): number | null => (x === undefined || !Number.isFinite(x) ? null : +x.toFixed(d));
  return points.map((p) => {
    const merged = p.schedule.some((r) => r > 0);
    const tome = merged ? by.get(pointMethod('tome', p)) : lora;
    const pyra = merged ? by.get(pointMethod('pyra', p)) : undefined;
    return {
      schedule: `[${p.schedule.join(',')}]`, 'tokens out': p.tokens[p.tokens.length - 1], 'MACs vs unmerged': f(p.macsRatio, 3),
      'ToMe img/s': f(tome && median(tome.imgPerSec), 1), 'PYRA img/s': f(pyra && median(pyra.imgPerSec), 1),
      'ToMe speed-up': f(tome && median(tome.speedup)), 'PYRA speed-up': f(pyra && median(pyra.speedup)), 'MAC-bound speed-up': f(1 / p.macsRatio),
      'PYRA ÷ ToMe time': f(pyra?.overTome ? median(pyra.overTome) : undefined, 3),
    };
  }).concat(by.has('small-lora') ? [{
    schedule: 'smaller model, unmerged', 'tokens out': points[0].tokens[0], 'MACs vs unmerged': f(smallRatio, 3), 'ToMe img/s': null, 'PYRA img/s': null,
    'ToMe speed-up': f(median(by.get('small-lora')!.speedup)), 'PYRA speed-up': null, 'MAC-bound speed-up': f(1 / smallRatio), 'PYRA ÷ ToMe time': null,
  }] : []);
}

/** Training cost per accuracy method: seconds per run (mean over seeds), planned peak bytes of one step, MACs ratio. */
export function trainCostRows(res: VtabResult, recipes: Record<string, Recipe>, points: readonly SweepPoint[], smallRatio: number, backend: string): Array<Record<string, string | number>> {
  const byName = new Map(points.flatMap((p) => [[pointMethod('tome', p), p], [pointMethod('pyra', p), p]] as Array<[string, SweepPoint]>));
  const sec = (m: string): number => {
    const xs = res.cells.filter((c) => c.method === m).flatMap((c) => c.seconds);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  const mib = (m: string): number => planRun(recipes[m], backend).plan.peakBytes / 2 ** 20;
  return res.methods.map((m) => ({
    method: m,
    'MACs vs unmerged': m === 'lora' ? 1 : +(m === 'small-lora' ? smallRatio : byName.get(m)!.macsRatio).toFixed(3),
    'train s / run': +sec(m).toFixed(1),
    'time vs unmerged': +(sec(m) / sec('lora')).toFixed(2),
    'planned peak MiB / step': +mib(m).toFixed(1),
    'memory vs unmerged': +(mib(m) / mib('lora')).toFixed(2),
  }));
}

const ci95 = (xs: readonly number[]): number => (xs.length > 1 ? (tInterval(xs).hi - tInterval(xs).lo) / 2 : 0);
const avg = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * Two panels' worth of curves against the compression rate (1 − MACs ratio): best test accuracy (mean ± 95 % t
 * half-width over seeds) of ToMe + LoRA and PYRA through unmerged LoRA, the smaller model as a point at its own MACs
 * ratio; and measured speed-up over unmerged LoRA (median of per-round ratios) for both, with the MAC-bound line and
 * the paper's ViT-B/16 points (GPU) beside.
 */
export function compressionFigures(res: VtabResult, points: readonly SweepPoint[], speeds: readonly SweepSpeed[], smallMacsRatio: number): { accuracy: PlotlyFigure; speed: PlotlyFigure } {
  const acc = (m: string): number[] => vtabAverages(res, m).average;
  const accPts = points.filter((p) => p.schedule.every((r) => r === 0) || res.methods.includes(pointMethod('tome', p)));
  const curve = (kind: 'tome' | 'pyra', name: string) => {
    const ms = accPts.map((p) => (p.schedule.every((r) => r === 0) ? 'lora' : pointMethod(kind, p)));
    return { type: 'scatter', mode: 'lines+markers', name, x: accPts.map((p) => +p.compression.toFixed(3)), y: ms.map((m) => +avg(acc(m)).toFixed(2)), error_y: { type: 'data', array: ms.map((m) => +ci95(acc(m)).toFixed(2)), visible: true } };
  };
  const small = acc('small-lora');
  const layout = (title: string, y: string) => ({ title: { text: title, x: 0, xref: 'paper', xanchor: 'left' }, xaxis: { title: { text: 'compression: 1 − MACs / unmerged MACs' }, automargin: true }, yaxis: { title: { text: y }, automargin: true }, margin: { t: 50, r: 20, b: 50, l: 60 } });
  const accuracy: PlotlyFigure = {
    data: [curve('tome', 'ToMe + LoRA'), curve('pyra', 'PYRA'),
      { type: 'scatter', mode: 'markers', name: 'smaller model, LoRA', x: [+(1 - smallMacsRatio).toFixed(3)], y: [+avg(small).toFixed(2)], error_y: { type: 'data', array: [+ci95(small).toFixed(2)], visible: true }, marker: { size: 10, symbol: 'diamond' } }],
    layout: layout('best test accuracy vs compression (mean ± 95 % t half-width over seeds)', 'best test accuracy (%)'),
  };
  const by = new Map(speeds.map((s) => [s.method, s]));
  const timed = points.filter((p) => p.schedule.every((r) => r === 0) || by.has(pointMethod('tome', p)));
  const sp = (kind: 'tome' | 'pyra') => timed.map((p) => (p.schedule.every((r) => r === 0) ? 1 : +median(by.get(pointMethod(kind, p))!.speedup).toFixed(3)));
  const paper = PYRA_PAPER_AVERAGES.filter((p) => p.method !== 'small-lora');
  const paperX = (m: string): number => (m === 'lora' ? 0 : m.endsWith('low') ? 0.5 : 0.71); // ViT-B/16 MACs: ×0.50 low, ×0.29 high
  const lora = paper.find((p) => p.method === 'lora')!;
  const speed: PlotlyFigure = {
    data: [
      { type: 'scatter', mode: 'lines+markers', name: 'ToMe + LoRA (ours, measured)', x: timed.map((p) => +p.compression.toFixed(3)), y: sp('tome') },
      { type: 'scatter', mode: 'lines+markers', name: 'PYRA (ours, measured)', x: timed.map((p) => +p.compression.toFixed(3)), y: sp('pyra') },
      { type: 'scatter', mode: 'lines', name: 'MAC-bound (1 / MACs ratio)', x: timed.map((p) => +p.compression.toFixed(3)), y: timed.map((p) => +(1 / p.macsRatio).toFixed(3)), line: { dash: 'dot' } },
      { type: 'scatter', mode: 'markers', name: 'paper ViT-B/16, GPU (Tables 2–3)', x: paper.map((p) => paperX(p.method)), y: paper.map((p) => +(p.bImgS / lora.bImgS).toFixed(2)), text: paper.map((p) => p.method), marker: { size: 10, symbol: 'x' } },
    ],
    layout: layout('measured speed-up over unmerged LoRA vs compression (median of per-round ratios)', 'speed-up (×)'),
  };
  return { accuracy, speed };
}

/**
 * The claims of notebook 12, paired over seeds at the highest accuracy point (most compression): adverse compression
 * (smaller model > ToMe + LoRA), the loss merging costs (unmerged > ToMe + LoRA), and PYRA's recovery (PYRA > ToMe).
 */
export function compressionClaims(res: VtabResult, high: SweepPoint, o: { scale: string; source: string }): ClaimRecord[] {
  const av = (m: string): number[] => vtabAverages(res, m).average;
  const paper = Object.fromEntries(PYRA_PAPER_AVERAGES.map((p) => [p.method, p.bAcc]));
  const tome = pointMethod('tome', high);
  const pyra = pointMethod('pyra', high);
  const c = (a: string, b: string, pa: string, pb: string, claim: string): ClaimRecord => claimFromPairs({
    paper: 'PYRA (ECCV 2024, arXiv 2403.09192)', tableOrFigure: 'Tables 2–3 (ViT-B/16 high compression)', row: `${a} − ${b} at ${+(100 * high.compression).toFixed(0)} % fewer MACs`,
    metric: 'best test accuracy difference (points)', paperValue: +(paper[pa] - paper[pb]).toFixed(2), claim, test: { kind: 'greater', margin: 0 },
    scale: o.scale, seeds: res.seeds, source: o.source,
  }, av(a), av(b));
  return [
    c('small-lora', tome, 'small-lora', 'tome-high', 'adverse compression: at high compression ToMe + LoRA falls below LoRA on the smaller model'),
    c('lora', tome, 'lora', 'tome-high', 'merging at high compression costs accuracy against unmerged LoRA'),
    c(pyra, tome, 'pyra-high', 'tome-high', 'PYRA recovers part of the accuracy ToMe + LoRA loses at high compression'),
  ];
}

/**
 * The JSON lines of `bench/pyra-speed.ts` as tables: per (phase, method) the median ms, IQR, img/s, the median
 * per-round speed-up over unmerged LoRA and PYRA ÷ ToMe time; per method the engine's peak MiB of one training step.
 * Samples are re-summarised here (median, IQR, per-round ratios), and `rounds` keeps only the first rounds of a phase
 * (rounds measured after the machine got busy can be dropped; say so where the table is shown).
 */
export function pyraBenchRows(jsonl: string, o: { rounds?: Partial<Record<'infer' | 'train', number>> } = {}): { speed: Array<Record<string, string | number | null>>; memory: Array<Record<string, string | number>>; hosts: Array<Record<string, unknown>> } {
  const lines = jsonl.split('\n').filter((l) => l.trim()).map((l, i) => {
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {
      throw new Error(`pyraBenchRows: line ${i + 1} is not JSON: ${l.slice(0, 80)}`);
    }
  });
  const keep = (l: Record<string, unknown>): boolean => (l.round as number) < (o.rounds?.[l.phase as 'infer' | 'train'] ?? Infinity);
  const samples = lines.filter((l) => l.kind === 'sample' && keep(l)) as Array<{ phase: string; method: string; round: number; ms: number }>;
  const speed: Array<Record<string, string | number | null>> = [];
  for (const phase of [...new Set(samples.map((s) => s.phase))]) {
    const ph = samples.filter((s) => s.phase === phase);
    const rounds = [...new Set(ph.map((s) => s.round))].filter((r) => ph.filter((s) => s.round === r).length === new Set(ph.map((s) => s.method)).size);
    const ms = (m: string): number[] => rounds.map((r) => ph.find((s) => s.method === m && s.round === r)!.ms);
    const q = (v: number[], p: number): number => { const s = [...v].sort((a, b) => a - b); const x = p * (s.length - 1); const i = Math.floor(x); return i + 1 < s.length ? s[i] + (x - i) * (s[i + 1] - s[i]) : s[i]; };
    const methods = [...new Set(ph.map((s) => s.method))];
    const lora = methods.includes('lora') ? ms('lora') : []; // a run of BENCH_METHODS without it: no speed-up column
    for (const m of methods) {
      const v = ms(m);
      const tome = m.startsWith('pyra-') && methods.includes(m.replace('pyra-', 'tome-')) ? ms(m.replace('pyra-', 'tome-')) : null;
      speed.push({
        phase, method: m, rounds: v.length, 'ms median': +median(v).toFixed(0), 'ms IQR': `${q(v, 0.25).toFixed(0)}–${q(v, 0.75).toFixed(0)}`,
        'speed-up vs LoRA': lora.length ? +median(v.map((x, i) => lora[i] / x)).toFixed(2) : null,
        'PYRA ÷ ToMe time': tome ? +median(v.map((x, i) => x / tome[i])).toFixed(3) : null,
      });
    }
  }
  const memory = lines.filter((l) => l.kind === 'memory').map((l) => ({ method: String(l.method), model: String(l.model), batch: Number(l.batch), 'engine peak MiB': Number(l.enginePeakMiB), trainable: Number(l.trainable) }));
  return { speed, memory, hosts: lines.filter((l) => l.kind === 'host') };
}
