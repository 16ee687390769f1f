/**
 * The ViT forward against a PyTorch-produced golden fixture (test/fixtures/gen_vit.py), naive loop references,
 * finite differences, and the cpu backend.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { createVit, disposeVit, vitVariables, Vit } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { multiHeadAttention, gelu, layerNorm } from '../lib/ops/nn';
import { torchToKit } from '../lib/io/checkpoint';
import { crossEntropy } from '../lib/train/loss';
import { assertClose, maxAbsDiff, noLeak, onBackend, randArray } from './util';

interface Fixture {
  config: { B: number; C: number; H: number; W: number; P: number; D: number; heads: number; depth: number; registers: number; numClasses: number };
  params: Record<string, { shape: number[]; data: number[] }>;
  grads: Record<string, number[]>;
  input_nhwc: { shape: number[]; data: number[] };
  labels: number[];
  loss: number;
  logits: number[];
  cls: number[];
  patch: number[];
  prenorm: number[];
  inter0_patch: number[];
}

const fx: Fixture = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'vit_micro.json'), 'utf8'));

/** Build the fixture's micro ViT and load its PyTorch-layout weights. */
export function fixtureVit(): Vit {
  const c = fx.config;
  const vit = createVit(
    'vit_tiny_patch16_224',
    { imgSize: [c.H, c.W], patchSize: c.P, inChans: c.C, embedDim: c.D, depth: c.depth, numHeads: c.heads, layerScale: 1, numRegisters: c.registers, numClasses: c.numClasses },
    { skipInit: true },
  );
  const vars = vitVariables(vit);
  assert.deepEqual([...vars.keys()].sort(), Object.keys(fx.params).sort());
  for (const [k, v] of vars) {
    const t = fx.params[k];
    tf.tidy(() => v.assign(torchToKit(k, tf.tensor(t.data, t.shape))));
  }
  return vit;
}

function input(): tf.Tensor4D {
  return tf.tensor4d(fx.input_nhwc.data, fx.input_nhwc.shape as [number, number, number, number]);
}

describe('ViT forward vs a PyTorch reference', () => {
  let vit: Vit;
  before(() => {
    vit = fixtureVit();
  });
  after(() => disposeVit(vit));

  it('logits, CLS, patch tokens, pre-norm tokens and intermediate layers match (≤1e-5)', async () => {
    await noLeak(() =>
      tf.tidy(() => {
        const out = vitForward(vit, input(), { returnLayers: 2 });
        assertClose(out.logits!.dataSync(), fx.logits, 2e-5, 1e-4, 'logits');
        assertClose(out.cls.dataSync(), fx.cls, 2e-5, 1e-4, 'cls');
        assertClose(out.patchTokens.dataSync(), fx.patch, 2e-5, 1e-4, 'patch tokens');
        assertClose(out.prenorm.dataSync(), fx.prenorm, 2e-5, 1e-4, 'prenorm');
        assert.equal(out.intermediates.length, 2);
        assertClose(out.intermediates[0].patchTokens.dataSync(), fx.inter0_patch, 2e-5, 1e-4, 'intermediate 0');
        assertClose(out.intermediates[1].cls.dataSync(), fx.cls, 2e-5, 1e-4, 'intermediate 1 = final');
      }),
    );
  });

  it('gradients match PyTorch autograd', () => {
    const vars = vitVariables(vit);
    const names = Object.keys(fx.grads);
    const { value, grads } = tf.variableGrads(() => {
      const out = vitForward(vit, input());
      const ce = crossEntropy(out.logits!, tf.tensor1d(fx.labels, 'int32'));
      return tf.add(ce, tf.mul(0.1, tf.mean(tf.square(out.patchTokens)))) as tf.Scalar;
    }, names.map((n) => vars.get(n)!));
    assert.ok(Math.abs(value.dataSync()[0] - fx.loss) < 1e-5, `loss ${value.dataSync()[0]} vs ${fx.loss}`);
    for (const n of names) {
      const v = vars.get(n)!;
      const g = tf.tidy(() => {
        // PyTorch layout → kit layout for the reference gradient
        const ref = torchToKit(n, tf.tensor(fx.grads[n], fx.params[n].shape));
        return [grads[v.name].dataSync(), ref.dataSync()];
      });
      assertClose(g[0], g[1], 2e-5, 1e-3, `grad ${n}`);
    }
    tf.dispose([value, ...Object.values(grads)]);
  });

  it('the cpu backend gives the same forward (≤1e-5)', async () => {
    const w = tf.tidy(() => vitForward(vit, input()).prenorm.dataSync());
    const c = await onBackend('cpu', () => tf.tidy(() => vitForward(vit, input()).prenorm.dataSync()));
    assert.ok(maxAbsDiff(w, c) <= 1e-5, `max |wasm − cpu| = ${maxAbsDiff(w, c)}`);
  });

  it('finite differences agree with the analytic gradient', () => {
    const vars = vitVariables(vit);
    const target = vars.get('blocks.1.mlp.fc1.weight')!;
    const loss = (): tf.Scalar =>
      tf.tidy(() => {
        const out = vitForward(vit, input());
        return tf.add(tf.sum(tf.mul(out.logits!, tf.tensor2d(randArray(10, 5), [2, 5]))), tf.mean(tf.square(out.patchTokens))) as tf.Scalar;
      });
    const { grads } = tf.variableGrads(loss, [target]);
    const g = grads[target.name].dataSync();
    const base = target.dataSync().slice();
    const h = 1e-2;
    for (const idx of [0, 37, 101, 200]) {
      const at = (delta: number): number => {
        const w = base.slice();
        w[idx] += delta;
        target.assign(tf.tensor(w, target.shape));
        return loss().dataSync()[0];
      };
      const fd = (at(h) - at(-h)) / (2 * h);
      target.assign(tf.tensor(base, target.shape));
      assert.ok(Math.abs(fd - g[idx]) <= 2e-3 + 2e-2 * Math.abs(g[idx]), `index ${idx}: finite difference ${fd} vs analytic ${g[idx]}`);
    }
    tf.dispose(grads);
  });
});

