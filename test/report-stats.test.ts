/**
 * lib/report/stats.ts and lib/report/claims.ts: t quantiles, t / paired-t / Wilson intervals and sample quantiles
 * against golden values from mpmath, Python's `statistics` and numpy (test/fixtures/gen_stats.py → stats_golden.json);
 * bootstrap intervals by their definition and coverage; the claim verdict rule; the claims JSON-lines file.
 */
import { strict as assert } from 'assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  tQuantile, tCdf, normalQuantile, mean, sampleSd, tInterval, pairedTInterval, quantile, bootstrapInterval, pairedBootstrapInterval,
  wilsonInterval, itemBootstrapDifference, lnGamma,
} from '../lib/report/stats';
import { claimFromPairs, claimFromSeeds, verdictOf, writeClaims, readClaims, checkClaim, claimRows, ClaimHeader, ClaimRecord } from '../lib/report/claims';
import { claimFindings } from '../lib/report/claim-findings';
import { Rng } from '../lib/rng';

interface Golden {
  tQuantiles: Array<{ p: number; df: number; q: number }>;
  tCdf: Array<{ t: number; df: number; cdf: number }>;
  normalQuantiles: Array<{ p: number; q: number }>;
  intervals: Array<{ xs: number[]; level: number; mean: number; sd: number; lo: number; hi: number }>;
  paired: Array<{ a: number[]; b: number[]; mean: number; sd: number; lo: number; hi: number }>;
  quantiles: Array<{ xs: number[]; p: number; q: number }>;
  wilson: Array<{ k: number; n: number; lo: number; hi: number }>;
}
const G = JSON.parse(readFileSync(path.join(__dirname, 'fixtures', 'stats_golden.json'), 'utf8')) as Golden;

