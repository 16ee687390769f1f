/**
 * MAE core: patchify order, masking plans, norm-pix target, masked loss, full forward against a PyTorch golden
 * fixture (test/fixtures/gen_mae.py), bad input, leaks.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { assertClose, noLeak, randArray } from './util';
import { loadFixture, assignFixtureParams } from './mae-fixture';
import { Rng } from '../lib/rng';
import { patchify, unpatchify, patchifyBands, unpatchifyBands, patchValuesToPixels } from '../lib/mae/patchify';
import {
  argsort,
  randomMasking,
  spatialMasking,
  frameMasking,
  planFromShuffle,
  keepTokens,
  restoreTokens,
  keepCount,
  MaskPlan,
} from '../lib/mae/masking';
import { normPixTarget, maskedPatchMse, perPatchMse } from '../lib/mae/loss';
import { createMae, maeForward, maeVariables, disposeMae, maeEncode, maeParamCounts, Mae } from '../lib/mae/mae';
import { makeEnv } from '../lib/vit/forward';
import { createVit, disposeVit } from '../lib/vit/params';
import { saveCheckpoint, loadCheckpoint } from '../lib/io/checkpoint';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const MICRO = { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 4 } as const;
const MICRO_DEC = { embedDim: 16, depth: 1, numHeads: 2 } as const;

describe('mae patchify', () => {
  it('patchify orders each patch vector (ky, kx, c) and tokens row-major; unpatchify inverts it', async () => {
    await noLeak(() => {
      const [B, H, W, C, p] = [2, 8, 12, 3, 4];
      const vals = Float32Array.from({ length: B * H * W * C }, (_, i) => i);
      const x = tf.tensor4d(vals, [B, H, W, C]);
      const pt = patchify(x, p);
      assert.deepEqual(pt.shape, [B, (H / p) * (W / p), p * p * C]);
      const got = pt.dataSync();
      const gw = W / p;
      // naive reference
      for (let b = 0; b < B; b++)
        for (let l = 0; l < (H / p) * gw; l++)
          for (let ky = 0; ky < p; ky++)
            for (let kx = 0; kx < p; kx++)
              for (let c = 0; c < C; c++) {
                const row = Math.floor(l / gw) * p + ky;
                const col = (l % gw) * p + kx;
                const want = ((b * H + row) * W + col) * C + c;
                const idx = (b * (H / p) * gw + l) * p * p * C + (ky * p + kx) * C + c;
                if (got[idx] !== want) assert.fail(`patchify[${b},${l},${ky},${kx},${c}] = ${got[idx]}, want ${want}`);
              }
      const back = unpatchify(pt, p, C, [H / p, W / p]);
      assert.deepEqual(back.shape, [B, H, W, C]);
      assertClose(back.dataSync(), vals, 0, 0, 'unpatchify(patchify(x))');
      tf.dispose([x, pt, back]);
    });
  });

  it('patchifyBands orders (band, ky, kx); unpatchifyBands inverts it', async () => {
    await noLeak(() => {
      const [B, H, W, C, p] = [1, 8, 8, 5, 4];
      const vals = Float32Array.from({ length: B * H * W * C }, (_, i) => i);
      const x = tf.tensor4d(vals, [B, H, W, C]);
      const pt = patchifyBands(x, p);
      const got = pt.dataSync();
      const gw = W / p;
      for (let l = 0; l < 4; l++)
        for (let c = 0; c < C; c++)
          for (let ky = 0; ky < p; ky++)
            for (let kx = 0; kx < p; kx++) {
              const want = ((Math.floor(l / gw) * p + ky) * W + (l % gw) * p + kx) * C + c;
              const idx = l * C * p * p + (c * p + ky) * p + kx;
              if (got[idx] !== want) assert.fail(`patchifyBands[${l},${c},${ky},${kx}] = ${got[idx]}, want ${want}`);
            }
      const back = unpatchifyBands(pt, p, C);
      assertClose(back.dataSync(), vals, 0, 0, 'unpatchifyBands(patchifyBands(x))');
      tf.dispose([x, pt, back]);
    });
  });

  it('patchValuesToPixels spreads a per-patch value over its p×p pixels', () => {
    const m = tf.tensor2d([1, 0, 0, 1, 1, 0], [1, 6]);
    const px = patchValuesToPixels(m, 2, [2, 3]);
    assert.deepEqual(px.shape, [1, 4, 6, 1]);
    assert.deepEqual(Array.from(px.dataSync()), [1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0]);
    tf.dispose([m, px]);
  });

  it('rejects an image size not divisible by the patch, and wrong vector widths', () => {
    const x = tf.zeros([1, 10, 8, 3]) as tf.Tensor4D;
    assert.throws(() => patchify(x, 4), /image size 10x8 is not divisible by the patch size 4/);
    const pt = tf.zeros([1, 4, 10]) as tf.Tensor3D;
    assert.throws(() => unpatchify(pt, 2, 3), /patch vectors have 10 values, expected p·p·C = 2·2·3 = 12/);
    assert.throws(() => unpatchify(tf.zeros([1, 6, 12]) as tf.Tensor3D, 2, 3), /6 patches is not a square grid/);
    tf.dispose([x, pt]);
  });
});

/** Check the invariants of a plan: counts, restore ∘ shuffle = id, mask consistent with the kept ids. */
function checkPlan(plan: MaskPlan): void {
  const { batch: B, numTokens: N, lenKeep: K } = plan;
  for (let b = 0; b < B; b++) {
    let removed = 0;
    for (let j = 0; j < N; j++) {
      const id = plan.idsShuffle[b * N + j];
      assert.equal(plan.idsRestore[b * N + id], j, `restore[shuffle[${j}]] = ${j} (row ${b})`);
      assert.equal(plan.mask[b * N + id], j < K ? 0 : 1, `mask of token ${id} (row ${b})`);
      removed += plan.mask[b * N + j];
    }
    assert.equal(removed, N - K, `row ${b} removes N − K tokens`);
  }
}

