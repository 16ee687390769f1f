/**
 * The wasm fast paths (lib/ops/fast.ts → lib/ops/wasm-fused.ts) against the plain ops (lib/ops/nn.ts): forward and
 * gradient with respect to every input, within 1e-4 relative (plus a tiny absolute floor for values near zero).
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { attentionQKV, fastPath, geluFast, layerNormFast, linear, setFastOps } from '../lib/ops/fast';
import { dense, gelu, layerNorm, multiHeadAttention } from '../lib/ops/nn';
import { geluTables, GELU_RANGE } from '../lib/ops/gelu-table';
import { setSimdKernels } from '../lib/ops/wasm-fused';
import { simdKernels, simdModuleBytes } from '../lib/ops/wasm-simd';
import { Heap } from '../lib/ops/wasm-heap';
import { assertClose, noLeak, randArray } from './util';

const RTOL = 1e-4;

function rand(shape: number[], seed: number, scale = 1): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(randArray(n, seed).map((v) => v * scale), shape);
}

/** Compare values with |a − b| ≤ atol + RTOL·|b|, atol = 1e-6·max|b| (relative to the tensor's scale). */
function close(a: tf.Tensor, b: tf.Tensor, what: string): void {
  assert.deepEqual(a.shape, b.shape, `${what}: shape`);
  const av = a.dataSync();
  const bv = b.dataSync();
  let m = 0;
  for (let i = 0; i < bv.length; i++) m = Math.max(m, Math.abs(bv[i]));
  assertClose(av, bv, 1e-6 * m + 1e-7, RTOL, what);
}

/** Run fn with the fast ops on and off; returns [fast, plain] outputs and gradients of Σ out·r w.r.t. the inputs. */
function both(fn: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], seed = 99): { fast: tf.Tensor[]; plain: tf.Tensor[] } {
  const run = (): tf.Tensor[] =>
    tf.tidy(() => {
      const y = fn(...inputs);
      const r = rand(y.shape, seed);
      const g = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(fn(...xs), r)))(inputs);
      return [y, ...g];
    });
  setFastOps(true);
  const fast = run();
  setFastOps(false);
  try {
    return { fast, plain: run() };
  } finally {
    setFastOps(true);
  }
}

function compareAll(names: string[], r: { fast: tf.Tensor[]; plain: tf.Tensor[] }): void {
  r.fast.forEach((t, i) => close(t, r.plain[i], names[i]));
  tf.dispose([...r.fast, ...r.plain]);
}

