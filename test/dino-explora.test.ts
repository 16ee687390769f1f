/**
 * D-ExPLoRA: the paper config's trainable count (ViT-L/14 [L]-r64 encoder 18,724,864, heads separately), the DINOv2
 * parameter groups and schedules, and a few steps on a micro model: 0 leaked tensors per step, only the trainable set
 * moves in the student, the teacher moves only by EMA (exact recursion; frozen weights shared), the last layer stays
 * during the frozen epochs, checkpoint round trip of student + teacher + heads (+ exact resume), merged teacher ==
 * teacher with adapters, non-finite values stopped (or skipped) before any state change, gradient accumulation equal to
 * the full batch, resume with other parameter groups refused, and bad input.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { assertClose } from './util';
import {
  D_EXPLORA_L_R64,
  dExploraConfig,
  exploraDinoCounts,
  createExploraDino,
  setupExploraDino,
  dinoSchedules,
  dinoLr,
  dinov2Decay,
  dinov2LrScale,
  saveExploraDinoCheckpoint,
  loadExploraDinoCheckpoint,
  mergeExploraDinoEncoder,
  trainExploraDino,
  DExploraConfig,
  DExploraRun,
} from '../recipes/explora-dino';
import { SINKHORN_KNOPP } from '../lib/dino/teacher';
import { scheduleAt } from '../lib/train/schedule';
import { readSafetensors } from '../lib/io/safetensors';
import { createVit, disposeVit } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { randArray } from './util';
import type { Loader } from '../data-loaders/dataset';

const MICRO: DExploraConfig = dExploraConfig('D_EXPLORA_L_R64', {
  model: 'vit_small_patch14_dinov2',
  modelOverrides: { imgSize: 16, patchSize: 4, embedDim: 16, depth: 3, numHeads: 2, posEmbedGrid: null },
  recipe: 'D-ExPLoRA-[L]-r2',
  objective: { head: { hiddenDim: 16, bottleneckDim: 8, outDim: 32 }, nLocalCrops: 2, globalCropSize: 16, localCropSize: 8, teacherTemp: { warmupEpochs: 1 } },
  train: { batchSize: 4, epochs: 4, itersPerEpoch: 2, warmupEpochs: 1, freezeLastLayerEpochs: 1, dropPathRate: 0.1 },
});

function views(B: number, seed: number, nLocal = 2): tf.Tensor4D[] {
  return [
    tf.tensor4d(randArray(B * 16 * 16 * 3, seed), [B, 16, 16, 3]),
    tf.tensor4d(randArray(B * 16 * 16 * 3, seed + 1), [B, 16, 16, 3]),
    ...Array.from({ length: nLocal }, (_, i) => tf.tensor4d(randArray(B * 8 * 8 * 3, seed + 2 + i), [B, 8, 8, 3])),
  ];
}

function snapshot(m: ReadonlyMap<string, tf.Variable>): Map<string, Float32Array> {
  return new Map([...m].map(([k, v]) => [k, Float32Array.from(v.dataSync())]));
}

function studentVars(run: DExploraRun): Map<string, tf.Variable> {
  return new Map([...run.variables({ optimizer: false })].filter(([k]) => k.startsWith('student.')));
}

describe('D-ExPLoRA', () => {
  it('paper config: ViT-L/14 D-[L]-r64 trains 18,724,864 encoder parameters; DINO head 23,662,848 reported separately', () => {
    const c = exploraDinoCounts(D_EXPLORA_L_R64);
    assert.equal(c.encoder, 18_724_864);
    // 1024·2048 + 2048 + 2048² + 2048 + 2048·256 + 256 + 65,536 (weight_g) + 65,536·256 (weight_v)
    assert.equal(c.heads, 23_662_848);
    assert.equal(c.trainable, 18_724_864 + 23_662_848);
    assert.equal(c.summary.encoderTotal, 304_368_640, 'ViT-L/14 encoder with its 37×37 pos-embed (released dinov2_vitl14)');
    assert.equal(exploraDinoCounts(dExploraConfig('D_EXPLORA_L_R64', { objective: { separateIbotHead: true } })).heads, 2 * 23_662_848);
    // recipe variants from the paper's ablation
    assert.equal(exploraDinoCounts(dExploraConfig('D_EXPLORA_L_R64', { recipe: 'D-ExPLoRA-[L]' })).encoder, 12_695_552);
    assert.equal(exploraDinoCounts(dExploraConfig('D_EXPLORA_L_R64', { recipe: 'D-ExPLoRA-[1,L-1,L]-r64' })).encoder, 43_388_928);
  });

  it('optimisation recipe: lr = base·√(batch/1024), warm-up + cosine, wd 0.04 → 0.4, momentum 0.992 → 1, τ_t, groups', () => {
    const t = D_EXPLORA_L_R64.train;
    assert.equal(dinoLr(t), 1e-3);
    assert.ok(Math.abs(dinoLr({ ...t, batchSize: 32 }) - 1e-3 * Math.sqrt(32 / 1024)) < 1e-15);
    const s = dinoSchedules(D_EXPLORA_L_R64);
    assert.equal(s.totalIters, 125_000);
    assert.equal(s.freezeLastLayerIters, 3 * 1250);
    assert.equal(scheduleAt(s.lr, 0), 0);
    assert.ok(Math.abs(scheduleAt(s.lr, 12_500) - 1e-3) < 1e-15);
    assert.equal(scheduleAt(s.lr, 125_000), 1e-6);
    assert.ok(Math.abs(scheduleAt(s.weightDecay, 0) - 0.04) < 1e-15);
    assert.ok(Math.abs(scheduleAt(s.weightDecay, 62_500) - 0.22) < 1e-12);
    assert.ok(Math.abs(scheduleAt(s.momentum, 0) - 0.992) < 1e-15);
    assert.equal(scheduleAt(s.momentum, 125_000), 1);
    assert.equal(scheduleAt(s.teacherTemp, 0), 0.04);
    assert.equal(scheduleAt(s.teacherTemp, 37_500), 0.07);
    // weight decay: not on biases, norms, LayerScale; yes on weights, LoRA, tokens (upstream's name rule), heads
    for (const p of ['blocks.23.attn.qkv.bias', 'blocks.0.norm1.weight', 'norm.bias', 'blocks.23.ls1.gamma', 'dino_head.mlp.0.bias']) assert.equal(dinov2Decay(p), false, p);
    for (const p of ['blocks.23.mlp.fc1.weight', 'blocks.3.attn.qkv.lora_A.q.weight', 'cls_token', 'dino_head.last_layer.weight_v', 'dino_head.last_layer.weight_g']) assert.equal(dinov2Decay(p), true, p);
    const scale = dinov2LrScale(24, 0.9, 0.2);
    assert.ok(Math.abs(scale('cls_token') - 0.9 ** 25) < 1e-15);
    assert.ok(Math.abs(scale('patch_embed.proj.weight') - 0.2 * 0.9 ** 25) < 1e-15);
    assert.ok(Math.abs(scale('blocks.23.mlp.fc1.weight') - 0.9) < 1e-15);
    assert.ok(Math.abs(scale('blocks.0.attn.qkv.lora_B.v.weight') - 0.9 ** 24) < 1e-15);
    assert.equal(scale('norm.weight'), 1);
    assert.equal(scale('dino_head.last_layer.weight_v'), 1);
  });

  it('micro steps: no leaks, only the trainable set moves, teacher = exact EMA, last layer frozen for the first epoch', () => {
    const run = createExploraDino(MICRO, { seed: 3 });
    const t = run.trainable;
    assert.ok(t.has('blocks.2.attn.qkv.weight') && t.has('blocks.0.attn.qkv.lora_B.v.weight') && t.has('cls_token') && t.has('blocks.1.norm2.bias'));
    assert.ok(t.has('dino_head.last_layer.weight_v') && t.has('dino_head.mlp.4.weight'));
    assert.ok(!t.has('mask_token') && !t.has('pos_embed') && !t.has('patch_embed.proj.weight') && !t.has('blocks.0.mlp.fc1.weight'));
    assert.equal(run.explora.selection.summary.trainableEncoder, exploraDinoCounts(MICRO).encoder);
    // the teacher shares frozen weights, owns copies of the trainable ones, has its own non-trainable LoRA and heads
    assert.equal(run.teacher.vit.params.blocks[0].mlp.fc1.weight, run.student.vit.params.blocks[0].mlp.fc1.weight);
    assert.notEqual(run.teacher.vit.params.blocks[2].mlp.fc1.weight, run.student.vit.params.blocks[2].mlp.fc1.weight);
    assert.ok([...run.teacherOwn.values()].every((v) => !v.trainable));
    assert.ok(run.teacherLora && [...run.teacherLora.modules.values()].every((m) => m.slices.every((s) => !s.A.trainable && !s.B.trainable)));
    assert.equal(run.ema.length, t.size, 'EMA covers every trainable parameter (LoRA A and B separately, heads)');

    const sv = studentVars(run);
    const frozenPaths = [...sv.keys()].filter((k) => !t.has(k.replace(/^student\.(backbone\.)?/, '')));
    const start = snapshot(sv);
    const lastLayer = ['student.dino_head.last_layer.weight_v', 'student.dino_head.last_layer.weight_g'];
    const moved = new Set<string>();
    for (let it = 0; it < 4; it++) {
      const v = views(4, 10 * it);
      const teacherBefore = new Map(run.ema.map((p) => [p.path, Float32Array.from(p.teacher.dataSync())]));
      const before = tf.memory().numTensors;
      const m = run.step(v, it);
      assert.equal(tf.memory().numTensors, before, `step ${it}: ${tf.memory().numTensors - before} tensors leaked`);
      v.forEach((x) => x.dispose());
      assert.ok(Number.isFinite(m.loss) && m.dino > 0 && m.nMasked > 0, JSON.stringify(m));
      assertClose([m.loss], [m.dino + 0.1 * m.koleo + m.ibot], 1e-4, 1e-5, 'total = dino + 0.1·koleo + ibot');
      assert.equal(m.lastLayerLr, it < 2 ? 0 : m.lr);
      // teacher = m·teacher + (1 − m)·student, for every trainable parameter
      for (const p of run.ema) {
        const tb = teacherBefore.get(p.path)!;
        const s = p.student.dataSync();
        const want = Array.from(tb, (x, i) => m.momentum * x + (1 - m.momentum) * s[i]);
        assertClose(p.teacher.dataSync(), want, 1e-6, 1e-5, `teacher ${p.path} at step ${it}`);
      }
      const now = snapshot(sv);
      for (const k of lastLayer) {
        const same = now.get(k)!.every((x, i) => x === start.get(k)![i]);
        assert.equal(same, it < 2, `${k} after step ${it}: ${it < 2 ? 'frozen' : 'moving'}`);
      }
      for (const [k, a] of now) if (a.some((x, i) => x !== start.get(k)![i])) moved.add(k);
    }
    for (const k of frozenPaths) assert.ok(!moved.has(k), `frozen ${k} moved`);
    const trainableMoved = [...t.keys()].filter((p) => moved.has(p.startsWith('dino_head') || p.startsWith('ibot_head') ? `student.${p}` : `student.backbone.${p}`));
    assert.equal(trainableMoved.length, t.size, `every trainable parameter moved (${t.size - trainableMoved.length} did not)`);
    const before = tf.memory().numTensors;
    run.dispose();
    run.dispose(); // idempotent
    assert.ok(tf.memory().numTensors < before);
  });

  it('checkpoint round trip of student + teacher + heads + centers + optimizer; the resumed run continues exactly', () => {
    const cfg = dExploraConfig(MICRO, { train: { freezeLastLayerEpochs: 0 } });
    const a = createExploraDino(cfg, { seed: 1 });
    for (let it = 0; it < 2; it++) {
      const v = views(2, it);
      a.step(v, it);
      v.forEach((x) => x.dispose());
    }
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dino-ckpt-')), 'run.safetensors');
    saveExploraDinoCheckpoint(file, a, { note: 'test' });
    const { tensors, metadata } = readSafetensors(file);
    assert.deepEqual(tensors.get('teacher.backbone.blocks.0.attn.qkv.lora_A.q.weight')!.shape, [2, 16], 'lora_A in PyTorch layout [r, in]');
    assert.deepEqual(tensors.get('student.dino_head.last_layer.weight_v')!.shape, [32, 8]);
    assert.deepEqual(tensors.get('teacher.dino_head.mlp.0.weight')!.shape, [16, 16]);
    assert.ok(tensors.has('dino_loss.center') && tensors.has('ibot_patch_loss.center') && tensors.has('optim.exp_avg.blocks.2.mlp.fc1.weight'));
    assert.equal(JSON.parse(metadata.vitpeft).step, 2);
    const b = createExploraDino(cfg, { seed: 1 });
    const rep = loadExploraDinoCheckpoint(file, b);
    assert.equal(rep.missing.length, 0);
    assert.equal(b.optimizers.main.step, 2);
    const va = a.variables();
    for (const [k, v] of b.variables()) assert.deepEqual(v.dataSync(), va.get(k)!.dataSync(), k);
    const v = views(2, 7);
    const ma = a.step(v, 2);
    const mb = b.step(v, 2);
    v.forEach((x) => x.dispose());
    assert.equal(mb.loss, ma.loss, 'same loss after resume');
    const vb = b.variables();
    for (const [k, x] of a.variables()) assert.deepEqual(vb.get(k)!.dataSync(), x.dataSync(), `${k} after the resumed step`);
    // merged teacher (LoRA folded into qkv) == teacher with adapters
    const merged = mergeExploraDinoEncoder(a, 'teacher');
    tf.tidy(() => {
      const x = tf.tensor4d(randArray(2 * 16 * 16 * 3, 5), [2, 16, 16, 3]);
      const ref = vitForward(a.teacher.vit, x, { hooks: a.teacher.hooks }).cls;
      assertClose(vitForward(merged, x).cls.dataSync(), ref.dataSync(), 1e-5, 1e-4, 'merged teacher CLS');
    });
    disposeVit(merged);
    a.dispose();
    b.dispose();
  });

  it('Sinkhorn-Knopp targets and a separate iBOT head run too (own clip group, no centers)', () => {
    const run = createExploraDino(dExploraConfig(MICRO, { objective: { targets: SINKHORN_KNOPP, separateIbotHead: true } }), { seed: 2 });
    assert.equal(run.lossState.clsCenter, null);
    assert.ok(run.trainable.has('ibot_head.last_layer.weight_v'));
    const v = views(2, 3);
    const before = tf.memory().numTensors;
    const m = run.step(v, 0);
    assert.equal(tf.memory().numTensors, before);
    v.forEach((x) => x.dispose());
    assert.ok(m.gradNorm.ibot_head !== undefined && m.gradNorm.ibot_head > 0, JSON.stringify(m.gradNorm));
    run.dispose();
  });

  it('non-finite values stop the step before anything changes (student, teacher EMA, centers, moments); skip mode counts them', () => {
    const run = createExploraDino(MICRO, { seed: 4 });
    for (let it = 0; it < 3; it++) {
      const v = views(2, 20 + it);
      run.step(v, it);
      v.forEach((x) => x.dispose());
    }
    const bits = (): Map<string, Uint32Array> => new Map([...run.variables()].map(([k, x]) => [k, new Uint32Array(Float32Array.from(x.dataSync()).buffer)]));
    const before = bits();
    const bad = views(2, 30);
    const poisoned = [tf.tidy(() => tf.mul(bad[0], NaN)) as tf.Tensor4D, ...bad.slice(1)];
    const n0 = tf.memory().numTensors;
    assert.throws(() => run.step(poisoned, 3), /trainStep: the loss is NaN at step 3 \(lr [0-9.e-]+\); nothing was updated/);
    assert.equal(tf.memory().numTensors, n0, 'no tensor left behind');
    const m = run.step(poisoned, 3, { nonFinite: 'skip' });
    assert.equal(tf.memory().numTensors, n0, 'no tensor left behind by the skipped step');
    assert.equal(m.skipped, 'the loss is NaN');
    assert.equal(run.optimizer.skipped, 1);
    assert.equal(run.optimizer.step, 3);
    assert.equal(run.optimizer.iteration, 4);
    const after = bits();
    for (const [k, x] of before) assert.deepEqual(after.get(k), x, `${k} changed by a failed / skipped step`);
    assert.ok(before.has('dino_loss.center') && [...before.keys()].some((k) => k.startsWith('teacher.')) && [...before.keys()].some((k) => k.startsWith('optim.exp_avg_sq.')));
    tf.dispose([...bad, poisoned[0]]);
    run.dispose();
  });

  it('gradient accumulation: 2 micro-batches of 2 = the batch of 4 (centering, iBOT and KoLeo off, no drop path), center update included', () => {
    const cfg = dExploraConfig(MICRO, { objective: { weights: { koleo: 0 }, masking: { maskProbability: 0 } }, train: { dropPathRate: 0 } });
    const full = createExploraDino(cfg, { seed: 5 });
    const acc = createExploraDino(cfg, { seed: 5 });
    const it = 3; // after the warm-up and the frozen last layer
    const v = views(4, 40);
    const halves = [0, 2].map((o) => v.map((x) => x.slice([o, 0, 0, 0], [2, -1, -1, -1]) as tf.Tensor4D));
    // identical starting point (a few shared steps first, so that centers and moments are non-zero)
    for (let s = 0; s < it; s++) {
      const w = views(4, 50 + s);
      full.step(w, s);
      acc.step(w, s);
      w.forEach((x) => x.dispose());
    }
    const n0 = tf.memory().numTensors;
    const mf = full.step(v, it);
    const ma = acc.step(halves, it);
    assert.equal(tf.memory().numTensors, n0, 'accumulated step left tensors behind');
    assert.equal(ma.microBatches, 2);
    assert.equal(acc.optimizer.step, it + 1, 'one optimizer step for 2 micro-batches');
    assertClose([ma.loss, ma.dino], [mf.loss, mf.dino], 1e-6, 1e-6, 'loss = mean of the micro-batch losses');
    assertClose([ma.gradNorm.backbone, ma.gradNorm.dino_head], [mf.gradNorm.backbone, mf.gradNorm.dino_head], 0, 1e-5, 'gradient norms');
    const va = acc.variables();
    let worst = 0;
    for (const [k, x] of full.variables()) {
      const a = va.get(k)!.dataSync();
      const b = x.dataSync();
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    }
    if (process.env.ACCUM_DEBUG) console.log('D-ExPLoRA accumulation: max |Δ|', worst);
    assert.ok(worst < 1e-6, `max |Δ| over student, teacher, centers and moments ${worst}`);
    tf.dispose([...v, ...halves.flat()]);
    full.dispose();
    acc.dispose();
  });

  it('trainExploraDino with accumIter 2 reads loader batches 2·it and 2·it + 1, resumes at the optimizer\'s iteration, frees every batch', async () => {
    const cfg = dExploraConfig(MICRO, { train: { accumIter: 2 } });
    const run = createExploraDino(cfg, { seed: 6 });
    const asked: number[] = [];
    const loader = { batchAt: async (i: number) => (asked.push(i), { views: views(2, 100 + i), indices: [], meta: [], epoch: 0, step: i }) } as unknown as Loader;
    const n0 = tf.memory().numTensors;
    const a = await trainExploraDino(run, loader, { steps: 2 });
    const b = await trainExploraDino(run, loader, { steps: 1 });
    assert.equal(tf.memory().numTensors, n0);
    assert.deepEqual(asked, [0, 1, 2, 3, 4, 5]);
    assert.deepEqual([...a, ...b].map((m) => [m.step, m.microBatches]), [[0, 2], [1, 2], [2, 2]]);
    assert.equal(run.optimizer.step, 3);
    assert.throws(() => dExploraConfig(MICRO, { train: { accumIter: 0 } }), /DinoTrain.accumIter: expected an integer ≥ 1, got 0/);
    run.dispose();
  });

  it('resuming into a run with other parameter groups (layer decay) is an error naming the path and the setting', () => {
    const a = createExploraDino(MICRO, { seed: 1 });
    const v = views(2, 3);
    a.step(v, 0);
    v.forEach((x) => x.dispose());
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dino-ckpt-')), 'run.safetensors');
    saveExploraDinoCheckpoint(file, a);
    const b = createExploraDino(dExploraConfig(MICRO, { train: { layerDecay: 0.8 } }), { seed: 1 });
    assert.throws(() => loadExploraDinoCheckpoint(file, b), /resuming with another optimizer than the checkpoint's: parameter group of 'cls_token' lrScale: 0\.6561\d* \(checkpoint\) vs 0\.4096\d* \(now\)/);
    assert.equal(b.optimizer.step, 0);
    const c = createExploraDino(dExploraConfig(MICRO, { train: { freezeLastLayerEpochs: 2 } }), { seed: 1 });
    assert.throws(() => loadExploraDinoCheckpoint(file, c), /parameter group of 'dino_head.last_layer.weight_g' freezeIters: 2 \(checkpoint\) vs 4 \(now\)/);
    for (const r of [a, b, c]) r.dispose();
  });

  it('bad input: unknown config keys, wrong recipe family, inconsistent crops, masks, K ≤ 0, crop sizes, backbone without mask token', () => {
    assert.throws(() => dExploraConfig('D_EXPLORA_L_R64', { trian: {} } as never), /DExploraConfig overrides: unknown key 'trian'; valid keys: model, modelOverrides, objective, recipe, train/);
    assert.throws(() => dExploraConfig('D_EXPLORA_L_R64', { train: { lr: 1 } } as never), /DinoTrain: unknown key 'lr'; valid keys: .*baseLr/);
    assert.throws(() => dExploraConfig('D_EXPLORA_L_R64', { objective: { head: { outDim: 0 } } }), /head\.outDim: expected a positive integer, got 0/);
    assert.throws(() => dExploraConfig('D_EXPLORA_L_R64', { recipe: 'M-ExPLoRA-[L]-r64' }), /needs a DINOv2 \(D-\) recipe/);
    assert.throws(() => dExploraConfig('D_EXPLORA_XL' as never), /unknown D-ExPLoRA preset 'D_EXPLORA_XL'; valid: D_EXPLORA_L_R64, D_EXPLORA_SMALL/);
    assert.throws(() => createExploraDino(dExploraConfig(MICRO, { objective: { localCropSize: 6 } })), /localCropSize 6 is not a multiple of the patch size 4/);
    const plain = createVit('vit_tiny_patch16_224', { imgSize: 16, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2 });
    const nBefore = tf.memory().numTensors;
    assert.throws(() => setupExploraDino(plain, MICRO), /needs a mask token for iBOT/);
    assert.equal(tf.memory().numTensors, nBefore, 'nothing left behind by a failed setup');
    disposeVit(plain);
    const run = createExploraDino(MICRO);
    const three = views(2, 1, 1);
    assert.throws(() => run.step(three, 0), /expected 2 global \+ 2 local = 4 views, got 3/);
    three.forEach((x) => x.dispose());
    const v = views(2, 1);
    assert.throws(() => run.step(v, 0, { masks: run.masksFor(0, 3, [4, 4]) }), /masks are for 6 images on 4x4, the global crops give 4 on 4x4/);
    assert.throws(() => run.step(v, -1), /iteration must be an integer ≥ 0/);
    v.forEach((x) => x.dispose());
    run.dispose();
  });
});
