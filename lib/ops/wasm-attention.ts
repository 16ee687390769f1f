/**
 * Multi-head attention kernels for the wasm backend (registered by lib/ops/wasm-fused.ts as `VitpeftAttention` and
 * `VitpeftAttentionGrad`), working from the fused qkv projection [B, N, 3D] (columns Q | K | V, heads packed along
 * each): per (batch, head) 2-D XNNPACK products on heap regions, the backend's XNNPACK softmax over all rows at once,
 * JS loops only for the O(N·D) gathers and scatters and the O(N²) softmax-gradient pass.
 */
import * as tf from '@tensorflow/tfjs';
import { Heap } from './wasm-heap';

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

function f32(t: tf.TensorInfo, what: string): void {
  if (t.dtype !== 'float32') throw new Error(`${what}: expected float32, got ${t.dtype}`);
}


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
 * Copy one head's block of a packed tensor into a contiguous scratch matrix: rows n of `src` (element offset of the
 * batch's first row, row stride `stride`, head columns starting at `col`) → dst [N, dh] (layout 'nd') or [dh, N]
 * ('dn', transposed), times `scale`.
 */
function gatherHead(
  H: Float32Array, src: number, stride: number, col: number, dst: number, N: number, dh: number, layout: 'nd' | 'dn', scale: number,
): void {
  for (let n = 0; n < N; n++) {
    const r = src + n * stride + col;
    if (layout === 'nd') {
      const o = dst + n * dh;
      if (scale === 1) for (let j = 0; j < dh; j++) H[o + j] = H[r + j];
      else for (let j = 0; j < dh; j++) H[o + j] = H[r + j] * scale;
    } else {
      const o = dst + n;
      for (let j = 0; j < dh; j++) H[o + j * N] = H[r + j] * scale;
    }
  }
}

/** Write a head's [N, dh] result (layout 'nd') or [dh, N] ('dn') into a packed tensor's head columns, times `scale`. */
function scatterHead(
  H: Float32Array, srcM: number, dst: number, stride: number, col: number, N: number, dh: number, layout: 'nd' | 'dn', scale: number,
): void {
  for (let n = 0; n < N; n++) {
    const o = dst + n * stride + col;
    if (layout === 'nd') {
      const s = srcM + n * dh;
      for (let j = 0; j < dh; j++) H[o + j] = H[s + j] * scale;
    } else {
      for (let j = 0; j < dh; j++) H[o + j] = H[srcM + j * N + n] * scale;
    }
  }
}

/**
 * Forward. One (batch, head) at a time so every operand stays cache-resident: gather q (scaled by 1/√dh), kᵀ and v
 * of the head into scratch, logits = q·kᵀ written straight into the head's block of `probs`, + keyBias, softmax in
 * place, o = P·v, scatter o into the output's head columns.
 */
export function attentionKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
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
    const NN = N * N;
    const qs = heap.alloc(blk); // [N,dh] scaled q
    const kt = heap.alloc(blk); // [dh,N]
    const vs = heap.alloc(blk); // [N,dh]
    const os = heap.alloc(blk); // [N,dh]
    const pOff = heap.offset(probs);
    const src = heap.offset(qkv) >>> 2;
    const outOff = heap.offset(out) >>> 2;
    const kb = keyBias ? heap.offset(keyBias) >>> 2 : -1;
    const scale = 1 / Math.sqrt(dh);
    const D3 = 3 * D;
    for (let b = 0; b < B; b++) {
      const rows = src + b * N * D3;
      for (let hh = 0; hh < h; hh++) {
        const pb = pOff + (b * h + hh) * NN * 4;
        let H = heap.f32();
        gatherHead(H, rows, D3, hh * dh, qs >>> 2, N, dh, 'nd', scale);
        gatherHead(H, rows, D3, D + hh * dh, kt >>> 2, N, dh, 'dn', 1);
        gatherHead(H, rows, D3, 2 * D + hh * dh, vs >>> 2, N, dh, 'nd', 1);
        heap.matmul(qs, N, dh, kt, N, pb);
        if (kb >= 0) {
          H = heap.f32();
          const p4 = pb >>> 2;
          const kbo = kb + b * N;
          for (let i = 0; i < N; i++) {
            const o = p4 + i * N;
            for (let j = 0; j < N; j++) H[o + j] += H[kbo + j];
          }
        }
        heap.softmax(pb, pb, N, N);
        heap.matmul(pb, N, N, vs, dh, os);
        scatterHead(heap.f32(), os >>> 2, outOff + b * N * D, D, hh * dh, N, dh, 'nd', 1);
      }
    }
  } finally {
    heap.release();
  }
  return [out, probs];
}