describe('ViT primitives against naive references', () => {
  it('multi-head attention equals explicit loops (with a per-key bias)', () => {
    const B = 2, N = 5, D = 6, h = 3, dh = 2;
    const q = randArray(B * N * D, 1), k = randArray(B * N * D, 2), v = randArray(B * N * D, 3), bias = randArray(B * N, 4);
    const got = tf.tidy(() => {
      const r = multiHeadAttention(tf.tensor3d(q, [B, N, D]), tf.tensor3d(k, [B, N, D]), tf.tensor3d(v, [B, N, D]), h, tf.tensor2d(bias, [B, N]), true);
      return { out: r.out, keyMean: r.keyMean! };
    });
    const ref = new Float32Array(B * N * D);
    const keyMean = new Float32Array(B * N * dh);
    for (let b = 0; b < B; b++)
      for (let hh = 0; hh < h; hh++)
        for (let i = 0; i < N; i++) {
          const s: number[] = [];
          for (let j = 0; j < N; j++) {
            let dot = 0;
            for (let d = 0; d < dh; d++) dot += q[(b * N + i) * D + hh * dh + d] * k[(b * N + j) * D + hh * dh + d];
            s.push(dot / Math.sqrt(dh) + bias[b * N + j]);
          }
          const m = Math.max(...s);
          const e = s.map((x) => Math.exp(x - m));
          const z = e.reduce((a, c) => a + c, 0);
          for (let d = 0; d < dh; d++) {
            let acc = 0;
            for (let j = 0; j < N; j++) acc += (e[j] / z) * v[(b * N + j) * D + hh * dh + d];
            ref[(b * N + i) * D + hh * dh + d] = acc;
          }
        }
    for (let b = 0; b < B; b++)
      for (let j = 0; j < N; j++)
        for (let d = 0; d < dh; d++) {
          let acc = 0;
          for (let hh = 0; hh < h; hh++) acc += k[(b * N + j) * D + hh * dh + d];
          keyMean[(b * N + j) * dh + d] = acc / h;
        }
    assertClose(got.out.dataSync(), ref, 1e-6, 1e-5, 'attention');
    assertClose(got.keyMean.dataSync(), keyMean, 1e-6, 0, 'key mean');
    tf.dispose([got.out, got.keyMean]);
  });

  it('GELU is the exact erf form, not the tanh approximation', () => {
    // erf via a high-precision series/continued fraction (double precision)
    const erf = (x: number): number => {
      const t = 1 / (1 + 0.5 * Math.abs(x));
      const y = 1 - t * Math.exp(-x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
      return x >= 0 ? y : -y;
    };
    const xs = [-4, -2.5, -1, -0.3, 0, 0.2, 0.7, 1.5, 3];
    const got = tf.tidy(() => gelu(tf.tensor1d(xs)).dataSync());
    const exact = xs.map((x) => 0.5 * x * (1 + erf(x / Math.SQRT2)));
    const tanhApprox = xs.map((x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))));
    assertClose(got, exact, 2e-6, 0, 'gelu');
    assert.ok(maxAbsDiff(got, tanhApprox) > 1e-4, 'must differ from the tanh approximation');
  });

  it('LayerNorm uses the biased variance and the given eps', () => {
    const x = [1, 2, 4, 9];
    const got = tf.tidy(() => layerNorm(tf.tensor2d(x, [1, 4]), tf.ones([4]), tf.zeros([4]), 1e-6).dataSync());
    const mean = 4;
    const variance = (9 + 4 + 0 + 25) / 4;
    assertClose(got, x.map((v) => (v - mean) / Math.sqrt(variance + 1e-6)), 1e-6);
  });
});

