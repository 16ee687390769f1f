/**
 * Small-sample statistics for comparing methods over seeds: Student-t intervals for a mean and for paired differences,
 * percentile bootstrap intervals (seeded), Wilson intervals for one accuracy, and a paired bootstrap over test items.
 *
 * Conventions: `level` is the two-sided coverage (0.95 → the 2.5 % and 97.5 % points); the sample standard deviation
 * divides by n − 1; quantiles of a sample use linear interpolation between order statistics (Hyndman–Fan type 7, the
 * default of numpy.percentile and R's quantile). The t quantile is exact to ~1e-10 (regularised incomplete beta by
 * continued fraction, inverted by safeguarded Newton): golden-tested against mpmath (test/fixtures/gen_stats.py).
 *
 * Everything here is plain JS on numbers (no tensors).
 */
import { Rng } from '../rng';

/** An interval estimate of a mean (or a mean difference). */
export interface Interval {
  /** Point estimate (sample mean, or the mean of the paired differences). */
  mean: number;
  lo: number;
  hi: number;
  /** Number of observations (seeds, or pairs). */
  n: number;
  /** Two-sided coverage, e.g. 0.95. */
  level: number;
  /** How the interval was made. */
  method: 't' | 'paired-t' | 'bootstrap-percentile' | 'paired-bootstrap-percentile' | 'wilson';
  /** Sample standard deviation (n − 1), when defined. */
  sd?: number;
  /** Standard error sd/√n, when defined. */
  se?: number;
  /** Degrees of freedom of a t interval. */
  df?: number;
}

function checkLevel(level: number, what: string): void {
  if (!(level > 0 && level < 1)) throw new Error(`${what}: level must be in (0, 1), got ${level}`);
}

function checkFinite(xs: readonly number[], what: string): void {
  xs.forEach((x, i) => {
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new Error(`${what}: value ${i} is ${String(x)} (finite numbers only)`);
  });
}

/** Arithmetic mean (throws on an empty or non-finite sample). */
export function mean(xs: readonly number[]): number {
  if (!xs.length) throw new Error('mean: empty sample');
  checkFinite(xs, 'mean');
  // two-pass (compensated) for accuracy
  const m0 = xs.reduce((a, b) => a + b, 0) / xs.length;
  return m0 + xs.reduce((a, b) => a + (b - m0), 0) / xs.length;
}

/** Sample standard deviation with n − 1 in the denominator (Python's `statistics.stdev`); needs n ≥ 2. */
export function sampleSd(xs: readonly number[]): number {
  if (xs.length < 2) throw new Error(`sampleSd: needs at least 2 values, got ${xs.length}`);
  const m = mean(xs);
  const ss = xs.reduce((a, b) => a + (b - m) * (b - m), 0);
  return Math.sqrt(ss / (xs.length - 1));
}

// ---------------------------------------------------------------------------------------------------------------
// Student t distribution

const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905,
  -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; relative error ~1e-15). */
export function lnGamma(x: number): number {
  if (!(x > 0)) throw new Error(`lnGamma: x must be > 0, got ${x}`);
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
  const z = x - 1;
  let a = LANCZOS[0];
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += LANCZOS[i] / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction of the incomplete beta (modified Lentz). */
function betaCf(a: number, b: number, x: number): number {
  const TINY = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < TINY) d = TINY;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 10000; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) return h;
  }
  throw new Error(`betaCf: no convergence for a=${a}, b=${b}, x=${x}`);
}

/** Regularised incomplete beta I_x(a, b). */
export function regIncBeta(x: number, a: number, b: number): number {
  if (!(a > 0 && b > 0)) throw new Error(`regIncBeta: a and b must be > 0, got ${a}, ${b}`);
  if (!(x >= 0 && x <= 1)) throw new Error(`regIncBeta: x must be in [0, 1], got ${x}`);
  if (x === 0 || x === 1) return x;
  const lbt = lnGamma(a + b) - lnGamma(a) - lnGamma(b) + a * Math.log(x) + b * Math.log(1 - x);
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(lbt) * betaCf(a, b, x)) / a;
  return 1 - (Math.exp(lbt) * betaCf(b, a, 1 - x)) / b;
}

function checkDf(df: number, what: string): void {
  if (!(df > 0) || !Number.isFinite(df)) throw new Error(`${what}: degrees of freedom must be a finite number > 0, got ${df}`);
}

/** CDF of Student's t with `df` degrees of freedom. */
export function tCdf(t: number, df: number): number {
  checkDf(df, 'tCdf');
  if (Number.isNaN(t)) throw new Error('tCdf: t is NaN');
  if (t === Infinity) return 1;
  if (t === -Infinity) return 0;
  const x = df / (df + t * t);
  const tail = 0.5 * regIncBeta(x, df / 2, 0.5); // P(T > |t|)
  return t >= 0 ? 1 - tail : tail;
}

/** Density of Student's t. */
export function tPdf(t: number, df: number): number {
  checkDf(df, 'tPdf');
  return Math.exp(lnGamma((df + 1) / 2) - lnGamma(df / 2) - 0.5 * Math.log(df * Math.PI) - ((df + 1) / 2) * Math.log1p((t * t) / df));
}

