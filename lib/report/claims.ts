/**
 * Reproduction claims as typed records: what a paper reports (table/figure, row, metric, value), what we measured over
 * seeds with an interval, at which scale, and a verdict — reproduced / not reproduced / inconclusive — decided by a
 * fixed rule from the interval alone. Notebooks and tools append them as JSON lines to an output file; a scoreboard
 * gathers those files.
 *
 * The verdict rule (`verdictOf`) never decides without an interval: a claim whose interval is missing, not finite or
 * built from fewer than 2 observations is 'inconclusive'. For a claimed direction ('greater': the quantity exceeds a
 * margin, e.g. a paired accuracy difference > 0) the claim is reproduced when the whole interval lies above the margin,
 * not reproduced when the whole interval lies below it, and inconclusive when the interval straddles it. 'not-less'
 * (A ≥ B, non-inferiority within a tolerance δ) is 'greater' with margin −δ; 'within' (an equivalence: the quantity lies
 * in [lo, hi]) is reproduced when the interval lies inside the range and not reproduced when it lies outside it.
 *
 * A miniature does not reproduce the paper's absolute numbers: `paperValue` is shown beside ours for scale, and the
 * tested quantity is the qualitative claim (a sign or an ordering), stated in `test` and `claim`.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'fs';
import * as path from 'path';
import { assertJsonable } from '../check';
import { writeFileAtomic } from '../io/atomic';
import { Interval, tInterval, pairedTInterval, bootstrapInterval, pairedBootstrapInterval, pairedDifferences } from './stats';

export const CLAIM_FORMAT = 'vitpeft-claim/1';

export type Verdict = 'reproduced' | 'not reproduced' | 'inconclusive';
export const VERDICTS: readonly Verdict[] = ['reproduced', 'not reproduced', 'inconclusive'];

/** What the paper claims about the quantity our interval estimates. */
export type ClaimTest =
  /** quantity > margin (default 0), e.g. mean(ExPLoRA − source) > 0; "≫" = a positive margin. */
  | { kind: 'greater'; margin: number }
  /** quantity ≥ −tolerance (A is not worse than B by more than the tolerance), e.g. ExPLoRA ≥ unfreeze-only. */
  | { kind: 'not-less'; tolerance: number }
  /** lo ≤ quantity ≤ hi (an equivalence, e.g. an absolute value within a band). */
  | { kind: 'within'; lo: number; hi: number };

/** Our estimate: the interval and the per-seed values it was built from. */
export interface ClaimEstimate {
  mean: number;
  lo: number;
  hi: number;
  n: number;
  level: number;
  method: Interval['method'];
  /** The quantity per seed, in `seeds` order (for a paired claim: the differences a − b). */
  perSeed: number[];
}

/** One reproduction claim. */
export interface ClaimRecord {
  format: typeof CLAIM_FORMAT;
  /** e.g. 'ExPLoRA (arXiv 2406.10973)'. */
  paper: string;
  /** e.g. 'Table 1', 'ablation table', 'Fig. 3'. */
  tableOrFigure: string;
  /** e.g. 'ExPLoRA ViT-L vs DinoV2 (linear probe)'. */
  row: string;
  /** What is measured, with units, e.g. 'linear-probe top-1 difference (points)'. */
  metric: string;
  /** The paper's value of the same quantity (null when the paper gives none). */
  paperValue: number | null;
  /** The claim in words, e.g. 'ExPLoRA > source model, frozen'. */
  claim: string;
  test: ClaimTest;
  ours: ClaimEstimate;
  /** Seeds, one per per-seed value. */
  seeds: number[];
  /** The scale of our run in words or by name (e.g. 'smoke: ViT D96×6, 32 px, 150 steps'). */
  scale: string;
  verdict: Verdict;
  /** Why the rule gave this verdict (interval vs threshold). */
  reason: string;
  /** Where it comes from (notebook, tool) and anything else worth keeping (plain JSON). */
  source?: string;
  extra?: Record<string, unknown>;
}

function fmt(x: number): string {
  return Number.isFinite(x) ? String(+x.toPrecision(4)) : String(x);
}

