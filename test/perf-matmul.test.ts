/**
 * The replacement wasm BatchMatMul (lib/ops/wasm-matmul.ts) against the cpu backend and the stock wasm kernel:
 * transposes, batches, broadcast batches, rank mismatch, tiny and large products, and matMul gradients.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { fastPath, setFastOps } from '../lib/ops/fast';
import { assertClose, noLeak, onBackend, randArray } from './util';

type Case = { a: number[]; b: number[]; tA: boolean; tB: boolean };

const CASES: Case[] = [
  { a: [33, 20], b: [20, 17], tA: false, tB: false },
  { a: [20, 33], b: [20, 17], tA: true, tB: false },
  { a: [33, 20], b: [17, 20], tA: false, tB: true },
  { a: [20, 33], b: [17, 20], tA: true, tB: true },
  { a: [4, 13, 9], b: [4, 9, 11], tA: false, tB: false },
  { a: [4, 9, 13], b: [4, 11, 9], tA: true, tB: true },
  { a: [4, 13, 9], b: [9, 11], tA: false, tB: false }, // rank mismatch: b broadcast over a's batch
  { a: [4, 13, 9], b: [1, 11, 9], tA: false, tB: true },
  { a: [13, 9], b: [3, 9, 11], tA: false, tB: false }, // a broadcast over b's batch
  { a: [2, 1, 13, 9], b: [1, 3, 9, 11], tA: false, tB: false }, // 2-way broadcast
  { a: [5, 3, 2], b: [5, 2, 4], tA: false, tB: false }, // tiny: JS loop
  { a: [6, 2, 3], b: [6, 4, 2], tA: true, tB: true }, // tiny with transposes
  { a: [2, 3, 197, 64], b: [2, 3, 197, 64], tA: false, tB: true }, // attention logits as in nn.multiHeadAttention
  { a: [0, 5], b: [5, 3], tA: false, tB: false }, // empty
  { a: [4, 0], b: [0, 3], tA: false, tB: false }, // K = 0 → zeros
];

function tensorOf(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(randArray(shape.reduce((x, y) => x * y, 1), seed), shape);
}

/** Naive reference with general batch broadcasting (numpy semantics). */
function naive(c: Case): { y: Float64Array; shape: number[] } {
  const A = randArray(c.a.reduce((x, y) => x * y, 1), 1);
  const Bv = randArray(c.b.reduce((x, y) => x * y, 1), 2);
  const ra = c.a.length;
  const rb = c.b.length;
  const M = c.tA ? c.a[ra - 1] : c.a[ra - 2];
  const K = c.tA ? c.a[ra - 2] : c.a[ra - 1];
  const N = c.tB ? c.b[rb - 2] : c.b[rb - 1];
  const oa = c.a.slice(0, -2);
  const ob = c.b.slice(0, -2);
  const L = Math.max(oa.length, ob.length);
  const pa = [...Array(L - oa.length).fill(1), ...oa];
  const pb = [...Array(L - ob.length).fill(1), ...ob];
  const outer = pa.map((d, i) => Math.max(d, pb[i]));
  const batch = outer.reduce((x, y) => x * y, 1);
  const y = new Float64Array(batch * M * N);
  for (let o = 0; o < batch; o++) {
    let rem = o;
    let ia = 0;
    let ib = 0;
    let sa = 1;
    let sb = 1;
    for (let d = L - 1; d >= 0; d--) {
      const cd = rem % outer[d];
      rem = Math.floor(rem / outer[d]);
      ia += (pa[d] === 1 ? 0 : cd) * sa;
      ib += (pb[d] === 1 ? 0 : cd) * sb;
      sa *= pa[d];
      sb *= pb[d];
    }
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = A[ia * M * K + (c.tA ? k * M + i : i * K + k)];
          const bv = Bv[ib * K * N + (c.tB ? j * K + k : k * N + j)];
          s += av * bv;
        }
        y[o * M * N + i * N + j] = s;
      }
    }
  }
  return { y, shape: [...outer, M, N] };
}

