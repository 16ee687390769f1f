import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { Optimizer, ADAMW_DEFAULTS, SGD_MOMENTUM, defaultDecay, layerDecayScale, layerId } from '../lib/train/optim';
import { scheduleAt, checkSchedule, scaledLr } from '../lib/train/schedule';
import { crossEntropy } from '../lib/train/loss';
import { clipByGlobalNorm } from '../lib/train/step';
import { assertClose } from './util';

function vars(entries: Array<[string, number[], number[]]>): Map<string, tf.Variable> {
  return new Map(entries.map(([p, vals, shape]) => [p, tf.variable(tf.tensor(vals, shape), true, `t-${p}-${Math.random()}`)]));
}

describe('AdamW', () => {
  it('matches a hand-computed two-step update with decoupled decay (PyTorch AdamW semantics)', () => {
    const params = vars([['w', [1.0, -2.0], [1, 2]], ['b', [0.5], [1]]]);
    const opt = new Optimizer({ ...ADAMW_DEFAULTS, beta1: 0.9, beta2: 0.99, eps: 1e-8 }, params);
    const lr = 0.1, wd = 0.5;
    const gradsSeq = [
      new Map([['w', [0.2, -0.4]], ['b', [1.0]]]),
      new Map([['w', [-0.1, 0.3]], ['b', [0.5]]]),
    ];
    // reference in doubles
    const ref: Record<string, number[]> = { w: [1.0, -2.0], b: [0.5] };
    const m: Record<string, number[]> = { w: [0, 0], b: [0] };
    const v: Record<string, number[]> = { w: [0, 0], b: [0] };
    gradsSeq.forEach((gs, s) => {
      const t = s + 1;
      tf.tidy(() => opt.apply(new Map([...gs].map(([k, g]) => [k, tf.tensor(g, params.get(k)!.shape)])), lr, wd));
      for (const [k, g] of gs) {
        const decay = k === 'w'; // rank-2 decays, rank-1 bias does not
        ref[k] = ref[k].map((p, i) => {
          m[k][i] = 0.9 * m[k][i] + 0.1 * g[i];
          v[k][i] = 0.99 * v[k][i] + 0.01 * g[i] * g[i];
          const mh = m[k][i] / (1 - 0.9 ** t);
          const vh = v[k][i] / (1 - 0.99 ** t);
          const pd = decay ? p * (1 - lr * wd) : p;
          return pd - (lr * mh) / (Math.sqrt(vh) + 1e-8);
        });
      }
    });
    assertClose(params.get('w')!.dataSync(), ref.w, 1e-6, 0, 'w');
    assertClose(params.get('b')!.dataSync(), ref.b, 1e-6, 0, 'b');
    assert.equal(opt.step, 2);
    const state = opt.stateTensors();
    assert.deepEqual([...state.keys()], ['exp_avg.w', 'exp_avg_sq.w', 'exp_avg.b', 'exp_avg_sq.b']);
    assertClose(state.get('exp_avg.w')!.dataSync(), m.w, 1e-7);
    opt.dispose();
    params.forEach((p) => p.dispose());
  });

  it('per-parameter lr scale (layer-wise decay) and no-decay mask', () => {
    assert.equal(layerId('cls_token', 12), 0);
    assert.equal(layerId('patch_embed.proj.weight', 12), 0);
    assert.equal(layerId('blocks.0.attn.qkv.weight', 12), 1);
    assert.equal(layerId('blocks.11.mlp.fc2.bias', 12), 12);
    assert.equal(layerId('head.weight', 12), 13);
    const s = layerDecayScale(12, 0.75);
    assert.ok(Math.abs(s('head.weight') - 1) < 1e-12);
    assert.ok(Math.abs(s('blocks.11.norm1.weight') - 0.75) < 1e-12);
    assert.ok(Math.abs(s('pos_embed') - 0.75 ** 13) < 1e-12);
    const v2 = tf.variable(tf.zeros([2, 2]), true, `dm-${Math.random()}`);
    const v1 = tf.variable(tf.zeros([2]), true, `dm-${Math.random()}`);
    const v3 = tf.variable(tf.zeros([1, 5, 2]), true, `dm-${Math.random()}`);
    assert.equal(defaultDecay('blocks.0.attn.qkv.weight', v2), true);
    assert.equal(defaultDecay('blocks.0.attn.qkv.bias', v1), false);
    assert.equal(defaultDecay('pos_embed', v3), false);
    assert.equal(defaultDecay('cls_token', v3), false);
    tf.dispose([v1, v2, v3]);
  });
});

