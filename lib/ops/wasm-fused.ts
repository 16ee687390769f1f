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
 *   split, no rank-5 transpose; lib/ops/wasm-attention.ts). `probs` is kept for the gradient.
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
import { attentionGradKernel, attentionKernel } from './wasm-attention';

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
  geluForward(H, (xo >>> 2) + head, H, (oo >>> 2) + head, n - head);
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
  geluBackward(H, (dyo >>> 2) + head, H, (xo >>> 2) + head, H, (oo >>> 2) + head, n - head);
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
  const xo = heap.offset(x) >>> 2;
  const yo = heap.offset(y) >>> 2;
  const go = heap.offset(gamma) >>> 2;
  const bo = heap.offset(beta) >>> 2;
  const mo = heap.offset(mean) >>> 2;
  const ro = heap.offset(rstd) >>> 2;
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
      const oo = heap.offset(out) >>> 2;
      heap.f32().fill(0, oo, oo + D);
      if (mode === 'gamma') k.layerNormGradGamma(heap.offset(dy), heap.offset(x), heap.offset(mean), heap.offset(rstd), heap.offset(out), M, D);
      else k.layerNormGradBeta(heap.offset(dy), heap.offset(out), M, D);
    }
    return out;
  }
  const H = heap.f32();
  const dyo = heap.offset(dy) >>> 2;
  const xo = heap.offset(x) >>> 2;
  const oo = heap.offset(out) >>> 2;
  const mo = heap.offset(mean) >>> 2;
  const ro = heap.offset(rstd) >>> 2;
  if (mode === 'x') {
    // dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)),  g = dy ⊙ γ
    const go = heap.offset(gamma) >>> 2;
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