describe('ViT forward options', () => {
  it('pool avg: mean of pre-norm patch tokens through fc_norm; mask tokens replace patches', () => {
    const vit = createVit('vit_tiny_patch16_224', { imgSize: 32, depth: 1, embedDim: 12, numHeads: 2, pool: 'avg', numClasses: 3, maskToken: true }, { seed: 2 });
    tf.tidy(() => {
      const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
      const out = vitForward(vit, x);
      const v = vitVariables(vit);
      const mean = tf.mean(out.prenorm.slice([0, 1, 0], [2, 4, 12]), 1);
      const ref = layerNorm(mean, v.get('fc_norm.weight')!, v.get('fc_norm.bias')!, 1e-6);
      assertClose(out.pooled.dataSync(), ref.dataSync(), 1e-6);
      assert.equal(v.has('norm.weight'), false);
      // masking all patches makes every image's tokens identical
      const masked = vitForward(vit, x, { masks: tf.ones([2, 4]) as tf.Tensor2D });
      const a = masked.prenorm.slice([0, 0, 0], [1, 5, 12]).dataSync();
      const b = masked.prenorm.slice([1, 0, 0], [1, 5, 12]).dataSync();
      assertClose(a, b, 1e-6);
      assert.throws(() => vitForward(vit, x, { masks: tf.ones([2, 5]) as tf.Tensor2D }), /masks must be \[2, 4\], got \[2,5\]/);
    });
    disposeVit(vit);
  });

  it('another input size resizes the learned pos-embed (DINOv2 style) and recomputes sin-cos (MAE)', () => {
    const dino = createVit('vit_small_patch14_dinov2', { depth: 1, embedDim: 12, numHeads: 2 }, { seed: 1, skipInit: false });
    const mae = createVit('mae_vit_base_patch16', { depth: 1, embedDim: 16, numHeads: 2, imgSize: 32 }, { seed: 1 });
    tf.tidy(() => {
      const a = vitForward(dino, tf.zeros([1, 28, 42, 3]) as tf.Tensor4D);
      assert.deepEqual(a.patchTokens.shape, [1, 6, 12]);
      const b = vitForward(mae, tf.zeros([1, 48, 64, 3]) as tf.Tensor4D);
      assert.deepEqual(b.patchTokens.shape, [1, 12, 16]);
    });
    disposeVit(dino);
    disposeVit(mae);
  });

  it('training with drop-path needs an rng, and the same rng seed gives the same output', () => {
    const vit = createVit('vit_tiny_patch16_224', { imgSize: 32, depth: 2, embedDim: 12, numHeads: 2, dropPathRate: 0.5 }, { seed: 2 });
    const { Rng } = require('../lib/rng') as typeof import('../lib/rng');
    tf.tidy(() => {
      const x = tf.randomNormal([4, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
      assert.throws(() => vitForward(vit, x, { training: true }), /needs an rng/);
      const a = vitForward(vit, x, { training: true, rng: new Rng(5) }).prenorm.dataSync();
      const b = vitForward(vit, x, { training: true, rng: new Rng(5) }).prenorm.dataSync();
      const c = vitForward(vit, x, { training: true, rng: new Rng(6) }).prenorm.dataSync();
      const e = vitForward(vit, x).prenorm.dataSync();
      assert.deepEqual(a, b);
      assert.ok(maxAbsDiff(a, c) > 1e-3 || maxAbsDiff(a, e) > 1e-3);
    });
    disposeVit(vit);
  });
});