describe('mae masking', () => {
  it('keeps exactly ⌊N·(1 − ratio)⌋ tokens per sample and restore inverts shuffle', () => {
    assert.equal(keepCount(196, 0.75), 49);
    assert.equal(keepCount(432, 0.75), 108);
    assert.equal(keepCount(10, 0.66), 3);
    const plan = randomMasking(new Rng(3), 4, 196, 0.75);
    assert.equal(plan.lenKeep, 49);
    checkPlan(plan);
    // different samples get different masks, same seed gives the same plan
    assert.notDeepEqual(Array.from(plan.mask.subarray(0, 196)), Array.from(plan.mask.subarray(196, 392)));
    assert.deepEqual(randomMasking(new Rng(3), 4, 196, 0.75).idsShuffle, plan.idsShuffle);
  });

  it('argsort of the PyTorch noise reproduces ids_shuffle, ids_restore and the mask of the fixture', () => {
    const f = loadFixture().rgb;
    const B = f.config.B as number;
    const N = f.noise!.length / B;
    const shuffle = new Int32Array(B * N);
    for (let b = 0; b < B; b++) shuffle.set(argsort(f.noise!.slice(b * N, (b + 1) * N)), b * N);
    assert.deepEqual(Array.from(shuffle), f.ids_shuffle);
    const plan = planFromShuffle('random', B, N, f.config.lenKeep as number, shuffle);
    assert.deepEqual(Array.from(plan.idsRestore), f.ids_restore);
    assert.deepEqual(Array.from(plan.mask), f.mask);
  });

  it('spatial masking keeps whole cells across groups; frame masking shares the cell mask across frames', () => {
    const G = 3;
    const L = 144;
    const s = spatialMasking(new Rng(5), 2, G, L, 0.75);
    assert.equal(s.numTokens, 432);
    assert.equal(s.lenKeep, 3 * 36);
    checkPlan(s);
    for (let b = 0; b < 2; b++)
      for (let l = 0; l < L; l++) {
        const m0 = s.mask[b * 432 + l];
        for (let g = 1; g < G; g++) assert.equal(s.mask[b * 432 + g * L + l], m0, `cell ${l} group ${g}`);
      }
    // visible order is group-major: the first 36 kept ids are group 0, then group 1, then group 2
    for (let j = 0; j < s.lenKeep; j++) assert.equal(Math.floor(s.idsShuffle[j] / L), Math.floor(j / 36));
    const fr = frameMasking(new Rng(6), 2, 3, 196, 0.75);
    assert.equal(fr.lenKeep, 3 * 49);
    checkPlan(fr);
    for (let l = 0; l < 196; l++) assert.equal(fr.mask[l], fr.mask[196 + l]);
    const ind = randomMasking(new Rng(5), 1, 432, 0.75);
    assert.equal(ind.lenKeep, 108);
  });

  it('keepTokens gathers the visible tokens; restoreTokens puts them back with mask tokens elsewhere', async () => {
    await noLeak(() => {
      const plan = randomMasking(new Rng(9), 2, 6, 0.5);
      const x = tf.tensor3d(Float32Array.from({ length: 2 * 6 * 2 }, (_, i) => i + 1), [2, 6, 2]);
      const vis = keepTokens(x, plan);
      assert.deepEqual(vis.shape, [2, 3, 2]);
      const mt = tf.tensor1d([-7, -8]);
      const back = restoreTokens(vis, mt, plan);
      const xv = x.dataSync();
      const bv = back.dataSync();
      for (let i = 0; i < 12; i++) {
        const m = plan.mask[i];
        assert.deepEqual([bv[2 * i], bv[2 * i + 1]], m ? [-7, -8] : [xv[2 * i], xv[2 * i + 1]], `token ${i}`);
      }
      tf.dispose([x, vis, mt, back]);
    });
  });

  it('rejects mask ratios outside (0, 1) and ratios that keep nothing', () => {
    for (const r of [0, 1, -0.1, 1.5, NaN]) {
      assert.throws(() => randomMasking(new Rng(1), 1, 16, r), /mask ratio: expected a number strictly between 0 and 1/);
    }
    assert.throws(() => randomMasking(new Rng(1), 1, 4, 0.9), /keeps ⌊4·.*⌋ = 0 of 4 tokens/);
    assert.throws(() => planFromShuffle('random', 1, 3, 1, Int32Array.from([0, 0, 1])), /not a permutation/);
    assert.throws(
      () => createMae('mae_vit_base_patch16', { encoder: MICRO, decoder: MICRO_DEC, maskRatio: 1 }),
      /createMae: maskRatio: expected a number strictly between 0 and 1, got 1/,
    );
  });
});

