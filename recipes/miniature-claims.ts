/**
 * Turn the records of the ExPLoRA miniature (recipes/miniature.ts; JSON lines of `tools/explora-miniature.ts`) into a
 * summary table and reproduction claims with intervals
 * (lib/report/claims.ts): ExPLoRA > source frozen (linear probe and kNN), ExPLoRA ≥ unfreeze-only, ExPLoRA ≫ from
 * scratch, each a paired-t interval over the seeds the two methods share (same seed → same data order, masks and probe
 * initialisation), plus the item-level paired bootstrap of each seed's difference (the test-set sampling error).
 *
 * The command line is `tools/miniature-claims.ts`; notebooks 01 and 03 call these functions on their records.
 */
import { readFileSync } from 'fs';
import { tInterval, itemBootstrapDifference, Interval } from '../lib/report/stats';
import { ClaimRecord, claimFromPairs, ClaimTest } from '../lib/report/claims';

export interface EvalLine {
  kind: 'eval';
  tag: string;
  objective: 'mae' | 'dino';
  method: string;
  recipe: string;
  seed: number;
  step: number;
  probeTest: number;
  probeVal: number;
  knn: number;
  ridgeTest?: number;
  probeCorrect: string;
  knnCorrect: string;
  ridgeCorrect?: string;
  trainableEncoder: number;
  loss: number | null;
  trainCpu: number;
  trainSteps: number;
  cpu: { extract: number; probe: number; knn: number };
}

/** Read eval lines (and config lines) of miniature files. */
export function readMiniature(files: string[]): { evals: EvalLine[]; configs: Array<Record<string, unknown>> } {
  const evals: EvalLine[] = [];
  const configs: Array<Record<string, unknown>> = [];
  for (const f of files) {
    readFileSync(f, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (!line.trim()) return;
        let o: Record<string, unknown>;
        try {
          o = JSON.parse(line) as Record<string, unknown>;
        } catch (e) {
          throw new Error(`${f}:${i + 1}: not valid JSON (${(e as Error).message})`);
        }
        if (o.kind === 'eval') evals.push(o as unknown as EvalLine);
        else if (o.kind === 'config') configs.push(o);
      });
  }
  return { evals, configs };
}

/** The final evaluation (largest step, or `step`) of a method per seed. */
export function finalBySeed(evals: EvalLine[], method: string, step?: number): Map<number, EvalLine> {
  const out = new Map<number, EvalLine>();
  for (const e of evals) {
    if (e.method !== method) continue;
    if (step !== undefined && e.method !== 'source' && e.step !== step) continue;
    const cur = out.get(e.seed);
    if (!cur || e.step > cur.step) out.set(e.seed, e);
  }
  return out;
}

const pct = (x: number): number => 100 * x;
const f1 = (x: number): string => x.toFixed(1);
const ivs = (iv: Interval): string => `${f1(iv.mean)} [${f1(iv.lo)}, ${f1(iv.hi)}]`;

/** Paper values (explora.md §6, fMoW-RGB linear probe, ViT-L, D-ExPLoRA rows): DinoV2 69.00, [L] 74.83, ExPLoRA 77.48, scratch 54.29. */
export const PAPER_LP = { source: 69.0, unfreeze: 74.83, explora: 77.48, scratch: 54.29 } as const;

export interface ClaimSpec {
  a: string;
  b: string;
  metric: 'probe' | 'knn' | 'ridge';
  claim: string;
  row: string;
  test: ClaimTest;
  paperValue: number | null;
  tableOrFigure: string;
}

/** The miniature's claims (differences in points of top-1). */
export function miniatureClaimSpecs(objective: 'mae' | 'dino'): ClaimSpec[] {
  const d = objective === 'dino';
  const p = (x: number): number | null => (d ? +x.toFixed(2) : null);
  return [
    { a: 'explora', b: 'source', metric: 'probe', claim: 'ExPLoRA > source model, frozen (linear probe)', row: 'ExPLoRA − source (DinoV2 69.00 → ExPLoRA ViT-L 77.48)', test: { kind: 'greater', margin: 0 }, paperValue: p(PAPER_LP.explora - PAPER_LP.source), tableOrFigure: 'Table 1 (linear probing, fMoW-RGB)' },
    { a: 'explora', b: 'source', metric: 'ridge', claim: 'ExPLoRA > source model, frozen (closed-form ridge probe)', row: 'ExPLoRA − source, ridge probe (converged linear readout)', test: { kind: 'greater', margin: 0 }, paperValue: p(PAPER_LP.explora - PAPER_LP.source), tableOrFigure: 'Table 1 (linear probing, fMoW-RGB)' },
    { a: 'explora', b: 'source', metric: 'knn', claim: 'ExPLoRA > source model, frozen (kNN)', row: 'ExPLoRA − source, kNN (k 20)', test: { kind: 'greater', margin: 0 }, paperValue: null, tableOrFigure: 'kNN (no paper number recovered)' },
    { a: 'explora', b: 'unfreeze', metric: 'probe', claim: 'ExPLoRA ≥ unfreeze-only at equal budget (within 1 point)', row: 'ExPLoRA − unfreeze [L] no LoRA (74.83 → 77.48)', test: { kind: 'not-less', tolerance: 1 }, paperValue: p(PAPER_LP.explora - PAPER_LP.unfreeze), tableOrFigure: 'ablation table (linear probe)' },
    { a: 'explora', b: 'scratch', metric: 'probe', claim: 'ExPLoRA ≫ pre-training from scratch (by > 10 points)', row: 'ExPLoRA − full pre-training from scratch (54.29 → 77.48)', test: { kind: 'greater', margin: 10 }, paperValue: p(PAPER_LP.explora - PAPER_LP.scratch), tableOrFigure: 'ablation table (linear probe)' },
  ];
}