describe('perf: wasm fused ops match the plain ops', function () {
  before(function () {
    if (fastPath().path !== 'wasm-fused') this.skip(); // only meaningful where the fused kernels run
  });

  it('uses the fused kernels on wasm', () => {
    const x = rand([3, 4], 1);
    const w = rand([4, 5], 2);
    const names: string[] = [];
    return tf.profile(() => tf.tidy(() => linear(x, w))).then((p) => {
      for (const k of p.kernels) names.push(k.name);
      assert.ok(names.includes('VitpeftLinear'), `kernels run: ${names.join(', ')}`);
      tf.dispose([x, w]);
    });
  });

  it('linear: forward, dx, dW, db (with and without bias, 2-D and 3-D input)', () => {
    const x = rand([2, 7, 12], 3);
    const w = rand([12, 10], 4, 0.3);
    const b = rand([10], 5);
    compareAll(['y', 'dx', 'dW', 'db'], both((x_, w_, b_) => linear(x_, w_, b_), [x, w, b]));
    const x2 = rand([9, 12], 6);
    compareAll(['y', 'dx', 'dW'], both((x_, w_) => linear(x_, w_), [x2, w]));
    // the plain reference is nn.dense itself
    const y = tf.tidy(() => tf.sub(linear(x2, w, b), dense(x2, w, b)));
    assert.ok(Math.max(...Array.from(tf.abs(y).dataSync())) < 1e-5);
    tf.dispose([x, w, b, x2, y]);
  });

  it('linear: bad shapes are named', () => {
    const x = tf.zeros([2, 3]);
    const w = tf.zeros([4, 5]);
    assert.throws(() => linear(x, w), /input width 3 does not match weight \[4,5\]/);
    tf.dispose([x, w]);
  });

  it('layerNorm: forward, dx, dγ, dβ', () => {
    const x = tf.tidy(() => tf.add(rand([3, 5, 16], 7, 2), 0.5));
    const g = rand([16], 8);
    const bta = rand([16], 9);
    compareAll(['y', 'dx', 'dgamma', 'dbeta'], both((x_, g_, b_) => layerNormFast(x_, g_, b_, 1e-6), [x, g, bta]));
    tf.dispose([x, g, bta]);
  });

  it('gelu: forward and dx over [-8, 8] (exact erf)', () => {
    const n = 4001;
    const x = tf.tensor1d(Float32Array.from({ length: n }, (_, i) => -8 + (16 * i) / (n - 1)));
    compareAll(['y', 'dx'], both((x_) => geluFast(x_), [x]));
    // golden values: gelu(1) = 0.8413447460685429, gelu(-1) = -0.15865525393145707, gelu(3) = 2.9959503059
    const y = tf.tidy(() => geluFast(tf.tensor1d([1, -1, 3, -3, 0])));
    assertClose(y.dataSync(), [0.8413447460685429, -0.15865525393145707, 2.9959503059051, -0.0040496940949, 0], 1e-7, 1e-6, 'gelu golden');
    tf.dispose([x, y]);
  });

  it('gelu: the WebAssembly SIMD kernels validate, run, and agree with the JS table (forward and gradient)', () => {
    assert.ok(WebAssembly.validate(simdModuleBytes()), 'the emitted module validates');
    assert.ok(simdKernels(new Heap(tf.backend()).memory()), 'the SIMD kernels instantiate over the wasm heap');
    const n = 16 * 300 + 7; // SIMD body + JS tail
    const x = tf.tensor1d(Float32Array.from({ length: n }, (_, i) => -9 + (18 * i) / n));
    const dy = rand([n], 13);
    const run = () =>
      tf.tidy(() => {
        const y = geluFast(x);
        const g = tf.grads((a: tf.Tensor) => tf.sum(tf.mul(geluFast(a), dy)))([x])[0];
        return [y.dataSync() as Float32Array, g.dataSync() as Float32Array];
      });
    const [ys, gs] = run();
    setSimdKernels(false);
    let yt: Float32Array;
    let gt: Float32Array;
    try {
      [yt, gt] = run();
    } finally {
      setSimdKernels(true);
    }
    assertClose(ys, yt, 1e-6, 1e-5, 'gelu simd vs table');
    assertClose(gs, gt, 1e-6, 1e-5, 'gelu grad simd vs table');
    tf.dispose([x, dy]);
  });

  it('layerNorm: the SIMD kernels (D % 4 = 0) agree with the JS loops, forward and every gradient', () => {
    const x = tf.tidy(() => tf.add(rand([37, 24], 41, 3), 1));
    const g = rand([24], 42);
    const b = rand([24], 43);
    const run = () => both((x_, g_, b_) => layerNormFast(x_, g_, b_, 1e-6), [x, g, b]).fast;
    const simd = run();
    setSimdKernels(false);
    let js: tf.Tensor[];
    try {
      js = run();
    } finally {
      setSimdKernels(true);
    }
    simd.forEach((t, i) => close(t, js[i], ['y', 'dx', 'dgamma', 'dbeta'][i]));
    tf.dispose([x, g, b, ...simd, ...js]);
  });

  it('layerNorm: a width that is not a multiple of 4 (JS path) still matches the plain op', () => {
    const x = rand([5, 7], 44, 2);
    const g = rand([7], 45);
    const b = rand([7], 46);
    compareAll(['y', 'dx', 'dgamma', 'dbeta'], both((x_, g_, b_) => layerNormFast(x_, g_, b_, 1e-6), [x, g, b]));
    tf.dispose([x, g, b]);
  });

  it('gelu table: Φ at the nodes matches erf-based values (float64)', () => {
    const { cdf, grid } = geluTables();
    // Φ(-1) = 0.15865525393145707, Φ(2) = 0.9772498680518208, Φ(-5) = 2.866515718791939e-7
    const at = (x: number) => cdf[Math.round((x + GELU_RANGE) * 32)];
    assert.ok(Math.abs(grid[Math.round((2 + GELU_RANGE) * 32)] - 2) < 1e-12);
    assert.ok(Math.abs(at(-1) - 0.15865525393145707) < 1e-13, `Φ(-1) = ${at(-1)}`);
    assert.ok(Math.abs(at(2) - 0.9772498680518208) < 1e-13, `Φ(2) = ${at(2)}`);
    assert.ok(Math.abs(at(-5) / 2.866515718791939e-7 - 1) < 1e-9, `Φ(-5) = ${at(-5)}`);
  });

  for (const cfg of [
    { B: 2, N: 7, D: 12, h: 3, bias: false, keys: false },
    { B: 3, N: 5, D: 8, h: 2, bias: true, keys: true },
    { B: 1, N: 9, D: 6, h: 1, bias: true, keys: false },
  ]) {
    it(`attention from fused qkv: B=${cfg.B} N=${cfg.N} D=${cfg.D} h=${cfg.h} keyBias=${cfg.bias} keyMean=${cfg.keys}`, () => {
      const { B, N, D, h } = cfg;
      const qkv = rand([B, N, 3 * D], 11, 1.5);
      const kb = tf.tidy(() => tf.log(tf.add(tf.abs(rand([B, N], 12, 3)), 1)));
      const fn = (q: tf.Tensor, k?: tf.Tensor): tf.Tensor => {
        const r = attentionQKV(q as tf.Tensor3D, h, (k ?? null) as tf.Tensor2D | null, cfg.keys);
        return cfg.keys ? tf.concat([r.out.reshape([-1]), r.keyMean!.reshape([-1])]) : r.out;
      };
      const inputs = cfg.bias ? [qkv, kb] : [qkv];
      compareAll(['out', 'dqkv', 'dkeyBias'], both(fn, inputs));
      // and the plain path is nn.multiHeadAttention on the split
      const d = tf.tidy(() => {
        const [q, k, v] = tf.split(qkv, 3, 2) as tf.Tensor3D[];
        const ref = multiHeadAttention(q, k, v, h, cfg.bias ? (kb as tf.Tensor2D) : null, false).out;
        return tf.max(tf.abs(tf.sub(ref, attentionQKV(qkv as tf.Tensor3D, h, cfg.bias ? (kb as tf.Tensor2D) : null, false).out)));
      });
      assert.ok(d.dataSync()[0] < 1e-5, `max |Δ| = ${d.dataSync()[0]}`);
      tf.dispose([qkv, kb, d]);
    });
  }

  it('attention: N = 197, D = 192, h = 3 (ViT-Ti sizes) forward and dqkv', () => {
    const qkv = rand([2, 197, 576], 21, 2);
    compareAll(['out', 'dqkv'], both((q) => attentionQKV(q as tf.Tensor3D, 3, null, false).out, [qkv]));
    qkv.dispose();
  });

  it('fused ops leave no tensors behind (forward and backward)', async () => {
    const qkv = rand([2, 5, 24], 31);
    const w = rand([8, 8], 32);
    const g = rand([8], 33);
    await noLeak(() => {
      tf.tidy(() => {
        const f = (q: tf.Tensor, w_: tf.Tensor, g_: tf.Tensor) => {
          const a = attentionQKV(q as tf.Tensor3D, 2, null, true);
          const y = geluFast(linear(layerNormFast(a.out, g_, g_, 1e-6), w_));
          return tf.add(tf.sum(y), tf.sum(a.keyMean!));
        };
        tf.grads(f)([qkv, w, g]);
      });
    });
    tf.dispose([qkv, w, g]);
  });

  it('plain ops: sanity of the reference path used above', () => {
    const x = rand([4, 6], 41);
    const y = tf.tidy(() => tf.sub(layerNorm(x, tf.ones([6]), tf.zeros([6]), 1e-6), layerNormFast(x, tf.ones([6]), tf.zeros([6]), 1e-6)));
    assert.ok(Math.max(...Array.from(tf.abs(y).dataSync())) < 1e-5);
    const z = tf.tidy(() => tf.sub(gelu(x), geluFast(x)));
    assert.ok(Math.max(...Array.from(tf.abs(z).dataSync())) < 1e-6);
    tf.dispose([x, y, z]);
  });
});