/** Check a test's fields (throws naming the field). */
export function checkClaimTest(t: ClaimTest, what = 'ClaimTest'): ClaimTest {
  if (!t || typeof t !== 'object') throw new Error(`${what}: expected an object`);
  if (t.kind === 'greater') {
    if (!Number.isFinite(t.margin)) throw new Error(`${what}.margin: expected a finite number, got ${String(t.margin)}`);
  } else if (t.kind === 'not-less') {
    if (!(Number.isFinite(t.tolerance) && t.tolerance >= 0)) throw new Error(`${what}.tolerance: expected a finite number ≥ 0, got ${String(t.tolerance)}`);
  } else if (t.kind === 'within') {
    if (!(Number.isFinite(t.lo) && Number.isFinite(t.hi) && t.lo <= t.hi)) throw new Error(`${what}: expected finite lo ≤ hi, got [${String(t.lo)}, ${String(t.hi)}]`);
  } else {
    throw new Error(`${what}.kind: expected 'greater', 'not-less' or 'within', got '${String((t as { kind?: unknown }).kind)}'`);
  }
  return t;
}

/**
 * The verdict of a claim from its interval (see the module comment). Never 'reproduced' or 'not reproduced' without a
 * finite interval from n ≥ 2 observations.
 */
export function verdictOf(test: ClaimTest, est: Pick<ClaimEstimate, 'lo' | 'hi' | 'n' | 'level'> | null | undefined): { verdict: Verdict; reason: string } {
  checkClaimTest(test);
  if (!est || !Number.isFinite(est.lo) || !Number.isFinite(est.hi) || !(est.n >= 2) || !(est.lo <= est.hi)) {
    return { verdict: 'inconclusive', reason: 'no interval (needs ≥ 2 seeds and a finite interval)' };
  }
  if (est.lo === est.hi) {
    // every seed gave the same value: the seeds vary nothing measurable (e.g. a 2-step mechanics run), so a zero-width
    // interval says nothing about sampling error
    return { verdict: 'inconclusive', reason: `zero-width interval [${fmt(est.lo)}, ${fmt(est.hi)}]: every seed gave the same value` };
  }
  const ci = `${Math.round(est.level * 100)} % interval [${fmt(est.lo)}, ${fmt(est.hi)}]`;
  if (test.kind === 'greater' || test.kind === 'not-less') {
    const m = test.kind === 'greater' ? test.margin : -test.tolerance;
    if (est.lo > m) return { verdict: 'reproduced', reason: `${ci} lies above ${fmt(m)}` };
    if (est.hi < m) return { verdict: 'not reproduced', reason: `${ci} lies below ${fmt(m)}` };
    return { verdict: 'inconclusive', reason: `${ci} contains ${fmt(m)}` };
  }
  if (est.lo >= test.lo && est.hi <= test.hi) return { verdict: 'reproduced', reason: `${ci} lies inside [${fmt(test.lo)}, ${fmt(test.hi)}]` };
  if (est.hi < test.lo || est.lo > test.hi) return { verdict: 'not reproduced', reason: `${ci} lies outside [${fmt(test.lo)}, ${fmt(test.hi)}]` };
  return { verdict: 'inconclusive', reason: `${ci} overlaps the edge of [${fmt(test.lo)}, ${fmt(test.hi)}]` };
}

/** What every claim builder needs besides the numbers: the record's describing fields (see `ClaimRecord`) and the seeds. */
export interface ClaimHeader extends Pick<ClaimRecord, 'paper' | 'tableOrFigure' | 'row' | 'metric' | 'paperValue' | 'claim' | 'test' | 'scale' | 'source' | 'extra'> {
  seeds: readonly number[];
}

export interface ClaimIntervalOptions {
  /** Two-sided coverage (default 0.95). */
  level?: number;
  /** 't' (default; right for a handful of seeds) or 'bootstrap' (percentile, seeded). */
  interval?: 't' | 'bootstrap';
  /** Bootstrap resamples / seed. */
  resamples?: number;
  bootstrapSeed?: number;
}

function estimate(iv: Interval, perSeed: number[]): ClaimEstimate {
  return { mean: iv.mean, lo: iv.lo, hi: iv.hi, n: iv.n, level: iv.level, method: iv.method, perSeed };
}

