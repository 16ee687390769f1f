/**
 * Downstream models of the beyond-RGB experiments against PyTorch references written from the official fine-tuning
 * code (test/fixtures/gen_beyondrgb.py): the SatMAE group-channel and temporal classifiers (forward, pooling, loss and
 * every gradient), exact trainable counts (LoRA-r8 fine-tuning, M-ExPLoRA presets), the classifier built from a
 * (merged) pre-trained MAE, bad input.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { assertClose, noLeak, randArray } from './util';
import { loadBeyondFixture, assignRenamed, checkGrads, ModelCase } from './beyondrgb-fixture';
import {
  createSatMaeGroupVit,
  satMaeGroupVitForward,
  satMaeGroupVitVariables,
  satMaeGroupVitShapes,
  satMaeGroupVitFromMae,
  satMaeGroupVitParamCounts,
  disposeSatMaeGroupVit,
  SatMaeGroupVit,
} from '../lib/mae/satmae-group-vit';
import {
  createSatMaeTemporalVit,
  satMaeTemporalVitForward,
  satMaeTemporalVitVariables,
  satMaeTemporalVitParamCounts,
  satMaeTemporalVitShapes,
  satMaeTemporalVitFromMae,
  disposeSatMaeTemporalVit,
  SatMaeTemporalVit,
} from '../lib/mae/satmae-temporal-vit';
import { createSatMaeGroup, disposeSatMaeGroup, satMaeGroupEncode, satMaeGroupTokenCount } from '../lib/mae/satmae-group';
import { createSatMaeTemporal, disposeSatMaeTemporal, satMaeTemporalEncode, timestampValues } from '../lib/mae/satmae-temporal';
import { planFromShuffle } from '../lib/mae/masking';
import { crossEntropy } from '../lib/train/loss';
import { makeEnv } from '../lib/vit/forward';
import { vitShapes } from '../lib/peft/shapes';
import { planLora, createLora, qvTarget, loraHooks, disposeLora, loraConfig, ShapeLike } from '../lib/peft/lora';
import { classifyParams, selectTrainable } from '../lib/peft/trainable';
import { countExplora, exploraRecipe } from '../lib/peft/explora';
import { EXPLORA_PRESETS } from '../recipes/explora-presets';
import { flattenTree } from '../lib/tree';
import { FINETUNE_SPEC } from '../recipes/finetune';
import { setupExploraSatMaeGroup, setupExploraSatMaeTemporal, EXPLORA_MAE_PRESETS } from '../recipes/explora-mae';
import { Rng } from '../lib/rng';
import { BEYOND_RGB_SMOKE } from '../recipes/beyondrgb-smoke';

function groupFromCase(f: ModelCase): SatMaeGroupVit {
  const c = f.config as Record<string, number>;
  return createSatMaeGroupVit('satmae_group_vit_base_patch8', {
    imgSize: c.H,
    patchSize: c.p,
    embedDim: c.D,
    depth: c.depth,
    numHeads: c.heads,
    mlpRatio: c.mlpRatio,
    channelEmbedDim: c.channelEmbedDim,
    numClasses: c.numClasses,
    pool: f.config.pool as 'avg' | 'cls',
    dropPathRate: 0.1, // eval forward: no drop-path
  });
}

function temporalFromCase(f: ModelCase): SatMaeTemporalVit {
  const c = f.config as Record<string, number>;
  return createSatMaeTemporalVit('satmae_temporal_vit_base_patch16', {
    imgSize: c.H,
    patchSize: c.p,
    inChans: c.C,
    embedDim: c.D,
    depth: c.depth,
    numHeads: c.heads,
    mlpRatio: c.mlpRatio,
    timeEmbedDim: c.timeEmbedDim,
    numClasses: c.numClasses,
    pool: f.config.pool as 'avg' | 'cls',
  });
}

/** LoRA-r8 fine-tuning count of a shape map: LoRA on Q,V of every block + head (the protocol's FINETUNE_SPEC). */
function finetuneCount(shapes: Map<string, ShapeLike>): { trainable: number; lora: number; total: number } {
  const plan = planLora(shapes, loraConfig({ rank: 8, alpha: 1, targets: [qvTarget()] }));
  const entries = new Map(shapes);
  let lora = 0;
  for (const m of plan) {
    for (const s of m.slices) {
      entries.set(s.pathA, { shape: [m.din, m.rank] });
      entries.set(s.pathB, { shape: [m.rank, s.width] });
      lora += m.din * m.rank + m.rank * s.width;
    }
  }
  const sum = classifyParams(entries, FINETUNE_SPEC).summary;
  return { trainable: sum.trainable, lora, total: sum.total };
}

