/**
 * GELU as WebAssembly SIMD kernels that run directly on the tfjs wasm heap (they import the backend's own memory, so
 * tensor data is used in place, no copies).
 *
 * The module is emitted byte by byte (lib/ops/wasm-encode.ts; no toolchain, no binary file in the repo).
 * Each kernel processes a multiple of 16 elements (4 vectors per iteration, interleaved so that the long dependency
 * chains of the polynomials overlap); callers do the < 16 remaining ones in JS.
 *
 * GELU kernels (assembled with the others in lib/ops/wasm-simd.ts):
 * - `gelu(x, out, n)`:          out = x·Φ(x)
 * - `geluGrad(dy, x, out, n)`:  out = dy·(Φ(x) + x·φ(x))
 * Φ(x) = 1 − ½erfc(x/√2) for x ≥ 0 and ½erfc(|x|/√2) otherwise, with erfc(z) = t·exp(−z² + P(t)), t = 1/(1 + z/2) and
 * P the degree-9 polynomial of the classic Chebyshev fit (fractional error < 1.2e-7 for all z ≥ 0, so the left tail
 * keeps its relative accuracy); exp by range reduction to [−ln2/2, ln2/2] with a degree-6 Taylor polynomial and the
 * power of two built in the exponent bits.
 */
import { Code, I32, V128, get, set, i32c, simd, Pool, add, sub, mul, div, pmax, ge, and, iadd, ishl, bitselect, funcBody, uleb } from './wasm-encode';


/** One statement per group g (a `local.set`), emitted group-interleaved so the G dependency chains overlap. */
type Step = (g: number) => Code;

/** Locals of one group: work registers. */
interface Regs {
  X: number;
  Z: number;
  T: number;
  E: number;
  H: number;
  Y: number;
  N: number;
  A: number;
  E2: number;
}

/** acc = c0 + t(c1 + t(c2 + ...)) as one step per coefficient (Horner), into `acc`. */
function hornerSteps(P: Pool, R: (g: number) => Regs, t: (r: Regs) => number, acc: (r: Regs) => number, coeffs: number[]): Step[] {
  const steps: Step[] = [(g) => set(acc(R(g)), P.f(coeffs[coeffs.length - 1]))];
  for (let k = coeffs.length - 2; k >= 0; k--) {
    steps.push((g) => set(acc(R(g)), add(P.f(coeffs[k]), mul(get(t(R(g))), get(acc(R(g)))))));
  }
  return steps;
}

/**
 * exp of the value in register `Y` (into `E`-like register `out`), using N as scratch; y below −87 gives exp(−87).
 * n = round(y·log2 e) by the 1.5·2²³ trick (the rounded integer lands in the low mantissa bits of k = y·log2e + M,
 * so 2^n = bits(k) << 23 + 127 << 23, no float→int conversion), r = y − n·ln2 in two parts, degree-6 Taylor.
 */
function expSteps(P: Pool, R: (g: number) => Regs, out: (r: Regs) => number): Step[] {
  const LOG2E = 1.4426950408889634;
  const LN2_HI = 0.693145751953125; // exactly representable high part
  const LN2_LO = 1.4286068203094172e-6;
  const MAGIC = 12582912; // 1.5·2^23
  return [
    (g) => set(R(g).Y, pmax(get(R(g).Y), P.f(-87))),
    (g) => set(R(g).N, add(mul(get(R(g).Y), P.f(LOG2E)), P.f(MAGIC))), // k: bits carry n
    (g) => {
      const r = R(g);
      const n = (): Code => sub(get(r.N), P.f(MAGIC));
      return set(r.Y, sub(sub(get(r.Y), mul(n(), P.f(LN2_HI))), mul(n(), P.f(LN2_LO)))); // r
    },
    ...hornerSteps(P, R, (r) => r.Y, (r) => r.A, [1, 1, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720]),
    (g) => set(out(R(g)), mul(get(R(g).A), iadd(ishl(get(R(g).N), 23), P.i(127 << 23)))),
  ];
}