describe('SGD with momentum', () => {
  it('matches PyTorch: buf = g on step 1, then μ·buf + g; coupled weight decay', () => {
    const params = vars([['w', [1.0], [1]]]);
    const opt = new Optimizer(SGD_MOMENTUM, params, { decay: () => true });
    const lr = 0.1, wd = 0.01;
    let p = 1.0, buf = 0;
    [0.5, -0.2, 0.3].forEach((g, s) => {
      tf.tidy(() => opt.apply(new Map([['w', tf.tensor1d([g])]]), lr, wd));
      const gd = g + wd * p;
      buf = s === 0 ? gd : 0.9 * buf + gd;
      p = p - lr * buf;
    });
    assertClose(params.get('w')!.dataSync(), [p], 1e-6);
    opt.dispose();
    params.forEach((v) => v.dispose());
  });
  it('refuses unknown config keys and an empty trainable set', () => {
    const params = vars([['w', [1.0], [1]]]);
    assert.throws(() => new Optimizer({ ...SGD_MOMENTUM, beta1: 0.9 } as never, params), /unknown key 'beta1'/);
    assert.throws(() => new Optimizer(ADAMW_DEFAULTS, new Map()), /trainable set is empty/);
    params.forEach((v) => v.dispose());
  });
});

describe('schedules', () => {
  it('warm-up + half-cycle cosine per iteration (MAE lr_sched)', () => {
    const s = checkSchedule({ kind: 'cosine', base: 1e-3, min: 1e-5, warmupIters: 10, totalIters: 110 });
    assert.equal(scheduleAt(s, 0), 0);
    assert.ok(Math.abs(scheduleAt(s, 5) - 5e-4) < 1e-15);
    assert.ok(Math.abs(scheduleAt(s, 10) - 1e-3) < 1e-15);
    assert.ok(Math.abs(scheduleAt(s, 60) - (1e-5 + (1e-3 - 1e-5) * 0.5)) < 1e-12);
    assert.ok(Math.abs(scheduleAt(s, 110) - 1e-5) < 1e-15);
    assert.ok(Math.abs(scheduleAt(s, 500) - 1e-5) < 1e-15);
  });
  it('weight-decay cosine 0.04 → 0.4 and linear teacher-temperature warm-up', () => {
    const wd = { kind: 'cosine', base: 0.04, min: 0.4, warmupIters: 0, totalIters: 100 } as const;
    assert.ok(Math.abs(scheduleAt(wd, 0) - 0.04) < 1e-12 && Math.abs(scheduleAt(wd, 100) - 0.4) < 1e-12);
    const tt = { kind: 'linear', from: 0.04, to: 0.07, iters: 30 } as const;
    assert.ok(Math.abs(scheduleAt(tt, 15) - 0.055) < 1e-12 && scheduleAt(tt, 40) === 0.07);
    assert.equal(scaledLr(4.5e-4, 1024), 1.8e-3);
  });
  it('bad schedules are refused with the field named', () => {
    assert.throws(() => checkSchedule({ kind: 'cosine', base: 1, min: 0, warmupIters: 20, totalIters: 10 }), /warmupIters must be in \[0, totalIters=10\]/);
    assert.throws(() => checkSchedule({ kind: 'constant', value: 1, lr: 2 } as never), /unknown key 'lr'/);
  });
});

describe('losses and clipping', () => {
  it('cross-entropy with label smoothing equals CE against the smoothed target', () => {
    const logits = [[2, 0.5, -1], [0, 0, 3]];
    const labels = [0, 2];
    const eps = 0.1;
    const got = tf.tidy(() => crossEntropy(tf.tensor2d(logits), tf.tensor1d(labels, 'int32'), eps).dataSync()[0]);
    let ref = 0;
    logits.forEach((row, b) => {
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
      row.forEach((x, k) => {
        const target = (k === labels[b] ? 1 - eps : 0) + eps / 3;
        ref -= target * (x - lse);
      });
    });
    assert.ok(Math.abs(got - ref / 2) < 1e-6, `${got} vs ${ref / 2}`);
  });
  it('global grad-norm clipping (PyTorch clip_grad_norm_)', () => {
    tf.tidy(() => {
      const g = new Map<string, tf.Tensor>([['a', tf.tensor1d([3, 0])], ['b', tf.tensor1d([4])]]);
      const { grads, norm } = clipByGlobalNorm(g, 1);
      assert.ok(Math.abs(norm.dataSync()[0] - 5) < 1e-6);
      assertClose(grads.get('a')!.dataSync(), [3 / (5 + 1e-6), 0], 1e-6);
      const { grads: same } = clipByGlobalNorm(g, 10);
      assertClose(same.get('b')!.dataSync(), [4], 1e-7);
    });
  });
});
