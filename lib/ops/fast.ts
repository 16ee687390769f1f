/**
 * Backend dispatch for the ViT's hot ops: on the `wasm` backend (with the internals lib/ops/wasm-heap.ts validates)
 * they run the fused kernels of lib/ops/wasm-fused.ts; on every other backend ('tensorflow' through tfjs-node(-gpu),
 * 'cpu', ...) and whenever fast paths are switched off they run the plain ops of lib/ops/nn.ts. Both paths compute
 * the same function (tests: test/perf-*.test.ts compare forward and gradients to 1e-4 relative).
 *
 * On wasm some stock kernels are also replaced: `BatchMatMul` (lib/ops/wasm-matmul.ts), so every `tf.matMul` in the
 * kit — batched, broadcast or transposed, including tfjs's own matMul gradients — runs XNNPACK's 2-D product; and
 * `Slice` / `SplitV` (lib/ops/wasm-slice.ts), which no longer copy the whole input per slice (tf.split, tf.slice and
 * the gradient of tf.concat). `init()` activates this for wasm; results are unchanged up to float rounding.
 *
 * Switch: `setFastOps(false)` or the environment variable `VITPEFT_FAST=0` forces the plain ops everywhere.
 */
import * as tf from '@tensorflow/tfjs';
import { dense, gelu, layerNorm, multiHeadAttention } from './nn';
import { wasmInternalsOk } from './wasm-heap';
import { registerFusedKernels } from './wasm-fused';
import { installBatchMatMul } from './wasm-matmul';
import { installSlice } from './wasm-slice';
import { restoreWasmKernels } from './wasm-replace';

let enabled = process.env.VITPEFT_FAST !== '0';

/**
 * Turn the backend-specific fast paths on or off (default on; `VITPEFT_FAST=0` starts with them off). Off also puts
 * the stock wasm kernels back; on re-installs the replacements when wasm is active.
 */
export function setFastOps(on: boolean): void {
  enabled = on;
  if (!on) restoreWasmKernels();
  else fastPath();
}

/**
 * Which implementation the ops below use right now: 'wasm-fused' or 'plain', and why plain.
 */
export function fastPath(): { path: 'wasm-fused' | 'plain'; reason: string } {
  if (!enabled) return { path: 'plain', reason: 'fast ops switched off (setFastOps(false) / VITPEFT_FAST=0)' };
  const chk = wasmInternalsOk();
  if (!chk.ok) return { path: 'plain', reason: chk.reason };
  registerFusedKernels();
  installBatchMatMul();
  installSlice();
  return { path: 'wasm-fused', reason: '' };
}

function useFused(): boolean {
  return fastPath().path === 'wasm-fused';
}

/** Same as `dense` (nn.ts): y = x·W + b over the last axis. x [..., in], W [in, out], b [out] → [..., out]. */
export function linear(x: tf.Tensor, weight: tf.Tensor, bias?: tf.Tensor): tf.Tensor {
  if (!useFused() || x.dtype !== 'float32' || weight.rank !== 2) return dense(x, weight, bias);
  const din = x.shape[x.shape.length - 1] as number;
  const dout = weight.shape[1] as number;
  if (weight.shape[0] !== din) {
    throw new Error(`dense: input width ${din} does not match weight [${weight.shape}] (expected [${din}, out])`);
  }
  const lead = x.shape.slice(0, -1);
  const x2 = x.rank === 2 ? x : x.reshape([-1, din]); // [M, in]
  const inputs: tf.NamedTensorMap = { x: x2, weight };
  if (bias) inputs.bias = bias;
  const y = tf.engine().runKernel('VitpeftLinear', inputs, {}) as tf.Tensor; // [M, out]
  return x.rank === 2 ? y : y.reshape([...lead, dout]);
}

/** Same as `layerNorm` (nn.ts): LayerNorm over the last axis with the biased variance. */
export function layerNormFast(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  if (!useFused() || x.dtype !== 'float32' || gamma.rank !== 1 || beta.rank !== 1) return layerNorm(x, gamma, beta, eps);
  const D = x.shape[x.shape.length - 1] as number;
  const x2 = x.reshape([-1, D]); // [M, D]
  const [y, mean, rstd] = tf.engine().runKernel('VitpeftLayerNorm', { x: x2, gamma, beta }, { eps }) as tf.Tensor[];
  mean.dispose(); // kept by the tape when a gradient is recorded
  rstd.dispose();
  return y.reshape(x.shape);
}

/** Same as `gelu` (nn.ts): exact-erf GELU. */
export function geluFast(x: tf.Tensor): tf.Tensor {
  if (!useFused() || x.dtype !== 'float32') return gelu(x);
  return tf.engine().runKernel('VitpeftGelu', { x }, {}) as tf.Tensor;
}

/**
 * Multi-head attention straight from the fused projection: qkv [B, N, 3D] (columns Q | K | V, heads packed along
 * each, as `blocks.i.attn.qkv` produces them) → out [B, N, D], plus the head-averaged keys [B, N, dh] when asked
 * (ToMe's metric). `keyBias` [B, N] is added to the logits of every key (proportional attention).
 * Equals `tf.split(qkv, 3, 2)` followed by `multiHeadAttention` (nn.ts).
 */
export function attentionQKV(
  qkv: tf.Tensor3D,
  numHeads: number,
  keyBias: tf.Tensor2D | null,
  wantKeyMean: boolean,
): { out: tf.Tensor3D; keyMean: tf.Tensor3D | null } {
  if (!useFused() || qkv.dtype !== 'float32') {
    const [q, k, v] = tf.split(qkv, 3, 2) as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
    return multiHeadAttention(q, k, v, numHeads, keyBias, wantKeyMean);
  }
  const [B, N, D3] = qkv.shape;
  const D = D3 / 3;
  const inputs: tf.NamedTensorMap = { qkv };
  if (keyBias) inputs.keyBias = keyBias;
  const [out, probs] = tf.engine().runKernel('VitpeftAttention', inputs, { numHeads }) as tf.Tensor[];
  probs.dispose(); // kept by the tape when a gradient is recorded
  let keyMean: tf.Tensor3D | null = null;
  if (wantKeyMean) {
    const dh = D / numHeads;
    // k = qkv[:, :, D:2D] as [B, N, h, dh] → mean over heads
    const k = tf.slice(qkv, [0, 0, D], [B, N, D]).reshape([B, N, numHeads, dh]);
    keyMean = tf.mean(k, 2) as tf.Tensor3D; // [B, N, dh]
  }
  return { out: out as tf.Tensor3D, keyMean };
}
