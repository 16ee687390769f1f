/**
 * PYRA / ToMe+LoRA / LoRA presets on the kit's LoRA: the paper's trainable-parameter counts (its tunable-parameter columns), model assembly,
 * identities at init, training without leaks, merged-LoRA inference, bad presets.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { createVit, disposeVit, Vit } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { Rng } from '../lib/rng';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep, trainLoop } from '../lib/train/step';
import { scheduleAt } from '../lib/train/schedule';
import { crossEntropy } from '../lib/train/loss';
import { loraParamCount } from '../lib/peft/lora';
import { countPyraParams } from '../lib/tome/pyra';
import { tomeHooks, finalSizes } from '../lib/tome/hooks';
import { measureModelThroughput } from '../lib/tome/throughput';
import { PYRA_PRESETS, pyraParamReport, buildPyraModel, mergeForInference, pyraPreset, PyraPresetConfig, presetSchedule, pyraTraining, pyraTrainSteps } from '../recipes/pyra-presets';
import { saveCheckpoint, loadCheckpoint } from '../lib/io/checkpoint';
import { readSafetensors } from '../lib/io/safetensors';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { noLeak, randArray, maxAbsDiff } from './util';

const MICRO = { imgSize: 32, patchSize: 4, embedDim: 32, depth: 4, numHeads: 2, numClasses: 5 } as const;
const micro = (p: PyraPresetConfig): PyraPresetConfig => ({ ...p, backbone: 'vit_tiny_patch16_224', loraRank: 2, ...(p.schedule === null ? {} : { schedule: [8, 8, 8, 8] }) });

describe('tome: PYRA presets and parameter report', () => {
  it('reproduces the paper counts: LoRA 294,912 (0.34 %), +PYRA 9,402 / 9,408 (0.35 %); ViT-L 0.39 % / 0.40 %', () => {
    const r = (n: keyof typeof PYRA_PRESETS) => pyraParamReport(n);
    const pct = (x: number) => x.toFixed(2);
    assert.equal(r('lora_vit_b16').backbone, 85798656);
    assert.equal(r('lora_vit_l16').backbone, 303301632);
    assert.equal(r('lora_vit_b16').lora, 294912);
    assert.equal(pct(r('lora_vit_b16').pct), '0.34');
    assert.equal(r('tome_lora_vit_b16_low').trainable, 294912);
    assert.equal(r('pyra_vit_b16_low').pyraGenerators, 9402);
    assert.equal(r('pyra_vit_b16_high').pyraGenerators, 9408);
    assert.equal(pct(r('pyra_vit_b16_low').pct), '0.35');
    assert.equal(pct(r('pyra_vit_b16_high').pct), '0.35');
    assert.equal(r('lora_vit_l16').lora, 1179648);
    assert.equal(pct(r('tome_lora_vit_l16_high').pct), '0.39');
    assert.equal(r('pyra_vit_l16_low').pyraGenerators, 24766);
    assert.equal(r('pyra_vit_l16_high').pyraGenerators, 24768);
    assert.equal(pct(r('pyra_vit_l16_low').pct), '0.40');
    assert.equal(pct(r('pyra_vit_l16_high').pct), '0.40');
    assert.equal(r('lora_vit_s16').lora, 73728);
    assert.equal(pct(r('lora_vit_s16').pct), '0.34');
    // LayerNorm noted separately: including it would give 0.376 % / 0.413 % (not the paper's numbers)
    assert.equal(r('pyra_vit_b16_low').pyraLayerNorm, 12 * 2 * 768);
    assert.equal(r('pyra_vit_b16_low').pctWithLayerNorm.toFixed(3), '0.376');
    assert.equal(r('pyra_vit_l16_high').pctWithLayerNorm.toFixed(3), '0.413');
    assert.equal(pyraParamReport('pyra_vit_b16_low', { numClasses: 100 }).head, 76900);
  });

  it('presets carry the released LoRA (shared qkv, ranks 4/8/12, dropout 0.1) and the released schedules', () => {
    assert.equal(PYRA_PRESETS.pyra_vit_b16_low.loraRank, 8);
    assert.equal(PYRA_PRESETS.pyra_vit_l16_high.loraRank, 12);
    assert.equal(PYRA_PRESETS.lora_vit_s16.loraRank, 4);
    assert.equal(PYRA_PRESETS.pyra_vit_b16_low.loraDropout, 0.1);
    assert.deepEqual(presetSchedule(pyraPreset('tome_lora_vit_b16_high'), 12), [40, 34, 30, 24, 18, 14, 10, 8, 4, 4, 3, 3]);
    assert.deepEqual(presetSchedule(pyraPreset('pyra_vit_l16_low'), 24), [...new Array(23).fill(8), 6]);
    assert.deepEqual(presetSchedule(pyraPreset('lora_vit_b16'), 12), new Array(12).fill(0));
  });

  describe('on a micro ViT', () => {
    let vit: Vit;
    const x = (): tf.Tensor4D => tf.tensor4d(randArray(2 * 32 * 32 * 3, 3), [2, 32, 32, 3]);
    beforeEach(() => {
      vit = createVit('vit_tiny_patch16_224', MICRO, { seed: 2 });
    });
    afterEach(() => disposeVit(vit));

    it('built models count what the analytic report says, and train only LoRA + PYRA (+ LN) + head', () => {
      for (const name of ['pyra_vit_b16_low', 'tome_lora_vit_b16_low', 'lora_vit_b16'] as const) {
        const cfg = micro(PYRA_PRESETS[name]);
        const m = buildPyraModel(vit, cfg, { seed: 1 });
        try {
          const rep = pyraParamReport(cfg, { config: MICRO, numClasses: 5 });
          assert.equal(loraParamCount(m.lora), rep.lora, name);
          assert.equal(rep.lora, 4 * (32 * 2 + 2 * 96));
          const pc = m.pyra ? countPyraParams(m.pyra) : { generators: 0, layerNorm: 0 };
          assert.equal(pc.generators, rep.pyraGenerators);
          assert.equal(pc.layerNorm, rep.pyraLayerNorm);
          assert.equal(rep.pyraGenerators, name.startsWith('pyra') ? 4 * (8 + 32) : 0);
          let n = 0;
          for (const v of m.trainable.values()) n += v.size;
          assert.equal(n, rep.trainable + rep.pyraLayerNorm + rep.head);
          assert.equal(m.summary.trainable, n);
          for (const p of m.trainable.keys()) assert.match(p, /lora_[AB]|pyra_|^head\./);
          assert.equal(vit.params.blocks[0].attn.qkv.weight.trainable, false, 'backbone frozen');
          assert.ok(m.summary.encoderTotal > 0);
        } finally {
          m.dispose();
        }
      }
    });

    it('PYRA preset at init = ToMe+LoRA preset at init exactly; with kaiming LoRA init = plain ToMe exactly', async () => {
      await noLeak(() => {
        const py = buildPyraModel(vit, micro(PYRA_PRESETS.pyra_vit_b16_high), { seed: 5 });
        const tm = buildPyraModel(vit, micro(PYRA_PRESETS.tome_lora_vit_b16_high), { seed: 5 });
        const pk = buildPyraModel(vit, { ...micro(PYRA_PRESETS.pyra_vit_b16_high), loraInit: 'kaiming' }, { seed: 5 });
        try {
          tf.tidy(() => {
            const img = x();
            const a = vitForward(vit, img, { hooks: py.hooks }).logits!.dataSync();
            const b = vitForward(vit, img, { hooks: tm.hooks }).logits!.dataSync();
            assert.equal(maxAbsDiff(a, b), 0);
            const plain = vitForward(vit, img, { hooks: tomeHooks(vit.config, { schedule: [8, 8, 8, 8] }) }).logits!.dataSync();
            assert.ok(maxAbsDiff(a, plain) > 0, 'truncNormal LoRA (as released) is not zero at step 0');
            assert.equal(maxAbsDiff(vitForward(vit, img, { hooks: pk.hooks }).logits!.dataSync(), plain), 0);
          });
        } finally {
          py.dispose();
          tm.dispose();
          pk.dispose();
        }
      });
    });

    it('trains with trainStep (LoRA dropout active, drop-path off): 0 leaked tensors, backbone unchanged', () => {
      const m = buildPyraModel(vit, micro(PYRA_PRESETS.pyra_vit_b16_low), { seed: 1 });
      const opt = new Optimizer(ADAMW_DEFAULTS, m.trainable);
      const img = x();
      const y = tf.tensor1d([1, 4], 'int32');
      const qkv = vit.params.blocks[0].attn.qkv.weight.dataSync().slice();
      try {
        const counts: number[] = [];
        for (let step = 0; step < 3; step++) {
          const rng = Rng.derive(0, 'step', step);
          trainStep({ params: m.trainable, optimizer: opt, lr: 1e-2, weightDecay: 1e-4, loss: () => crossEntropy(vitForward(vit, img, { hooks: m.hooks, training: true, rng }).logits!, y) });
          counts.push(tf.memory().numTensors);
        }
        assert.equal(counts[2], counts[1], `tensors across steps: ${counts}`);
        assert.equal(maxAbsDiff(vit.params.blocks[0].attn.qkv.weight.dataSync(), qkv), 0);
        assert.ok(maxAbsDiff(m.pyra!.params.blocks[0]!.pyra_b.dataSync(), new Float32Array(32)) > 0, 'W_D moved');
      } finally {
        opt.dispose();
        m.dispose();
        tf.dispose([img, y]);
      }
    });

    it('pyraTraining on trainLoop: same numbers as the hand-built loop, accuracy metric, ≥ 2-D decay mask, no leaks', async () => {
      const settings = { steps: 4, batch: 2, lr: 1e-2, minLr: 1e-5, warmupSteps: 1, warmupStart: 1e-6, weightDecay: 1e-4, evalEvery: 2 };
      const vit2 = createVit('vit_tiny_patch16_224', MICRO, { seed: 2 });
      const img = x();
      const y = tf.tensor1d([1, 4], 'int32');
      const batch = (): { x: tf.Tensor4D; y: tf.Tensor1D } => ({ x: img.clone(), y: y.clone() });
      const a = buildPyraModel(vit, micro(PYRA_PRESETS.pyra_vit_b16_low), { seed: 1 });
      const b = buildPyraModel(vit2, micro(PYRA_PRESETS.pyra_vit_b16_low), { seed: 1 });
      const t = pyraTraining(vit, a, settings);
      const opt = new Optimizer(ADAMW_DEFAULTS, b.trainable);
      try {
        assert.equal(t.optimizer.decays('blocks.0.pyra_a'), true);
        assert.equal(t.optimizer.decays('blocks.0.pyra_norm.weight'), false);
        assert.equal(t.optimizer.decays('head.bias'), false);
        assert.equal(scheduleAt(t.lr, 0), 1e-6);
        const counts: number[] = [];
        const ia = await trainLoop({ params: a.trainable, optimizer: t.optimizer, steps: 4, seed: 0, lr: t.lr, weightDecay: t.weightDecay, batch, loss: t.loss, onStep: () => void counts.push(tf.memory().numTensors) });
        // notebook 02's loop as it is written today
        const ib = await trainLoop({
          params: b.trainable, optimizer: opt, steps: 4, seed: 0, weightDecay: { kind: 'constant', value: 1e-4 }, batch,
          lr: { kind: 'cosine', base: 1e-2, min: 1e-5, totalIters: 4, warmupIters: 1, warmupStart: 1e-6 },
          loss: (bb, rng) => crossEntropy(vitForward(vit2, bb.x, { hooks: b.hooks, training: true, rng }).logits!, bb.y),
        });
        assert.deepEqual(ia.map((i) => i.loss), ib.map((i) => i.loss), 'same losses as the hand-built loop');
        assert.ok(ia.every((i) => i.metrics!.accuracy >= 0 && i.metrics!.accuracy <= 1));
        assert.equal(new Set(counts).size, 1, `live tensors per step ${counts}`);
        assert.throws(() => pyraTraining(vit, a, { ...settings, warmupSteps: 9 }), /warmupIters must be in \[0, totalIters=4\], got 9/);
        assert.throws(() => pyraTraining(vit, a, { ...settings, lrr: 1 } as never), /PyraTrainSettings: unknown key 'lrr'/);
        assert.deepEqual(pyraTrainSteps(31), { steps: 3100, batch: 32, lr: 1e-3, minLr: 1e-5, warmupSteps: 310, warmupStart: 1e-6, weightDecay: 1e-4, evalEvery: 310 });
      } finally {
        t.dispose();
        opt.dispose();
        a.dispose();
        b.dispose();
        disposeVit(vit2);
        tf.dispose([img, y]);
      }
    });

    it('LoRA merged into qkv for inference gives the same outputs as the adapter branch', async () => {
      const m = buildPyraModel(vit, micro(PYRA_PRESETS.pyra_vit_b16_low), { seed: 1 });
      m.pyra!.params.blocks[1]!.pyra_b.assign(tf.tidy(() => tf.tensor2d(randArray(32, 4), [1, 32]).mul(0.5)));
      const inf = mergeForInference(vit, m);
      try {
        assert.equal(inf.hooks.linear, undefined);
        await noLeak(() =>
          tf.tidy(() => {
            const img = x();
            const a = vitForward(vit, img, { hooks: m.hooks });
            const b = vitForward(inf.vit, img, { hooks: inf.hooks });
            assert.deepEqual(a.prenorm.shape, b.prenorm.shape);
            assert.ok(maxAbsDiff(a.logits!.dataSync(), b.logits!.dataSync()) < 1e-4);
          }),
        );
      } finally {
        disposeVit(inf.vit);
        m.dispose();
      }
    });

    it('measures a built model (LoRA branch unmerged) and reports final sizes', () => {
      const m = buildPyraModel(vit, micro(PYRA_PRESETS.pyra_vit_b16_low), { seed: 1 });
      const l = buildPyraModel(vit, micro(PYRA_PRESETS.lora_vit_b16), { seed: 1 });
      try {
        const r = measureModelThroughput(vit, m, { batch: 1, warmup: 0, iters: 1 });
        assert.deepEqual([r.mode, r.label, r.tokensOut], ['pyra', 'pyra [8,8,8,8]', 33]);
        assert.equal(measureModelThroughput(vit, l, { batch: 1, warmup: 0, iters: 1 }).tokensOut, 65);
        tf.tidy(() => {
          const out = vitForward(vit, x(), { hooks: m.hooks });
          const sizes = finalSizes(out.state);
          assert.deepEqual([sizes.length, sizes[0].length], [2, 33]);
          assert.equal(sizes[0][0], 1, 'cls keeps size 1');
          assert.equal(sizes[1].reduce((a, b) => a + b, 0), 65);
          assert.deepEqual(finalSizes(vitForward(vit, x(), { hooks: l.hooks }).state)[0], new Array(65).fill(1));
        });
      } finally {
        m.dispose();
        l.dispose();
      }
    });

    it('checkpoints the trainable set in PyTorch layout (pyra_a [r,1], pyra_b [1,D] untransposed) and reloads it', () => {
      const a = buildPyraModel(vit, micro(PYRA_PRESETS.pyra_vit_b16_low), { seed: 1 });
      const b = buildPyraModel(vit, micro(PYRA_PRESETS.pyra_vit_b16_low), { seed: 2 });
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tome-'));
      const file = path.join(dir, 'pyra.safetensors');
      try {
        a.pyra!.params.blocks[0]!.pyra_b.assign(tf.tidy(() => tf.tensor2d(randArray(32, 8), [1, 32])));
        saveCheckpoint(file, { params: a.trainable, meta: { preset: a.preset } });
        const t = readSafetensors(file).tensors;
        assert.deepEqual(t.get('blocks.0.pyra_a')!.shape, [8, 1]);
        assert.deepEqual(t.get('blocks.0.pyra_b')!.shape, [1, 32]);
        assert.deepEqual(t.get('blocks.0.pyra_norm.weight')!.shape, [32]);
        assert.deepEqual(t.get('blocks.0.attn.qkv.lora_A.weight')!.shape, [2, 32], 'LoRA A in torch layout [r, in]');
        assert.deepEqual(t.get('blocks.0.attn.qkv.lora_B.weight')!.shape, [96, 2], 'LoRA B in torch layout [out, r]');
        assert.deepEqual(t.get('head.weight')!.shape, [5, 32]);
        const rep = loadCheckpoint(file, { params: b.trainable });
        assert.equal(rep.missing.length + rep.unexpected.length, 0);
        tf.tidy(() => {
          const img = x();
          const ya = vitForward(vit, img, { hooks: a.hooks }).logits!.dataSync();
          assert.equal(maxAbsDiff(vitForward(vit, img, { hooks: b.hooks }).logits!.dataSync(), ya), 0);
        });
      } finally {
        a.dispose();
        b.dispose();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('bad presets name the problem', () => {
      assert.throws(() => pyraPreset('pyra_vit_h14_low' as never), /unknown PYRA preset 'pyra_vit_h14_low'; valid: pyra_vit_b16_low/);
      assert.throws(() => pyraPreset({ ...PYRA_PRESETS.lora_vit_b16, schedule: 'low' }), /method 'lora' merges nothing/);
      assert.throws(() => pyraPreset({ ...PYRA_PRESETS.pyra_vit_b16_low, schedule: null }), /needs a schedule/);
      assert.throws(() => pyraPreset({ ...PYRA_PRESETS.pyra_vit_b16_low, lr: 1 } as never), /unknown key 'lr'/);
      assert.throws(() => presetSchedule({ ...PYRA_PRESETS.lora_vit_s16, method: 'tome', schedule: 'low' }, 12), /no 'low' schedule for backbone vit_small_patch16_224/);
      // the ViT-B schedule on a 4-block micro ViT: longer than the depth
      assert.throws(() => buildPyraModel(vit, { ...PYRA_PRESETS.pyra_vit_b16_low }), /12 entries but the model has only 4 blocks/);
      assert.throws(() => buildPyraModel(vit, micro(PYRA_PRESETS.pyra_vit_b16_low), { sed: 1 } as never), /unknown key 'sed'/);
    });
  });
});
