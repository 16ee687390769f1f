/**
 * MAE training: a micro MAE's loss falls over 50 steps on structured synthetic images, with no tensor left behind by
 * any step; the reconstruction views and PNG strip.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { Rng } from '../lib/rng';
import { createMae, maeForward, maeVariables, disposeMae, maeTarget, Mae } from '../lib/mae/mae';
import { maeReconstruction, disposeViews, reconPng, viewsStrip, toRgbPixels } from '../lib/mae/recon';
import { Optimizer, ADAMW_MAE } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { rampImages } from './mae-fixture';
import { maskedPatchMse } from '../lib/mae/loss';

function microMae(seed = 0): Mae {
  return createMae('mae_vit_base_patch16', {
    encoder: { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 4 },
    decoder: { embedDim: 32, depth: 1, numHeads: 4 },
    seed,
  });
}

describe('mae training', () => {
  it('a micro MAE learns structured images: loss falls over 50 steps, 0 tensors leaked per step', () => {
    const mae = microMae(0);
    const params = new Map([...maeVariables(mae)].filter(([, v]) => v.trainable));
    assert.ok(!params.has('pos_embed') && !params.has('decoder_pos_embed'), 'fixed sin-cos tables never train');
    const opt = new Optimizer(ADAMW_MAE, params);
    const data = rampImages(32, 16, 1);
    const losses: number[] = [];
    let live = -1;
    for (let step = 0; step < 50; step++) {
      const start = (step * 8) % 32;
      const batch = data.slice([start, 0, 0, 0], [8, 16, 16, 3]);
      const rng = Rng.derive(0, 'step', step);
      const r = trainStep({ params, optimizer: opt, lr: 2e-3, loss: () => maeForward(mae, batch, { rng, training: true }).loss });
      batch.dispose();
      losses.push(r.loss);
      const n = tf.memory().numTensors;
      if (step > 0) assert.equal(n, live, `step ${step} changed the number of live tensors (${live} → ${n})`);
      live = n;
    }
    const first = losses.slice(0, 5).reduce((a, b) => a + b) / 5;
    const last = losses.slice(-5).reduce((a, b) => a + b) / 5;
    // the trivial predictor (0 = the mean of every normalised patch) scores ≈ (V − 1)/V ≈ 0.98: learning the
    // structure must beat it by far, not just fit the output scale
    const trivial = tf.tidy(() => {
      const b = data.slice([0, 0, 0, 0], [8, 16, 16, 3]);
      const o = maeForward(mae, b, { rng: new Rng(1) });
      return maskedPatchMse(tf.zerosLike(o.pred), maeTarget(mae, b), o.mask).dataSync()[0];
    });
    assert.ok(last < 0.3 * first, `loss should fall clearly: first 5 mean ${first.toFixed(4)}, last 5 mean ${last.toFixed(4)}`);
    assert.ok(last < 0.5 * trivial, `loss ${last.toFixed(4)} should be well below the trivial predictor's ${trivial.toFixed(4)}`);
    opt.dispose();
    data.dispose();
    disposeMae(mae);
  });

  it('same seed ⇒ same losses (masking and init are reproducible)', () => {
    const run = (): number[] => {
      const mae = microMae(5);
      const x = rampImages(4, 16, 2);
      const out = [0, 1].map((s) => tf.tidy(() => maeForward(mae, x, { rng: Rng.derive(9, 'step', s) }).loss.dataSync()[0]));
      x.dispose();
      disposeMae(mae);
      return out;
    };
    assert.deepEqual(run(), run());
  });

  it('reconstruction views: masked view blanks removed patches, pasted view keeps visible ones; PNG strip', async () => {
    const mae = microMae(1);
    const x = rampImages(2, 16, 3);
    const before = tf.memory().numTensors;
    const v = maeReconstruction(mae, x, { rng: new Rng(4) });
    for (const t of [v.input, v.masked, v.reconstruction, v.pasted]) assert.deepEqual(t.shape, [2, 16, 16, 3]);
    assert.deepEqual(v.mask.shape, [2, 16, 16, 1]);
    const m = v.mask.dataSync();
    const inp = v.input.dataSync();
    const msk = v.masked.dataSync();
    const pst = v.pasted.dataSync();
    const rec = v.reconstruction.dataSync();
    let removed = 0;
    for (let i = 0; i < m.length; i++) {
      removed += m[i];
      for (let c = 0; c < 3; c++) {
        const k = i * 3 + c;
        if (m[i]) {
          assert.equal(msk[k], 0);
          assert.equal(pst[k], rec[k]);
        } else {
          assert.equal(msk[k], inp[k]);
          assert.equal(pst[k], inp[k]);
        }
      }
    }
    assert.equal(removed, 2 * 12 * 16, '12 of 16 patches (16 px each) removed per image');
    const px = toRgbPixels(v.input, { range: [-2, 2] }, 1);
    assert.equal(px.data.length, 16 * 16 * 3);
    const strip = viewsStrip(v, { range: [-2, 2], scale: 2, gap: 4 });
    assert.equal(strip.width, 4 * 32 + 3 * 4);
    assert.equal(strip.height, 32);
    const png = await reconPng(v, { range: [-2, 2], scale: 2 });
    assert.deepEqual(Array.from(png.slice(0, 8)), [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
    disposeViews(v);
    assert.equal(tf.memory().numTensors, before, 'views disposed, nothing else left');
    x.dispose();
    disposeMae(mae);
  });
});
