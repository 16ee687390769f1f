/**
 * LayerNorm over rows of width D (a multiple of 4) as WebAssembly SIMD kernels on the tfjs heap (assembled in
 * lib/ops/wasm-simd.ts). Pointers are byte offsets; statistics per row are float32 like the rest of the wasm path.
 *
 * - `layerNorm(x, gamma, beta, y, mean, rstd, M, D, eps)`: y = (x − μ)·r·γ + β with r = 1/√(σ² + eps) (biased σ²),
 *   writing μ and r per row;
 * - `layerNormGradX(dy, x, gamma, mean, rstd, out, M, D)`: out = r·(g − mean(g) − x̂·mean(g ⊙ x̂)), g = dy ⊙ γ;
 * - `layerNormGradGamma(dy, x, mean, rstd, out, M, D)`: out += Σ_rows dy ⊙ x̂ (the caller zeroes out);
 * - `layerNormGradBeta(dy, out, M, D)`: out += Σ_rows dy.
 */
import {
  Code, F32, I32, V128, get, set, i32c, add, sub, mul, splat, hsum, fadd, fdiv, fsqrt, u32ToF32, i32add, i32shl2,
  f32c, f32load, f32store, vload, vstore, vzero, forPtr, funcBody,
} from './wasm-encode';

/** Outer loop over M rows: `rows` is the M param (counted down). */
function rowLoop(rows: number, body: Code): Code {
  return [
    0x02, 0x40, 0x03, 0x40,
    ...get(rows), 0x45 /* i32.eqz */, 0x0d, 1,
    ...body,
    ...set(rows, [...get(rows), ...i32c(1), 0x6b /* i32.sub */]),
    0x0c, 0, 0x0b, 0x0b,
  ];
}

/** layerNorm: params 0 x, 1 gamma, 2 beta, 3 y, 4 mean, 5 rstd, 6 M, 7 D (i32), 8 eps (f32). */
export function layerNormBody(): { params: number[]; body: number[] } {
  const [x, gamma, beta, y, mean, rstd, M, D, eps] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  // i32 locals
  const [xj, gj, bj, yj, end, rowBytes] = [9, 10, 11, 12, 13, 14];
  // f32 locals
  const [mu, rs, Df] = [15, 16, 17];
  // v128 locals
  const [acc, vmu, vrs, v] = [18, 19, 20, 21];
  const body: Code = [
    ...set(rowBytes, i32shl2(get(D))),
    ...set(Df, u32ToF32(get(D))),
    ...rowLoop(M, [
      ...set(end, i32add(get(x), get(rowBytes))),
      // μ
      ...set(acc, vzero()),
      ...set(xj, get(x)),
      ...forPtr(xj, end, 16, set(acc, add(get(acc), vload(get(xj))))),
      ...set(mu, fdiv(hsum(acc), get(Df))),
      ...set(vmu, splat(get(mu))),
      // σ²
      ...set(acc, vzero()),
      ...set(xj, get(x)),
      ...forPtr(xj, end, 16, [...set(v, sub(vload(get(xj)), get(vmu))), ...set(acc, add(get(acc), mul(get(v), get(v))))]),
      ...set(rs, fdiv(f32c(1), fsqrt(fadd(fdiv(hsum(acc), get(Df)), get(eps))))),
      ...f32store(get(mean), get(mu)),
      ...f32store(get(rstd), get(rs)),
      ...set(vrs, splat(get(rs))),
      // y
      ...set(xj, get(x)),
      ...set(gj, get(gamma)),
      ...set(bj, get(beta)),
      ...set(yj, get(y)),
      ...forPtr(
        xj, end, 16,
        vstore(get(yj), add(mul(mul(sub(vload(get(xj)), get(vmu)), get(vrs)), vload(get(gj))), vload(get(bj)))),
        [gj, bj, yj],
      ),
      ...set(x, get(end)),
      ...set(y, i32add(get(y), get(rowBytes))),
      ...set(mean, i32add(get(mean), i32c(4))),
      ...set(rstd, i32add(get(rstd), i32c(4))),
    ]),
  ];
  return {
    params: [I32, I32, I32, I32, I32, I32, I32, I32, F32],
    body: funcBody([[6, I32], [3, F32], [4, V128]], body),
  };
}