describe('SatMAE group-channel classifier (models_vit_group_channels.py)', () => {
  for (const name of ['group_vit_avg', 'group_vit_cls'] as const) {
    it(`matches the PyTorch reference (${name.slice(10)} pool): 13 bands in, tokens, pooled, logits, loss${name.endsWith('avg') ? ', every gradient' : ''}`, async () => {
      const f = loadBeyondFixture()[name];
      const c = f.config as Record<string, number>;
      const m = groupFromCase(f);
      const vars = satMaeGroupVitVariables(m);
      assignRenamed(vars, f.params);
      const x = tf.tensor4d(f.images, [c.B, c.H, c.W, 13]);
      const y = tf.tensor1d(f.labels, 'int32');
      await noLeak(() =>
        tf.tidy(() => {
          const o = satMaeGroupVitForward(m, x);
          assertClose(o.prenorm.dataSync(), f.prenorm, 1e-4, 1e-4, 'prenorm tokens');
          assertClose(o.pooled.dataSync(), f.pooled, 1e-4, 1e-4, 'pooled');
          assertClose(o.logits!.dataSync(), f.logits, 1e-4, 1e-4, 'logits');
          assertClose([crossEntropy(o.logits!, y).dataSync()[0]], [f.loss], 1e-5, 1e-5, 'loss');
        }),
      );
      if (f.grads) {
        await noLeak(() => checkGrads(vars, () => crossEntropy(satMaeGroupVitForward(m, x).logits!, y), f.grads!));
      }
      tf.dispose([x, y]);
      disposeSatMaeGroupVit(m);
    });
  }

  it('shape map == created tree; ViT-L/8 encoder 303,083,264 parameters; LoRA-r8 fine-tuning trains 786,432 + head', () => {
    const small = { embedDim: 48, depth: 2, numHeads: 2, channelEmbedDim: 16, imgSize: 16, numClasses: 7 } as const;
    const m = createSatMaeGroupVit('satmae_group_vit_base_patch8', small);
    const created = new Map([...satMaeGroupVitVariables(m)].map(([k, v]) => [k, [...v.shape]]));
    const shapes = new Map([...satMaeGroupVitShapes('satmae_group_vit_base_patch8', small)].map(([k, v]) => [k, [...v.shape]]));
    assert.deepEqual([...shapes.keys()], [...created.keys()]);
    assert.deepEqual(shapes, created);
    disposeSatMaeGroupVit(m);
    const D = 1024;
    const L = shapes.size > 0 ? 144 : 0; // 96 px, patch 8
    const block = 12 * D * D + 13 * D;
    const encoder = 24 * block + (4 + 4 + 2) * 64 * D + 3 * D + D + (1 + L) * (D - 256) + 3 * 256 + 256 + 2 * D;
    const sL = satMaeGroupVitShapes('satmae_group_vit_large_patch8');
    let total = 0;
    for (const v of sL.values()) total += v.shape.reduce((a, b) => a * b, 1);
    assert.equal(total - (D * 62 + 62), encoder);
    assert.equal(encoder, 303_083_264);
    const ft = finetuneCount(sL);
    assert.equal(ft.lora, 24 * 2 * 2 * 8 * D);
    assert.equal(ft.trainable, 786_432 + 62 * D + 62, 'fMoW-Sentinel (62 classes): LoRA 786,432 + head 63,550');
    assert.equal(finetuneCount(satMaeGroupVitShapes('satmae_group_vit_large_patch8', { numClasses: 10 })).trainable, 786_432 + 10 * D + 10, 'EuroSAT 13-band (10 classes)');
  });

  it('from a pre-trained group MAE with ExPLoRA adapters: merged copy, classifier CLS == MAE encoder CLS with hooks; 0 leaks', async () => {
    const mae = createSatMaeGroup('satmae_group_vit_base_patch8', {
      imgSize: 16, patchSize: 4, embedDim: 32, depth: 3, numHeads: 4, channelEmbedDim: 8, decoder: { embedDim: 16, depth: 1, numHeads: 2 }, decoderChannelEmbedDim: 4,
    }, { seed: 3 });
    const run = setupExploraSatMaeGroup(mae, exploraRecipe('M-ExPLoRA-[1,L]-r4', { unfreezeEmbed: true, decoderRank: 2 }), { seed: 1 });
    // give the adapters non-zero B so the merge matters
    for (const [k, v] of run.explora.lora!.params ? flattenTree(run.explora.lora!.params) : new Map()) {
      if (k.includes('lora_B')) v.assign(tf.tensor(randArray(v.size, 7)).reshape(v.shape).mul(0.3));
    }
    const clf = satMaeGroupVitFromMae(mae, { pool: 'cls', numClasses: 3 }, { lora: run.explora.lora });
    assert.equal(satMaeGroupVitParamCounts(clf).encoder, [...satMaeGroupVitVariables(clf)].filter(([k]) => !k.startsWith('head.')).reduce((s, [, v]) => s + v.size, 0));
    const x = tf.tensor4d(randArray(2 * 16 * 16 * 13, 5), [2, 16, 16, 13]);
    const N = satMaeGroupTokenCount(mae);
    const ids = new Int32Array(2 * N);
    for (let b = 0; b < 2; b++) for (let j = 0; j < N; j++) ids[b * N + j] = j;
    const plan = planFromShuffle('random', 2, N, N, ids); // keep everything, in order
    await noLeak(() =>
      tf.tidy(() => {
        const latent = satMaeGroupEncode(mae, x, plan, makeEnv({ hooks: run.hooks }));
        const cls = latent.slice([0, 0, 0], [2, 1, 32]).reshape([2, 32]);
        const o = satMaeGroupVitForward(clf, x);
        assertClose(o.pooled.dataSync(), cls.dataSync(), 2e-5, 1e-4, 'classifier CLS vs MAE encoder CLS');
        // without the adapters the MAE differs (the merge is not a no-op)
        const plain = satMaeGroupEncode(mae, x, plan, makeEnv()).slice([0, 0, 0], [2, 1, 32]);
        assert.ok(tf.max(tf.abs(tf.sub(plain.reshape([2, 32]), cls))).dataSync()[0] > 1e-3);
      }),
    );
    // the MAE's tree is untouched by the merge (new variables)
    assert.ok(!flattenTree(clf.params).get('blocks.1.attn.qkv.weight')!.dataSync().every((v, i) => v === mae.params.blocks[1].attn.qkv.weight.dataSync()[i]));
    x.dispose();
    disposeSatMaeGroupVit(clf);
    run.dispose();
    disposeSatMaeGroup(mae);
  });

  it('bad input: band count, image size, frames for a single-date model — errors name the shape and the expected bands', () => {
    const m = createSatMaeGroupVit('satmae_group_vit_base_patch8', { embedDim: 32, depth: 1, numHeads: 2, channelEmbedDim: 8, imgSize: 16, numClasses: 2 });
    tf.tidy(() => {
      assert.throws(() => satMaeGroupVitForward(m, tf.zeros([1, 16, 16, 12]) as tf.Tensor4D), /got 12 bands; expected 13 \(B1, B2.*B12; B1, B9, B10 dropped here\) or the 10 kept bands/);
      assert.throws(() => satMaeGroupVitForward(m, tf.zeros([1, 24, 24, 13]) as tf.Tensor4D), /image size 24x24 differs from the configured 16x16/);
      assert.throws(() => satMaeGroupVitForward(m, tf.zeros([1, 3, 16, 16, 13]) as unknown as tf.Tensor4D), /expected images \[B, H, W, C\]/);
    });
    assert.throws(() => createSatMaeGroupVit('satmae_group_vit_base_patch8', { embedDim: 32, depth: 1, numHeads: 2, channelEmbedDim: 30 }), /embedDim 32 − channelEmbedDim 30 = 2 must be a positive multiple of 4/);
    assert.throws(() => createSatMaeGroupVit('satmae_group_vit_base_patch8', { groups: [['B2', 'B3']] }), /kept band\(s\) B4, B5, B6, B7, B8, B8A, B11, B12 belong to no group/);
    disposeSatMaeGroupVit(m);
  });
});

