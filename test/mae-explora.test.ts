/**
 * ExPLoRA with the MAE objective: exact trainable counts (ViT-L/16 M-[L]-r64 = 18,722,816 encoder parameters;
 * SatMAE group ViT-L/8 M-[1,L]-r32 with patch embeddings), which parameters train, the optimisation recipe, identity
 * at init, only trainable parameters move, no leaks per step, merge == hooks.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { assertClose, maxAbsDiff } from './util';
import { rampImages } from './mae-fixture';
import { Rng } from '../lib/rng';
import { createMae, maeForward, maeEncode, maeVariables, disposeMae, maePlan } from '../lib/mae/mae';
import { createSatMaeGroup, disposeSatMaeGroup, satMaeGroupForward, satMaeGroupPlan } from '../lib/mae/satmae-group';
import { createSatMaeTemporal, disposeSatMaeTemporal, satMaeTemporalForward, satMaeTemporalPlan, satMaeTemporalVariables } from '../lib/mae/satmae-temporal';
import {
  setupExploraMae,
  setupExploraSatMaeGroup,
  setupExploraSatMaeTemporal,
  mergeExploraMaeEncoder,
  exploraMaeSchedule,
  exploraMaeLr,
  exploraMaeTrain,
  EXPLORA_MAE_TRAIN,
} from '../recipes/explora-mae';
import { exploraRecipe } from '../lib/peft/explora';
import { formatTrainSummary } from '../lib/peft/trainable';
import { scheduleAt } from '../lib/train/schedule';
import { trainLoop } from '../lib/train/step';
import { makeEnv } from '../lib/vit/forward';
import { disposeTree } from '../lib/tree';

const MICRO = { imgSize: 16, patchSize: 4, embedDim: 32, depth: 3, numHeads: 4 } as const;
const MICRO_DEC = { embedDim: 16, depth: 2, numHeads: 2 } as const;

describe('ExPLoRA-MAE', () => {
  it('ViT-L/16 M-ExPLoRA-[L]-r64: 18,722,816 trainable encoder parameters; decoder r8 LoRA + norms; embed/pred/mask frozen', () => {
    const mae = createMae('mae_vit_large_patch16', { skipInit: true });
    const run = setupExploraMae(mae, 'M-ExPLoRA-[L]-r64');
    const s = run.explora.selection.summary;
    assert.equal(s.trainableEncoder, 18_722_816, formatTrainSummary(s));
    // + decoder: LoRA r8 on Q,V of 8 blocks (8·2·(512·8 + 8·512)) + 8·2 LayerNorms + decoder_norm
    assert.equal(s.trainable, 18_722_816 + 8 * 2 * 2 * 512 * 8 + 8 * 4 * 512 + 2 * 512);
    const lora = run.explora.lora!;
    const enc = [...lora.modules.values()].filter((m) => m.site.startsWith('blocks.'));
    const dec = [...lora.modules.values()].filter((m) => m.site.startsWith('decoder_blocks.'));
    assert.equal(enc.length, 23);
    assert.ok(!lora.modules.has('blocks.23.attn.qkv'), 'the unfrozen block gets no LoRA');
    assert.ok(enc.every((m) => m.rank === 64 && m.scale === 1 / 64));
    assert.equal(dec.length, 8);
    assert.ok(dec.every((m) => m.rank === 8 && m.scale === 1 / 8));
    const t = run.trainable;
    for (const k of ['cls_token', 'blocks.23.attn.qkv.weight', 'blocks.23.mlp.fc2.bias', 'blocks.0.norm1.weight', 'norm.bias', 'decoder_norm.weight', 'decoder_blocks.7.norm2.bias', 'blocks.0.attn.qkv.lora_B.v.weight', 'decoder_blocks.3.attn.qkv.lora_A.q.weight']) {
      assert.ok(t.has(k), `${k} should train`);
    }
    for (const k of ['decoder_embed.weight', 'decoder_pred.weight', 'mask_token', 'patch_embed.proj.weight', 'pos_embed', 'decoder_pos_embed', 'blocks.0.attn.qkv.weight', 'blocks.22.mlp.fc1.weight', 'decoder_blocks.0.attn.proj.weight']) {
      assert.ok(!t.has(k), `${k} should be frozen`);
      assert.equal(maeVariables(mae).get(k)!.trainable, false, `${k}.trainable flag`);
    }
    assert.deepEqual(run.optimizer.config, { kind: 'adamw', beta1: 0.9, beta2: 0.95, eps: 1e-8 });
    run.dispose();
    disposeMae(mae);
  });

  it('SatMAE group ViT-L/8 M-ExPLoRA-[1,L]-r32: 28,827,648 encoder + 870,016 decoder = 29,697,664 trainable (the paper\'s 29.7M)', () => {
    const m = createSatMaeGroup('satmae_group_vit_large_patch8', {}, { skipInit: true });
    const run = setupExploraSatMaeGroup(m);
    const s = run.explora.selection.summary;
    // 28,169,216 (MAE ViT-L [1,L]-r32, counted from shapes) + 658,432 (three group patch embeddings at p = 8)
    assert.equal(s.trainableEncoder, 28_169_216 + 658_432, formatTrainSummary(s));
    // decoder: LoRA r32 on Q,V of 8 blocks (8·2·(512·32 + 32·512)) + 8·2 LayerNorms + decoder_norm + decoder_pred.0-2
    const decoderPred = 512 * 4 * 64 + 4 * 64 + 512 * 4 * 64 + 4 * 64 + 512 * 2 * 64 + 2 * 64;
    assert.equal(s.trainable - s.trainableEncoder, 8 * 2 * 2 * 512 * 32 + 8 * 4 * 512 + 2 * 512 + decoderPred);
    assert.equal(s.trainable, 29_697_664, 'ExPLoRA mae/pretrain.py prints sum(requires_grad) of the whole MAE: 29.6977 M');
    for (const k of ['patch_embed.0.proj.weight', 'patch_embed.2.proj.bias', 'decoder_pred.1.weight', 'blocks.0.mlp.fc1.weight', 'blocks.23.attn.proj.bias']) assert.ok(run.trainable.has(k), k);
    for (const k of ['channel_embed', 'pos_embed', 'decoder_channel_embed', 'decoder_embed.weight', 'mask_token', 'blocks.5.attn.qkv.weight']) assert.ok(!run.trainable.has(k), k);
    assert.ok([...run.explora.lora!.modules.values()].every((mod) => mod.rank === 32 && mod.scale === 1 / 32));
    run.dispose();
    disposeSatMaeGroup(m);
  });

  it('optimisation recipe: lr = blr·batch/256 = 1.8e-3, wd 0, warm-up then half-cycle cosine per iteration', () => {
    assert.equal(exploraMaeLr(), (4.5e-4 * 1024) / 256);
    assert.equal(EXPLORA_MAE_TRAIN.weightDecay, 0);
    const s = exploraMaeSchedule(100); // 100 iterations per epoch, 400 epochs, 1 warm-up epoch
    const lr = 1.8e-3;
    assertClose([scheduleAt(s, 0), scheduleAt(s, 50), scheduleAt(s, 100)], [0, lr / 2, lr], 1e-12);
    assertClose([scheduleAt(s, 100 + (40000 - 100) / 2), scheduleAt(s, 40000)], [lr / 2, 0], 1e-12);
    const t = exploraMaeTrain({ effectiveBatch: 256, blr: 1e-3 });
    assert.equal(exploraMaeLr(t), 1e-3);
    assert.throws(() => exploraMaeTrain({ batch: 3 } as never), /ExploraMaeTrain: unknown key 'batch'/);
    assert.throws(() => exploraMaeSchedule(0), /itersPerEpoch must be a positive integer/);
  });

  it('micro MAE: identity at init, only trainable parameters move, 0 leaks per step, merged encoder == hooks', async () => {
    const mae = createMae('mae_vit_base_patch16', { encoder: MICRO, decoder: MICRO_DEC, seed: 2 });
    const run = setupExploraMae(mae, exploraRecipe('M-ExPLoRA-[L]-r4', { decoderRank: 2 }), { seed: 1, train: { effectiveBatch: 8, blr: 0.05 } });
    const x = rampImages(8, 16, 5);
    const plan = maePlan(mae, x, new Rng(3));
    // identity at init: B = 0 ⇒ same loss with and without the adapters
    const [l0, l1] = tf.tidy(() => [maeForward(mae, x, { plan }).loss.dataSync()[0], maeForward(mae, x, { plan, hooks: run.hooks }).loss.dataSync()[0]]);
    assert.equal(l0, l1);
    const all = maeVariables(mae);
    const snapshot = new Map([...all].map(([k, v]) => [k, v.dataSync().slice()]));
    const loraB0 = run.explora.lora!.params;
    let live = -1;
    const infos = await trainLoop({
      params: run.trainable,
      optimizer: run.optimizer,
      steps: 6,
      seed: 0,
      lr: run.schedule(2),
      batch: () => x.clone(),
      loss: (b, rng) => run.loss(b as tf.Tensor4D, rng),
      onStep: () => {
        const n = tf.memory().numTensors;
        if (live >= 0) assert.equal(n, live, 'a step leaked tensors');
        live = n;
      },
    });
    assert.ok(infos.every((i) => Number.isFinite(i.loss)));
    for (const [k, v] of all) {
      const moved = maxAbsDiff(v.dataSync(), snapshot.get(k)!) > 0;
      assert.equal(moved, run.trainable.has(k), `${k}: ${moved ? 'moved' : 'did not move'} but is ${run.trainable.has(k) ? 'trainable' : 'frozen'}`);
    }
    assert.ok(loraB0);
    const bq = run.trainable.get('blocks.0.attn.qkv.lora_B.q.weight')!;
    assert.ok(Math.max(...Array.from(bq.dataSync()).map(Math.abs)) > 0, 'LoRA B moved away from zero');
    // merge: encoder with merged weights and no hooks == encoder with hooks
    const merged = mergeExploraMaeEncoder(run);
    const d = tf.tidy(() => {
      const a = maeEncode(mae, x, plan, makeEnv({ hooks: run.hooks }));
      const b = maeEncode({ ...mae, encoder: merged }, x, plan, makeEnv());
      return maxAbsDiff(a.dataSync(), b.dataSync());
    });
    assert.ok(d < 1e-5, `merged vs hooks: max |Δ| = ${d}`);
    disposeTree(merged.params);
    x.dispose();
    run.dispose();
    disposeMae(mae);
  });

  it('gradient accumulation: accumIter micro-batches of effectiveBatch / accumIter images, one optimizer step each, no leaks', async () => {
    assert.throws(() => exploraMaeTrain({ effectiveBatch: 8, accumIter: 3 }), /ExploraMaeTrain.accumIter: effectiveBatch 8 is not a multiple of accumIter 3/);
    assert.throws(() => exploraMaeTrain({ optimizer: { kind: 'adamw', beta1: 0.9, beta2: 1, eps: 1e-8 } }), /ExploraMaeTrain.optimizer\(adamw\)\.beta2: expected a number in \[0, 1\), got 1/);
    const mae = createMae('mae_vit_base_patch16', { encoder: MICRO, decoder: MICRO_DEC, seed: 2 });
    const run = setupExploraMae(mae, exploraRecipe('M-ExPLoRA-[L]-r4', { decoderRank: 2 }), { seed: 1, train: { effectiveBatch: 8, accumIter: 2, blr: 0.05 } });
    assert.deepEqual([run.accumulate, run.microBatch], [2, 4]);
    const x = rampImages(8, 16, 5);
    const asked: string[] = [];
    const counts: number[] = [];
    const infos = await trainLoop({
      params: run.trainable, optimizer: run.optimizer, steps: 3, seed: 0, lr: run.schedule(1), weightDecay: run.weightDecay, accumulate: run.accumulate,
      batch: (step, micro) => (asked.push(`${step}.${micro}`), x.slice([micro * run.microBatch, 0, 0, 0], [run.microBatch, -1, -1, -1]) as tf.Tensor4D),
      loss: (b, rng) => run.loss(b, rng),
      onStep: () => void counts.push(tf.memory().numTensors),
    });
    assert.deepEqual(asked, ['0.0', '0.1', '1.0', '1.1', '2.0', '2.1']);
    assert.equal(run.optimizer.step, 3);
    assert.ok(infos.every((i) => Number.isFinite(i.loss) && i.gradNorm > 0));
    assert.equal(new Set(counts).size, 1, `live tensors per step ${counts}`);
    x.dispose();
    run.dispose();
    disposeMae(mae);
  });

  it('micro SatMAE temporal model: trainLoop over {images, timestamps} batches, identity at init, only trainable moves', async () => {
    const m = createSatMaeTemporal('satmae_temporal_vit_base_patch16', {
      imgSize: 8, patchSize: 4, embedDim: 24, depth: 2, numHeads: 2, timeEmbedDim: 4,
      decoder: { embedDim: 18, depth: 1, numHeads: 2 }, decoderTimeEmbedDim: 2,
    }, { seed: 1 });
    const run = setupExploraSatMaeTemporal(m, exploraRecipe('M-ExPLoRA-[L]-r4', { decoderRank: 2 }));
    assert.deepEqual([...run.explora.lora!.modules.keys()], ['blocks.0.attn.qkv', 'decoder_blocks.0.attn.qkv']);
    const ts = [[[13, 6, 14], [14, 1, 10], [16, 8, 15]], [[3, 0, 0], [3, 11, 23], [10, 5, 7]]];
    const imgs = tf.tidy(() => tf.stack([rampImages(3, 8, 1), rampImages(3, 8, 2)]) as tf.Tensor5D); // [2, 3, 8, 8, 3]
    const plan = satMaeTemporalPlan(m, 2, new Rng(2));
    const [a, b] = tf.tidy(() => [satMaeTemporalForward(m, imgs, ts, { plan }).loss.dataSync()[0], satMaeTemporalForward(m, imgs, ts, { plan, hooks: run.hooks }).loss.dataSync()[0]]);
    assert.equal(a, b);
    const all = satMaeTemporalVariables(m);
    const snap = new Map([...all].map(([k, v]) => [k, v.dataSync().slice()]));
    const infos = await trainLoop({
      params: run.trainable, optimizer: run.optimizer, steps: 3, seed: 1, lr: { kind: 'constant', value: 1e-2 },
      batch: () => ({ images: imgs.clone() as tf.Tensor5D, timestamps: ts }),
      loss: (bt, rng) => run.loss(bt, rng),
    });
    assert.ok(infos.every((i) => Number.isFinite(i.loss)));
    for (const [k, v] of all) assert.equal(maxAbsDiff(v.dataSync(), snap.get(k)!) > 0, run.trainable.has(k), k);
    imgs.dispose();
    run.dispose();
    disposeSatMaeTemporal(m);
  });

  it('micro SatMAE group model: the multispectral recipe trains patch embeddings and heads; loss falls', () => {
    const m = createSatMaeGroup('satmae_group_vit_base_patch8', {
      imgSize: 16, patchSize: 4, embedDim: 24, depth: 3, numHeads: 2, channelEmbedDim: 8,
      decoder: { embedDim: 16, depth: 1, numHeads: 2 }, decoderChannelEmbedDim: 4,
    }, { seed: 4 });
    const run = setupExploraSatMaeGroup(m, exploraRecipe('M-ExPLoRA-[1,L]-r4', { unfreezeEmbed: true, decoderRank: 2 }), { seed: 2 });
    const keys = [...run.trainable.keys()];
    assert.ok(keys.includes('patch_embed.1.proj.weight') && keys.includes('decoder_pred.2.bias') && keys.includes('blocks.1.attn.qkv.lora_A.v.weight'));
    assert.ok(!keys.some((k) => /^blocks\.[02]\.attn\.qkv\.lora/.test(k)), 'unfrozen blocks 1 and L have no LoRA');
    const rampBands = tf.tidy(() => tf.concat([rampImages(4, 16, 1), rampImages(4, 16, 2), rampImages(4, 16, 3), rampImages(4, 16, 4).slice([0, 0, 0, 0], [4, 16, 16, 1])], 3)) as tf.Tensor4D; // 10 bands
    const plan = satMaeGroupPlan(m, 4, new Rng(1));
    const l0 = tf.tidy(() => satMaeGroupForward(m, rampBands, { plan }).loss.dataSync()[0]);
    for (let s = 0; s < 15; s++) {
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => run.loss(rampBands, Rng.derive(0, s)), [...run.trainable.values()]);
        const byPath = new Map([...run.trainable].map(([k, v]) => [k, grads[v.name]]));
        run.optimizer.apply(byPath, 3e-3, 0);
        return value;
      }).dispose();
    }
    const l1 = tf.tidy(() => satMaeGroupForward(m, rampBands, { plan, hooks: run.hooks }).loss.dataSync()[0]);
    assert.ok(l1 < 0.8 * l0, `group loss should fall: ${l0} → ${l1}`);
    rampBands.dispose();
    run.dispose();
    disposeSatMaeGroup(m);
  });
});
