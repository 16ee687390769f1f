/**
 * SatMAE temporal model: PyTorch golden fixture (independent and same-across-frames masking), token layout,
 * timestamps, bad input.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { assertClose, noLeak } from './util';
import { loadFixture, assignFixtureParams, FixtureCase } from './mae-fixture';
import { Rng } from '../lib/rng';
import { planFromShuffle } from '../lib/mae/masking';
import {
  createSatMaeTemporal,
  satMaeTemporalVariables,
  satMaeTemporalForward,
  satMaeTemporalPlan,
  satMaeTemporalReconstruction,
  disposeSatMaeTemporal,
  SatMaeTemporal,
} from '../lib/mae/satmae-temporal';
import { disposeViews } from '../lib/mae/recon';

function fromFixture(f: FixtureCase): SatMaeTemporal {
  const c = f.config as Record<string, number>;
  return createSatMaeTemporal('satmae_temporal_vit_base_patch16', {
    imgSize: c.H,
    patchSize: c.p,
    inChans: c.C,
    embedDim: c.D,
    depth: c.depth,
    numHeads: c.heads,
    mlpRatio: c.mlpRatio,
    frames: c.T,
    timeEmbedDim: c.timeEmbedDim,
    decoder: { embedDim: c.Dd, depth: c.ddepth, numHeads: c.dheads, mlpRatio: c.dmlpRatio },
    decoderTimeEmbedDim: c.decoderTimeEmbedDim,
    maskRatio: c.ratio,
    sameMask: Boolean(f.config.sameMask),
  });
}

describe('satmae temporal model', () => {
  for (const name of ['temporal_independent', 'temporal_same_mask'] as const) {
    it(`matches the PyTorch reference (${name.replace('temporal_', '').replace('_', ' ')}): codes, latent, prediction, loss`, async () => {
      const f = loadFixture()[name];
      const c = f.config as Record<string, number>;
      const m = fromFixture(f);
      const vars = satMaeTemporalVariables(m);
      assertClose(vars.get('pos_embed')!.dataSync(), f.params.pos_embed.values, 1e-6, 0, 'pos_embed');
      assertClose(vars.get('decoder_pos_embed')!.dataSync(), f.params.decoder_pos_embed.values, 1e-6, 0, 'decoder_pos_embed');
      assignFixtureParams(vars, f.params);
      const x = tf.tensor5d(f.images, [c.B, c.T, c.H, c.W, c.C]);
      const N = f.ids_shuffle.length / c.B;
      const plan = planFromShuffle(c.sameMask ? 'frames' : 'random', c.B, N, c.lenKeep, Int32Array.from(f.ids_shuffle));
      assert.deepEqual(Array.from(plan.idsRestore), f.ids_restore);
      await noLeak(() =>
        tf.tidy(() => {
          const o = satMaeTemporalForward(m, x, f.timestamps!, { plan });
          assertClose(o.mask.dataSync(), f.mask, 0, 0, 'mask');
          assertClose(o.latent.dataSync(), f.latent, 1e-4, 0, 'latent');
          assertClose(o.pred.dataSync(), f.pred, 1e-4, 0, 'pred');
          assertClose([o.loss.dataSync()[0]], [f.loss], 1e-5, 1e-5, 'loss');
        }),
      );
      x.dispose();
      disposeSatMaeTemporal(m);
    });
  }

  it('same-mask plans share the cell mask across frames; reconstruction views stack frames on the batch axis', () => {
    const f = loadFixture().temporal_same_mask;
    const c = f.config as Record<string, number>;
    const m = fromFixture(f);
    const plan = satMaeTemporalPlan(m, 2, new Rng(8));
    assert.equal(plan.kind, 'frames');
    assert.equal(plan.numTokens, 3 * 4);
    assert.equal(plan.lenKeep, 3 * 2);
    for (let b = 0; b < 2; b++) for (let t = 1; t < 3; t++) for (let l = 0; l < 4; l++) assert.equal(plan.mask[b * 12 + t * 4 + l], plan.mask[b * 12 + l]);
    const x = tf.tensor5d(f.images, [c.B, c.T, c.H, c.W, c.C]);
    const v = satMaeTemporalReconstruction(m, x, f.timestamps!, { plan });
    assert.deepEqual(v.pasted.shape, [6, 8, 8, 3]);
    disposeViews(v);
    x.dispose();
    disposeSatMaeTemporal(m);
  });

  it('ViT-L/16 temporal: 3·196 tokens, spatial code 640 + 3·128 time codes, decoder 320 + 3·64', () => {
    const m = createSatMaeTemporal('satmae_temporal_vit_large_patch16', { depth: 1, decoder: { depth: 1 } }, { skipInit: true });
    const v = satMaeTemporalVariables(m);
    assert.deepEqual(v.get('pos_embed')!.shape, [1, 197, 640]);
    assert.deepEqual(v.get('decoder_pos_embed')!.shape, [1, 197, 320]);
    assert.deepEqual(v.get('patch_embed.proj.weight')!.shape, [16, 16, 3, 1024]);
    assert.equal(satMaeTemporalPlan(m, 1, new Rng(1)).numTokens, 3 * 196);
    disposeSatMaeTemporal(m);
  });

  it('rejects wrong frame counts, timestamps, sizes and mask ratios', () => {
    const f = loadFixture().temporal_independent;
    const m = fromFixture(f);
    const rng = new Rng(1);
    const ts = f.timestamps!;
    const x2 = tf.zeros([2, 2, 8, 8, 3]) as tf.Tensor5D;
    assert.throws(() => tf.tidy(() => void satMaeTemporalForward(m, x2, ts, { rng })), /expected 3 frames, got 2/);
    const x = tf.zeros([2, 3, 8, 8, 3]) as tf.Tensor5D;
    assert.throws(() => tf.tidy(() => void satMaeTemporalForward(m, x, ts.slice(0, 9), { rng })), /expected 2·3·3 = 18 values/);
    const x4 = tf.zeros([2, 3, 8, 8]) as tf.Tensor;
    assert.throws(() => tf.tidy(() => void satMaeTemporalForward(m, x4 as tf.Tensor5D, ts, { rng })), /expected images \[B, T, H, W, C\]/);
    const x10 = tf.zeros([2, 3, 10, 8, 3]) as tf.Tensor5D;
    assert.throws(() => tf.tidy(() => void satMaeTemporalForward(m, x10, ts, { rng })), /image size 10x8 is not divisible by the patch size 4/);
    assert.throws(() => tf.tidy(() => void satMaeTemporalForward(m, x, ts, { rng, maskRatio: 1.2 })), /mask ratio: expected a number strictly between 0 and 1, got 1.2/);
    assert.throws(() => createSatMaeTemporal('satmae_temporal_vit_base_patch16', { embedDim: 384, numHeads: 6 }), /384 − 3·timeEmbedDim 128 = 0 must be a positive multiple of 4/);
    tf.dispose([x2, x, x4, x10]);
    disposeSatMaeTemporal(m);
  });
});
