/**
 * Neural-network primitives on plain tfjs ops (every backend, differentiable through tfjs's registered gradients).
 *
 * These are the reference ("plain") implementations; backend-specific fast paths must match them (tests compare
 * forward and gradient to 1e-4 relative). Shapes in comments: B batch, N tokens, D width, h heads, dh head width.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng, hash32 } from '../rng';
import { parallelContext, shardRowsOf } from '../parallel/context';

/** y = x·W + b over the last axis. x [..., in], W [in, out], b [out] → [..., out]. */
export function dense(x: tf.Tensor, weight: tf.Tensor, bias?: tf.Tensor): tf.Tensor {
  const din = x.shape[x.shape.length - 1] as number;
  const dout = weight.shape[1] as number;
  if (weight.shape[0] !== din) {
    throw new Error(`dense: input width ${din} does not match weight [${weight.shape}] (expected [${din}, out])`);
  }
  const lead = x.shape.slice(0, -1);
  const x2 = x.reshape([-1, din]) as tf.Tensor2D; // [M, in]
  let y: tf.Tensor2D = tf.matMul(x2, weight as tf.Tensor2D); // [M, out]
  if (bias) y = tf.add(y, bias) as tf.Tensor2D;
  return y.reshape([...lead, dout]);
}

/** LayerNorm over the last axis: (x − μ)/√(σ² + eps)·γ + β with the biased variance (PyTorch). */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  const axis = x.shape.length - 1;
  const mean = tf.mean(x, axis, true);
  const xc = tf.sub(x, mean);
  const variance = tf.mean(tf.square(xc), axis, true);
  return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, eps))), gamma), beta);
}

/** Exact GELU, 0.5·x·(1 + erf(x/√2)) (PyTorch nn.GELU default; not the tanh approximation). */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

/**
 * Stochastic depth on a residual branch: each sample's branch is kept with probability 1 − rate and scaled by
 * 1/(1 − rate) (timm DropPath). Identity when not training or rate = 0.
 * @param x [B, ...]
 */
export function dropPath(x: tf.Tensor, rate: number, training: boolean, rng: Rng | null): tf.Tensor {
  if (!training || rate <= 0) return x;
  if (!rng) throw new Error('dropPath: training with a drop-path rate > 0 needs an rng (pass opts.rng to the forward)');
  const keep = 1 - rate;
  const ones = x.shape.slice(1).map(() => 1);
  // a data-parallel worker draws for the global batch and takes its rows (the one-process run's masks)
  const sr = shardRowsOf(x.shape[0], 'dropPath');
  const u = tf.randomUniform([sr ? sr.total : x.shape[0], ...ones], 0, 1, 'float32', rng.seedInt());
  const mine = sr ? tf.gather(u, tf.tensor1d(sr.rows, 'int32')) : u;
  const mask = tf.floor(tf.add(mine, keep)); // 1 w.p. keep
  return tf.mul(x, tf.div(mask, keep));
}

/**
 * Inverted dropout with rate p (elementwise). Identity when not training or p = 0.
 *
 * `samples`: how many samples of the forward's batch the leading axis of x holds (x = [samples × rows per sample, …],
 * sample-major, the batch itself crop-major when it holds several crops — e.g. the [B·N, D] input of a linear site of
 * a [B, N, D] forward has `samples` = B). A data-parallel worker that knows it draws the mask of the global batch and
 * keeps its samples' rows, so N workers drop exactly what one process drops (the run folder reproduces on any worker
 * count). Without it a worker cannot place its rows in the global batch and draws a mask of its own (per-worker
 * seed): still seeded, but the numbers then depend on the worker count.
 */
export function dropout(x: tf.Tensor, p: number, training: boolean, rng: Rng | null, samples?: number): tf.Tensor {
  if (!training || p <= 0) return x;
  if (!rng) throw new Error('dropout: training with p > 0 needs an rng');
  const keep = 1 - p;
  let u: tf.Tensor;
  const sr = samples !== undefined ? shardRowsOf(samples, 'dropout') : null;
  if (sr) {
    if (x.size % samples! !== 0) throw new Error(`dropout: input [${x.shape}] does not split into ${samples} samples`);
    const per = x.size / samples!;
    // the one-process draw over the global batch, [total samples, per] row-major = its [total·rows, …] mask
    const all = tf.randomUniform([sr.total, per], 0, 1, 'float32', rng.seedInt());
    u = tf.gather(all, tf.tensor1d(sr.rows, 'int32')).reshape(x.shape);
  } else {
    const ctx = parallelContext();
    const seed = ctx && ctx.size > 1 ? hash32(rng.seedInt(), 'worker', ctx.rank) : rng.seedInt();
    u = tf.randomUniform(x.shape, 0, 1, 'float32', seed);
  }
  const mask = tf.floor(tf.add(u, keep));
  return tf.mul(x, tf.div(mask, keep));
}

/**
 * Multi-head scaled dot-product attention on already-projected q, k, v.
 * @param q,k,v [B, N, D] (heads packed along D, as the fused qkv produces them)
 * @param numHeads h
 * @param keyBias optional additive bias per key [B, N] (ToMe proportional attention: log size), broadcast over heads and queries
 * @returns out [B, N, D] and the head-averaged keys [B, N, dh] (ToMe's similarity metric)
 */
export function multiHeadAttention(
  q: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  numHeads: number,
  keyBias: tf.Tensor2D | null,
  wantKeyMean: boolean,
): { out: tf.Tensor3D; keyMean: tf.Tensor3D | null } {
  const [B, N, D] = q.shape;
  const dh = D / numHeads;
  const heads = (t: tf.Tensor3D): tf.Tensor4D => t.reshape([B, N, numHeads, dh]).transpose([0, 2, 1, 3]); // [B,h,N,dh]
  const qh = tf.mul(heads(q), 1 / Math.sqrt(dh)) as tf.Tensor4D;
  const kh = heads(k);
  const vh = heads(v);
  const khT = kh.transpose([0, 1, 3, 2]) as tf.Tensor4D; // [B,h,dh,N]
  let scores = tf.matMul(qh, khT) as tf.Tensor4D; // [B,h,N,N]
  if (keyBias) scores = tf.add(scores, keyBias.reshape([B, 1, 1, N])) as tf.Tensor4D;
  const attn = tf.softmax(scores, -1);
  const o = tf.matMul(attn, vh) as tf.Tensor4D; // [B,h,N,dh]
  const out = o.transpose([0, 2, 1, 3]).reshape([B, N, D]) as tf.Tensor3D; // [B,N,D]
  const keyMean = wantKeyMean ? (tf.mean(kh, 1) as tf.Tensor3D) : null; // [B,N,dh]
  return { out, keyMean };
}