function finish(h: ClaimHeader, ours: ClaimEstimate | null, perSeed: number[], extra: Record<string, unknown> = {}): ClaimRecord {
  const est: ClaimEstimate = ours ?? { mean: perSeed.length ? perSeed.reduce((a, b) => a + b, 0) / perSeed.length : NaN, lo: NaN, hi: NaN, n: perSeed.length, level: 0.95, method: 't', perSeed };
  const v = verdictOf(h.test, ours);
  const rec: ClaimRecord = {
    format: CLAIM_FORMAT,
    paper: h.paper,
    tableOrFigure: h.tableOrFigure,
    row: h.row,
    metric: h.metric,
    paperValue: h.paperValue,
    claim: h.claim,
    test: { ...h.test },
    ours: est,
    seeds: [...h.seeds],
    scale: h.scale,
    verdict: v.verdict,
    reason: v.reason,
    ...(h.source ? { source: h.source } : {}),
    ...(h.extra || Object.keys(extra).length ? { extra: { ...extra, ...(h.extra ?? {}) } } : {}),
  };
  checkClaim(rec);
  return rec;
}

/**
 * A claim about a quantity measured once per seed (e.g. an accuracy, or a difference already formed per seed):
 * t (or bootstrap) interval of its mean over seeds. With fewer than 2 seeds the claim is recorded as inconclusive.
 */
export function claimFromSeeds(h: ClaimHeader, values: readonly number[], o: ClaimIntervalOptions = {}): ClaimRecord {
  if (values.length !== h.seeds.length) throw new Error(`claimFromSeeds(${h.row}): ${values.length} values for ${h.seeds.length} seeds`);
  const vals = [...values];
  if (vals.length < 2) return finish(h, null, vals);
  const iv = o.interval === 'bootstrap' ? bootstrapInterval(vals, { level: o.level, resamples: o.resamples, seed: o.bootstrapSeed }) : tInterval(vals, o.level);
  return finish(h, estimate(iv, vals), vals);
}

/**
 * A claim about mean(a − b) where a[i] and b[i] come from the same seed (same data order, same probe initialisation):
 * paired t (or paired bootstrap) interval. `extra.a` / `extra.b` keep each side's per-seed values and mean.
 */
export function claimFromPairs(h: ClaimHeader, a: readonly number[], b: readonly number[], o: ClaimIntervalOptions = {}): ClaimRecord {
  if (a.length !== h.seeds.length || b.length !== h.seeds.length) throw new Error(`claimFromPairs(${h.row}): ${a.length} / ${b.length} values for ${h.seeds.length} seeds`);
  const d = pairedDifferences(a, b);
  const side = (xs: readonly number[]): { mean: number; perSeed: number[] } => ({ mean: xs.reduce((s, x) => s + x, 0) / xs.length, perSeed: [...xs] });
  const extra = { a: side(a), b: side(b) };
  if (d.length < 2) return finish(h, null, d, extra);
  const iv = o.interval === 'bootstrap' ? pairedBootstrapInterval(a, b, { level: o.level, resamples: o.resamples, seed: o.bootstrapSeed }) : pairedTInterval(a, b, o.level);
  return finish(h, estimate(iv, d), d, extra);
}

function need(c: Record<string, unknown>, k: string, type: 'string' | 'number' | 'object', what: string): void {
  const v = c[k];
  if (type === 'object' ? !(v && typeof v === 'object') : typeof v !== type) throw new Error(`${what}.${k}: expected a ${type}, got ${v === null ? 'null' : typeof v}`);
}

/**
 * Validate a claim record: fields and types, per-seed values matching the seeds, and a verdict equal to what the rule
 * gives for its interval (so no file can carry a verdict without one). Throws naming the field.
 */
