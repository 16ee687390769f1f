/**
 * Fused kernels for the tfjs `wasm` backend, with registered gradients (lazy per input, so frozen weights cost nothing
 * in the backward: tfjs only evaluates the gradient of inputs on a path to a trained variable).
 *
 * Kernels (registered for backend 'wasm' only, names prefixed `Vitpeft`):
 * - `VitpeftLinear` {x [M,K], weight [K,N], bias? [N]} → [M,N]: one XNNPACK matMul with the bias fused.
 *   Gradients: dx = dy·transpose(W), dW = transpose(x)·dy, db = Σ_rows dy — explicit transposes, because the wasm
 *   matMul is ~7× slower with transposeA/transposeB (tfjs's own BatchMatMul gradient uses them).
 * - `VitpeftAttention` {qkv [B,N,3D], keyBias? [B,N]} attrs {numHeads} → [out [B,N,D], probs [B,h,N,N]]:
 *   softmax(q·kᵀ/√dh + keyBias)·v per (batch, head) as 2-D XNNPACK matMuls on heap regions (no batched matMul, no
 *   split, no rank-5 transpose). `probs` is kept for the gradient.
 * - `VitpeftAttentionGrad` {dy, qkv, probs, out} attrs {numHeads, mode: 'qkv' | 'bias'} → dqkv [B,N,3D] or
 *   dKeyBias [B,N]. Per head: dP = dO·vᵀ, dS = P ⊙ (dP − rowsum(dO ⊙ O)) (the row dot product from the output, not
 *   from the N×N matrices), dq = s·dS·k, dk = s·dSᵀ·q, dv = Pᵀ·dO, with the N×N transposes done by the backend's
 *   Transpose kernel so every product is a plain 2-D XNNPACK call.
 * - `VitpeftGelu` / `VitpeftGeluGrad`: exact-erf GELU, WebAssembly SIMD over the heap (lib/ops/wasm-simd.ts), the
 *   JS table of lib/ops/gelu-table.ts for the < 16 trailing elements or where SIMD is unavailable.
 * - `VitpeftLayerNorm` {x [M,D], gamma [D], beta [D]} attrs {eps} → [y [M,D], mean [M], rstd [M]];
 *   `VitpeftLayerNormGrad` {dy, x, gamma, mean, rstd} attrs {mode: 'x' | 'gamma' | 'beta'}. WebAssembly SIMD
 *   (lib/ops/wasm-simd-ln.ts) when D is a multiple of 4, JS loops otherwise.
 *
 * Call them through lib/ops/fast.ts, which checks that the backend is wasm with the expected internals.
 */
import * as tf from '@tensorflow/tfjs';
import { Heap } from './wasm-heap';
import { geluBackward, geluForward } from './gelu-table';
import { simdKernels } from './wasm-simd';

/** Use the SIMD kernels of lib/ops/wasm-simd.ts where they instantiate (switchable for tests and benchmarks). */
let useSimd = process.env.VITPEFT_SIMD !== '0';