/**
 * Gradient, one (batch, head) at a time. Per head: dP = dO·vᵀ, dS = P ⊙ (dP − rowsum(dO ⊙ O)) (the row dot product
 * from the output, O(N·dh), not from the N×N matrices), then dq = s·dS·k, dk = s·dSᵀ·q, dv = Pᵀ·dO with the N×N
 * transposes by the backend's Transpose kernel, so every product is a plain 2-D XNNPACK call; mode 'bias' instead
 * sums dS over heads and queries (the gradient of an additive per-key bias).
 */
export function attentionGradKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
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
    const dO = heap.alloc(blk); // [N,dh]
    const vt = heap.alloc(blk); // [dh,N]
    const kk = heap.alloc(blk); // [N,dh]
    const qq = heap.alloc(blk); // [N,dh]
    const t1 = heap.alloc(blk); // one head's dq / dk / dv [N,dh]
    const dP = heap.alloc(NN); // dP, then dS in place
    const tT = heap.alloc(NN); // transpose of dS or P
    const rd = heap.alloc(N); // Σ_j P_ij·dP_ij = dO_i·O_i
    const src = heap.offset(qkv) >>> 2;
    const dyo = heap.offset(dy) >>> 2;
    const oo = heap.offset(outT) >>> 2;
    const pOff = heap.offset(probs);
    const oOff = heap.offset(out) >>> 2;
    const D3 = 3 * D;
    if (!wantQkv) heap.f32().fill(0, oOff, oOff + B * N);
    for (let b = 0; b < B; b++) {
      const rows = src + b * N * D3;
      const dRows = dyo + b * N * D;
      const oRows = oo + b * N * D;
      for (let hh = 0; hh < h; hh++) {
        const pb = pOff + (b * h + hh) * NN * 4;
        let H = heap.f32();
        gatherHead(H, dRows, D, hh * dh, dO >>> 2, N, dh, 'nd', 1);
        gatherHead(H, rows, D3, 2 * D + hh * dh, vt >>> 2, N, dh, 'dn', 1);
        const r4 = rd >>> 2;
        for (let n = 0; n < N; n++) {
          const a = dRows + n * D + hh * dh;
          const o = oRows + n * D + hh * dh;
          let s = 0;
          for (let j = 0; j < dh; j++) s += H[a + j] * H[o + j];
          H[r4 + n] = s;
        }
        // dP = dO · vᵀ  [N,N]
        heap.matmul(dO, N, dh, vt, N, dP);
        // dS = P ⊙ (dP − rowDot), in place
        H = heap.f32();
        const p4 = pb >>> 2;
        const s4 = dP >>> 2;
        for (let i = 0; i < N; i++) {
          const pr = p4 + i * N;
          const sr = s4 + i * N;
          const dot = H[r4 + i];
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
        gatherHead(H, rows, D3, D + hh * dh, kk >>> 2, N, dh, 'nd', 1);
        gatherHead(H, rows, D3, hh * dh, qq >>> 2, N, dh, 'nd', 1);
        const dst = oOff + b * N * D3;
        // dq = s · dS · k
        heap.matmul(dP, N, N, kk, dh, t1);
        scatterHead(heap.f32(), t1 >>> 2, dst, D3, hh * dh, N, dh, 'nd', scale);
        // dk = s · dSᵀ · q
        heap.transpose(dP, 1, N, N, tT);
        heap.matmul(tT, N, N, qq, dh, t1);
        scatterHead(heap.f32(), t1 >>> 2, dst, D3, D + hh * dh, N, dh, 'nd', scale);
        // dv = Pᵀ · dO
        heap.transpose(pb, 1, N, N, tT);
        heap.matmul(tT, N, N, dO, dh, t1);
        scatterHead(heap.f32(), t1 >>> 2, dst, D3, 2 * D + hh * dh, N, dh, 'nd', 1);
      }
    }
  } finally {
    heap.release();
  }
  return out;
}
