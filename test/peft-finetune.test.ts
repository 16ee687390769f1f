import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { createVit, disposeVit } from '../lib/vit/params';
import { flattenTree } from '../lib/tree';
import { trainLoop } from '../lib/train/step';
import { scheduleAt } from '../lib/train/schedule';
import { vitShapes } from '../lib/peft/shapes';
import { planLora, loraPlanCount, loraConfig, qvTarget, loraVariables } from '../lib/peft/lora';
import { classifyParams } from '../lib/peft/trainable';
import { EXPLORA_FINETUNE, FINETUNE_SPEC, finetuneVitOverrides, setupFinetune } from '../recipes/finetune';
import { maxAbsDiff, randArray } from './util';

const MICRO = { imgSize: 16, patchSize: 8, embedDim: 32, depth: 2, numHeads: 2 } as const;

describe('peft/finetune (ExPLoRA supervised LoRA protocol, `scripts/finetune.sh`)', () => {
  it('preset values: r8 α=1 on Q,V, drop-path 0.2, smoothing 0.1, lr 5e-4 at batch 128, wd 0', () => {
    const p = EXPLORA_FINETUNE;
    assert.deepEqual([p.rank, p.alpha, [...p.slices], p.dropPath, p.labelSmoothing, p.weightDecay, p.layerDecay, p.epochs, p.warmupEpochs], [8, 1, ['q', 'v'], 0.2, 0.1, 0, 1, 120, 5]);
    assert.deepEqual(finetuneVitOverrides(62), { pool: 'avg', numClasses: 62, dropPathRate: 0.2, dropPathMode: 'linear' });
    assert.throws(() => finetuneVitOverrides(0), /numClasses must be a positive integer/);
  });

  it('exact counts: ViT-L LoRA-r8 on Q,V of all 24 blocks = 786,432 (+ head 63,550 for 62 classes); ViT-B 294,912', () => {
    for (const [preset, lora, head] of [['vit_large_patch14_224', 786_432, 63_550], ['vit_base_patch16_224', 294_912, 62 * 768 + 62]] as const) {
      const shapes = vitShapes(preset, finetuneVitOverrides(62));
      const plan = planLora(shapes, loraConfig({ rank: 8, targets: [qvTarget()] }));
      assert.equal(loraPlanCount(plan), lora);
      for (const m of plan) for (const s of m.slices) shapes.set(s.pathA, { shape: [m.din, 8] }).set(s.pathB, { shape: [8, s.width] });
      const { summary } = classifyParams(shapes, FINETUNE_SPEC);
      assert.equal(summary.trainableEncoder, lora);
      assert.equal(summary.trainable, lora + head);
    }
  });

  it('sets up the model: head re-initialised (σ 2e-5), fc_norm identity and frozen, only LoRA + head train and move', async () => {
    const vit = createVit('vit_tiny_patch16_224', { ...MICRO, ...finetuneVitOverrides(4) }, { seed: 2 });
    vit.params.fc_norm!.weight.assign(tf.fill([32], 3));
    const ft = setupFinetune(vit, EXPLORA_FINETUNE, { seed: 1 });
    const hw = vit.params.head!.weight.dataSync();
    assert.ok(Math.max(...Array.from(hw, Math.abs)) < 2e-4 && Math.max(...Array.from(hw, Math.abs)) > 0);
    assert.deepEqual(Array.from(vit.params.fc_norm!.weight.dataSync()), new Array(32).fill(1));
    assert.deepEqual([...ft.selection.trainable.keys()].filter((k) => !k.includes('lora_')), ['head.weight', 'head.bias']);
    assert.equal(ft.selection.summary.trainableEncoder, 2 * 4 * 8 * 32);
    assert.equal(ft.lora.modules.get('blocks.0.attn.qkv')!.scale, 1 / 8);
    const all = new Map([...flattenTree(vit.params), ...loraVariables(ft.lora)]);
    const before = new Map([...all].map(([k, v]) => [k, v.dataSync().slice()]));
    const opt = ft.optimizer();
    const sched = ft.lrSchedule(10);
    assert.equal(scheduleAt(sched, 50), 5e-4);
    assert.equal(scheduleAt(sched, 0), 0);
    const counts: number[] = [];
    await trainLoop({
      params: ft.selection.trainable,
      optimizer: opt,
      steps: 3,
      seed: 0,
      lr: { kind: 'constant', value: 1e-2 },
      batch: () => ({ images: tf.tensor4d(randArray(2 * 16 * 16 * 3, 9), [2, 16, 16, 3]), labels: tf.tensor1d([0, 3], 'int32') }),
      loss: (b, rng) => ft.loss(b, rng),
      onStep: () => void counts.push(tf.memory().numTensors),
    });
    assert.equal(counts[2], counts[1], 'a step leaked tensors');
    for (const [k, v] of all) {
      const moved = maxAbsDiff(v.dataSync(), before.get(k)!) > 0;
      assert.equal(moved, ft.selection.trainable.has(k), `${k}: moved=${moved}`);
    }
    const logits = tf.tidy(() => ft.predict(tf.tensor4d(randArray(2 * 16 * 16 * 3, 9), [2, 16, 16, 3])).dataSync());
    assert.equal(logits.length, 8);
    opt.dispose();
    ft.dispose();
    disposeVit(vit);
  });

  it('refuses models that do not follow the protocol', () => {
    const cls = createVit('vit_tiny_patch16_224', { ...MICRO, numClasses: 4 });
    assert.throws(() => setupFinetune(cls), /mean-pools patch tokens into fc_norm; build the model with finetuneVitOverrides\(numClasses\) \(pool is 'cls'\)/);
    const noDp = createVit('vit_tiny_patch16_224', { ...MICRO, pool: 'avg', numClasses: 4 });
    assert.throws(() => setupFinetune(noDp), /dropPathRate is 0 but the preset uses 0\.2/);
    assert.throws(() => setupFinetune(noDp, { ...EXPLORA_FINETUNE, lr: 1 } as never), /FinetunePreset: unknown key 'lr'/);
    disposeVit(cls);
    disposeVit(noDp);
  });
});
