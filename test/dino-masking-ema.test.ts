/**
 * iBOT block-wise masks (counts, ratio spread over [0.1, 0.5], 50 % cap, half of the images, shuffling, determinism
 * by seed) and the teacher EMA (exact hand recursion, LoRA A and B averaged separately, momentum schedule, no leaks).
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { assertClose, noLeak } from './util';
import { Rng } from '../lib/rng';
import { blockMask, ibotMasks, ibotMaskTensor, ibotMaskConfig } from '../lib/dino/masking';
import { emaPairs, emaUpdate, teacherMomentumSchedule } from '../lib/dino/ema';
import { scheduleAt } from '../lib/train/schedule';
import { createLora, cloneLora, disposeLora, loraVariables, loraDeltaWeight, qvTarget } from '../lib/peft/lora';
import { createVit, disposeVit } from '../lib/vit/params';
import { makeVariable, newScope } from '../lib/tree';

describe('DINOv2 objective: iBOT masks', () => {
  it('half of the 2B images masked, target ratios one per linspace(0.1, 0.5) sub-interval, counts ≤ target ≤ 50 %', () => {
    const H = 16;
    const W = 16;
    const N = H * W;
    for (const seed of [0, 1, 2, 3]) {
      const n = 16;
      const m = ibotMasks(new Rng(seed), n, H, W);
      assert.equal(m.n, n);
      assert.equal(m.targets.filter((t) => t > 0).length, 8, 'half of the images get a mask');
      const sorted = m.targets.filter((t) => t > 0).sort((a, b) => a - b);
      const r = Array.from({ length: 9 }, (_, i) => 0.1 + (0.4 * i) / 8);
      sorted.forEach((t, i) => assert.ok(t >= Math.floor(N * r[i]) && t <= Math.floor(N * r[i + 1]), `target ${t} of masked image ${i} in [${N * r[i]}, ${N * r[i + 1]}]`));
      m.counts.forEach((c, b) => {
        assert.ok(c <= m.targets[b], `count ${c} ≤ target ${m.targets[b]}`);
        assert.ok(c <= 0.5 * N, 'cap 50 %');
        if (m.targets[b] > 0) assert.ok(c >= 0.6 * m.targets[b], `count ${c} reaches most of the target ${m.targets[b]}`);
        else assert.equal(c, 0);
      });
      // consistency of the flat data
      assert.equal(m.indices.length, m.counts.reduce((a, b) => a + b, 0));
      let o = 0;
      m.counts.forEach((c, b) => {
        for (let i = 0; i < c; i++, o++) {
          assert.equal(Math.floor(m.indices[o] / N), b);
          assert.equal(m.mask[m.indices[o]], 1);
          assert.ok(Math.abs(m.weights[o] - 1 / c) < 1e-7);
        }
      });
    }
  });

  it('masks are shuffled over the batch and reproducible by seed', () => {
    const a = ibotMasks(new Rng(7), 8, 8, 8);
    const b = ibotMasks(new Rng(7), 8, 8, 8);
    assert.deepEqual(a, b, 'same seed, same masks');
    const positions = new Set<string>();
    for (let s = 0; s < 12; s++) positions.add(ibotMasks(new Rng(s), 8, 8, 8).targets.map((t) => (t > 0 ? 1 : 0)).join(''));
    assert.ok(positions.size > 4, `masked images land at different batch positions (${positions.size} patterns)`);
    assert.notDeepEqual(ibotMasks(new Rng(8), 8, 8, 8).mask, a.mask);
    tf.tidy(() => {
      const t = ibotMaskTensor(a);
      assert.deepEqual(t.shape, [8, 64]);
      assert.equal(t.sum().dataSync()[0], a.indices.length);
    });
  });

  it('block-wise: masks are compact rectangles (BEiT), not scattered patches; odd inputs are errors', () => {
    const bboxFill = (mk: (s: number) => Uint8Array): number => {
      let fill = 0;
      for (let s = 0; s < 40; s++) {
        const m = mk(s);
        let r0 = 99;
        let r1 = -1;
        let c0 = 99;
        let c1 = -1;
        let cnt = 0;
        m.forEach((v, i) => {
          if (!v) return;
          cnt++;
          const r = Math.floor(i / 14);
          const c = i % 14;
          [r0, r1, c0, c1] = [Math.min(r0, r), Math.max(r1, r), Math.min(c0, c), Math.max(c1, c)];
        });
        assert.ok(cnt > 0 && cnt <= 12);
        fill += cnt / ((r1 - r0 + 1) * (c1 - c0 + 1));
      }
      return fill / 40;
    };
    const blocks = bboxFill((s) => blockMask(new Rng(s), 14, 14, 12));
    const scattered = bboxFill((s) => {
      const m = new Uint8Array(196);
      new Rng(s).permutation(196).slice(0, 12).forEach((i) => (m[i] = 1));
      return m;
    });
    assert.ok(blocks > 3 * scattered, `mean bounding-box fill: blocks ${blocks} vs scattered ${scattered}`);
    assert.equal(blockMask(new Rng(0), 4, 4, 0).reduce((a, b) => a + b, 0), 0);
    assert.throws(() => blockMask(new Rng(0), 4, 4, 17), /target must be an integer in \[0, 16\]/);
    assert.throws(() => ibotMasks(new Rng(0), 0, 4, 4), /image count \(2B\) must be a positive integer/);
    assert.throws(() => ibotMaskConfig({ ratioMinMax: [0.6, 0.2] }), /ratioMinMax/);
  });
});

describe('DINOv2 objective: teacher EMA', () => {
  function vars(values: number[][], trainable: boolean): Map<string, tf.Variable> {
    const scope = newScope('ema-test');
    return new Map(values.map((v, i) => [`p${i}`, makeVariable(scope, `p${i}`, Float32Array.from(v), [v.length], trainable)]));
  }

  it('teacher after k steps equals the hand recursion θ_t ← mθ_t + (1 − m)θ_s with a changing student', async () => {
    const s = vars([[1, 2, 3], [-1, 0.5]], true);
    const t = vars([[0, 0, 0], [2, 2]], false);
    const pairs = emaPairs(t, s);
    const hand = [[0, 0, 0], [2, 2]];
    const ms = [0.992, 0.9, 0.5, 0.0, 0.999];
    await noLeak(() => {
      ms.forEach((m, k) => {
        // the student moves between EMA steps
        tf.tidy(() => s.get('p0')!.assign(tf.add(s.get('p0')!, k + 1)));
        const sv = [...s.values()].map((v) => Array.from(v.dataSync()));
        emaUpdate(pairs, m);
        hand.forEach((h, i) => h.forEach((x, j) => (h[j] = m * x + (1 - m) * sv[i][j])));
      });
    });
    [...t.values()].forEach((v, i) => assertClose(v.dataSync(), hand[i], 1e-6, 1e-6, `teacher p${i}`));
    const before = [...t.values()].map((v) => Array.from(v.dataSync()));
    emaUpdate(pairs, 1);
    [...t.values()].forEach((v, i) => assert.deepEqual(Array.from(v.dataSync()), before[i], 'm = 1 leaves the teacher'));
    [...s.values(), ...t.values()].forEach((v) => v.dispose());
  });

  it('LoRA A and B are EMA-ed separately: teacher ΔW = s·EMA(A)·EMA(B), not EMA(s·A·B)', () => {
    const vit = createVit('vit_tiny_patch16_224', { imgSize: 16, patchSize: 8, embedDim: 16, depth: 1, numHeads: 2 });
    const student = createLora(vit.params, { rank: 2, targets: [qvTarget()] }, { seed: 1 });
    // give B a non-zero value so ΔW ≠ 0
    tf.tidy(() => loraVariables(student).forEach((v, p) => p.includes('lora_B') && v.assign(tf.fill(v.shape, 0.1))));
    const teacher = cloneLora(student);
    assert.ok([...loraVariables(teacher).values()].every((v) => !v.trainable), 'teacher adapters are not trainable');
    const pairs = emaPairs(loraVariables(teacher), loraVariables(student));
    assert.equal(pairs.length, 4, 'A and B of the Q and V slices');
    const m = 0.5;
    const site = 'blocks.0.attn.qkv';
    const dW0 = tf.tidy(() => loraDeltaWeight(student.modules.get(site)!));
    // student step: A ← 2A, B ← 3B
    tf.tidy(() => loraVariables(student).forEach((v, p) => v.assign(tf.mul(v, p.includes('lora_A') ? 2 : 3))));
    const dW1 = tf.tidy(() => loraDeltaWeight(student.modules.get(site)!));
    emaUpdate(pairs, m);
    tf.tidy(() => {
      const got = loraDeltaWeight(teacher.modules.get(site)!);
      // separate EMA: A_t = 1.5 A0, B_t = 2 B0 ⇒ ΔW_t = 3·ΔW0; EMA of ΔW would be 0.5·ΔW0 + 0.5·6·ΔW0 = 3.5·ΔW0
      assertClose(got.dataSync(), tf.mul(dW0, 3).dataSync(), 1e-6, 1e-5, 'ΔW of EMA(A), EMA(B)');
      const emaOfDelta = tf.add(tf.mul(dW0, m), tf.mul(dW1, 1 - m));
      assert.ok(tf.max(tf.abs(tf.sub(got, emaOfDelta))).dataSync()[0] > 1e-4, 'differs from EMA(ΔW)');
    });
    dW0.dispose();
    dW1.dispose();
    disposeLora(student);
    disposeLora(teacher);
    disposeVit(vit);
  });

  it('momentum cosine 0.992 → 1; pairing errors name the path', () => {
    const s = teacherMomentumSchedule(1000);
    assert.equal(scheduleAt(s, 0), 0.992);
    assert.ok(Math.abs(scheduleAt(s, 500) - 0.996) < 1e-12);
    assert.ok(Math.abs(scheduleAt(s, 250) - (1 - 0.008 * (1 + Math.cos(Math.PI / 4)) / 2)) < 1e-12);
    assert.equal(scheduleAt(s, 1000), 1);
    const a = vars([[1, 2]], true);
    const b = vars([[1, 2, 3]], false);
    assert.throws(() => emaPairs(b, a), /'p0' has shape \[3\] in the teacher and \[2\] in the student/);
    assert.throws(() => emaPairs(new Map(), a), /the teacher has no parameter 'p0'/);
    assert.throws(() => emaPairs(a, a), /'p0' is the same variable in teacher and student/);
    assert.throws(() => emaUpdate([], 1.5), /EMA: momentum: expected a finite number in \[0, 1\], got 1\.5/);
    [...a.values(), ...b.values()].forEach((v) => v.dispose());
  });
});
