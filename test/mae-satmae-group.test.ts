/**
 * SatMAE group-channel model: PyTorch golden fixture (independent and spatial masking), token count, band layout,
 * bad input, leaks.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { assertClose, noLeak, randArray } from './util';
import { loadFixture, assignFixtureParams, FixtureCase } from './mae-fixture';
import { Rng } from '../lib/rng';
import { planFromShuffle } from '../lib/mae/masking';
import {
  createSatMaeGroup,
  satMaeGroupVariables,
  satMaeGroupForward,
  satMaeGroupTokenCount,
  satMaeGroupPlan,
  disposeSatMaeGroup,
  bandLayout,
  satMaeGroupConfig,
  satMaeGroupReconstruction,
  satMaeGroupParamCounts,
  SatMaeGroup,
  SATMAE_GROUP_FROM_RGB_MAE,
} from '../lib/mae/satmae-group';
import { createMae, maeVariables, disposeMae } from '../lib/mae/mae';
import { saveCheckpoint, loadCheckpoint } from '../lib/io/checkpoint';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { disposeViews } from '../lib/mae/recon';

function fromFixture(f: FixtureCase): SatMaeGroup {
  const c = f.config as Record<string, number>;
  return createSatMaeGroup('satmae_group_vit_base_patch8', {
    imgSize: c.H,
    patchSize: c.p,
    embedDim: c.D,
    depth: c.depth,
    numHeads: c.heads,
    mlpRatio: c.mlpRatio,
    channelEmbedDim: c.channelEmbedDim,
    decoder: { embedDim: c.Dd, depth: c.ddepth, numHeads: c.dheads, mlpRatio: c.dmlpRatio },
    decoderChannelEmbedDim: c.decoderChannelEmbedDim,
    maskRatio: c.ratio,
    spatialMask: Boolean(f.config.spatial),
  });
}

describe('satmae group-channel model', () => {
  for (const name of ['group_independent', 'group_spatial'] as const) {
    it(`matches the PyTorch reference (${name.replace('group_', '')} masking): codes, latent, prediction, per-group loss`, async () => {
      const f = loadFixture()[name];
      const c = f.config as Record<string, number>;
      const m = fromFixture(f);
      const vars = satMaeGroupVariables(m);
      for (const k of ['pos_embed', 'channel_embed', 'decoder_pos_embed', 'decoder_channel_embed']) {
        assertClose(vars.get(k)!.dataSync(), f.params[k].values, 1e-6, 0, k);
      }
      assignFixtureParams(vars, f.params);
      const x = tf.tensor4d(f.images, [c.B, c.H, c.W, c.C]);
      const N = f.ids_shuffle.length / c.B;
      const plan = planFromShuffle(c.spatial ? 'spatial' : 'random', c.B, N, c.lenKeep, Int32Array.from(f.ids_shuffle));
      assert.deepEqual(Array.from(plan.idsRestore), f.ids_restore);
      await noLeak(() =>
        tf.tidy(() => {
          const o = satMaeGroupForward(m, x, { plan });
          assertClose(o.mask.dataSync(), f.mask, 0, 0, 'mask');
          assertClose(o.latent.dataSync(), f.latent, 1e-4, 0, 'latent');
          assertClose(o.pred.dataSync(), f.pred, 1e-4, 0, 'pred');
          assertClose([o.loss.dataSync()[0]], [f.loss], 1e-5, 1e-5, 'loss');
        }),
      );
      x.dispose();
      disposeSatMaeGroup(m);
    });
  }

  it('spatial plans from the model mask whole cells; the fixture spatial plan has that structure', () => {
    const f = loadFixture().group_spatial;
    const m = fromFixture(f);
    const plan = satMaeGroupPlan(m, 2, new Rng(4));
    assert.equal(plan.kind, 'spatial');
    const L = 4;
    for (let b = 0; b < 2; b++) for (let l = 0; l < L; l++) for (let g = 1; g < 3; g++) assert.equal(plan.mask[b * 12 + g * L + l], plan.mask[b * 12 + l]);
    disposeSatMaeGroup(m);
  });

  it('ViT-L/8 at 96 px has 3·144 = 432 tokens, SatMAE key names and shapes', () => {
    // one block of ViT-L width keeps this fast; the full-depth count is in mae-explora.test.ts
    const m = createSatMaeGroup('satmae_group_vit_large_patch8', { depth: 1 }, { skipInit: true });
    assert.equal(satMaeGroupTokenCount(m), 3 * 144);
    const v = satMaeGroupVariables(m);
    assert.deepEqual(v.get('patch_embed.0.proj.weight')!.shape, [8, 8, 4, 1024]);
    assert.deepEqual(v.get('patch_embed.2.proj.weight')!.shape, [8, 8, 2, 1024]);
    assert.deepEqual(v.get('pos_embed')!.shape, [1, 145, 768]);
    assert.deepEqual(v.get('channel_embed')!.shape, [1, 3, 256]);
    assert.deepEqual(v.get('decoder_pos_embed')!.shape, [1, 145, 384]);
    assert.deepEqual(v.get('decoder_channel_embed')!.shape, [1, 4, 128]);
    assert.deepEqual(v.get('decoder_pred.0.weight')!.shape, [512, 256]);
    assert.deepEqual(v.get('decoder_pred.2.weight')!.shape, [512, 128]);
    // group patch embeddings: 2·(4·64·1024 + 1024) + (2·64·1024 + 1024) = 658,432
    let pe = 0;
    for (const [k, t] of v) if (k.startsWith('patch_embed.')) pe += t.size;
    assert.equal(pe, 658_432);
    const counts = satMaeGroupParamCounts(m);
    // encoder = blocks + final norm + cls + pos (145·768) + channel (3·256) + patch embeddings
    assert.equal(counts.encoder, 1 * 12_596_224 + 2048 + 1024 + 145 * 768 + 3 * 256 + 658_432);
    disposeSatMaeGroup(m);
  });

  it('derives the default band layout: drop B1, B9, B10; groups (0,1,2,6) / (3,4,5,7) / (8,9)', () => {
    const l = bandLayout(satMaeGroupConfig('satmae_group_vit_base_patch8'));
    assert.deepEqual(l.kept, ['B2', 'B3', 'B4', 'B5', 'B6', 'B7', 'B8', 'B8A', 'B11', 'B12']);
    assert.deepEqual(l.keptInput, [1, 2, 3, 4, 5, 6, 7, 8, 11, 12]);
    assert.deepEqual(l.groups, [
      [0, 1, 2, 6],
      [3, 4, 5, 7],
      [8, 9],
    ]);
  });

  it('accepts all 13 bands (dropping B1, B9, B10 itself) and gives the same loss as the 10 kept bands', () => {
    const m = createSatMaeGroup('satmae_group_vit_base_patch8', {
      imgSize: 16, patchSize: 8, embedDim: 24, depth: 1, numHeads: 2, channelEmbedDim: 8,
      decoder: { embedDim: 16, depth: 1, numHeads: 2 }, decoderChannelEmbedDim: 4,
    }, { seed: 3 });
    const x13 = tf.tensor4d(randArray(2 * 16 * 16 * 13, 7), [2, 16, 16, 13]);
    const x10 = tf.gather(x13, [1, 2, 3, 4, 5, 6, 7, 8, 11, 12], 3) as tf.Tensor4D;
    const plan = satMaeGroupPlan(m, 2, new Rng(1));
    const [a, b] = tf.tidy(() => [satMaeGroupForward(m, x13, { plan }).loss.dataSync()[0], satMaeGroupForward(m, x10, { plan }).loss.dataSync()[0]]);
    assert.equal(a, b);
    const views = satMaeGroupReconstruction(m, x13, { plan });
    assert.deepEqual(views.reconstruction.shape, [2, 16, 16, 10]);
    assert.deepEqual(views.mask.shape, [2, 16, 16, 10]);
    // the pasted view equals the input wherever the band's group token is visible
    const mk = views.mask.dataSync();
    const inp = views.input.dataSync();
    const pst = views.pasted.dataSync();
    for (let i = 0; i < mk.length; i++) if (mk[i] === 0) assert.equal(pst[i], inp[i]);
    disposeViews(views);
    tf.dispose([x13, x10]);
    disposeSatMaeGroup(m);
  });

  it('the satmae target alignment reproduces the upstream channel pairing and differs from grouped', () => {
    const f = loadFixture().group_independent;
    const c = f.config as Record<string, number>;
    const m = fromFixture(f);
    assignFixtureParams(satMaeGroupVariables(m), f.params);
    const m2: SatMaeGroup = { ...m, config: { ...m.config, targetAlign: 'satmae' } };
    const x = tf.tensor4d(f.images, [c.B, c.H, c.W, c.C]);
    const plan = planFromShuffle('random', c.B, f.ids_shuffle.length / c.B, c.lenKeep, Int32Array.from(f.ids_shuffle));
    const [lg, ls] = tf.tidy(() => [satMaeGroupForward(m, x, { plan }).loss.dataSync()[0], satMaeGroupForward(m2, x, { plan }).loss.dataSync()[0]]);
    assertClose([lg], [f.loss], 1e-5, 1e-5, 'grouped loss');
    assertClose([ls], [f.loss_satmae!], 1e-5, 1e-5, 'satmae-aligned loss');
    assert.ok(Math.abs(lg - ls) > 1e-4, `satmae alignment should change the loss (${lg} vs ${ls})`);
    x.dispose();
    disposeSatMaeGroup(m);
  });

  it('starts from an RGB MAE checkpoint: blocks / norms / decoder load, group embeddings, heads and codes keep theirs', () => {
    const dims = { imgSize: 16, patchSize: 4, embedDim: 24, depth: 2, numHeads: 2 };
    const rgb = createMae('mae_vit_base_patch16', { encoder: dims, decoder: { embedDim: 16, depth: 1, numHeads: 2 }, seed: 1 });
    const g = createSatMaeGroup('satmae_group_vit_base_patch8', { ...dims, channelEmbedDim: 8, decoder: { embedDim: 16, depth: 1, numHeads: 2 }, decoderChannelEmbedDim: 4 }, { seed: 2 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mae-rgb-'));
    const file = path.join(dir, 'rgb.safetensors');
    saveCheckpoint(file, { params: maeVariables(rgb) });
    const gv = satMaeGroupVariables(g);
    const pe0 = gv.get('patch_embed.0.proj.weight')!.dataSync().slice();
    const ch = gv.get('channel_embed')!.dataSync().slice();
    const rep = loadCheckpoint(file, { params: gv }, SATMAE_GROUP_FROM_RGB_MAE);
    assert.ok(rep.missing.includes('patch_embed.0.proj.weight') && rep.missing.includes('decoder_pred.2.bias') && rep.missing.includes('channel_embed'));
    const rv = maeVariables(rgb);
    for (const k of ['blocks.1.attn.qkv.weight', 'norm.weight', 'cls_token', 'decoder_embed.weight', 'mask_token', 'decoder_blocks.0.mlp.fc2.weight']) {
      assertClose(gv.get(k)!.dataSync(), rv.get(k)!.dataSync(), 0, 0, k);
    }
    assertClose(gv.get('patch_embed.0.proj.weight')!.dataSync(), pe0, 0, 0, 'group patch embedding untouched');
    assertClose(gv.get('channel_embed')!.dataSync(), ch, 0, 0, 'channel code untouched');
    fs.rmSync(dir, { recursive: true, force: true });
    disposeMae(rgb);
    disposeSatMaeGroup(g);
  });

  it('rejects band counts and groups that do not match, bad ratios, bad sizes', () => {
    const small = { imgSize: 16, patchSize: 8, embedDim: 24, depth: 1, numHeads: 2, channelEmbedDim: 8, decoder: { embedDim: 16, depth: 1, numHeads: 2 }, decoderChannelEmbedDim: 4 };
    const m = createSatMaeGroup('satmae_group_vit_base_patch8', small);
    const x7 = tf.zeros([1, 16, 16, 7]) as tf.Tensor4D;
    assert.throws(() => tf.tidy(() => void satMaeGroupForward(m, x7, { rng: new Rng(1) })), /got 7 bands; expected 13 \(B1, .*B1, B9, B10 dropped here\) or the 10 kept bands/);
    const x12 = tf.zeros([1, 24, 16, 13]) as tf.Tensor4D;
    assert.throws(() => tf.tidy(() => void satMaeGroupForward(m, x12, { rng: new Rng(1) })), /image size 24x16 differs from the configured 16x16/);
    assert.throws(() => createSatMaeGroup('satmae_group_vit_base_patch8', { ...small, groups: [['B2', 'B3'], ['B4']] }), /kept band\(s\) B5, B6, B7, B8, B8A, B11, B12 belong to no group/);
    assert.throws(() => createSatMaeGroup('satmae_group_vit_base_patch8', { ...small, groups: [['B1', 'B2']] }), /band 'B1' cannot be used \(it is dropped\)/);
    assert.throws(() => createSatMaeGroup('satmae_group_vit_base_patch8', { ...small, groups: [['B2', 'B2']] }), /band 'B2' is in group 0 and group 0/);
    assert.throws(() => createSatMaeGroup('satmae_group_vit_base_patch8', { ...small, dropBands: ['B13'] }), /dropBands: 'B13' is not an input band/);
    assert.throws(() => createSatMaeGroup('satmae_group_vit_base_patch8', { ...small, maskRatio: 0 }), /maskRatio: expected a number strictly between 0 and 1, got 0/);
    assert.throws(() => createSatMaeGroup('satmae_group_vit_base_patch8', { ...small, imgSize: 20 }), /imgSize: 20x20 is not divisible by patchSize 8/);
    assert.throws(() => createSatMaeGroup('satmae_group_vit_base_patch8', { ...small, channelEmbedDim: 22 }), /24 − channelEmbedDim 22 = 2 must be a positive multiple of 4/);
    assert.throws(() => createSatMaeGroup('satmae_group_vit_base_patch8', { ...small, spatial: true } as never), /unknown key 'spatial'/);
    tf.dispose([x7, x12]);
    disposeSatMaeGroup(m);
  });
});