/**
 * Quantile of Student's t: the t with P(T ≤ t) = p. Exact for df = 1 and 2 (closed forms); otherwise Newton on the
 * CDF from the normal approximation, bracketed, to |Δt| < 1e-12·max(1, |t|).
 * @example tQuantile(0.975, 2) // 4.302652729749462
 */
export function tQuantile(p: number, df: number): number {
  checkDf(df, 'tQuantile');
  if (!(p > 0 && p < 1)) throw new Error(`tQuantile: p must be in (0, 1), got ${p}`);
  if (p === 0.5) return 0;
  if (p < 0.5) return -tQuantile(1 - p, df);
  if (df === 1) return Math.tan(Math.PI * (p - 0.5));
  if (df === 2) {
    const a = 4 * p * (1 - p);
    return (2 * (p - 0.5)) * Math.sqrt(2 / a);
  }
  // upper half: find t > 0 with tCdf(t) = p; bracket [0, hi]
  let lo = 0;
  let hi = 1;
  while (tCdf(hi, df) < p) {
    lo = hi;
    hi *= 2;
    if (hi > 1e12) throw new Error(`tQuantile: no bracket for p=${p}, df=${df}`);
  }
  let t = Math.min(Math.max(normalQuantile(p), lo), hi);
  for (let i = 0; i < 200; i++) {
    const f = tCdf(t, df) - p;
    if (f > 0) hi = t;
    else lo = t;
    let next = t - f / tPdf(t, df);
    if (!(next > lo && next < hi)) next = 0.5 * (lo + hi); // safeguard: bisect
    if (Math.abs(next - t) < 1e-12 * Math.max(1, Math.abs(t))) return next;
    t = next;
  }
  return t;
}

