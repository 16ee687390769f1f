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

