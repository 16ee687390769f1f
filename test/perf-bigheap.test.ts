/**
 * The fused kernels with tensors above the 2 GiB mark of the wasm heap (byte offsets ≥ 2³¹ must be handled as
 * unsigned: a signed `offset >> 2` indexes negatively and silently reads NaN). A ViT-S ExPLoRA step at batch 16
 * without recomputation crosses that mark; here filler allocations push a few small tensors past it.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { attentionQKV, fastPath, geluFast, layerNormFast, linear, setFastOps } from '../lib/ops/fast';
import { Heap } from '../lib/ops/wasm-heap';
import { assertClose, randArray } from './util';

describe('perf: fused kernels on tensors above 2 GiB of wasm heap', function () {
  this.timeout(120000);
  let heap: Heap;
  let fill: number[] = [];

  before(function () {
    if (fastPath().path !== 'wasm-fused') this.skip();
    heap = new Heap(tf.backend());
    // Fill every free block below 2 GiB (filler is never touched, so the OS commits no memory for it), from 256 MiB
    // down to 16 bytes: afterwards new tensors and kernel scratch land above the mark.
    const wasm = heap.be.wasm;
    const LIMIT = 2 ** 31;
    let calls = 0;
    for (let size = 256 * 2 ** 20; size >= 16; size /= 4) {
      for (;;) {
        const p = wasm._malloc(size) >>> 0;
        calls++;
        if (p === 0) break;
        if (p >= LIMIT) {
          wasm._free(p);
          break;
        }
        fill.push(p);
        if (calls > 400000) break;
      }
    }
    const probe = tf.zeros([4]);
    const above = heap.offset(probe) >= LIMIT;
    probe.dispose();
    if (!above) this.skip(); // could not place tensors above 2 GiB (heap limit): nothing to test here
  });

  after(() => {
    for (const p of fill) heap?.be.wasm._free(p);
    fill = [];
  });

  it('linear, LayerNorm, GELU, attention, matMul and slices give the plain results (forward and gradients)', () => {
    const qkv = tf.tensor3d(randArray(2 * 9 * 24, 1), [2, 9, 24]);
    const w = tf.tensor2d(randArray(8 * 12, 2), [8, 12]);
    const g = tf.tensor1d(randArray(8, 3));
    assert.ok(heap.offset(qkv) >= 2 ** 31, `qkv at ${heap.offset(qkv)}`);
    const f = (q: tf.Tensor, w_: tf.Tensor, g_: tf.Tensor): tf.Tensor => {
      const a = attentionQKV(q as tf.Tensor3D, 2, null, true);
      const y = geluFast(linear(layerNormFast(a.out, g_, g_, 1e-6), w_));
      const z = tf.matMul(y.reshape([18, 12]), w_, false, true); // replaced BatchMatMul with a transpose
      return tf.add(tf.sum(tf.slice(z, [1, 2], [10, 5])), tf.sum(a.keyMean!));
    };
    const run = () =>
      tf.tidy(() => {
        const [gq, gw, gg] = tf.grads(f)([qkv, w, g]);
        return [f(qkv, w, g), gq, gw, gg].map((t) => t.dataSync() as Float32Array);
      });
    const fast = run();
    setFastOps(false);
    let plain: Float32Array[];
    try {
      plain = run();
    } finally {
      setFastOps(true);
    }
    fast.forEach((v, i) => {
      assert.ok(v.every(Number.isFinite), `output ${i} has non-finite values`);
      assertClose(v, plain[i], 1e-5, 1e-4, `output ${i}`);
    });
    tf.dispose([qkv, w, g]);
  });
});