describe('SatMAE temporal classifier (models_vit_temporal.py)', () => {
  for (const name of ['temporal_vit_avg', 'temporal_vit_cls'] as const) {
    it(`matches the PyTorch reference (${name.slice(13)} pool): shared patch embedding, time codes, logits, loss${name.endsWith('avg') ? ', every gradient' : ''}`, async () => {
      const f = loadBeyondFixture()[name];
      const c = f.config as Record<string, number>;
      const m = temporalFromCase(f);
      const vars = satMaeTemporalVitVariables(m);
      const counts = satMaeTemporalVitParamCounts(m);
      assert.equal(counts.total, [...vars.values()].reduce((s, v) => s + v.size, 0));
      assert.equal(counts.encoder, [...vars].filter(([k]) => !k.startsWith('head.')).reduce((s, [, v]) => s + v.size, 0));
      assignRenamed(vars, f.params);
      const x = tf.tensor5d(f.images, [c.B, c.T, c.H, c.W, c.C]);
      const y = tf.tensor1d(f.labels, 'int32');
      const ts = f.timestamps!;
      await noLeak(() =>
        tf.tidy(() => {
          const o = satMaeTemporalVitForward(m, x, ts);
          assertClose(o.prenorm.dataSync(), f.prenorm, 1e-4, 1e-4, 'prenorm tokens');
          assertClose(o.pooled.dataSync(), f.pooled, 1e-4, 1e-4, 'pooled');
          assertClose(o.logits!.dataSync(), f.logits, 1e-4, 1e-4, 'logits');
          assertClose([crossEntropy(o.logits!, y).dataSync()[0]], [f.loss], 1e-5, 1e-5, 'loss');
        }),
      );
      if (f.grads) await noLeak(() => checkGrads(vars, () => crossEntropy(satMaeTemporalVitForward(m, x, ts).logits!, y), f.grads!));
      tf.dispose([x, y]);
      disposeSatMaeTemporalVit(m);
    });
  }

  it('shape map == created tree; ViT-L/16 LoRA-r8 fine-tuning trains 786,432 + head; M-ExPLoRA-[L]-r32 = 15,708,160 encoder', () => {
    const small = { embedDim: 48, depth: 2, numHeads: 2, timeEmbedDim: 4, imgSize: 32, numClasses: 7 } as const;
    const m = createSatMaeTemporalVit('satmae_temporal_vit_base_patch16', small);
    const created = new Map([...satMaeTemporalVitVariables(m)].map(([k, v]) => [k, [...v.shape]]));
    const shapes = new Map([...satMaeTemporalVitShapes('satmae_temporal_vit_base_patch16', small)].map(([k, v]) => [k, [...v.shape]]));
    assert.deepEqual([...shapes.keys()], [...created.keys()]);
    assert.deepEqual(shapes, created);
    disposeSatMaeTemporalVit(m);
    const ft = finetuneCount(satMaeTemporalVitShapes('satmae_temporal_vit_large_patch16'));
    assert.equal(ft.trainable, 786_432 + 62 * 1024 + 62);
    // the temporal ExPLoRA preset: rank 32 (was r64); [L] unfrozen, norms, CLS
    const r = EXPLORA_PRESETS['M-ExPLoRA-[L]-r32'];
    assert.equal(r.rank, 32);
    assert.equal(EXPLORA_MAE_PRESETS['M-ExPLoRA-[L]-r32'].recipe, r);
    assert.equal(countExplora(vitShapes('mae_vit_large_patch16'), r).trainableEncoder, 12_596_224 + 23 * 2 * 2 * 32 * 1024 + 23 * 4 * 1024 + 2 * 1024 + 1024);
    assert.equal(countExplora(vitShapes('mae_vit_large_patch16'), r).trainableEncoder, 15_708_160);
  });

  it('setupExploraSatMaeTemporal defaults to the r32 preset; the classifier from the merged MAE reproduces its CLS', async () => {
    const mae = createSatMaeTemporal('satmae_temporal_vit_base_patch16', {
      imgSize: 16, patchSize: 4, embedDim: 64, depth: 2, numHeads: 4, timeEmbedDim: 4, decoder: { embedDim: 34, depth: 1, numHeads: 2 }, decoderTimeEmbedDim: 2,
    }, { seed: 4 });
    const run = setupExploraSatMaeTemporal(mae);
    const mods = [...run.explora.lora!.modules.values()];
    assert.ok(mods.length > 0 && mods.every((mm) => mm.rank === 32), 'default temporal preset rank 32');
    for (const [k, v] of flattenTree(run.explora.lora!.params)) if (k.includes('lora_B')) v.assign(tf.tensor(randArray(v.size, 9)).reshape(v.shape).mul(0.5));
    const clf = satMaeTemporalVitFromMae(mae, { pool: 'cls', numClasses: 4 }, { lora: run.explora.lora });
    const B = 2;
    const x = tf.tensor5d(randArray(B * 3 * 16 * 16 * 3, 11), [B, 3, 16, 16, 3]);
    const ts = [[[13, 6, 14], [14, 1, 10], [16, 8, 15]], [[3, 0, 0], [3, 11, 23], [10, 5, 7]]];
    const N = 3 * 16;
    const ids = new Int32Array(B * N);
    for (let b = 0; b < B; b++) for (let j = 0; j < N; j++) ids[b * N + j] = j;
    const plan = planFromShuffle('random', B, N, N, ids);
    await noLeak(() =>
      tf.tidy(() => {
        const latent = satMaeTemporalEncode(mae, x, timestampValues(ts, B, 3), plan, makeEnv({ hooks: run.hooks }));
        const o = satMaeTemporalVitForward(clf, x, ts);
        assertClose(o.pooled.dataSync(), latent.slice([0, 0, 0], [B, 1, 64]).dataSync(), 2e-5, 1e-4, 'classifier CLS vs MAE encoder CLS');
      }),
    );
    x.dispose();
    disposeSatMaeTemporalVit(clf);
    run.dispose();
    disposeSatMaeTemporal(mae);
  });

  it('LoRA fine-tuning on the classifiers: identity at init, only LoRA + head move, no leaks', async () => {
    const m = createSatMaeTemporalVit('satmae_temporal_vit_base_patch16', { embedDim: 48, depth: 2, numHeads: 2, timeEmbedDim: 4, imgSize: 16, patchSize: 8, numClasses: 3, dropPathRate: 0.1 });
    const lora = createLora(m.params, { rank: 4, alpha: 1, targets: [qvTarget()] }, { seed: 2 });
    const sel = selectTrainable([m.params, lora.params], FINETUNE_SPEC);
    const hooks = { linear: loraHooks(lora) };
    const x = tf.tensor5d(randArray(2 * 3 * 16 * 16 * 3, 3), [2, 3, 16, 16, 3]);
    const ts = [[[1, 2, 3], [2, 3, 4], [3, 4, 5]], [[5, 1, 2], [6, 1, 2], [7, 1, 2]]];
    const y = tf.tensor1d([0, 2], 'int32');
    tf.tidy(() => {
      const a = satMaeTemporalVitForward(m, x, ts).logits!.dataSync();
      const b = satMaeTemporalVitForward(m, x, ts, { hooks }).logits!.dataSync();
      assert.deepEqual(Array.from(a), Array.from(b), 'B = 0: the adapters are the identity at init');
    });
    const before = new Map([...satMaeTemporalVitVariables(m)].map(([k, v]) => [k, v.dataSync().slice()]));
    const opt = tf.train.sgd(0.5);
    const rng = new Rng(1);
    const live = tf.memory().numTensors;
    for (let s = 0; s < 2; s++) {
      tf.tidy(() => {
        const { grads, value } = tf.variableGrads(() => crossEntropy(satMaeTemporalVitForward(m, x, ts, { hooks, training: true, rng: rng.fork(`s${s}`) }).logits!, y), [...sel.trainable.values()]);
        opt.applyGradients(grads);
        value.dispose();
      });
      assert.equal(tf.memory().numTensors, live, 'a step leaked tensors');
    }
    for (const [k, v] of satMaeTemporalVitVariables(m)) {
      const moved = v.dataSync().some((val, i) => val !== before.get(k)![i]);
      assert.equal(moved, sel.trainable.has(k), `${k}: ${moved ? 'moved' : 'did not move'}`);
    }
    assert.ok([...sel.trainable.keys()].every((k) => k.includes('lora_') || k.startsWith('head.')));
    opt.dispose();
    tf.dispose([x, y]);
    disposeLora(lora);
    disposeSatMaeTemporalVit(m);
  });

  it('bad input: frame count, band count, timestamps shape', () => {
    const m = createSatMaeTemporalVit('satmae_temporal_vit_base_patch16', { embedDim: 48, depth: 1, numHeads: 2, timeEmbedDim: 4, imgSize: 16, patchSize: 8, numClasses: 2 });
    tf.tidy(() => {
      const ts = [[[1, 2, 3], [2, 3, 4], [3, 4, 5]]];
      assert.throws(() => satMaeTemporalVitForward(m, tf.zeros([1, 2, 16, 16, 3]) as tf.Tensor5D, ts), /expected 3 frames, got 2/);
      assert.throws(() => satMaeTemporalVitForward(m, tf.zeros([1, 3, 16, 16, 4]) as tf.Tensor5D, ts), /expected 3 bands per frame, got 4/);
      assert.throws(() => satMaeTemporalVitForward(m, tf.zeros([1, 3, 16, 16, 3]) as tf.Tensor5D, [[[1, 2], [2, 3], [3, 4]]]), /expected \[1\]\[3\]\[3\] \(year offset, month − 1, hour\)/);
    });
    disposeSatMaeTemporalVit(m);
  });
});