/** Standard normal quantile (Acklam's rational approximation; relative error < 1.2e-9). */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new Error(`normalQuantile: p must be in (0, 1), got ${p}`);
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const pl = 0.02425;
  let x: number;
  if (p < pl) {
    const q = Math.sqrt(-2 * Math.log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= 1 - pl) {
    const q = p - 0.5;
    const r = q * q;
    x = ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  return x;
}

// ---------------------------------------------------------------------------------------------------------------
// intervals

/**
 * Student-t interval for the mean of independent observations (e.g. one accuracy per seed): mean ± t_{(1+level)/2, n−1}·sd/√n.
 * Needs n ≥ 2.
 * @example tInterval([0.61, 0.64, 0.60]) // {mean: 0.6167, lo: 0.5650, hi: 0.6684, n: 3, df: 2, ...}
 */
export function tInterval(xs: readonly number[], level = 0.95): Interval {
  checkLevel(level, 'tInterval');
  if (xs.length < 2) throw new Error(`tInterval: needs at least 2 observations (seeds), got ${xs.length}`);
  checkFinite(xs, 'tInterval');
  const n = xs.length;
  const m = mean(xs);
  const sd = sampleSd(xs);
  const se = sd / Math.sqrt(n);
  const q = tQuantile((1 + level) / 2, n - 1);
  return { mean: m, lo: m - q * se, hi: m + q * se, n, level, method: 't', sd, se, df: n - 1 };
}

/** Element-wise differences a_i − b_i of two equally long samples (pairs share index, e.g. the seed). */
export function pairedDifferences(a: readonly number[], b: readonly number[]): number[] {
  if (a.length !== b.length) throw new Error(`paired differences: ${a.length} vs ${b.length} values (pairs must share the seed)`);
  checkFinite(a, 'paired differences (a)');
  checkFinite(b, 'paired differences (b)');
  return a.map((x, i) => x - b[i]);
}

/**
 * Paired-difference t interval for mean(a − b), pairs sharing index (same seed → same data order and probe init).
 * Needs n ≥ 2 pairs. Differences that are all equal give a zero-width interval.
 */
export function pairedTInterval(a: readonly number[], b: readonly number[], level = 0.95): Interval {
  return { ...tInterval(pairedDifferences(a, b), level), method: 'paired-t' };
}

/** Quantile of a sample with linear interpolation between order statistics (numpy.percentile's default, type 7). */
export function quantile(xs: readonly number[], p: number): number {
  if (!xs.length) throw new Error('quantile: empty sample');
  if (!(p >= 0 && p <= 1)) throw new Error(`quantile: p must be in [0, 1], got ${p}`);
  checkFinite(xs, 'quantile');
  const s = [...xs].sort((a, b) => a - b);
  const h = (s.length - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.ceil(h);
  return s[lo] + (h - lo) * (s[hi] - s[lo]);
}

export interface BootstrapOptions {
  /** Resamples (default 10,000). */
  resamples?: number;
  /** Seed of the resampling stream (default 0). */
  seed?: number;
  /** Two-sided coverage (default 0.95). */
  level?: number;
  /** The statistic of a resample (default: the mean). */
  statistic?: (xs: readonly number[]) => number;
}

/**
 * Percentile bootstrap interval: resample the n values with replacement `resamples` times (seeded `Rng`), take the
 * statistic of each, report the (1−level)/2 and (1+level)/2 quantiles of those; `mean` is the statistic of the sample.
 * With few observations (e.g. 3 seeds) the percentile bootstrap under-covers: prefer `tInterval` there.
 */
export function bootstrapInterval(xs: readonly number[], o: BootstrapOptions = {}): Interval & { replicates: number } {
  const level = o.level ?? 0.95;
  checkLevel(level, 'bootstrapInterval');
  const B = o.resamples ?? 10000;
  if (!Number.isInteger(B) || B < 100) throw new Error(`bootstrapInterval: resamples must be an integer ≥ 100, got ${B}`);
  if (xs.length < 2) throw new Error(`bootstrapInterval: needs at least 2 observations, got ${xs.length}`);
  checkFinite(xs, 'bootstrapInterval');
  const stat = o.statistic ?? mean;
  const rng = Rng.derive(o.seed ?? 0, 'bootstrap');
  const n = xs.length;
  const reps = new Array<number>(B);
  const buf = new Array<number>(n);
  for (let r = 0; r < B; r++) {
    for (let i = 0; i < n; i++) buf[i] = xs[rng.int(n)];
    reps[r] = stat(buf);
  }
  return { mean: stat(xs), lo: quantile(reps, (1 - level) / 2), hi: quantile(reps, (1 + level) / 2), n, level, method: 'bootstrap-percentile', replicates: B };
}

/** Percentile bootstrap of mean(a − b) over pairs (resampling pairs). */
export function pairedBootstrapInterval(a: readonly number[], b: readonly number[], o: Omit<BootstrapOptions, 'statistic'> = {}): Interval & { replicates: number } {
  return { ...bootstrapInterval(pairedDifferences(a, b), o), method: 'paired-bootstrap-percentile' };
}

/**
 * Wilson score interval for a proportion k/n (e.g. one test accuracy on n images): the binomial sampling error of the
 * test set alone, not the run-to-run variation.
 */
export function wilsonInterval(k: number, n: number, level = 0.95): Interval {
  checkLevel(level, 'wilsonInterval');
  if (!Number.isInteger(n) || n < 1) throw new Error(`wilsonInterval: n must be a positive integer, got ${n}`);
  if (!Number.isInteger(k) || k < 0 || k > n) throw new Error(`wilsonInterval: k must be an integer in [0, n=${n}], got ${k}`);
  const z = normalQuantile((1 + level) / 2);
  const p = k / n;
  const den = 1 + (z * z) / n;
  const centre = (p + (z * z) / (2 * n)) / den;
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / den;
  return { mean: p, lo: centre - half, hi: centre + half, n, level, method: 'wilson' };
}

/**
 * Paired bootstrap over test items: per-item correctness of two classifiers on the same items (0/1 arrays or '0'/'1'
 * strings, same order), resampling items; interval of accuracy(a) − accuracy(b). Measures the test-set sampling error
 * of a difference (it is small when the two classifiers mostly agree), not run-to-run variation.
 */
export function itemBootstrapDifference(a: ArrayLike<number> | string, b: ArrayLike<number> | string, o: Omit<BootstrapOptions, 'statistic'> = {}): Interval & { replicates: number; discordant: [number, number] } {
  const toArr = (v: ArrayLike<number> | string, what: string): Uint8Array => {
    const out = new Uint8Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const x = typeof v === 'string' ? Number(v[i]) : v[i];
      if (x !== 0 && x !== 1) throw new Error(`itemBootstrapDifference: ${what}[${i}] is ${String(x)} (0/1 only)`);
      out[i] = x;
    }
    return out;
  };
  const x = toArr(a, 'a');
  const y = toArr(b, 'b');
  if (x.length !== y.length) throw new Error(`itemBootstrapDifference: ${x.length} vs ${y.length} items`);
  const level = o.level ?? 0.95;
  checkLevel(level, 'itemBootstrapDifference');
  const B = o.resamples ?? 10000;
  if (!Number.isInteger(B) || B < 100) throw new Error(`itemBootstrapDifference: resamples must be an integer ≥ 100, got ${B}`);
  const n = x.length;
  if (n < 2) throw new Error(`itemBootstrapDifference: needs at least 2 items, got ${n}`);
  const d = new Int8Array(n);
  let n10 = 0;
  let n01 = 0;
  for (let i = 0; i < n; i++) {
    d[i] = x[i] - y[i];
    if (d[i] > 0) n10++;
    else if (d[i] < 0) n01++;
  }
  const rng = Rng.derive(o.seed ?? 0, 'item-bootstrap');
  const reps = new Array<number>(B);
  for (let r = 0; r < B; r++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += d[rng.int(n)];
    reps[r] = s / n;
  }
  return {
    mean: (n10 - n01) / n,
    lo: quantile(reps, (1 - level) / 2),
    hi: quantile(reps, (1 + level) / 2),
    n,
    level,
    method: 'paired-bootstrap-percentile',
    replicates: B,
    discordant: [n10, n01],
  };
}