/** layerNormGradX: params 0 dy, 1 x, 2 gamma, 3 mean, 4 rstd, 5 out, 6 M, 7 D. */
export function layerNormGradXBody(): { params: number[]; body: number[] } {
  const [dy, x, gamma, mean, rstd, out, M, D] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [xj, dj, gj, oj, end, rowBytes] = [8, 9, 10, 11, 12, 13];
  const [Df] = [14];
  const [vmu, vrs, a1, a2, g, xh, vsg, vsgx] = [15, 16, 17, 18, 19, 20, 21, 22];
  const gxh = (): Code => [
    ...set(g, mul(vload(get(dj)), vload(get(gj)))),
    ...set(xh, mul(sub(vload(get(xj)), get(vmu)), get(vrs))),
  ];
  const body: Code = [
    ...set(rowBytes, i32shl2(get(D))),
    ...set(Df, u32ToF32(get(D))),
    ...rowLoop(M, [
      ...set(end, i32add(get(x), get(rowBytes))),
      ...set(vmu, splat(f32load(get(mean)))),
      ...set(vrs, splat(f32load(get(rstd)))),
      ...set(a1, vzero()),
      ...set(a2, vzero()),
      ...set(xj, get(x)),
      ...set(dj, get(dy)),
      ...set(gj, get(gamma)),
      ...forPtr(xj, end, 16, [...gxh(), ...set(a1, add(get(a1), get(g))), ...set(a2, add(get(a2), mul(get(g), get(xh))))], [dj, gj]),
      ...set(vsg, splat(fdiv(hsum(a1), get(Df)))),
      ...set(vsgx, splat(fdiv(hsum(a2), get(Df)))),
      ...set(xj, get(x)),
      ...set(dj, get(dy)),
      ...set(gj, get(gamma)),
      ...set(oj, get(out)),
      ...forPtr(
        xj, end, 16,
        [...gxh(), ...vstore(get(oj), mul(get(vrs), sub(sub(get(g), get(vsg)), mul(get(xh), get(vsgx)))))],
        [dj, gj, oj],
      ),
      ...set(x, get(end)),
      ...set(dy, i32add(get(dy), get(rowBytes))),
      ...set(out, i32add(get(out), get(rowBytes))),
      ...set(mean, i32add(get(mean), i32c(4))),
      ...set(rstd, i32add(get(rstd), i32c(4))),
    ]),
  ];
  return { params: [I32, I32, I32, I32, I32, I32, I32, I32], body: funcBody([[6, I32], [1, F32], [8, V128]], body) };
}

/** layerNormGradGamma: params 0 dy, 1 x, 2 mean, 3 rstd, 4 out, 5 M, 6 D. out += Σ dy ⊙ x̂. */
export function layerNormGradGammaBody(): { params: number[]; body: number[] } {
  const [dy, x, mean, rstd, out, M, D] = [0, 1, 2, 3, 4, 5, 6];
  const [xj, dj, oj, end, rowBytes] = [7, 8, 9, 10, 11];
  const [vmu, vrs] = [12, 13];
  const body: Code = [
    ...set(rowBytes, i32shl2(get(D))),
    ...rowLoop(M, [
      ...set(end, i32add(get(x), get(rowBytes))),
      ...set(vmu, splat(f32load(get(mean)))),
      ...set(vrs, splat(f32load(get(rstd)))),
      ...set(xj, get(x)),
      ...set(dj, get(dy)),
      ...set(oj, get(out)),
      ...forPtr(
        xj, end, 16,
        vstore(get(oj), add(vload(get(oj)), mul(vload(get(dj)), mul(sub(vload(get(xj)), get(vmu)), get(vrs))))),
        [dj, oj],
      ),
      ...set(x, get(end)),
      ...set(dy, i32add(get(dy), get(rowBytes))),
      ...set(mean, i32add(get(mean), i32c(4))),
      ...set(rstd, i32add(get(rstd), i32c(4))),
    ]),
  ];
  return { params: [I32, I32, I32, I32, I32, I32, I32], body: funcBody([[5, I32], [2, V128]], body) };
}

/** layerNormGradBeta: params 0 dy, 1 out, 2 M, 3 D. out += Σ dy. */
export function layerNormGradBetaBody(): { params: number[]; body: number[] } {
  const [dy, out, M, D] = [0, 1, 2, 3];
  const [dj, oj, end, rowBytes] = [4, 5, 6, 7];
  const body: Code = [
    ...set(rowBytes, i32shl2(get(D))),
    ...rowLoop(M, [
      ...set(end, i32add(get(dy), get(rowBytes))),
      ...set(dj, get(dy)),
      ...set(oj, get(out)),
      ...forPtr(dj, end, 16, vstore(get(oj), add(vload(get(oj)), vload(get(dj)))), [oj]),
      ...set(dy, get(end)),
    ]),
  ];
  return { params: [I32, I32, I32, I32], body: funcBody([[4, I32]], body) };
}
