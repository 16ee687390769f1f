/**
 * Objective-neutral notebook helpers of the ExPLoRA miniature (recipes/miniature.ts), shared by notebook 01 (M-ExPLoRA)
 * and notebook 03 (D-ExPLoRA): the linear-probe table with the paper's numbers beside ours, the Fig. 3 curve (probe
 * accuracy against pre-training iterations, mean over seeds with a t interval), the claims (recipes/miniature-claims.ts
 * → lib/report/claims.ts JSON lines, beside the run's records and where the scoreboard gathers them) and a forest plot
 * of those claims.
 */
import * as path from 'path';
import { tInterval } from '../lib/report/stats';
import { ClaimRecord, claimRows, writeClaims } from '../lib/report/claims';
import { recordClaims } from '../lib/report/notebook-claims';
import { PlotlyFigure, lineFigure } from '../lib/report/plot';
import { forestFigure } from '../lib/report/scoreboard-html';
import { MiniRecord } from './miniature';
import { miniatureClaims, summaryRows, EvalLine } from './miniature-claims';

/** The paper's fMoW-RGB linear-probe top-1 (ViT-L; D-ExPLoRA rows of the ablation, Table 1) per miniature method name. */
const PAPER_LP_BY_METHOD: Readonly<Record<string, number | string>> = { source: 69.0, explora: 77.48, unfreeze: 74.83, scratch: 54.29, 'explora-[1,L-1,L]': 78.04, lora: '-' };

/**
 * Paper LP beside ours (mean and 95 % t interval over seeds, per-seed values, kNN, ridge, costs) per method;
 * `paper` maps a method name to the paper's number (or a note), `paperColumn` names that column.
 */
export function miniLinearProbeTable(records: readonly MiniRecord[], o: { paper?: Readonly<Record<string, number | string>>; paperColumn?: string } = {}): Array<Record<string, string | number>> {
  const paper = o.paper ?? PAPER_LP_BY_METHOD;
  const col = o.paperColumn ?? 'paper LP (ViT-L, fMoW-RGB)';
  return summaryRows(records as unknown as EvalLine[]).map((r) => ({ method: r.method, recipe: r.recipe, [col]: paper[String(r.method)] ?? '-', ...r }));
}

/**
 * Fig. 3: linear-probe test top-1 against pre-training iterations, mean over seeds (the band is the 95 % t interval,
 * drawn as dotted lines), one curve per method with more than one point; the source as a flat line.
 */
export function miniFig3(input: readonly MiniRecord[], o: { title?: string } = {}): PlotlyFigure {
  // Every method that continues from the source starts at iteration 0 from the source itself (LoRA B = 0, the same
  // weights and probe seed: its step-0 evaluation is the source's, exactly), so the source's evaluations are used as
  // its step 0 when it was not evaluated there; scratch starts from a fresh initialisation and is not extended.
  const sources = input.filter((r) => r.method === 'source');
  const records = [...input];
  for (const m of new Set(input.filter((r) => r.method !== 'source' && r.recipe !== 'scratch').map((r) => r.method))) {
    if (!input.some((r) => r.method === m && r.step === 0)) records.push(...sources.map((r) => ({ ...r, method: m })));
  }
  const methods = [...new Set(records.map((r) => r.method))];
  const steps = [...new Set(records.map((r) => r.step))].sort((a, b) => a - b);
  const series = [];
  for (const m of methods) {
    const xs: number[] = [];
    const ys: number[] = [];
    const lo: number[] = [];
    const hi: number[] = [];
    const stepsOf = m === 'source' ? [0, steps[steps.length - 1]] : steps;
    for (const s of stepsOf) {
      const v = records.filter((r) => r.method === m && (m === 'source' || r.step === s)).map((r) => 100 * r.probeTest);
      if (!v.length) continue;
      const iv = v.length >= 2 ? tInterval(v) : { mean: v[0], lo: v[0], hi: v[0] };
      xs.push(s);
      ys.push(iv.mean);
      lo.push(iv.lo);
      hi.push(iv.hi);
    }
    if (xs.length < 2) continue;
    series.push({ name: m, x: xs, y: ys, mode: 'lines+markers' as const });
    if (lo.some((x, i) => x !== hi[i])) {
      series.push({ name: `${m} 95% lo`, x: xs, y: lo, mode: 'lines' as const }, { name: `${m} 95% hi`, x: xs, y: hi, mode: 'lines' as const });
    }
  }
  const fig = lineFigure(series, { title: o.title ?? 'Fig. 3 (miniature): linear probe vs pre-training iterations', xTitle: 'pre-training iteration', yTitle: 'LP test top-1 (%)' });
  for (const d of fig.data as Array<Record<string, unknown>>) if (/95% (lo|hi)$/.test(String(d.name))) Object.assign(d, { line: { dash: 'dot', width: 1 }, showlegend: false });
  return fig;
}

