/**
 * The replacement wasm Slice / SplitV kernels (lib/ops/wasm-slice.ts) against the cpu backend and the stock kernels.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { fastPath, setFastOps } from '../lib/ops/fast';
import { isReplaced } from '../lib/ops/wasm-replace';
import { noLeak, onBackend, randArray } from './util';

function t(shape: number[], dtype: 'float32' | 'int32' | 'bool', seed: number): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = randArray(n, seed);
  if (dtype === 'float32') return tf.tensor(v, shape);
  if (dtype === 'int32') return tf.tensor(Int32Array.from(v, (x) => Math.round(x * 1000)), shape, 'int32');
  return tf.tensor(Uint8Array.from(v, (x) => (x > 0 ? 1 : 0)), shape, 'bool');
}

/** Run fn on wasm (replacement), wasm (stock) and cpu; all three results must be identical. */
async function same(fn: () => tf.Tensor[]): Promise<void> {
  const read = () => tf.tidy(() => fn()).map((x) => {
    const r = { shape: x.shape, dtype: x.dtype, v: Array.from(x.dataSync() as ArrayLike<number>) };
    x.dispose();
    return r;
  });
  const fast = read();
  setFastOps(false);
  let stock;
  try {
    stock = read();
  } finally {
    setFastOps(true);
  }
  const cpu = await onBackend('cpu', read);
  assert.deepEqual(fast, cpu);
  assert.deepEqual(fast, stock);
}

describe('perf: wasm Slice / SplitV replacement', function () {
  before(function () {
    if (fastPath().path !== 'wasm-fused') this.skip();
  });

  it('is installed on wasm', () => {
    assert.ok(isReplaced('Slice') && isReplaced('SplitV') && isReplaced('Identity'));
  });

  it('clone shares data safely: the clone outlives its source, and a variable assign leaves the clone unchanged', async () => {
    const a = tf.tensor1d([1, 2, 3]);
    const c = tf.clone(a);
    a.dispose();
    assert.deepEqual(Array.from(c.dataSync()), [1, 2, 3]);
    const v = tf.variable(tf.tensor1d([4, 5]), true, `t/clone/${Math.random()}`);
    const vc = tf.clone(v);
    v.assign(tf.tensor1d([7, 8]));
    assert.deepEqual(Array.from(vc.dataSync()), [4, 5]);
    assert.deepEqual(Array.from(v.dataSync()), [7, 8]);
    await noLeak(() => tf.tidy(() => tf.clone(tf.clone(c)).dataSync()));
    tf.dispose([c, v, vc]);
  });

  for (const dtype of ['float32', 'int32', 'bool'] as const) {
    it(`slices of rank 1–5 (${dtype}): contiguous, strided, whole dims, empty`, async () => {
      await same(() => {
        const a = t([10], dtype, 1);
        const b = t([6, 7], dtype, 2);
        const c = t([3, 5, 4], dtype, 3);
        const d = t([2, 3, 4, 5], dtype, 4);
        const e = t([2, 3, 2, 3, 4], dtype, 5);
        return [
          tf.slice(a, [3], [4]),
          tf.slice(b, [1, 0], [3, 7]), // contiguous rows
          tf.slice(b, [1, 2], [4, 3]), // strided
          tf.slice(c, [0, 1, 1], [3, 3, 2]),
          tf.slice(c, [1, 0, 0], [1, 5, 4]),
          tf.slice(d, [1, 1, 0, 2], [1, 2, 4, 3]),
          tf.slice(d, [0, 0, 1, 0], [2, 3, 2, 5]),
          tf.slice(e, [1, 0, 1, 1, 0], [1, 3, 1, 2, 4]),
          tf.slice(b, [2, 3], [0, 2]), // empty
          tf.slice(c, [0, 0, 0], [-1, 2, -1]), // -1 = to the end
        ];
      });
    });
  }

  it('split along every axis (equal and given sizes)', async () => {
    await same(() => {
      const x = t([4, 6, 9], 'float32', 6);
      return [...tf.split(x, 2, 0), ...tf.split(x, [1, 2, 3], 1), ...tf.split(x, 3, 2), ...tf.split(x, [2, -1], 2)];
    });
  });

  it('the gradient of concat (a SplitV) equals cpu', async () => {
    await same(() => {
      const a = t([5, 3], 'float32', 7);
      const b = t([5, 4], 'float32', 8);
      const r = t([5, 7], 'float32', 9);
      return tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.concat([x, y], 1), r)))([a, b]);
    });
  });

  it('out-of-range slices are rejected', () => {
    const x = tf.zeros([3, 4]);
    assert.throws(() => tf.slice(x, [2, 0], [2, 4]));
    x.dispose();
  });

  it('leaves no tensors behind', async () => {
    const x = t([8, 6], 'float32', 10);
    await noLeak(() => tf.tidy(() => tf.split(x, 3, 1).map((s) => s.dataSync())));
    x.dispose();
  });
});