describe('mae loss', () => {
  it('norm-pix target matches a hand computation (unbiased variance + 1e-6)', () => {
    const t = tf.tensor3d([1, 2, 3, 6, 0, 0, 0, 4], [1, 2, 4]);
    const got = normPixTarget(t).dataSync();
    // patch 1: mean 3, deviations [-2,-1,0,3], Σd² = 14, unbiased var = 14/3
    const s1 = Math.sqrt(14 / 3 + 1e-6);
    // patch 2: mean 1, deviations [-1,-1,-1,3], Σd² = 12, var = 4
    const s2 = Math.sqrt(4 + 1e-6);
    assertClose(got, [-2 / s1, -1 / s1, 0, 3 / s1, -1 / s2, -1 / s2, -1 / s2, 3 / s2], 1e-6, 0, 'norm-pix');
    // a constant patch maps to 0 (no division by zero)
    const c = normPixTarget(tf.fill([1, 1, 4], 5));
    assertClose(c.dataSync(), [0, 0, 0, 0], 0, 0, 'constant patch');
    tf.dispose([t, c]);
  });

  it('averages per-patch MSE over masked patches only; visible-patch predictions do not move it', () => {
    const pred = tf.tensor3d([1, 1, 2, 2, 3, 3, 0, 0], [1, 4, 2]);
    const target = tf.zeros([1, 4, 2]) as tf.Tensor3D;
    const mask = tf.tensor2d([[1, 0, 1, 0]]);
    const loss = maskedPatchMse(pred, target, mask).dataSync()[0];
    assertClose([loss], [(1 + 9) / 2], 1e-6, 0, 'masked loss');
    // change the prediction of the visible patch 1 a lot: loss unchanged
    const pred2 = tf.tensor3d([1, 1, 100, -50, 3, 3, 7, 7], [1, 4, 2]);
    assert.equal(maskedPatchMse(pred2, target, mask).dataSync()[0], loss);
    // and the gradient w.r.t. visible predictions is zero
    const g = tf.grad((p: tf.Tensor) => maskedPatchMse(p as tf.Tensor3D, target, mask))(pred).dataSync();
    assert.deepEqual([g[2], g[3], g[6], g[7]], [0, 0, 0, 0]);
    assert.ok(g[0] !== 0 && g[4] !== 0);
    assertClose(perPatchMse(pred, target).dataSync(), [1, 4, 9, 0], 1e-6);
    tf.dispose([pred, target, mask, pred2]);
  });

  it('full model: changing the prediction input on a visible patch leaves the loss unchanged', () => {
    const mae = createMae('mae_vit_base_patch16', { encoder: MICRO, decoder: MICRO_DEC, seed: 1 });
    const x = tf.tensor4d(randArray(2 * 16 * 16 * 3, 4), [2, 16, 16, 3]);
    const plan = randomMasking(new Rng(2), 2, 16, 0.75);
    const out = tf.tidy(() => {
      const o = maeForward(mae, x, { plan });
      // perturb the image on a visible patch only: target of that patch changes, encoder input changes too, so
      // instead compare with a prediction tensor edited on visible patches
      const v = plan.idsShuffle[0]; // a visible token of sample 0
      const edit = tf.buffer(o.pred.shape, 'float32', o.pred.dataSync().slice() as Float32Array);
      for (let k = 0; k < o.pred.shape[2]; k++) edit.set(123, 0, v, k);
      const target = normPixTarget(patchify(x, 4)) as tf.Tensor3D;
      return [o.loss.dataSync()[0], maskedPatchMse(edit.toTensor() as tf.Tensor3D, target, o.mask).dataSync()[0]];
    });
    assertClose([out[1]], [out[0]], 1e-6, 0, 'loss with a visible prediction edited');
    tf.dispose(x);
    disposeMae(mae);
  });
});

