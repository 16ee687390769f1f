import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { init, backendReport, BACKEND_CANDIDATES } from '../lib/backend';
import { registerWasmKernels } from '../lib/wasm-kernels';
import { assertClose, onBackend, randArray } from './util';

describe('backend selection', () => {
  it('reports the backend in use and why each earlier candidate failed', () => {
    const r = backendReport();
    assert.equal(r.backend, tf.getBackend());
    assert.ok(r.candidates.length >= 1);
    const last = r.candidates[r.candidates.length - 1];
    assert.equal(last.ok, true);
    for (const c of r.candidates.slice(0, -1)) {
      assert.equal(c.ok, false);
      assert.ok(c.reason.length > 0, `${c.candidate} failed without a reason`);
    }
    // Order is the documented one.
    const order = r.candidates.map((c) => BACKEND_CANDIDATES.indexOf(c.candidate));
    assert.deepEqual(order, [...order].sort((a, b) => a - b));
    assert.ok(r.versions['tfjs-core']);
    assert.ok(r.threads >= 1);
  });

  it('on this machine: tfjs-node-gpu is not installed, tfjs-node is the danfo shim, wasm runs', function () {
    const r = backendReport();
    if (r.forced) this.skip();
    if (r.via !== 'wasm') this.skip(); // a machine with a native backend
    const gpu = r.candidates.find((c) => c.candidate === 'tfjs-node-gpu')!;
    assert.match(gpu.reason, /not installed|binding|libtensorflow|cannot/i);
    const node = r.candidates.find((c) => c.candidate === 'tfjs-node')!;
    assert.match(node.reason, /shim|not installed/);
    assert.equal(r.simd, true);
    assert.deepEqual(r.customKernels, ['UnsortedSegmentSum', 'Conv2DBackpropFilter', 'Einsum']);
  });

  it('refuses an unknown forced backend and lists the valid ones', async () => {
    await assert.rejects(init({ backend: 'cuda' as never }), /unknown backend 'cuda'; valid: tfjs-node-gpu, webgpu, tfjs-node, wasm, cpu, tensorflow/);
    const prev = process.env.VITPEFT_BACKEND;
    process.env.VITPEFT_BACKEND = 'metal';
    try {
      await assert.rejects(init(), /VITPEFT_BACKEND: unknown backend 'metal'/);
    } finally {
      if (prev === undefined) delete process.env.VITPEFT_BACKEND;
      else process.env.VITPEFT_BACKEND = prev;
    }
  });

  it('a forced backend that cannot load is an error, not a silent fallback', async function () {
    if (backendReport().via === 'tfjs-node-gpu') this.skip();
    const before = backendReport();
    await assert.rejects(init({ backend: 'tfjs-node-gpu' }), /no backend could be started \(forced 'tfjs-node-gpu'\): tfjs-node-gpu: /);
    // restore the previous backend for the remaining tests
    await init({ backend: before.via });
    assert.equal(tf.getBackend(), before.backend);
  });

  it('can force cpu by option and come back', async () => {
    const before = backendReport();
    const r = await init({ backend: 'cpu' });
    assert.equal(r.backend, 'cpu');
    assert.equal(tf.getBackend(), 'cpu');
    assert.deepEqual(r.candidates.map((c) => c.candidate), ['cpu']);
    await init({ backend: before.via });
    assert.equal(tf.getBackend(), before.backend);
  });
});

describe('wasm kernels the kit registers', () => {
  before(async function () {
    if (!tf.findBackend('wasm')) this.skip();
    registerWasmKernels();
  });

  async function both<T extends tf.Tensor>(f: () => T): Promise<[Float32Array | Int32Array | Uint8Array, Float32Array | Int32Array | Uint8Array]> {
    const w = await onBackend('wasm', () => tf.tidy(f).dataSync());
    const c = await onBackend('cpu', () => tf.tidy(f).dataSync());
    return [w, c];
  }

  it('UnsortedSegmentSum (the gradient of gather) equals cpu', async () => {
    const x = randArray(5 * 3, 7);
    const [w, c] = await both(() => tf.unsortedSegmentSum(tf.tensor2d(x, [5, 3]), tf.tensor1d([2, 0, 2, 1, 7], 'int32'), 4));
    assertClose(w, c, 1e-6);
    const [gw, gc] = await both(() => {
      const t = tf.tensor2d(randArray(12, 3), [4, 3]);
      return tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.gather(a, tf.tensor1d([1, 1, 3], 'int32')), tf.tensor2d(randArray(9, 5), [3, 3]))))(t);
    });
    assertClose(gw, gc, 1e-6);
    assert.ok(Math.abs(gw[0]) === 0 && Math.abs(gw[3]) > 0, 'row 0 gets no gradient, row 1 does');
  });

  it('Conv2DBackpropFilter equals cpu', async () => {
    const [w, c] = await both(() => {
      const x = tf.tensor4d(randArray(2 * 6 * 6 * 3, 11), [2, 6, 6, 3]);
      const dy = tf.tensor4d(randArray(2 * 3 * 3 * 4, 12), [2, 3, 3, 4]);
      const f = tf.tensor4d(randArray(2 * 2 * 3 * 4, 13), [2, 2, 3, 4]);
      // d/dfilter of sum(conv(x, f) · dy) is Conv2DBackpropFilter(x, dy)
      return tf.grad((w: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, w as tf.Tensor4D, 2, 'valid'), dy)))(f);
    });
    assertClose(w, c, 1e-5);
  });

  it('Einsum equals cpu', async () => {
    const [w, c] = await both(() => tf.einsum('ij,jk->ik', tf.tensor2d(randArray(6, 1), [2, 3]), tf.tensor2d(randArray(12, 2), [3, 4])));
    assertClose(w, c, 1e-6);
  });
});
