import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { vitConfig, VIT_PRESETS, dropPathRates } from '../lib/vit/config';
import { createVit, disposeVit, encoderParamCount, vitVariables } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { noLeak } from './util';

describe('ViT presets and parameter counts', () => {
  // Exact counts, no head (ViT-B/16 85,798,656 and ViT-L/16 303,301,632 are the papers' 86M / 303.3M).
  const cases: Array<[keyof typeof VIT_PRESETS, Record<string, unknown>, number]> = [
    ['vit_small_patch16_224', {}, 21_665_664],
    ['vit_base_patch16_224', {}, 85_798_656],
    ['vit_large_patch16_224', {}, 303_301_632],
    ['vit_large_patch14_dinov2', {}, 304_368_640], // 518 px, LayerScale, mask token
  ];
  for (const [preset, ov, expected] of cases) {
    it(`${preset} has ${expected.toLocaleString('en')} parameters`, async function () {
      this.timeout(120000);
      await noLeak(() => {
        const vit = createVit(preset, ov, { skipInit: true });
        try {
          assert.equal(encoderParamCount(vit), expected);
        } finally {
          disposeVit(vit);
        }
      });
    });
  }

  it('keys are the timm / DINOv2 checkpoint keys, in checkpoint order', () => {
    const vit = createVit('vit_small_patch14_dinov2', { depth: 2, imgSize: 28, posEmbedGrid: 2 }, { skipInit: true });
    const keys = [...vitVariables(vit).keys()];
    disposeVit(vit);
    assert.deepEqual(keys.slice(0, 5), ['cls_token', 'pos_embed', 'mask_token', 'patch_embed.proj.weight', 'patch_embed.proj.bias']);
    assert.deepEqual(keys.filter((k) => k.startsWith('blocks.1.')), [
      'blocks.1.norm1.weight', 'blocks.1.norm1.bias',
      'blocks.1.attn.qkv.weight', 'blocks.1.attn.qkv.bias', 'blocks.1.attn.proj.weight', 'blocks.1.attn.proj.bias',
      'blocks.1.ls1.gamma',
      'blocks.1.norm2.weight', 'blocks.1.norm2.bias',
      'blocks.1.mlp.fc1.weight', 'blocks.1.mlp.fc1.bias', 'blocks.1.mlp.fc2.weight', 'blocks.1.mlp.fc2.bias',
      'blocks.1.ls2.gamma',
    ]);
    assert.deepEqual(keys.slice(-2), ['norm.weight', 'norm.bias']);
  });

  it('shapes: Linear weights [in, out], patch embedding [p, p, C, D], DINOv2 pos_embed 1 + 37²', () => {
    const vit = createVit('vit_base_patch14_dinov2', { depth: 1 }, { skipInit: true });
    const v = vitVariables(vit);
    try {
      assert.deepEqual(v.get('blocks.0.attn.qkv.weight')!.shape, [768, 2304]);
      assert.deepEqual(v.get('blocks.0.mlp.fc2.weight')!.shape, [3072, 768]);
      assert.deepEqual(v.get('patch_embed.proj.weight')!.shape, [14, 14, 3, 768]);
      assert.deepEqual(v.get('pos_embed')!.shape, [1, 1370, 768]);
      assert.deepEqual(v.get('mask_token')!.shape, [1, 768]);
    } finally {
      disposeVit(vit);
    }
  });

  it('same seed ⇒ same weights; different seed ⇒ different weights', () => {
    const a = createVit('vit_tiny_patch16_224', { depth: 1, imgSize: 32 }, { seed: 3 });
    const b = createVit('vit_tiny_patch16_224', { depth: 1, imgSize: 32 }, { seed: 3 });
    const c = createVit('vit_tiny_patch16_224', { depth: 1, imgSize: 32 }, { seed: 4 });
    const w = (m: typeof a): Float32Array => vitVariables(m).get('blocks.0.attn.qkv.weight')!.dataSync() as Float32Array;
    assert.deepEqual(w(a), w(b));
    assert.notDeepEqual(w(a), w(c));
    // trunc-normal(0.02): std close to 0.02
    const x = w(a);
    const std = Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
    assert.ok(Math.abs(std - 0.02) < 0.001, `std ${std}`);
    [a, b, c].forEach(disposeVit);
  });

  it('MAE init: xavier-uniform bounds and a frozen sin-cos pos_embed', () => {
    const vit = createVit('mae_vit_base_patch16', { depth: 1, imgSize: 32 }, { seed: 1 });
    const v = vitVariables(vit);
    const qkv = v.get('blocks.0.attn.qkv.weight')!.dataSync();
    const bound = Math.sqrt(6 / (768 + 2304));
    const maxAbs = Array.from(qkv).reduce((m: number, x: number) => Math.max(m, Math.abs(x)), 0);
    assert.ok(maxAbs <= bound + 1e-7 && maxAbs > 0.9 * bound, `max |w| ${maxAbs} vs bound ${bound}`);
    assert.equal(v.get('pos_embed')!.trainable, false);
    disposeVit(vit);
  });

  it('stochastic depth: timm linear and DINOv2 uniform', () => {
    assert.deepEqual(dropPathRates({ depth: 5, dropPathRate: 0.2, dropPathMode: 'linear' }).map((r) => +r.toFixed(6)), [0, 0.05, 0.1, 0.15, 0.2]);
    assert.deepEqual(dropPathRates({ depth: 3, dropPathRate: 0.3, dropPathMode: 'uniform' }), [0.3, 0.3, 0.3]);
  });
});

describe('ViT bad input', () => {
  it('unknown preset lists the valid ones', () => {
    assert.throws(() => vitConfig('vit_huge_patch16_224' as never), /unknown ViT preset 'vit_huge_patch16_224'; valid: vit_tiny_patch16_224, .*vit_large_patch14_dinov2/);
  });
  it('unknown config key lists the valid ones', () => {
    assert.throws(() => vitConfig('vit_small_patch16_224', { embedDm: 3 } as never), /unknown key 'embedDm'; valid keys: .*embedDim/);
  });
  it('image size not divisible by the patch', () => {
    assert.throws(() => vitConfig('vit_small_patch16_224', { imgSize: 100 }), /imgSize: 100x100 is not divisible by patchSize 16/);
    const vit = createVit('vit_tiny_patch16_224', { depth: 1, imgSize: 32 });
    try {
      assert.throws(() => tf.tidy(() => vitForward(vit, tf.zeros([1, 40, 40, 3]) as tf.Tensor4D).prenorm), /image size 40x40 is not divisible by the patch size 16/);
      assert.throws(() => tf.tidy(() => vitForward(vit, tf.zeros([1, 32, 32, 4]) as tf.Tensor4D).prenorm), /expected 3 channels .* got 4/);
      assert.throws(() => tf.tidy(() => vitForward(vit, tf.zeros([32, 32, 3]) as unknown as tf.Tensor4D).prenorm), /expected images \[B, H, W, C\] \(NHWC\), got rank 3/);
    } finally {
      disposeVit(vit);
    }
  });
  it('width not divisible by heads, sin-cos width not divisible by 4', () => {
    assert.throws(() => vitConfig('vit_small_patch16_224', { embedDim: 100 }), /embedDim: 100 is not divisible by numHeads 6/);
    assert.throws(() => vitConfig('mae_vit_base_patch16', { embedDim: 18, numHeads: 3 }), /divisible by 4, got 18/);
  });
});