const close = (a: number, b: number, rel: number, what: string): void => {
  assert.ok(Math.abs(a - b) <= rel * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b} (|Δ| ${Math.abs(a - b)})`);
};

describe('report/stats', () => {
  it('t quantiles match mpmath to 1e-9 (df 0.5 … 100, p 0.025 … 0.9995), textbook 95 % values included', () => {
    for (const g of G.tQuantiles) close(tQuantile(g.p, g.df), g.q, 1e-9, `tQuantile(${g.p}, ${g.df})`);
    // the familiar table: t_{0.975} for df 1, 2, 4, 9, 29
    const table: Array<[number, number]> = [[1, 12.706], [2, 4.303], [4, 2.776], [9, 2.262], [29, 2.045]];
    for (const [df, q] of table) assert.equal(+tQuantile(0.975, df).toFixed(3), q);
    for (const g of G.tCdf) close(tCdf(g.t, g.df), g.cdf, 1e-12, `tCdf(${g.t}, ${g.df})`);
    for (const g of G.normalQuantiles) close(normalQuantile(g.p), g.q, 2e-9, `normalQuantile(${g.p})`);
    close(lnGamma(0.5), Math.log(Math.sqrt(Math.PI)), 1e-14, 'lnGamma(1/2)');
    close(lnGamma(10), Math.log(362880), 1e-14, 'lnGamma(10)');
  });

  it('t intervals and paired-t intervals match statistics.mean / stdev and the mpmath quantile', () => {
    for (const g of G.intervals) {
      const iv = tInterval(g.xs, g.level);
      close(iv.mean, g.mean, 1e-14, 'mean');
      close(iv.sd!, g.sd, 1e-12, 'sd');
      close(iv.lo, g.lo, 1e-10, `lo of ${g.xs} at ${g.level}`);
      close(iv.hi, g.hi, 1e-10, `hi of ${g.xs} at ${g.level}`);
      assert.equal(iv.n, g.xs.length);
      assert.equal(iv.df, g.xs.length - 1);
    }
    for (const g of G.paired) {
      const iv = pairedTInterval(g.a, g.b);
      assert.equal(iv.method, 'paired-t');
      close(iv.mean, g.mean, 1e-12, 'paired mean');
      close(iv.lo, g.lo, 1e-10, 'paired lo');
      close(iv.hi, g.hi, 1e-10, 'paired hi');
    }
  });

  it('pairing removes the shared seed effect: the paired interval is narrower than the two separate ones', () => {
    const a = [0.62, 0.655, 0.6, 0.64];
    const b = a.map((x, i) => x - 0.02 - 0.002 * i); // same seed effect, constant-ish gain
    const p = pairedTInterval(a, b);
    const ia = tInterval(a);
    assert.ok(p.lo > 0, `paired interval [${p.lo}, ${p.hi}] excludes 0`);
    assert.ok(p.hi - p.lo < (ia.hi - ia.lo) / 5);
  });

  it('bad input is a clear error', () => {
    assert.throws(() => tInterval([0.5]), /at least 2 observations/);
    assert.throws(() => tInterval([0.5, NaN]), /value 1 is NaN/);
    assert.throws(() => pairedTInterval([1, 2, 3], [1, 2]), /3 vs 2 values/);
    assert.throws(() => tQuantile(1, 3), /p must be in \(0, 1\)/);
    assert.throws(() => tQuantile(0.9, 0), /degrees of freedom/);
    assert.throws(() => tInterval([1, 2], 1.5), /level must be in/);
    assert.throws(() => wilsonInterval(11, 10), /k must be an integer in \[0, n=10\]/);
    assert.throws(() => itemBootstrapDifference('0120', '0110'), /a\[2\] is 2/);
    assert.throws(() => bootstrapInterval([1, 2, 3], { resamples: 10 }), /≥ 100/);
  });

  it('sample quantiles = numpy.percentile (linear interpolation); mean / sd', () => {
    for (const g of G.quantiles) close(quantile(g.xs, g.p), g.q, 1e-14, `quantile(${g.xs}, ${g.p})`);
    assert.equal(mean([1, 2, 3, 4]), 2.5);
    close(sampleSd([2, 4, 4, 4, 5, 5, 7, 9]), 2.138089935299395, 1e-14, 'stdev');
  });

  it('Wilson intervals match the score formula (mpmath normal quantile)', () => {
    for (const g of G.wilson) {
      const iv = wilsonInterval(g.k, g.n);
      close(iv.lo, g.lo, 1e-8, `wilson lo ${g.k}/${g.n}`);
      close(iv.hi, g.hi, 1e-8, `wilson hi ${g.k}/${g.n}`);
    }
  });

  it('percentile bootstrap: seeded (same seed → same interval), the definition on a two-point sample, coverage ≈ normal theory', () => {
    const xs = Array.from({ length: 400 }, (_, i) => Rng.derive(3, 'x', i).normal(10, 2));
    const a = bootstrapInterval(xs, { seed: 5, resamples: 2000 });
    const b = bootstrapInterval(xs, { seed: 5, resamples: 2000 });
    const c = bootstrapInterval(xs, { seed: 6, resamples: 2000 });
    assert.deepEqual([a.lo, a.hi], [b.lo, b.hi]);
    assert.notDeepEqual([a.lo, a.hi], [c.lo, c.hi]);
    // n = 400: the bootstrap interval of the mean ≈ mean ± 1.96·sd/√n (within 10 % of the half-width)
    const half = (1.96 * sampleSd(xs)) / Math.sqrt(xs.length);
    assert.ok(Math.abs(a.hi - a.lo - 2 * half) < 0.1 * 2 * half, `width ${a.hi - a.lo} vs ${2 * half}`);
    assert.ok(Math.abs((a.hi + a.lo) / 2 - mean(xs)) < 0.1 * half);
    // two values {0, 1}, n = 2: resample means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    const two = bootstrapInterval([0, 1], { seed: 1, resamples: 4000, level: 0.4 }); // 30 % and 70 % points: 0.5
    assert.equal(two.lo, 0.5);
    assert.equal(two.hi, 0.5);
    const wide = bootstrapInterval([0, 1], { seed: 1, resamples: 4000, level: 0.9 });
    assert.deepEqual([wide.lo, wide.hi], [0, 1]);
    // coverage over repeated samples from a known distribution (n = 30, 95 %): 0.90 … 0.98 over 200 trials
    let covered = 0;
    for (let t = 0; t < 200; t++) {
      const s = Array.from({ length: 30 }, (_, i) => Rng.derive(t, 'cov', i).normal(0, 1));
      const iv = bootstrapInterval(s, { seed: t, resamples: 500 });
      if (iv.lo <= 0 && 0 <= iv.hi) covered++;
    }
    assert.ok(covered >= 180 && covered <= 197, `bootstrap covered the true mean in ${covered} / 200 trials`);
  });

  it('paired bootstrap over pairs and over test items (discordant counts)', () => {
    const p = pairedBootstrapInterval([0.62, 0.65, 0.6, 0.63], [0.6, 0.62, 0.59, 0.6], { seed: 0 });
    assert.equal(p.method, 'paired-bootstrap-percentile');
    assert.ok(p.lo >= 0.01 - 1e-12 && p.hi <= 0.03 + 1e-12, `[${p.lo}, ${p.hi}] within the range of the differences`);
    // 1000 items: a right on 620, b on 600; they disagree on 60 (a-only 40, b-only 20)
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < 1000; i++) {
      if (i < 580) a.push(1), b.push(1);
      else if (i < 620) a.push(1), b.push(0);
      else if (i < 640) a.push(0), b.push(1);
      else a.push(0), b.push(0);
    }
    const it = itemBootstrapDifference(a.join(''), b, { seed: 1, resamples: 4000 });
    assert.deepEqual(it.discordant, [40, 20]);
    close(it.mean, 0.02, 1e-12, 'item difference');
    // McNemar-style normal approximation: se = √(n10 + n01 − (n10 − n01)²/n)/n
    const se = Math.sqrt(60 - 400 / 1000) / 1000;
    assert.ok(Math.abs((it.hi - it.lo) / 2 - 1.96 * se) < 0.15 * 1.96 * se, `half-width ${(it.hi - it.lo) / 2} vs ${1.96 * se}`);
  });
});

describe('report/claims', () => {
  const header = (o: Partial<ClaimHeader> = {}): ClaimHeader => ({
    paper: 'ExPLoRA (arXiv 2406.10973)',
    tableOrFigure: 'Table 1',
    row: 'ExPLoRA vs DinoV2 (linear probe)',
    metric: 'linear-probe top-1 difference (points)',
    paperValue: 8.48,
    claim: 'ExPLoRA > source model, frozen',
    test: { kind: 'greater', margin: 0 },
    scale: 'test',
    seeds: [0, 1, 2],
    ...o,
  });

  it('verdict rule: above / below / straddling the margin; never a verdict without an interval', () => {
    const g = { kind: 'greater', margin: 0 } as const;
    assert.equal(verdictOf(g, { lo: 0.5, hi: 2, n: 3, level: 0.95 }).verdict, 'reproduced');
    assert.equal(verdictOf(g, { lo: -2, hi: -0.5, n: 3, level: 0.95 }).verdict, 'not reproduced');
    assert.equal(verdictOf(g, { lo: -0.5, hi: 2, n: 3, level: 0.95 }).verdict, 'inconclusive');
    // every seed the same value (a 2-step mechanics run): a zero-width interval gives no verdict
    assert.match(verdictOf(g, { lo: 1, hi: 1, n: 3, level: 0.95 }).reason, /zero-width interval/);
    assert.equal(verdictOf(g, { lo: 1, hi: 1, n: 3, level: 0.95 }).verdict, 'inconclusive');
    assert.equal(verdictOf(g, null).verdict, 'inconclusive');
    assert.equal(verdictOf(g, { lo: NaN, hi: NaN, n: 1, level: 0.95 }).verdict, 'inconclusive');
    assert.equal(verdictOf(g, { lo: 1, hi: 2, n: 1, level: 0.95 }).verdict, 'inconclusive', 'n < 2 is no interval');
    const much = { kind: 'greater', margin: 10 } as const; // "≫": by more than 10 points
    assert.equal(verdictOf(much, { lo: 5, hi: 30, n: 3, level: 0.95 }).verdict, 'inconclusive');
    assert.equal(verdictOf(much, { lo: 12, hi: 30, n: 3, level: 0.95 }).verdict, 'reproduced');
    const nl = { kind: 'not-less', tolerance: 1 } as const; // A ≥ B within 1 point
    assert.equal(verdictOf(nl, { lo: -0.5, hi: 3, n: 3, level: 0.95 }).verdict, 'reproduced');
    assert.equal(verdictOf(nl, { lo: -3, hi: -1.5, n: 3, level: 0.95 }).verdict, 'not reproduced');
    assert.equal(verdictOf(nl, { lo: -3, hi: 1, n: 3, level: 0.95 }).verdict, 'inconclusive');
    const w = { kind: 'within', lo: -1, hi: 1 } as const;
    assert.equal(verdictOf(w, { lo: -0.5, hi: 0.5, n: 3, level: 0.95 }).verdict, 'reproduced');
    assert.equal(verdictOf(w, { lo: 2, hi: 3, n: 3, level: 0.95 }).verdict, 'not reproduced');
    assert.equal(verdictOf(w, { lo: 0, hi: 3, n: 3, level: 0.95 }).verdict, 'inconclusive');
    assert.throws(() => verdictOf({ kind: 'bigger' } as never, null), /kind: expected 'greater'/);
  });

  it('claimFromPairs: paired t interval over seeds, per-seed differences, both sides kept; bootstrap on request', () => {
    const c = claimFromPairs(header(), [62, 64.5, 61], [59, 60, 58.5]);
    const iv = pairedTInterval([62, 64.5, 61], [59, 60, 58.5]);
    assert.deepEqual(c.ours.perSeed, [3, 4.5, 2.5]);
    close(c.ours.lo, iv.lo, 1e-12, 'lo');
    assert.equal(c.ours.method, 'paired-t');
    assert.equal(c.verdict, 'reproduced');
    assert.match(c.reason, /95 % interval \[.*\] lies above 0/);
    assert.deepEqual((c.extra!.a as { perSeed: number[] }).perSeed, [62, 64.5, 61]);
    const bad = claimFromPairs(header(), [58, 60, 59], [59, 61, 60.5]);
    assert.equal(bad.verdict, 'not reproduced');
    const mixed = claimFromPairs(header(), [60, 62, 58], [59, 61, 60]);
    assert.equal(mixed.verdict, 'inconclusive');
    const boot = claimFromPairs(header(), [62, 64.5, 61], [59, 60, 58.5], { interval: 'bootstrap', bootstrapSeed: 3 });
    assert.equal(boot.ours.method, 'paired-bootstrap-percentile');
    assert.throws(() => claimFromPairs(header(), [1, 2], [1, 2]), /2 \/ 2 values for 3 seeds/);
  });

  it('claimFindings writes each claim from its record: mean, interval, per seed, seeds above 0, paper, verdict', () => {
    const up = claimFromPairs(header(), [62, 64.5, 61], [59, 60, 58.5]);
    const mixed = claimFromPairs({ ...header(), paperValue: null }, [60, 62, 58], [59, 61, 60]);
    const md = claimFindings([up, mixed], '**lead**');
    const lines = md.split('\n');
    assert.equal(lines[0], '**lead**');
    assert.equal(lines.length, 4);
    assert.match(lines[2], /ours \+3\.3 \[[0-9.]+, [0-9.]+\] over seeds 0, 1, 2 \(per seed \+3\.0, \+4\.5, \+2\.5; 3 of 3 above 0\)/);
    assert.match(lines[2], /\*\*reproduced\*\*/);
    assert.match(lines[3], /\(per seed \+1\.0, \+1\.0, -2\.0; 2 of 3 above 0\); the paper gives no number for this quantity → \*\*inconclusive\*\*/);
    assert.equal(claimFindings([up]).split('\n').length, 1, 'no lead line without a lead');
    const one = claimFromSeeds(header({ seeds: [0], claim: 'one seed' }), [61]);
    assert.match(claimFindings([one]), /\(no interval\)/);
  });

  it('one seed gives an inconclusive claim with no interval', () => {
    const c = claimFromSeeds(header({ seeds: [0], claim: 'ExPLoRA LP top-1', test: { kind: 'greater', margin: 50 } }), [61]);
    assert.equal(c.verdict, 'inconclusive');
    assert.ok(Number.isNaN(c.ours.lo));
    assert.match(c.reason, /no interval/);
  });

  it('checkClaim refuses a verdict the interval does not support, missing fields, per-seed mismatches', () => {
    const c = claimFromPairs(header(), [62, 64.5, 61], [59, 60, 58.5]);
    assert.throws(() => checkClaim({ ...c, verdict: 'not reproduced' }), /verdict: 'not reproduced' but the rule gives 'reproduced'/);
    assert.throws(() => checkClaim({ ...c, ours: { ...c.ours, lo: NaN, hi: NaN } }), /verdict: 'reproduced' but the rule gives 'inconclusive'/);
    assert.throws(() => checkClaim({ ...c, ours: { ...c.ours, perSeed: [1, 2] } }), /ours.perSeed: expected 3 values/);
    assert.throws(() => checkClaim({ ...c, row: undefined } as unknown as ClaimRecord), /claim.row: expected a string/);
    assert.throws(() => checkClaim({ ...c, seeds: [0, 0, 1] }), /duplicate seeds/);
    assert.throws(() => checkClaim({ ...c, format: 'x' } as unknown as ClaimRecord), /format: expected 'vitpeft-claim\/1'/);
  });

  it('writeClaims appends validated JSON lines; readClaims reads them back and names the bad line', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-claims-'));
    try {
      const file = path.join(dir, 'sub', 'claims.jsonl');
      const a = claimFromPairs(header(), [62, 64.5, 61], [59, 60, 58.5]);
      const b = claimFromSeeds(header({ claim: 'ExPLoRA ≫ scratch', test: { kind: 'greater', margin: 10 } }), [25, 27, 24]);
      writeClaims(file, [a]);
      writeClaims(file, [b]);
      const back = readClaims(file);
      assert.deepEqual(back, [a, b]);
      assert.equal(claimRows(back)[1].verdict, 'reproduced');
      assert.throws(() => writeClaims(file, [{ ...a, verdict: 'inconclusive' }]), /claim 0.verdict/);
      assert.equal(readClaims(file).length, 2, 'a rejected batch writes nothing');
      writeFileSync(file, readFileSync(file, 'utf8') + '{"format": "vitpeft-claim/1"\n');
      assert.throws(() => readClaims(file), /claims.jsonl:3: not valid JSON/);
      // replace: the file is written anew (a notebook's re-run), and a rejected batch leaves the old file whole
      writeClaims(file, [b], { replace: true });
      assert.deepEqual(readClaims(file), [b]);
      assert.throws(() => writeClaims(file, [a, { ...a, verdict: 'inconclusive' }], { replace: true }), /claim 1.verdict/);
      assert.deepEqual(readClaims(file), [b]);
      writeClaims(file, [], { replace: true });
      assert.equal(readFileSync(file, 'utf8'), '');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