export function checkClaim(c: ClaimRecord, what = 'claim'): ClaimRecord {
  if (!c || typeof c !== 'object') throw new Error(`${what}: expected an object`);
  const r = c as unknown as Record<string, unknown>;
  if (c.format !== CLAIM_FORMAT) throw new Error(`${what}.format: expected '${CLAIM_FORMAT}', got '${String(c.format)}'`);
  for (const k of ['paper', 'tableOrFigure', 'row', 'metric', 'claim', 'scale', 'verdict', 'reason']) need(r, k, 'string', what);
  need(r, 'ours', 'object', what);
  need(r, 'test', 'object', what);
  if (c.paperValue !== null && !Number.isFinite(c.paperValue)) throw new Error(`${what}.paperValue: expected a finite number or null, got ${String(c.paperValue)}`);
  if (!VERDICTS.includes(c.verdict)) throw new Error(`${what}.verdict: expected one of ${VERDICTS.join(' / ')}, got '${c.verdict}'`);
  checkClaimTest(c.test, `${what}.test`);
  if (!Array.isArray(c.seeds) || c.seeds.some((s) => !Number.isInteger(s))) throw new Error(`${what}.seeds: expected an array of integers`);
  if (new Set(c.seeds).size !== c.seeds.length) throw new Error(`${what}.seeds: duplicate seeds [${c.seeds.join(', ')}]`);
  const o = c.ours;
  if (!Array.isArray(o.perSeed) || o.perSeed.length !== c.seeds.length) throw new Error(`${what}.ours.perSeed: expected ${c.seeds.length} values (one per seed), got ${Array.isArray(o.perSeed) ? o.perSeed.length : typeof o.perSeed}`);
  if (o.perSeed.some((x) => !Number.isFinite(x))) throw new Error(`${what}.ours.perSeed: non-finite value`);
  if (o.n !== o.perSeed.length) throw new Error(`${what}.ours.n: ${o.n} ≠ ${o.perSeed.length} per-seed values`);
  if (Number.isFinite(o.lo) !== Number.isFinite(o.hi)) throw new Error(`${what}.ours: lo and hi must both be finite or both absent`);
  if (Number.isFinite(o.lo) && !(o.lo <= o.hi)) throw new Error(`${what}.ours: lo ${o.lo} > hi ${o.hi}`);
  const v = verdictOf(c.test, Number.isFinite(o.lo) ? o : null);
  if (v.verdict !== c.verdict) throw new Error(`${what}.verdict: '${c.verdict}' but the rule gives '${v.verdict}' (${v.reason})`);
  assertJsonable(what, c, what, { allowNonFinite: true }); // an absent interval is stored as null (lo / hi NaN) on purpose
  return c;
}

/**
 * Append claims to a JSON-lines file (folder created; each record validated first, all lines written in one call).
 * `replace: true` writes the file anew, atomically (a notebook's re-run replaces its claims instead of adding to them).
 */
export function writeClaims(file: string, claims: readonly ClaimRecord[], o: { replace?: boolean } = {}): void {
  claims.forEach((c, i) => checkClaim(c, `writeClaims(${path.basename(file)}) claim ${i}`));
  const text = claims.map((c) => JSON.stringify(c) + '\n').join('');
  if (o.replace) {
    mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    writeFileAtomic(file, text);
    return;
  }
  if (!claims.length) return;
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  appendFileSync(file, text);
}

/** Read and validate a claims file (errors name the file and line). A missing file is an error. */
export function readClaims(file: string): ClaimRecord[] {
  if (!existsSync(file)) throw new Error(`readClaims: ${file} does not exist`);
  const out: ClaimRecord[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (!line.trim()) return;
      let c: ClaimRecord;
      try {
        c = JSON.parse(line) as ClaimRecord;
      } catch (e) {
        throw new Error(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`);
      }
      out.push(checkClaim(c, `${file}:${i + 1}`));
    });
  return out;
}

/** Claims as flat table rows (for `showTable` / danfo): interval and per-seed values formatted, verdict last. */
export function claimRows(claims: readonly ClaimRecord[], digits = 2): Array<Record<string, string | number | null>> {
  const f = (x: number): number => +x.toFixed(digits);
  return claims.map((c) => ({
    paper: c.paper,
    'table/figure': c.tableOrFigure,
    row: c.row,
    claim: c.claim,
    metric: c.metric,
    paper_value: c.paperValue,
    ours: f(c.ours.mean),
    interval: Number.isFinite(c.ours.lo) ? `[${f(c.ours.lo)}, ${f(c.ours.hi)}]` : '-',
    n: c.ours.n,
    per_seed: c.ours.perSeed.map(f).join(' '),
    scale: c.scale,
    verdict: c.verdict,
  }));
}