// Chebyshev coefficients of the erfc fit: erfc(z) = t·exp(−z² + Σ c_k t^k), t = 1/(1 + z/2)
const ERFC_C = [
  -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587, -0.82215223,
  0.17087277,
];
const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** Steps computing H = ½erfc(|x|/√2) = Φ(−|x|) from X (and leaving Z = |x|/√2). */
function phiSteps(P: Pool, R: (g: number) => Regs): Step[] {
  return [
    (g) => set(R(g).Z, mul(and(get(R(g).X), P.i(0x7fffffff)), P.f(SQRT1_2))), // |x|/√2
    (g) => set(R(g).T, div(P.f(1), add(P.f(1), mul(P.f(0.5), get(R(g).Z))))),
    ...hornerSteps(P, R, (r) => r.T, (r) => r.Y, ERFC_C),
    (g) => set(R(g).Y, sub(get(R(g).Y), mul(get(R(g).Z), get(R(g).Z)))), // P(t) − z²
    ...expSteps(P, R, (r) => r.E),
    (g) => set(R(g).H, mul(mul(P.f(0.5), get(R(g).T)), get(R(g).E))),
  ];
}

/** Φ(x) from H and X: x ≥ 0 → 1 − H, else H. */
function phiSelect(P: Pool, r: Regs): Code {
  return bitselect(sub(P.f(1), get(r.H)), get(r.H), ge(get(r.X), P.f(0)));
}

/** Groups of 4 lanes processed per loop iteration (independent chains for the out-of-order core). */
const G = 4;
const REGS_PER_GROUP = 9;

/**
 * A streaming loop over `n` floats (a multiple of 4·G): each iteration handles G vectors; the pointer params advance
 * by 16·G bytes.
 */
function loop(ptrs: number[], nParam: number, endLocal: number, body: Code): Code {
  const first = ptrs[0];
  return [
    // end = first + 4n
    ...set(endLocal, [...get(first), ...get(nParam), ...i32c(2), 0x74 /* i32.shl */, 0x6a /* i32.add */]),
    0x02, 0x40, // block
    0x03, 0x40, // loop
    ...get(first), ...get(endLocal), 0x4f /* i32.ge_u */, 0x0d, 1, // br_if 1 (exit)
    ...body,
    ...ptrs.flatMap((p) => set(p, [...get(p), ...i32c(16 * G), 0x6a])),
    0x0c, 0, // br 0
    0x0b, // end loop
    0x0b, // end block
  ];
}

/** Loads at byte offset 16·g from a pointer param. */
const loadAt = (ptr: number, g: number): Code => [...get(ptr), ...simd(0x00), 0, ...uleb(16 * g)];
const storeAt = (ptr: number, g: number, v: Code): Code => [...get(ptr), ...v, ...simd(0x0b), 0, ...uleb(16 * g)];

function interleave(steps: Step[]): Code {
  const out: Code = [];
  for (const st of steps) for (let g = 0; g < G; g++) out.push(...st(g));
  return out;
}

function regsFrom(base: number): (g: number) => Regs {
  return (g) => {
    const b = base + g * REGS_PER_GROUP;
    return { X: b, Z: b + 1, T: b + 2, E: b + 3, H: b + 4, Y: b + 5, N: b + 6, A: b + 7, E2: b + 8 };
  };
}

/** gelu(x, out, n): params 0 x, 1 out, 2 n (multiple of 16); local 3 end; then v128 registers and constants. */
export function geluBody(): number[] {
  const base = 4;
  const R = regsFrom(base);
  const P = new Pool(base + G * REGS_PER_GROUP);
  const steps: Step[] = [
    (g) => set(R(g).X, loadAt(0, g)),
    ...phiSteps(P, R),
    (g) => storeAt(1, g, mul(get(R(g).X), phiSelect(P, R(g)))),
  ];
  const body = interleave(steps);
  return funcBody([[1, I32], [G * REGS_PER_GROUP + P.count, V128]], [...P.init(), ...loop([0, 1], 2, 3, body)]);
}

/** geluGrad(dy, x, out, n): params 0 dy, 1 x, 2 out, 3 n (multiple of 16); local 4 end; then v128. */
export function geluGradBody(): number[] {
  const base = 5;
  const R = regsFrom(base);
  const P = new Pool(base + G * REGS_PER_GROUP);
  const steps: Step[] = [
    (g) => set(R(g).X, loadAt(1, g)),
    ...phiSteps(P, R),
    // φ(x) = exp(−x²/2)/√(2π) = exp(−z²)/√(2π)
    (g) => set(R(g).Y, mul(P.f(-1), mul(get(R(g).Z), get(R(g).Z)))),
    ...expSteps(P, R, (r) => r.E2),
    (g) => storeAt(2, g, mul(loadAt(0, g), add(phiSelect(P, R(g)), mul(get(R(g).X), mul(get(R(g).E2), P.f(INV_SQRT_2PI)))))),
  ];
  const body = interleave(steps);
  return funcBody([[1, I32], [G * REGS_PER_GROUP + P.count, V128]], [...P.init(), ...loop([0, 1, 2], 3, 4, body)]);
}