describe('beyond-RGB smoke presets (recipes/beyondrgb-smoke.ts)', () => {
  it('every smoke model and recipe builds with the shared source-MAE backbone; ExPLoRA trains what the recipes say', () => {
    const P = BEYOND_RGB_SMOKE;
    const ms = createSatMaeGroup('satmae_group_vit_base_patch8', { ...P.backbone, imgSize: P.multispectral.imgSize, patchSize: P.multispectral.patchSize, channelEmbedDim: P.multispectral.channelEmbedDim, decoder: P.decoder, decoderChannelEmbedDim: P.multispectral.decoderChannelEmbedDim });
    assert.equal(satMaeGroupTokenCount(ms), 48);
    const run = setupExploraSatMaeGroup(ms, P.multispectral.explora.recipe);
    // blocks 1 and L, r4 on the 4 others, norms, cls, group patch embeddings, decoder r4 + norms + per-group heads
    const D = 96;
    const block = 12 * D * D + 13 * D;
    const enc = 2 * block + 4 * 2 * 2 * 4 * D + 4 * 4 * D + 2 * D + D + (4 + 4 + 2) * 64 * D + 3 * D;
    assert.equal(run.explora.selection.summary.trainableEncoder, enc);
    run.dispose();
    disposeSatMaeGroup(ms);
    const tm = createSatMaeTemporal('satmae_temporal_vit_base_patch16', { ...P.backbone, imgSize: P.temporal.imgSize, timeEmbedDim: P.temporal.timeEmbedDim, decoder: P.decoder, decoderTimeEmbedDim: P.temporal.decoderTimeEmbedDim });
    const trun = setupExploraSatMaeTemporal(tm, P.temporal.explora.recipe);
    assert.ok([...trun.explora.lora!.modules.values()].every((mm) => mm.rank === 4));
    trun.dispose();
    disposeSatMaeTemporal(tm);
    assert.equal(P.seeds.length, 3);
    for (const k of ['multispectral', 'temporal', 'wilds', 'spacenet'] as const) {
      assert.ok(P[k].finetune.steps > 0 && P[k].finetune.batch > 0 && P[k].finetune.rank > 0);
      assert.ok(P[k].explora.steps > 0);
    }
    assert.equal(P.wilds.explora.recipe.rank, 8);
    assert.equal(P.wilds.explora.recipe.decoderRank, 2);
  });
});