/** Turn the hand-written WebAssembly SIMD kernels on or off (the JS loops are used when off). */
export function setSimdKernels(on: boolean): void {
  useSimd = on;
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

function size(shape: number[]): number {
  let s = 1;
  for (const d of shape) s *= d;
  return s;
}

function f32(t: tf.TensorInfo, what: string): void {
  if (t.dtype !== 'float32') throw new Error(`${what}: expected float32, got ${t.dtype}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Linear

function linearKernel({ inputs, backend }: KernelArgs): tf.TensorInfo {
  const x = inputs.x as tf.TensorInfo;
  const w = inputs.weight as tf.TensorInfo;
  const b = (inputs.bias as tf.TensorInfo | undefined) ?? null;
  f32(x, 'VitpeftLinear x');
  f32(w, 'VitpeftLinear weight');
  if (x.shape.length !== 2 || w.shape.length !== 2 || x.shape[1] !== w.shape[0]) {
    throw new Error(`VitpeftLinear: expected x [M, K] and weight [K, N], got [${x.shape}] and [${w.shape}]`);
  }
  const [M, K] = x.shape;
  const N = w.shape[1];
  if (b && (b.shape.length !== 1 || b.shape[0] !== N)) throw new Error(`VitpeftLinear: bias must be [${N}], got [${b.shape}]`);
  const heap = new Heap(backend);
  const out = heap.output([M, N]);
  if (M > 0 && N > 0) heap.matmulTensors(x, M, K, w, N, out, b);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Attention

interface AttnDims {
  B: number;
  N: number;
  D: number;
  h: number;
  dh: number;
}

function attnDims(qkv: tf.TensorInfo, numHeads: number, what: string): AttnDims {
  if (qkv.shape.length !== 3 || qkv.shape[2] % 3 !== 0) throw new Error(`${what}: expected qkv [B, N, 3D], got [${qkv.shape}]`);
  const [B, N, D3] = qkv.shape;
  const D = D3 / 3;
  if (!Number.isInteger(numHeads) || numHeads < 1 || D % numHeads !== 0) {
    throw new Error(`${what}: width ${D} is not divisible by numHeads ${numHeads}`);
  }
  return { B, N, D, h: numHeads, dh: D / numHeads };
}

/**
 * Gather one of q/k/v (part 0/1/2) of qkv [B,N,3,h,dh] (heap f32 at element offset `src`) into per-head blocks at
 * element offset `dst`: layout 'nd' → [B,h,N,dh], 'dn' → [B,h,dh,N] (transposed). Multiplied by `scale`.
 */
function gatherHeads(H: Float32Array, src: number, dst: number, d: AttnDims, part: number, layout: 'nd' | 'dn', scale: number): void {
  const { B, N, D, h, dh } = d;
  const D3 = 3 * D;
  for (let b = 0; b < B; b++) {
    for (let n = 0; n < N; n++) {
      const row = src + (b * N + n) * D3 + part * D;
      for (let hh = 0; hh < h; hh++) {
        const r = row + hh * dh;
        const blk = dst + (b * h + hh) * N * dh;
        if (layout === 'nd') {
          const o = blk + n * dh;
          for (let j = 0; j < dh; j++) H[o + j] = H[r + j] * scale;
        } else {
          const o = blk + n;
          for (let j = 0; j < dh; j++) H[o + j * N] = H[r + j] * scale;
        }
      }
    }
  }
}

/** Same as gatherHeads for a [B,N,D] tensor (heads packed along D), e.g. the output gradient. */
function gatherHeadsD(H: Float32Array, src: number, dst: number, d: AttnDims, layout: 'nd' | 'dn'): void {
  const { B, N, D, h, dh } = d;
  for (let b = 0; b < B; b++) {
    for (let n = 0; n < N; n++) {
      const row = src + (b * N + n) * D;
      for (let hh = 0; hh < h; hh++) {
        const r = row + hh * dh;
        const blk = dst + (b * h + hh) * N * dh;
        if (layout === 'nd') {
          const o = blk + n * dh;
          for (let j = 0; j < dh; j++) H[o + j] = H[r + j];
        } else {
          const o = blk + n;
          for (let j = 0; j < dh; j++) H[o + j * N] = H[r + j];
        }
      }
    }
  }
}

function attentionKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const qkv = inputs.qkv as tf.TensorInfo;
  const keyBias = (inputs.keyBias as tf.TensorInfo | undefined) ?? null;
  f32(qkv, 'VitpeftAttention qkv');
  const d = attnDims(qkv, (attrs as { numHeads: number }).numHeads, 'VitpeftAttention');
  const { B, N, D, h, dh } = d;
  if (keyBias && (keyBias.shape.length !== 2 || keyBias.shape[0] !== B || keyBias.shape[1] !== N)) {
    throw new Error(`VitpeftAttention: keyBias must be [${B}, ${N}], got [${keyBias.shape}]`);
  }
  const heap = new Heap(backend);
  const out = heap.output([B, N, D]);
  const probs = heap.output([B, h, N, N]);
  if (B * N * D === 0) return [out, probs];
  try {
    const blk = N * dh;
    const qs = heap.alloc(B * h * blk); // [B,h,N,dh] scaled q
    const kt = heap.alloc(B * h * blk); // [B,h,dh,N]
    const vs = heap.alloc(B * h * blk); // [B,h,N,dh]
    const os = heap.alloc(blk); // [N,dh] one head's output
    const pOff = heap.offset(probs);
    let H = heap.f32();
    const src = heap.offset(qkv) >> 2;
    gatherHeads(H, src, qs >> 2, d, 0, 'nd', 1 / Math.sqrt(dh));
    gatherHeads(H, src, kt >> 2, d, 1, 'dn', 1);
    gatherHeads(H, src, vs >> 2, d, 2, 'nd', 1);
    const NN = N * N;
    for (let bh = 0; bh < B * h; bh++) heap.matmul(qs + bh * blk * 4, N, dh, kt + bh * blk * 4, N, pOff + bh * NN * 4);
    if (keyBias) {
      H = heap.f32();
      const kb = heap.offset(keyBias) >> 2;
      const p0 = pOff >> 2;
      for (let b = 0; b < B; b++) {
        for (let r = 0; r < h * N; r++) {
          const o = p0 + (b * h * N + r) * N;
          const kbo = kb + b * N;
          for (let j = 0; j < N; j++) H[o + j] += H[kbo + j];
        }
      }
    }
    heap.softmax(pOff, pOff, B * h * N, N);
    const outOff = heap.offset(out) >> 2;
    for (let b = 0; b < B; b++) {
      for (let hh = 0; hh < h; hh++) {
        const bh = b * h + hh;
        heap.matmul(pOff + bh * NN * 4, N, N, vs + bh * blk * 4, dh, os);
        H = heap.f32();
        const o4 = os >> 2;
        for (let n = 0; n < N; n++) {
          const dst = outOff + (b * N + n) * D + hh * dh;
          const s = o4 + n * dh;
          for (let j = 0; j < dh; j++) H[dst + j] = H[s + j];
        }
      }
    }
  } finally {
    heap.release();
  }
  return [out, probs];
}

function attentionGradKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const dy = inputs.dy as tf.TensorInfo;
  const qkv = inputs.qkv as tf.TensorInfo;
  const probs = inputs.probs as tf.TensorInfo;
  const outT = inputs.out as tf.TensorInfo;
  const { numHeads, mode } = attrs as { numHeads: number; mode: 'qkv' | 'bias' };
  const d = attnDims(qkv, numHeads, 'VitpeftAttentionGrad');
  const { B, N, D, h, dh } = d;
  const heap = new Heap(backend);
  const out = mode === 'qkv' ? heap.output([B, N, 3 * D]) : heap.output([B, N]);
  if (B * N * D === 0) return out;
  const scale = 1 / Math.sqrt(dh);
  const wantQkv = mode === 'qkv';
  try {
    const blk = N * dh;
    const NN = N * N;
    const dO = heap.alloc(B * h * blk); // [B,h,N,dh]
    const vt = heap.alloc(B * h * blk); // [B,h,dh,N]
    const dP = heap.alloc(NN); // one head's dP, then dS in place
    const kk = wantQkv ? heap.alloc(B * h * blk) : 0; // [B,h,N,dh]
    const qq = wantQkv ? heap.alloc(B * h * blk) : 0; // [B,h,N,dh]
    const tT = wantQkv ? heap.alloc(NN) : 0; // transpose of dS or P
    const t1 = wantQkv ? heap.alloc(blk) : 0; // one head's dq / dk / dv [N,dh]
    const rowDot = heap.alloc(B * h * N); // Σ_j P_ij·dP_ij = dO_i·O_i per (b, h, i)
    let H = heap.f32();
    const src = heap.offset(qkv) >> 2;
    const dyo = heap.offset(dy) >> 2;
    gatherHeadsD(H, dyo, dO >> 2, d, 'nd');
    gatherHeads(H, src, vt >> 2, d, 2, 'dn', 1);
    if (wantQkv) {
      gatherHeads(H, src, kk >> 2, d, 1, 'nd', 1);
      gatherHeads(H, src, qq >> 2, d, 0, 'nd', 1);
    }
    {
      const oo = heap.offset(outT) >> 2;
      const rd = rowDot >> 2;
      for (let b = 0; b < B; b++) {
        for (let n = 0; n < N; n++) {
          const row = (b * N + n) * D;
          for (let hh = 0; hh < h; hh++) {
            let s = 0;
            const r = row + hh * dh;
            for (let j = 0; j < dh; j++) s += H[dyo + r + j] * H[oo + r + j];
            H[rd + (b * h + hh) * N + n] = s;
          }
        }
      }
    }
    const pOff = heap.offset(probs);
    const oOff = heap.offset(out) >> 2;
    if (!wantQkv) heap.f32().fill(0, oOff, oOff + B * N);
    for (let b = 0; b < B; b++) {
      for (let hh = 0; hh < h; hh++) {
        const bh = b * h + hh;
        const pb = pOff + bh * NN * 4;
        // dP = dO · vᵀ  [N,N]
        heap.matmul(dO + bh * blk * 4, N, dh, vt + bh * blk * 4, N, dP);
        // dS = P ⊙ (dP − rowDot)   (gradient w.r.t. the logits), in place
        H = heap.f32();
        const p4 = pb >> 2;
        const s4 = dP >> 2;
        const rd = (rowDot >> 2) + bh * N;
        for (let i = 0; i < N; i++) {
          const pr = p4 + i * N;
          const sr = s4 + i * N;
          const dot = H[rd + i];
          for (let j = 0; j < N; j++) H[sr + j] = H[pr + j] * (H[sr + j] - dot);
        }
        if (!wantQkv) {
          const ob = oOff + b * N;
          for (let i = 0; i < N; i++) {
            const sr = s4 + i * N;
            for (let j = 0; j < N; j++) H[ob + j] += H[sr + j];
          }
          continue;
        }
        const t4 = t1 >> 2;
        const scatter = (part: number, mul: number): void => {
          const Hs = heap.f32();
          for (let n = 0; n < N; n++) {
            const o = oOff + (b * N + n) * 3 * D + part * D + hh * dh;
            const s = t4 + n * dh;
            for (let j = 0; j < dh; j++) Hs[o + j] = Hs[s + j] * mul;
          }
        };
        // dq = scale · dS · k
        heap.matmul(dP, N, N, kk + bh * blk * 4, dh, t1);
        scatter(0, scale);
        // dk = scale · dSᵀ · q
        heap.transpose(dP, 1, N, N, tT);
        heap.matmul(tT, N, N, qq + bh * blk * 4, dh, t1);
        scatter(1, scale);
        // dv = Pᵀ · dO
        heap.transpose(pb, 1, N, N, tT);
        heap.matmul(tT, N, N, dO + bh * blk * 4, dh, t1);
        scatter(2, 1);
      }
    }
  } finally {
    heap.release();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// GELU

function geluKernel({ inputs, backend }: KernelArgs): tf.TensorInfo {
  const x = inputs.x as tf.TensorInfo;
  f32(x, 'VitpeftGelu x');
  const heap = new Heap(backend);
  const out = heap.output(x.shape);
  const n = size(x.shape);
  const xo = heap.offset(x);
  const oo = heap.offset(out);
  const k = useSimd ? simdKernels(heap.memory()) : null;
  const head = k ? n - (n % 16) : 0; // SIMD for multiples of 16, JS table for the rest
  if (head > 0) k!.gelu(xo, oo, head);
  const H = heap.f32();
  geluForward(H, (xo >> 2) + head, H, (oo >> 2) + head, n - head);
  return out;
}

function geluGradKernel({ inputs, backend }: KernelArgs): tf.TensorInfo {
  const dy = inputs.dy as tf.TensorInfo;
  const x = inputs.x as tf.TensorInfo;
  const heap = new Heap(backend);
  const out = heap.output(x.shape);
  const n = size(x.shape);
  const dyo = heap.offset(dy);
  const xo = heap.offset(x);
  const oo = heap.offset(out);
  const k = useSimd ? simdKernels(heap.memory()) : null;
  const head = k ? n - (n % 16) : 0;
  if (head > 0) k!.geluGrad(dyo, xo, oo, head);
  const H = heap.f32();
  geluBackward(H, (dyo >> 2) + head, H, (xo >> 2) + head, H, (oo >> 2) + head, n - head);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// LayerNorm (over the last axis of a 2-D [M, D] input)

function layerNormKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const x = inputs.x as tf.TensorInfo;
  const gamma = inputs.gamma as tf.TensorInfo;
  const beta = inputs.beta as tf.TensorInfo;
  const eps = (attrs as { eps: number }).eps;
  f32(x, 'VitpeftLayerNorm x');
  if (x.shape.length !== 2) throw new Error(`VitpeftLayerNorm: expected x [M, D], got [${x.shape}]`);
  const [M, D] = x.shape;
  if (gamma.shape.length !== 1 || gamma.shape[0] !== D || beta.shape.length !== 1 || beta.shape[0] !== D) {
    throw new Error(`VitpeftLayerNorm: gamma and beta must be [${D}], got [${gamma.shape}] and [${beta.shape}]`);
  }
  const heap = new Heap(backend);
  const y = heap.output([M, D]);
  const mean = heap.output([M]);
  const rstd = heap.output([M]);
  const k = useSimd && D % 4 === 0 ? simdKernels(heap.memory()) : null;
  if (k) {
    k.layerNorm(heap.offset(x), heap.offset(gamma), heap.offset(beta), heap.offset(y), heap.offset(mean), heap.offset(rstd), M, D, eps);
    return [y, mean, rstd];
  }
  const H = heap.f32();
  const xo = heap.offset(x) >> 2;
  const yo = heap.offset(y) >> 2;
  const go = heap.offset(gamma) >> 2;
  const bo = heap.offset(beta) >> 2;
  const mo = heap.offset(mean) >> 2;
  const ro = heap.offset(rstd) >> 2;
  for (let m = 0; m < M; m++) {
    const r = xo + m * D;
    let s = 0;
    for (let j = 0; j < D; j++) s += H[r + j];
    const mu = s / D;
    let v = 0;
    for (let j = 0; j < D; j++) {
      const c = H[r + j] - mu;
      v += c * c;
    }
    const rs = 1 / Math.sqrt(v / D + eps);
    H[mo + m] = mu;
    H[ro + m] = rs;
    const o = yo + m * D;
    for (let j = 0; j < D; j++) H[o + j] = (H[r + j] - mu) * rs * H[go + j] + H[bo + j];
  }
  return [y, mean, rstd];
}

function layerNormGradKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const dy = inputs.dy as tf.TensorInfo;
  const x = inputs.x as tf.TensorInfo;
  const gamma = inputs.gamma as tf.TensorInfo;
  const mean = inputs.mean as tf.TensorInfo;
  const rstd = inputs.rstd as tf.TensorInfo;
  const mode = (attrs as { mode: 'x' | 'gamma' | 'beta' }).mode;
  const [M, D] = x.shape;
  const heap = new Heap(backend);
  const out = mode === 'x' ? heap.output([M, D]) : heap.output([D]);
  const k = useSimd && D % 4 === 0 ? simdKernels(heap.memory()) : null;
  if (k) {
    if (mode === 'x') {
      k.layerNormGradX(heap.offset(dy), heap.offset(x), heap.offset(gamma), heap.offset(mean), heap.offset(rstd), heap.offset(out), M, D);
    } else {
      const oo = heap.offset(out) >> 2;
      heap.f32().fill(0, oo, oo + D);
      if (mode === 'gamma') k.layerNormGradGamma(heap.offset(dy), heap.offset(x), heap.offset(mean), heap.offset(rstd), heap.offset(out), M, D);
      else k.layerNormGradBeta(heap.offset(dy), heap.offset(out), M, D);
    }
    return out;
  }
  const H = heap.f32();
  const dyo = heap.offset(dy) >> 2;
  const xo = heap.offset(x) >> 2;
  const oo = heap.offset(out) >> 2;
  const mo = heap.offset(mean) >> 2;
  const ro = heap.offset(rstd) >> 2;
  if (mode === 'x') {
    // dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)),  g = dy ⊙ γ
    const go = heap.offset(gamma) >> 2;
    for (let m = 0; m < M; m++) {
      const r = xo + m * D;
      const dr = dyo + m * D;
      const mu = H[mo + m];
      const rs = H[ro + m];
      let sg = 0;
      let sgx = 0;
      for (let j = 0; j < D; j++) {
        const g = H[dr + j] * H[go + j];
        sg += g;
        sgx += g * (H[r + j] - mu) * rs;
      }
      sg /= D;
      sgx /= D;
      const o = oo + m * D;
      for (let j = 0; j < D; j++) {
        const xh = (H[r + j] - mu) * rs;
        H[o + j] = rs * (H[dr + j] * H[go + j] - sg - xh * sgx);
      }
    }
  } else {
    const acc = new Float64Array(D);
    for (let m = 0; m < M; m++) {
      const dr = dyo + m * D;
      if (mode === 'beta') {
        for (let j = 0; j < D; j++) acc[j] += H[dr + j];
      } else {
        const r = xo + m * D;
        const mu = H[mo + m];
        const rs = H[ro + m];
        for (let j = 0; j < D; j++) acc[j] += H[dr + j] * (H[r + j] - mu) * rs;
      }
    }
    for (let j = 0; j < D; j++) H[oo + j] = acc[j];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Registration

const KERNELS: Array<[string, (a: KernelArgs) => tf.TensorInfo | tf.TensorInfo[]]> = [
  ['VitpeftLinear', linearKernel],
  ['VitpeftAttention', attentionKernel],
  ['VitpeftAttentionGrad', attentionGradKernel],
  ['VitpeftGelu', geluKernel],
  ['VitpeftGeluGrad', geluGradKernel],
  ['VitpeftLayerNorm', layerNormKernel],
  ['VitpeftLayerNormGrad', layerNormGradKernel],
];

/** Names of the fused kernels this module registers for wasm. */
export const FUSED_KERNELS = KERNELS.map(([n]) => n);

const run = (name: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap = {}): tf.Tensor | tf.Tensor[] =>
  tf.engine().runKernel(name, inputs, attrs) as tf.Tensor | tf.Tensor[];

function registerGradients(): void {
  tf.registerGradient({
    kernelName: 'VitpeftLinear',
    inputsToSave: ['x', 'weight'],
    gradFunc: (dy, saved) => {
      const [x, w] = saved as [tf.Tensor2D, tf.Tensor2D];
      const g = dy as tf.Tensor2D;
      return {
        x: () => tf.matMul(g, tf.transpose(w)), // [M,N]·[N,K]
        weight: () => tf.matMul(tf.transpose(x), g), // [K,M]·[M,N]
        bias: () => tf.sum(g, 0),
      };
    },
  });
  tf.registerGradient({
    kernelName: 'VitpeftAttention',
    inputsToSave: ['qkv'],
    outputsToSave: [true, true],
    gradFunc: (dys, saved, attrs) => {
      const [qkv, out, probs] = saved;
      const dy = (Array.isArray(dys) ? dys[0] : dys) as tf.Tensor;
      const numHeads = (attrs as { numHeads: number }).numHeads;
      return {
        qkv: () => run('VitpeftAttentionGrad', { dy, qkv, probs, out }, { numHeads, mode: 'qkv' }) as tf.Tensor,
        keyBias: () => run('VitpeftAttentionGrad', { dy, qkv, probs, out }, { numHeads, mode: 'bias' }) as tf.Tensor,
      };
    },
  });
  tf.registerGradient({
    kernelName: 'VitpeftGelu',
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => ({ x: () => run('VitpeftGeluGrad', { dy: dy as tf.Tensor, x: saved[0] }) as tf.Tensor }),
  });
  tf.registerGradient({
    kernelName: 'VitpeftLayerNorm',
    inputsToSave: ['x', 'gamma'],
    outputsToSave: [false, true, true],
    gradFunc: (dys, saved) => {
      const [x, gamma, mean, rstd] = saved;
      const dy = (Array.isArray(dys) ? dys[0] : dys) as tf.Tensor;
      const g = (mode: string) => () => run('VitpeftLayerNormGrad', { dy, x, gamma, mean, rstd }, { mode }) as tf.Tensor;
      return { x: g('x'), gamma: g('gamma'), beta: g('beta') };
    },
  });
}

let registered = false;

/** Register the fused kernels for 'wasm' and their gradients (idempotent). */
export function registerFusedKernels(): void {
  if (registered) return;
  for (const [name, fn] of KERNELS) {
    if (!tf.getKernel(name, 'wasm')) {
      tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: fn as unknown as tf.KernelFunc });
    }
  }
  registerGradients();
  registered = true;
}