describe('mae forward (PyTorch golden fixture)', () => {
  let mae: Mae;
  const f = loadFixture().rgb;
  const c = f.config as Record<string, number>;
  before(() => {
    mae = createMae('mae_vit_base_patch16', {
      encoder: { imgSize: [c.H, c.W], patchSize: c.p, inChans: c.C, embedDim: c.D, depth: c.depth, numHeads: c.heads, mlpRatio: c.mlpRatio },
      decoder: { embedDim: c.Dd, depth: c.ddepth, numHeads: c.dheads, mlpRatio: c.dmlpRatio },
      maskRatio: c.ratio,
    });
  });
  after(() => disposeMae(mae));

  it('builds the fixed sin-cos tables of the non-square grid like the reference', () => {
    const v = maeVariables(mae);
    assertClose(v.get('pos_embed')!.dataSync(), f.params.pos_embed.values, 1e-6, 0, 'pos_embed');
    assertClose(v.get('decoder_pos_embed')!.dataSync(), f.params.decoder_pos_embed.values, 1e-6, 0, 'decoder_pos_embed');
    assert.equal(v.get('pos_embed')!.trainable, false);
    assert.equal(v.get('decoder_pos_embed')!.trainable, false);
  });

  it('patchify, norm-pix target, latent, prediction and both losses match PyTorch', async () => {
    assignFixtureParams(maeVariables(mae), f.params);
    const x = tf.tensor4d(f.images, [c.B, c.H, c.W, c.C]);
    const plan = planFromShuffle('random', c.B, f.ids_shuffle.length / c.B, c.lenKeep, Int32Array.from(f.ids_shuffle));
    await noLeak(() =>
      tf.tidy(() => {
        const pt = patchify(x, c.p);
        assertClose(pt.dataSync(), f.patches!, 1e-6, 0, 'patchify');
        assertClose(normPixTarget(pt).dataSync(), f.target!, 2e-5, 0, 'norm-pix target');
        const o = maeForward(mae, x, { plan });
        assertClose(o.latent.dataSync(), f.latent, 1e-4, 0, 'latent');
        assertClose(o.pred.dataSync(), f.pred, 1e-4, 0, 'pred');
        assertClose(o.mask.dataSync(), f.mask, 0, 0, 'mask');
        assertClose([o.loss.dataSync()[0]], [f.loss], 1e-5, 1e-5, 'loss (norm-pix)');
        const raw = maeForward({ ...mae, config: { ...mae.config, normPixLoss: false } }, x, { plan });
        assertClose([raw.loss.dataSync()[0]], [f.loss_raw!], 1e-5, 1e-5, 'loss (pixels)');
      }),
    );
    x.dispose();
  });
});