/** Summary rows per method: LP / kNN mean with t interval over seeds, per-seed values, costs. */
export function summaryRows(evals: EvalLine[], step?: number): Array<Record<string, string | number>> {
  const methods = [...new Set(evals.map((e) => e.method))];
  return methods.map((m) => {
    const by = [...finalBySeed(evals, m, step).values()].sort((x, y) => x.seed - y.seed);
    const lp = by.map((e) => pct(e.probeTest));
    const kn = by.map((e) => pct(e.knn));
    const rd = by.filter((e) => e.ridgeTest !== undefined).map((e) => pct(e.ridgeTest!));
    const iv = (xs: number[]): string => (xs.length >= 2 ? ivs(tInterval(xs)) : xs.length ? f1(xs[0]) : '-');
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    return {
      method: m,
      recipe: by[0]?.recipe ?? '',
      trainable: by[0]?.trainableEncoder ?? 0,
      steps: by[0]?.trainSteps ?? 0,
      seeds: by.map((e) => e.seed).join(','),
      'LP top-1 [95% t]': iv(lp),
      'LP per seed': lp.map(f1).join(' '),
      'kNN top-1 [95% t]': iv(kn),
      'kNN per seed': kn.map(f1).join(' '),
      'ridge [95% t]': iv(rd),
      'loss (last 10)': by[0]?.loss === null || by[0] === undefined ? '-' : mean(by.map((e) => e.loss ?? NaN)).toFixed(4),
      'train CPU s': +mean(by.map((e) => e.trainCpu)).toFixed(0),
      'eval CPU s': +mean(by.map((e) => e.cpu.extract + e.cpu.probe + e.cpu.knn + ((e.cpu as { ridge?: number }).ridge ?? 0))).toFixed(1),
    };
  });
}

/** Claims from the eval lines (pairs over shared seeds). */
export function miniatureClaims(evals: EvalLine[], o: { scale: string; step?: number; source?: string }): { claims: ClaimRecord[]; items: Array<Record<string, string | number>> } {
  const objective = evals[0]?.objective ?? 'mae';
  const claims: ClaimRecord[] = [];
  const items: Array<Record<string, string | number>> = [];
  for (const s of miniatureClaimSpecs(objective)) {
    const A = finalBySeed(evals, s.a, o.step);
    const B = finalBySeed(evals, s.b, o.step);
    const seeds = [...A.keys()].filter((k) => B.has(k)).sort((x, y) => x - y);
    if (!seeds.length) continue;
    if (s.metric === 'ridge' && seeds.some((k) => A.get(k)!.ridgeTest === undefined || B.get(k)!.ridgeTest === undefined)) continue;
    const val = (e: EvalLine): number => pct(s.metric === 'probe' ? e.probeTest : s.metric === 'ridge' ? e.ridgeTest! : e.knn);
    const correct = (e: EvalLine): string => (s.metric === 'probe' ? e.probeCorrect : s.metric === 'ridge' ? e.ridgeCorrect! : e.knnCorrect);
    const a = seeds.map((k) => val(A.get(k)!));
    const b = seeds.map((k) => val(B.get(k)!));
    const per = seeds.map((k) => {
      const ea = A.get(k)!;
      const eb = B.get(k)!;
      const it = itemBootstrapDifference(correct(ea), correct(eb), { seed: k, resamples: 2000 });
      return { seed: k, diff: pct(it.mean), lo: pct(it.lo), hi: pct(it.hi), discordant: it.discordant };
    });
    per.forEach((p) => items.push({ claim: s.claim, seed: p.seed, 'Δ (points)': +p.diff.toFixed(2), 'item-bootstrap 95%': `[${f1(p.lo)}, ${f1(p.hi)}]`, 'a-only / b-only right': p.discordant.join(' / ') }));
    claims.push(
      claimFromPairs(
        {
          paper: 'ExPLoRA (Khanna et al., arXiv 2406.10973)',
          tableOrFigure: s.tableOrFigure,
          row: `${objective === 'dino' ? 'D' : 'M'}-ExPLoRA miniature: ${s.row}`,
          metric: `${s.metric === 'probe' ? 'linear-probe (standardised SGD)' : s.metric === 'ridge' ? 'ridge-probe' : 'kNN'} test top-1 difference (points)`,
          paperValue: s.paperValue,
          claim: s.claim,
          test: s.test,
          scale: o.scale,
          seeds,
          source: o.source,
          extra: { itemBootstrap: per, steps: A.get(seeds[0])!.trainSteps, recipes: [A.get(seeds[0])!.recipe, B.get(seeds[0])!.recipe] },
        },
        a,
        b,
      ),
    );
  }
  return { claims, items };
}

