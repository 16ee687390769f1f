/**
 * DINOv2 objective pieces against the PyTorch fixture (test/fixtures/gen_dino.py) and hand computations: DINO head and
 * weight norm (forward + gradients, checkpoint round trip in PyTorch shapes), centering with the lagged center update,
 * Sinkhorn-Knopp (3 iterations), DINO CLS loss bookkeeping (swap, 18 pairs, general n local), iBOT weighting, KoLeo,
 * and the whole objective from backbone features (centering and Sinkhorn-Knopp).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { assertClose, noLeak } from './util';
import { dinoFixture, loadHeadParams, t2, t3 } from './dino-fixture';
import { createDinoHeads, dinoHeadForward, weightNormWeight, dinoHeadVariables, disposeDinoHeads, dinoHeadConfig, dinoHeadParamCount } from '../lib/dino/head';
import { centerTargets, createCenter, sinkhornKnopp, teacherTempSchedule, checkTargetMode } from '../lib/dino/teacher';
import { dinoClsLoss, dinoPairCount, ibotPatchLoss, ibotWeights, koleoLoss, koleoPerChunk } from '../lib/dino/loss';
import { ibotMasksFrom } from '../lib/dino/masking';
import { dinov2Objective, dinov2LossFromFeatures, createDinov2LossState, disposeDinov2LossState, multiCropBatch } from '../lib/dino/dinov2';
import { saveCheckpoint, loadCheckpoint } from '../lib/io/checkpoint';
import { readSafetensors } from '../lib/io/safetensors';
import { scheduleAt } from '../lib/train/schedule';

const F = dinoFixture();

function arr(t: tf.Tensor): Float32Array {
  return t.dataSync() as Float32Array;
}

describe('DINOv2 objective: head', () => {
  it('forward, weight-normalised last layer and gradients match PyTorch', async () => {
    const h = F.head;
    const heads = createDinoHeads(h.config);
    loadHeadParams(heads.params, h.params);
    await noLeak(() => {
      tf.tidy(() => {
        const x = t2(h.x);
        const y = dinoHeadForward(heads.params.dino_head, x, heads.config);
        assert.deepEqual(y.shape, [5, 10]);
        assertClose(arr(y), h.y.values, 1e-5, 1e-4, 'head output');
        assertClose(arr(weightNormWeight(heads.params.dino_head.last_layer)), h.weight.values, 1e-6, 1e-5, 'W = g·v/‖v‖');
        const vars = dinoHeadVariables(heads);
        const r = t2(h.r);
        const { grads } = tf.variableGrads(() => tf.sum(tf.mul(dinoHeadForward(heads.params.dino_head, x, heads.config), r)) as tf.Scalar, [...vars.values()]);
        for (const [p, v] of vars) {
          const g = grads[v.name];
          const want = h.grads[p];
          assert.ok(g && want, `gradient for ${p}`);
          // kit layout: rank-2 `.weight` is [in, out]; weight_g / weight_v are in PyTorch shapes
          const gk = p.endsWith('.weight') && g.rank === 2 ? g.transpose() : g;
          assert.deepEqual(gk.shape, want.shape, `${p} gradient shape`);
          assertClose(arr(gk), want.values, 1e-5, 1e-3, `d/d ${p}`);
        }
      });
    });
    disposeDinoHeads(heads);
  });

  it('nlayers = 1 is a single Linear `mlp.{weight,bias}`', () => {
    const h = F.head_nlayers1;
    const heads = createDinoHeads(h.config);
    assert.deepEqual([...dinoHeadVariables(heads).keys()], ['dino_head.mlp.weight', 'dino_head.mlp.bias', 'dino_head.last_layer.weight_g', 'dino_head.last_layer.weight_v']);
    loadHeadParams(heads.params, h.params);
    tf.tidy(() => assertClose(arr(dinoHeadForward(heads.params.dino_head, t2(h.x), heads.config)), h.y.values, 1e-5, 1e-4, 'nlayers=1 output'));
    disposeDinoHeads(heads);
  });

  it('keys like DINOv2 checkpoints, init (g = 1, trunc-normal MLP, zero biases), sizes and counts', () => {
    const heads = createDinoHeads({ inDim: 16, hiddenDim: 24, bottleneckDim: 8, outDim: 32 }, { separateIbot: true, seed: 3 });
    const vars = dinoHeadVariables(heads);
    const want = ['mlp.0.weight', 'mlp.0.bias', 'mlp.2.weight', 'mlp.2.bias', 'mlp.4.weight', 'mlp.4.bias', 'last_layer.weight_g', 'last_layer.weight_v'];
    assert.deepEqual([...vars.keys()], [...want.map((k) => `dino_head.${k}`), ...want.map((k) => `ibot_head.${k}`)]);
    assert.deepEqual(vars.get('dino_head.mlp.0.weight')!.shape, [16, 24]);
    assert.deepEqual(vars.get('dino_head.last_layer.weight_g')!.shape, [32, 1]);
    assert.deepEqual(vars.get('dino_head.last_layer.weight_v')!.shape, [32, 8]);
    assert.ok(arr(vars.get('dino_head.last_layer.weight_g')!).every((v) => v === 1));
    assert.ok(arr(vars.get('dino_head.mlp.2.bias')!).every((v) => v === 0));
    const v = arr(vars.get('dino_head.last_layer.weight_v')!);
    assert.ok(v.every((x) => Math.abs(x) <= 1 / Math.sqrt(8)), 'v ~ U(±1/√bottleneck)');
    const per = 16 * 24 + 24 + 24 * 24 + 24 + 24 * 8 + 8 + 32 + 32 * 8;
    assert.equal(dinoHeadParamCount(heads), 2 * per);
    // default DINOv2 head on ViT-L: 1024·2048 + 2048 + 2048² + 2048 + 2048·256 + 256 + 65536 + 65536·256
    assert.equal(dinoHeadConfig({ inDim: 1024 }).outDim, 65536);
    disposeDinoHeads(heads);
  });

  it('checkpoint round trip: MLP weights transposed on disk, weight_g [K,1] / weight_v [K,bot] stored as is', () => {
    const heads = createDinoHeads({ inDim: 6, hiddenDim: 5, bottleneckDim: 4, outDim: 7 }, { seed: 1 });
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dino-head-')), 'h.safetensors');
    saveCheckpoint(file, { params: heads.params });
    const { tensors } = readSafetensors(file);
    assert.deepEqual(tensors.get('dino_head.mlp.0.weight')!.shape, [5, 6], 'torch Linear [out, in]');
    assert.deepEqual(tensors.get('dino_head.last_layer.weight_v')!.shape, [7, 4], 'torch weight_v [K, bottleneck]');
    assert.deepEqual(tensors.get('dino_head.last_layer.weight_g')!.shape, [7, 1], 'torch weight_g [K, 1]');
    const other = createDinoHeads({ inDim: 6, hiddenDim: 5, bottleneckDim: 4, outDim: 7 }, { seed: 2 });
    loadCheckpoint(file, { params: other.params });
    const a = dinoHeadVariables(heads);
    for (const [k, v] of dinoHeadVariables(other)) assert.deepEqual(arr(v), arr(a.get(k)!), k);
    disposeDinoHeads(heads);
    disposeDinoHeads(other);
  });

  it('bad sizes are clear errors (K ≤ 0, unknown keys, wrong input width)', () => {
    assert.throws(() => createDinoHeads({ inDim: 8, outDim: 0 }), /DinoHeadConfig\.outDim: expected a positive integer, got 0/);
    assert.throws(() => createDinoHeads({ inDim: 8, outDim: -5 }), /outDim/);
    assert.throws(() => createDinoHeads({ inDim: 8, bottleneck: 3 } as never), /unknown key 'bottleneck'.*bottleneckDim/);
    const heads = createDinoHeads({ inDim: 8, hiddenDim: 4, bottleneckDim: 4, outDim: 4 });
    assert.throws(() => tf.tidy(() => dinoHeadForward(heads.params.dino_head, tf.zeros([2, 7]), heads.config)), /expected input \[M, 8\], got \[2,7\]/);
    disposeDinoHeads(heads);
  });
});

describe('DINOv2 objective: teacher targets', () => {
  it('centering: softmax((T − c)/τ), the center used at step k holds the batches up to k − 1 (matches PyTorch)', async () => {
    const c = createCenter(10, 0.9);
    let hand = new Float32Array(10);
    await noLeak(() => {
      for (const s of F.centering) {
        assertClose(arr(c.center), s.center_used.values, 1e-6, 1e-5, 'center before the step');
        assertClose(arr(c.center), hand, 1e-6, 1e-5, 'hand recursion');
        const T = tf.tensor2d(s.teacher.values, s.teacher.shape);
        const p = centerTargets(c, T, s.temp);
        assertClose(arr(p), s.targets.values, 1e-6, 1e-4, 'centered targets');
        // hand: c ← 0.9 c + 0.1 mean_rows(T) for the next step
        const t = arr(T);
        hand = hand.map((v, k) => 0.9 * v + 0.1 * ((t[k] + t[10 + k] + t[20 + k] + t[30 + k]) / 4));
        T.dispose();
        p.dispose();
      }
    });
    c.center.dispose();
  });

  it('Sinkhorn-Knopp: exactly 3 iterations equal the fixture; rows sum to 1, prototype marginals balanced', () => {
    const s = F.sinkhorn;
    tf.tidy(() => {
      const T = t2(s.teacher);
      const p = sinkhornKnopp(T, s.temp);
      assertClose(arr(p), s.targets.values, 1e-6, 1e-4, 'SK targets');
      const p1 = sinkhornKnopp(T, s.temp, 1);
      assertClose(arr(p1), s.targets_1iter.values, 1e-6, 1e-4, 'SK 1 iteration');
      assert.ok(Math.abs(arr(p)[0] - arr(p1)[0]) > 1e-6, 'iteration count matters');
      arr(tf.sum(p, 1)).forEach((v) => assert.ok(Math.abs(v - 1) < 1e-5, `row sum ${v}`));
      const [n, K] = p.shape;
      const colP = arr(tf.sum(p, 0));
      const colT = arr(tf.sum(tf.softmax(tf.div(T, s.temp)), 0));
      const spread = (c: Float32Array): number => Math.max(...c) - Math.min(...c);
      colP.forEach((v) => assert.ok(Math.abs(v - n / K) < 0.35 * (n / K), `prototype mass ${v} vs ${n / K}`));
      assert.ok(spread(colP) < 0.5 * spread(colT), `balanced: spread ${spread(colP)} vs softmax ${spread(colT)}`);
    });
  });

  it('teacher temperature 0.04 → 0.07 linear over 30 epochs, then 0.07; bad modes are errors', () => {
    const s = teacherTempSchedule({ warmup: 0.04, final: 0.07, warmupEpochs: 30 }, 1250);
    assert.equal(scheduleAt(s, 0), 0.04);
    assert.ok(Math.abs(scheduleAt(s, 15 * 1250) - 0.055) < 1e-12);
    assert.equal(scheduleAt(s, 30 * 1250), 0.07);
    assert.equal(scheduleAt(s, 90 * 1250), 0.07);
    assert.throws(() => checkTargetMode({ kind: 'sinkhorn' } as never), /unknown kind 'sinkhorn'; valid: centering, sinkhorn_knopp/);
    assert.throws(() => checkTargetMode({ kind: 'sinkhorn_knopp', iterations: 0 }), /iterations/);
    assert.throws(() => createCenter(0), /K \(prototypes\) must be a positive integer, got 0/);
  });
});

describe('DINOv2 objective: losses', () => {
  it('DINO CLS loss: swapped teacher chunks, 2 + 2n pairs (18 for 8 local crops), general n, n = 0 (upstream max(·,1))', () => {
    assert.equal(dinoPairCount(2, 8), 18);
    assert.equal(dinoPairCount(2, 2), 6);
    assert.equal(dinoPairCount(2, 0), 3);
    for (const c of F.dino) {
      assert.equal(dinoPairCount(2, c.n_local), c.pairs);
      tf.tidy(() => {
        const r = dinoClsLoss({
          studentGlobal: t2(c.student_global),
          studentLocal: c.n_local ? t2(c.student_local) : null,
          teacherProbs: t2(c.teacher_probs),
          nLocal: c.n_local,
        });
        assert.equal(r.pairs, c.pairs);
        assertClose([arr(r.local)[0], arr(r.global)[0], arr(r.loss)[0]], [c.loss_local, c.loss_global, c.loss], 1e-5, 1e-5, `DINO loss B=${c.batch} n=${c.n_local}`);
        // without the swap the loss is different (a global crop would be matched with itself)
        const noSwap = dinoClsLoss({ studentGlobal: t2(c.student_global), studentLocal: c.n_local ? t2(c.student_local) : null, teacherProbs: tf.concat(tf.split(t2(c.teacher_probs), 2).reverse()) as tf.Tensor2D, nLocal: c.n_local });
        assert.ok(Math.abs(arr(noSwap.global)[0] - c.loss_global) > 1e-3, 'swap matters');
      });
    }
  });

  it('DINO CLS loss: hand-computed tiny case (B = 1, K = 2, one local crop)', () => {
    // student logits s/τ: global g1 → [0, 0], g2 → [ln 3·0.1, 0]/0.1 = [ln 3, 0]; local → [0, ln 3]
    const ln3 = Math.log(3);
    tf.tidy(() => {
      const sg = tf.tensor2d([[0, 0], [0.1 * ln3, 0]]);
      const sl = tf.tensor2d([[0, 0.1 * ln3]]);
      const tp = tf.tensor2d([[1, 0], [0.5, 0.5]]); // teacher g1, g2
      const r = dinoClsLoss({ studentGlobal: sg, studentLocal: sl, teacherProbs: tp, nLocal: 1 });
      // log softmax: g1 [−ln2, −ln2]; g2 [ln(3/4), ln(1/4)]; local [ln(1/4), ln(3/4)]
      const Hg1 = -(0.5 * -Math.LN2 + 0.5 * -Math.LN2); // teacher g2 vs student g1 = ln 2
      const Hg2 = -(1 * Math.log(3 / 4)); // teacher g1 vs student g2
      const Hl1 = -Math.log(1 / 4); // teacher g1 vs local
      const Hl2 = -(0.5 * Math.log(1 / 4) + 0.5 * Math.log(3 / 4)); // teacher g2 vs local
      const pairs = 2 + 2;
      assertClose(arr(r.loss), [(Hg1 + Hg2 + Hl1 + Hl2) / pairs], 1e-6, 1e-6, 'hand DINO loss');
    });
  });

  it('iBOT loss: per-image 1/|M_b| weights, divided by all 2B images (matches PyTorch)', () => {
    const c = F.ibot;
    const masks = ibotMasksFrom(Array.from({ length: 4 }, (_, b) => c.masks.values.slice(b * 6, b * 6 + 6)), [2, 3]);
    assert.deepEqual(masks.counts, [2, 0, 3, 1]);
    assertClose(masks.weights, c.weights.values, 1e-7, 0, 'masks_weight');
    assertClose(ibotWeights([2, 0, 3, 1]), c.weights.values, 1e-7, 0, 'ibotWeights');
    tf.tidy(() => {
      const l = ibotPatchLoss(t2(c.student), t2(c.teacher_probs), masks.weights, 4);
      assertClose(arr(l), [c.loss], 1e-6, 1e-5, 'iBOT loss');
      // hand: a row of image b weighs 1/|M_b|; equal per-row H gives Σ_b [|M_b| > 0] / 2B · H
      const one = ibotPatchLoss(tf.zeros([6, 3]), tf.fill([6, 3], 1 / 3) as tf.Tensor2D, masks.weights, 4);
      assertClose(arr(one), [(3 / 4) * Math.log(3)], 1e-6, 1e-6, 'three masked images of four, H = ln 3 each');
    });
    assert.throws(() => tf.tidy(() => ibotPatchLoss(tf.zeros([2, 3]), tf.zeros([3, 3]), new Float32Array(3), 4)), /do not match teacher targets/);
  });

  it('KoLeo: fixture (per chunk, summed) and a naive O(n²) reference', () => {
    const c = F.koleo;
    tf.tidy(() => {
      const x = t2(c.x);
      assertClose(arr(koleoPerChunk(x, 2)), [c.loss], 1e-5, 1e-5, 'KoLeo (2 chunks)');
      const chunks = tf.split(x, 2);
      chunks.forEach((ch, i) => assertClose(arr(koleoLoss(ch as tf.Tensor2D)), [c.chunks[i].loss], 1e-5, 1e-5, `chunk ${i}`));
    });
    // naive reference on random data
    const n = 7;
    const D = 5;
    const data = Array.from({ length: n * D }, (_, i) => Math.sin(i * 1.7) + 0.3 * Math.cos(i * 0.3));
    const z = Array.from({ length: n }, (_, i) => {
      const v = data.slice(i * D, i * D + D);
      const nv = Math.sqrt(v.reduce((a, b) => a + b * b, 0));
      return v.map((e) => e / nv);
    });
    let want = 0;
    for (let i = 0; i < n; i++) {
      let best = -Infinity;
      let bj = -1;
      for (let j = 0; j < n; j++) {
        if (j === i) continue;
        const d = z[i].reduce((a, e, k) => a + e * z[j][k], 0);
        if (d > best) [best, bj] = [d, j];
      }
      const dist = Math.sqrt(z[i].reduce((a, e, k) => a + (e - z[bj][k] + 1e-8) ** 2, 0));
      want -= Math.log(dist + 1e-8) / n;
    }
    tf.tidy(() => assertClose(arr(koleoLoss(tf.tensor2d(data, [n, D]))), [want], 1e-5, 1e-5, 'naive KoLeo'));
    assert.throws(() => tf.tidy(() => koleoLoss(tf.zeros([1, 4]))), /needs 2 samples/);
  });

  it('the whole objective from backbone features (shared head; centering and Sinkhorn-Knopp) matches PyTorch', async () => {
    const f = F.full;
    for (const mode of ['centering', 'sinkhorn_knopp'] as const) {
      const c = f.cases[mode];
      const obj = dinov2Objective({
        head: { hiddenDim: 12, bottleneckDim: 6, outDim: 10 },
        targets: mode === 'centering' ? { kind: 'centering', momentum: 0.9 } : { kind: 'sinkhorn_knopp', iterations: 3 },
        nLocalCrops: f.n_local,
      });
      const cfg = { inDim: f.dim, ...obj.head };
      const sh = createDinoHeads(cfg);
      const th = createDinoHeads(cfg);
      loadHeadParams(sh.params, f.student_params);
      loadHeadParams(th.params, f.teacher_params);
      const state = createDinov2LossState(obj);
      const N = f.patches;
      const masks = ibotMasksFrom(Array.from({ length: 2 * f.batch }, (_, b) => f.masks.values.slice(b * N, b * N + N)), [2, 3]);
      await noLeak(() =>
        tf.tidy(() => {
          const out = dinov2LossFromFeatures({
            student: { clsGlobal: t2(f.student_cls_global), clsLocal: t2(f.student_cls_local), patchGlobal: t3(f.student_patch) },
            teacher: { cls: t2(f.teacher_cls), patch: t3(f.teacher_patch) },
            studentHeads: sh.params,
            teacherHeads: th.params,
            headConfig: sh.config,
            masks,
            teacherTemp: c.temp,
            objective: obj,
            state,
            nLocal: f.n_local,
          });
          const got = [out.dino, out.ibot, out.koleo, out.total].map((t) => arr(t)[0]);
          assertClose(got, [c.dino, c.ibot, c.koleo, c.total], 1e-4, 1e-5, `${mode}: dino, ibot, koleo, total`);
        }),
      );
      if (mode === 'centering') {
        assertClose(arr(state.clsCenter!.center), c.center_cls_next.values, 1e-6, 1e-4, 'CLS center after the step');
        assertClose(arr(state.patchCenter!.center), c.center_patch_next.values, 1e-6, 1e-4, 'patch center (masked rows) after the step');
      } else {
        assert.equal(state.clsCenter, null);
      }
      disposeDinov2LossState(state);
      disposeDinoHeads(sh);
      disposeDinoHeads(th);
    }
  });

  it('objective config: defaults, unknown keys and inconsistent crop counts are clear errors', () => {
    const d = dinov2Objective();
    assert.equal(d.head.outDim, 65536);
    assert.equal(d.nLocalCrops, 8);
    assert.deepEqual(d.weights, { dino: 1, koleo: 0.1, ibot: 1 });
    assert.throws(() => dinov2Objective({ nLocal: 4 } as never), /Dinov2Objective: unknown key 'nLocal'; valid keys: .*nLocalCrops/);
    assert.throws(() => dinov2Objective({ head: { K: 5 } } as never), /Dinov2Objective\.head: unknown key 'K'/);
    assert.throws(() => dinov2Objective({ head: { outDim: 0 } }), /head\.outDim: expected a positive integer, got 0/);
    assert.throws(() => dinov2Objective({ masking: { ratio: 0.3 } } as never), /IbotMaskConfig: unknown key 'ratio'/);
    tf.tidy(() => {
      const v = (b: number, s: number): tf.Tensor4D => tf.zeros([b, s, s, 3]);
      assert.throws(() => multiCropBatch([v(2, 8), v(2, 8), v(2, 4)], 2), /expected 2 global \+ 2 local = 4 views, got 3/);
      assert.throws(() => multiCropBatch([v(2, 8), v(3, 8)], 0), /view 1 has 3 images, view 0 has 2/);
      assert.throws(() => multiCropBatch([v(2, 8), v(2, 4)], 0), /global crops differ in shape/);
      assert.throws(() => multiCropBatch([v(2, 8), v(2, 8), v(2, 4), v(2, 6)], 2), /local crop 1 has shape/);
      const ok = multiCropBatch([v(2, 8), v(2, 8), v(2, 4), v(2, 4)], 2);
      assert.deepEqual(ok.global.shape, [4, 8, 8, 3]);
      assert.deepEqual(ok.local!.shape, [4, 4, 4, 3]);
      assert.throws(() => dinoClsLoss({ studentGlobal: tf.zeros([4, 5]) as tf.Tensor2D, studentLocal: tf.zeros([6, 5]) as tf.Tensor2D, teacherProbs: tf.zeros([4, 5]) as tf.Tensor2D, nLocal: 2 }), /local logits must be \[2·2 = 4, 5\]/);
    });
  });
});