function product(c: Case): { y: Float32Array; shape: number[] } {
  return tf.tidy(() => {
    const y = tf.matMul(tensorOf(c.a, 1), tensorOf(c.b, 2), c.tA, c.tB);
    return { y: y.dataSync() as Float32Array, shape: y.shape };
  });
}

describe('perf: wasm BatchMatMul replacement', function () {
  before(function () {
    if (fastPath().path !== 'wasm-fused') this.skip();
  });

  it('is installed on wasm', () => {
    const k = tf.getKernel('BatchMatMul', 'wasm');
    assert.ok(k && (k.kernelFunc as { name?: string }).name === 'batchMatMulWasm');
  });

  for (const c of CASES) {
    it(`a [${c.a}] b [${c.b}] transposeA=${c.tA} transposeB=${c.tB} equals a naive product, cpu and the stock kernel`, async () => {
      const fast = product(c);
      const ref = naive(c);
      assert.deepEqual(fast.shape, ref.shape);
      assertClose(fast.y, ref.y, 1e-5, 1e-5, 'vs naive');
      if (c.a.length === 4 && c.a[1] !== c.b[1]) return; // 2-way broadcast: tfjs's cpu and stock kernels do not support it
      const cpu = await onBackend('cpu', () => product(c));
      setFastOps(false);
      let stock: { y: Float32Array; shape: number[] };
      try {
        stock = product(c);
      } finally {
        setFastOps(true);
      }
      assert.deepEqual(fast.shape, cpu.shape);
      assert.deepEqual(fast.shape, stock.shape);
      assertClose(fast.y, cpu.y, 1e-5, 1e-5, 'vs cpu');
      // An empty inner dimension (K = 0): the stock wasm kernel leaves its output uninitialised (it read back
      // 1.1e17 in a CI run), so only the naive product and cpu (zeros, checked above) define the answer there.
      const inner = c.tA ? c.a[c.a.length - 2] : c.a[c.a.length - 1];
      if (inner > 0) assertClose(fast.y, stock.y, 1e-5, 1e-5, 'vs stock wasm');
    });
  }

  it('matMul gradients (which use both transposes) equal cpu', async () => {
    const grads = () =>
      tf.tidy(() => {
        const a = tensorOf([3, 21, 10], 5);
        const b = tensorOf([3, 10, 14], 6); // (tfjs's matMul gradient does not reduce broadcast batches)
        const r = tensorOf([3, 21, 14], 7);
        const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y), r)))([a, b]);
        return [ga.dataSync(), gb.dataSync()];
      });
    const [fa, fb] = grads();
    const [ca, cb] = await onBackend('cpu', grads);
    assertClose(fa, ca, 1e-5, 1e-5, 'da');
    assertClose(fb, cb, 1e-5, 1e-5, 'db');
  });

  it('mismatched inner sizes are an error naming the shapes', () => {
    const a = tf.zeros([3, 4]);
    const b = tf.zeros([5, 6]);
    assert.throws(() => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D), /inner shapes \(4\) and \(5\).*3,4.*5,6/);
    tf.dispose([a, b]);
  });

  it('weights updated in place of a variable are not served from a stale XNNPACK cache', () => {
    const x = tensorOf([7, 5], 8);
    const v = tf.variable(tensorOf([5, 3], 9));
    const y1 = tf.matMul(x as tf.Tensor2D, v as tf.Tensor as tf.Tensor2D);
    v.assign(tf.tidy(() => tf.mul(v, 2)));
    const y2 = tf.matMul(x as tf.Tensor2D, v as tf.Tensor as tf.Tensor2D);
    const twice = tf.mul(y1, 2);
    assertClose(y2.dataSync(), twice.dataSync(), 1e-5, 1e-5, 'after assign');
    tf.dispose([x, v, y1, y2, twice]);
  });

  it('leaves no tensors behind', async () => {
    const a = tensorOf([2, 9, 8], 10);
    const b = tensorOf([2, 7, 8], 11);
    await noLeak(() => tf.tidy(() => tf.matMul(a, b, false, true).dataSync()));
    tf.dispose([a, b]);
  });
});