/** What the claims of a notebook's miniature are written under. */
export interface MiniClaimsTarget {
  /** The notebook's name (file name without .ipynb), e.g. '01-explora-mae'. */
  notebook: string;
  /** The runner's scale name ('ci', 'smoke', …). */
  scale: string;
  /** The scale as stated beside every number (model, data, steps, seeds). */
  describe: string;
  /** The run's own folder: `<outDir>/claims.jsonl` is replaced. */
  outDir: string;
}

/**
 * The claims of a miniature run (paired over seeds; verdicts only from intervals), written as JSON lines to
 * `<outDir>/claims.jsonl` (replacing that file) and recorded for the scoreboard (`recordClaims`), with their table rows
 * and the per-seed item-bootstrap rows.
 */
export function miniNotebookClaims(records: readonly MiniRecord[], t: MiniClaimsTarget): { claims: ClaimRecord[]; rows: ReturnType<typeof claimRows>; items: Array<Record<string, string | number>>; file: string } {
  const { claims, items } = miniatureClaims(records as unknown as EvalLine[], { scale: t.describe, source: `notebooks/${t.notebook}.ipynb (${t.scale})` });
  writeClaims(path.join(t.outDir, 'claims.jsonl'), claims, { replace: true }); // beside the run's records
  const file = recordClaims(t.notebook, claims).file; // where the scoreboard gathers them
  return { claims, rows: claimRows(claims), items, file };
}

/** A forest plot of one notebook's claims (the scoreboard's, lib/report/scoreboard-html.ts): effect − threshold with intervals. */
export function claimsForest(notebook: string, claims: readonly ClaimRecord[]): PlotlyFigure {
  const fig = forestFigure({
    format: 'vitpeft-scoreboard/1',
    generated: new Date().toISOString(),
    notebooks: [{ notebook, path: null, origin: 'claims file', ok: null, finished: null, scale: null, seconds: null, html: null, claims: [...claims] }],
  });
  return { ...fig, layout: { ...fig.layout, title: { text: `${notebook}: claims, effect minus threshold (points), 95 % paired t over seeds` } } };
}

/**
 * This execution's claims as markdown bullets (claim: Δ [95 % paired t] per seed → verdict), so a notebook's
 * "what this run shows" text reads the numbers it printed rather than restating numbers of another run.
 */
export function miniClaimsMarkdown(claims: readonly ClaimRecord[], describe: string): string {
  const f = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '–');
  const lines = claims.map((c) => {
    const iv = Number.isFinite(c.ours.lo) ? `${f(c.ours.mean)} [${f(c.ours.lo)}, ${f(c.ours.hi)}]` : `${f(c.ours.mean)} (no interval)`;
    const paper = c.paperValue === null ? '' : `; paper (D-ExPLoRA, ViT-L, fMoW-RGB) ${c.paperValue}`;
    return `- **${c.claim}**: Δ = ${iv} points over seeds ${c.seeds.join(',')} (per seed ${c.ours.perSeed.map(f).join(', ')}${paper}) → **${c.verdict}** (${c.reason})`;
  });
  return [`**This execution** (${describe}):`, '', ...lines].join('\n');
}