describe('mae model', () => {
  it('names every parameter like the MAE checkpoint and counts MAE ViT-L/16 + decoder exactly', () => {
    const mae = createMae('mae_vit_large_patch16', { skipInit: true });
    const counts = maeParamCounts(mae);
    // encoder 303,301,632 (ViT-L/16, the paper's 303.3M); decoder: embed 1024·512+512, mask 512, pos 197·512, 8 blocks
    // (12·512²+13·512 each), norm 1024, pred 512·768+768
    assert.equal(counts.encoder, 303_301_632);
    const block = 12 * 512 * 512 + 13 * 512;
    assert.equal(counts.decoder, 1024 * 512 + 512 + 512 + 197 * 512 + 8 * block + 1024 + 512 * 768 + 768);
    const v = maeVariables(mae);
    assert.deepEqual(v.get('decoder_pred.weight')!.shape, [512, 768]);
    assert.deepEqual(v.get('mask_token')!.shape, [1, 1, 512]);
    assert.deepEqual(v.get('decoder_blocks.7.attn.qkv.weight')!.shape, [512, 1536]);
    disposeMae(mae);
  });

  it('saves and loads through the checkpoint layer under the MAE checkpoint names (same loss after reload)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mae-ckpt-'));
    const file = path.join(dir, 'mae.safetensors');
    const a = createMae('mae_vit_base_patch16', { encoder: MICRO, decoder: MICRO_DEC, seed: 1 });
    const b = createMae('mae_vit_base_patch16', { encoder: MICRO, decoder: MICRO_DEC, seed: 2 });
    const x = tf.tensor4d(randArray(2 * 16 * 16 * 3, 8), [2, 16, 16, 3]);
    const plan = randomMasking(new Rng(4), 2, 16, 0.75);
    saveCheckpoint(file, { params: maeVariables(a) });
    const rep = loadCheckpoint(file, { params: maeVariables(b) });
    assert.ok(rep.loaded.includes('decoder_pred.weight') && rep.loaded.includes('mask_token'));
    const [la, lb] = tf.tidy(() => [maeForward(a, x, { plan }).loss.dataSync()[0], maeForward(b, x, { plan }).loss.dataSync()[0]]);
    assert.equal(lb, la);
    // an encoder-only ViT loads from the same file by ignoring the decoder keys
    const enc = createVit(a.config.encoder, {}, { seed: 9 });
    loadCheckpoint(file, { params: enc.params }, { ignore: /^(decoder_|mask_token)/ });
    assertClose(enc.params.blocks[1].attn.qkv.weight.dataSync(), a.encoder.params.blocks[1].attn.qkv.weight.dataSync(), 0);
    disposeVit(enc);
    fs.rmSync(dir, { recursive: true, force: true });
    tf.dispose(x);
    disposeMae(a);
    disposeMae(b);
  });

  it('runs at another resolution with fresh sin-cos tables (encoder and decoder)', () => {
    const mae = createMae('mae_vit_base_patch16', { encoder: MICRO, decoder: MICRO_DEC, seed: 3 });
    const x = tf.tensor4d(randArray(1 * 24 * 32 * 3, 2), [1, 24, 32, 3]);
    const before = tf.memory().numTensors;
    let predShape: number[] = [];
    let loss = NaN;
    tf.tidy(() => {
      const o = maeForward(mae, x, { rng: new Rng(1) });
      predShape = o.pred.shape;
      loss = o.loss.dataSync()[0];
    });
    assert.deepEqual(predShape, [1, 6 * 8, 48]);
    assert.ok(Number.isFinite(loss));
    assert.equal(tf.memory().numTensors, before);
    x.dispose();
    disposeMae(mae);
  });

  it('rejects images of the wrong size, channel count and an encoder with a learned position table', () => {
    const mae = createMae('mae_vit_base_patch16', { encoder: MICRO, decoder: MICRO_DEC });
    const rng = new Rng(1);
    const bad = tf.zeros([1, 18, 16, 3]) as tf.Tensor4D;
    assert.throws(() => tf.tidy(() => void maeForward(mae, bad, { rng })), /image size 18x16 is not divisible by the patch size 4/);
    const bad2 = tf.zeros([1, 16, 16, 4]) as tf.Tensor4D;
    assert.throws(() => tf.tidy(() => void maeForward(mae, bad2, { rng })), /expected 3 channels/);
    const ok = tf.zeros([1, 16, 16, 3]) as tf.Tensor4D;
    assert.throws(() => tf.tidy(() => void maeForward(mae, ok)), /pass a mask plan \(opts.plan\) or an rng/);
    const plan = randomMasking(new Rng(1), 2, 16, 0.75);
    assert.throws(() => tf.tidy(() => maeEncode(mae, ok, plan, makeEnv())), /mask plan is for \[2, 16\] tokens, images give \[1, 16\]/);
    assert.throws(
      () => createMae('vit_base_patch16_224', { encoder: MICRO }),
      /MAE encoder: VitConfig.posEmbed must be 'sincos'/,
    );
    assert.throws(() => createMae('mae_vit_base_patch16', { decoder: { embedDim: 30, numHeads: 4 } }), /DecoderConfig.embedDim: 30 is not divisible by numHeads 4/);
    assert.throws(() => createMae('mae_vit_base_patch16', { decoder: { width: 3 } as never }), /DecoderConfig: unknown key 'width'/);
    tf.dispose([bad, bad2, ok]);
    disposeMae(mae);
  });
});
