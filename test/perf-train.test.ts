/**
 * The whole ViT on the fast path against the plain path (forward outputs and gradients of every trainable variable,
 * with the linear / merge / propAttn sites in use), activation recomputation against the plain backward (with merge
 * hooks and MAE: test/recompute.test.ts), and the memory contract of a training loop (live tensors after 100 steps =
 * after 1 step).
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { createVit, disposeVit, vitVariables, Vit } from '../lib/vit/params';
import { MergeSiteInput, TokenState, vitForward, VitForwardOptions, VitHooks } from '../lib/vit/forward';
import { fastPath, linear, setFastOps } from '../lib/ops/fast';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { Rng } from '../lib/rng';
import { assertClose, randArray } from './util';

const MICRO = { imgSize: 32, patchSize: 8, embedDim: 24, depth: 3, numHeads: 3, numClasses: 5 } as const;

function images(b: number, seed = 1): tf.Tensor4D {
  return tf.tensor4d(randArray(b * 32 * 32 * 3, seed), [b, 32, 32, 3]);
}

/** A LoRA-like adapter on Q and V of every qkv site except the last block's; variables named under each block. */
function adapter(vit: Vit, r = 4): { vars: Map<string, tf.Variable>; hooks: VitHooks } {
  const D = vit.config.embedDim;
  const vars = new Map<string, tf.Variable>();
  const rng = new Rng(3);
  const mk = (path: string, shape: [number, number]) => {
    const v = tf.variable(tf.tensor2d(Float32Array.from({ length: shape[0] * shape[1] }, () => rng.normal(0, 0.3)), shape), true, `t/${path}/${Math.random()}`);
    vars.set(path, v);
    return v;
  };
  for (let i = 0; i < vit.config.depth - 1; i++) {
    mk(`blocks.${i}.attn.qkv.lora_A`, [D, r]);
    mk(`blocks.${i}.attn.qkv.lora_B`, [r, 2 * D]);
  }
  const hooks: VitHooks = {
    linear: (site, x, y) => {
      const m = /^blocks\.(\d+)\.attn\.qkv$/.exec(site);
      const a = m ? vars.get(`blocks.${m[1]}.attn.qkv.lora_A`) : undefined;
      if (!m || !a) return y;
      const b = vars.get(`blocks.${m[1]}.attn.qkv.lora_B`)!;
      const dqv = linear(linear(x, a), b); // [M, 2D]
      const [dq, dv] = tf.split(dqv, 2, 1);
      return tf.add(y, tf.concat([dq, tf.zerosLike(dq), dv], 1)) as tf.Tensor2D;
    },
  };
  return { vars, hooks };
}

/** ExPLoRA-like trainable set: last block, norms, cls, head, adapters. */
function trainableSet(vit: Vit, extra: Map<string, tf.Variable>): Map<string, tf.Variable> {
  const last = vit.config.depth - 1;
  const out = new Map<string, tf.Variable>();
  for (const [p, v] of vitVariables(vit)) {
    if (p.startsWith(`blocks.${last}.`) || /(^|\.)norm/.test(p) || p.startsWith('head.') || p === 'cls_token') out.set(p, v);
  }
  for (const [p, v] of extra) out.set(p, v);
  return out;
}

/** Loss and gradients (by path) of one forward, read back to arrays. */
function lossAndGrads(vit: Vit, x: tf.Tensor4D, y: tf.Tensor1D, params: Map<string, tf.Variable>, opts: VitForwardOptions) {
  const vars = [...params.values()];
  const ts = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => crossEntropy(vitForward(vit, x, opts).logits!, y), vars);
    return [value, ...vars.map((v) => grads[v.name])];
  });
  const byPath = new Map<string, Float32Array>();
  [...params.keys()].forEach((p, i) => byPath.set(p, ts[i + 1].dataSync() as Float32Array));
  const loss = ts[0].dataSync()[0];
  tf.dispose(ts);
  return { loss, grads: byPath };
}

function compareGrads(a: Map<string, Float32Array>, b: Map<string, Float32Array>, what: string): void {
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [p, g] of a) {
    const h = b.get(p)!;
    let m = 0;
    for (const v of h) m = Math.max(m, Math.abs(v));
    assertClose(g, h, 1e-6 * m + 1e-8, 1e-4, `${what}: grad ${p}`);
  }
}

describe('perf: the fast ViT forward and backward', function () {
  it('fast and plain paths agree on outputs and on every gradient, with linear, merge and propAttn sites in use', function () {
    if (fastPath().path !== 'wasm-fused') this.skip(); // only meaningful where the fused kernels run
    const vit = createVit('vit_tiny_patch16_224', { ...MICRO, pool: 'avg' }, { seed: 1 });
    const ad = adapter(vit);
    // a token-dropping merge hook that tracks sizes, so propAttn's key bias is live in later blocks
    const merge = (inp: MergeSiteInput): TokenState => {
      const { x } = inp.state;
      const [B, N, D] = x.shape;
      const km = tf.mean(inp.keyMean, 2).reshape([B, N, 1]); // uses the keys differentiably
      const keep = N - 1;
      const xs = tf.add(x.slice([0, 0, 0], [B, keep, D]), tf.mul(km.slice([0, 0, 0], [B, keep, 1]), 0.1)) as tf.Tensor3D;
      const size = inp.state.size ? inp.state.size.slice([0, 0, 0], [B, keep, 1]) : tf.fill([B, keep, 1], 2);
      return { x: xs, size: size as tf.Tensor3D, source: null };
    };
    const hooks: VitHooks = { ...ad.hooks, merge, propAttn: true };
    const x = images(2);
    const y = tf.tensor1d([1, 3], 'int32');
    const params = new Map([...vitVariables(vit), ...ad.vars]);
    const run = () => {
      const o = tf.tidy(() => vitForward(vit, x, { hooks }).logits!.dataSync() as Float32Array);
      return { logits: o, ...lossAndGrads(vit, x, y, params, { hooks }) };
    };
    const fast = run();
    setFastOps(false);
    let plain;
    try {
      plain = run();
    } finally {
      setFastOps(true);
    }
    assertClose(fast.logits, plain.logits, 1e-6, 1e-4, 'logits');
    assert.ok(Math.abs(fast.loss - plain.loss) <= 1e-4 * Math.abs(plain.loss));
    compareGrads(fast.grads, plain.grads, 'fast vs plain');
    tf.dispose([x, y]);
    ad.vars.forEach((v) => v.dispose());
    disposeVit(vit);
  });

  it('activation recomputation gives the same loss and gradients (with drop-path randomness replayed)', () => {
    const vit = createVit('vit_tiny_patch16_224', { ...MICRO, dropPathRate: 0.3 }, { seed: 2 });
    const ad = adapter(vit);
    const params = trainableSet(vit, ad.vars);
    const x = images(3, 5);
    const y = tf.tensor1d([0, 4, 2], 'int32');
    const opts = (ck: boolean): VitForwardOptions => ({
      training: true,
      rng: new Rng(11),
      hooks: ad.hooks,
      checkpoint: ck ? { trainable: params } : null,
    });
    const plain = lossAndGrads(vit, x, y, params, opts(false));
    const ckpt = lossAndGrads(vit, x, y, params, opts(true));
    assert.ok(Math.abs(plain.loss - ckpt.loss) <= 1e-6 * Math.abs(plain.loss), `${plain.loss} vs ${ckpt.loss}`);
    compareGrads(ckpt.grads, plain.grads, 'checkpoint vs plain');
    tf.dispose([x, y]);
    ad.vars.forEach((v) => v.dispose());
    disposeVit(vit);
  });

  it('recomputation refuses a trainable variable used in a block but named elsewhere', () => {
    const vit = createVit('vit_tiny_patch16_224', MICRO, { seed: 3 });
    const stray = tf.variable(tf.zeros([MICRO.embedDim]), true, `t/stray/${Math.random()}`);
    const hooks: VitHooks = { linear: (site, _x, y) => (site === 'blocks.1.mlp.fc2' ? (tf.add(y, stray) as tf.Tensor2D) : y) };
    const params = new Map([...vitVariables(vit), ['adapters.stray', stray] as [string, tf.Variable]]);
    const x = images(1);
    const y = tf.tensor1d([1], 'int32');
    assert.throws(
      () => lossAndGrads(vit, x, y, params, { training: true, hooks, checkpoint: { trainable: params } }),
      /'adapters\.stray' is used inside blocks\.1 but is not named under 'blocks\.1\.'/,
    );
    tf.dispose([x, y, stray]);
    disposeVit(vit);
  });

  it('100 ExPLoRA-like training steps with recomputation: live tensors after step 100 = after step 1', () => {
    const vit = createVit('vit_tiny_patch16_224', { ...MICRO, dropPathRate: 0.1 }, { seed: 4 });
    const ad = adapter(vit);
    const params = trainableSet(vit, ad.vars);
    const opt = new Optimizer(ADAMW_DEFAULTS, params);
    const x = images(2, 9);
    const y = tf.tensor1d([2, 3], 'int32');
    const counts: number[] = [];
    const losses: number[] = [];
    for (let s = 0; s < 100; s++) {
      const rng = Rng.derive(0, 'step', s);
      const r = trainStep({
        params,
        optimizer: opt,
        lr: 3e-3,
        weightDecay: 0.05,
        loss: () => crossEntropy(vitForward(vit, x, { training: true, rng, hooks: ad.hooks, checkpoint: { trainable: params } }).logits!, y),
      });
      losses.push(r.loss);
      counts.push(tf.memory().numTensors);
    }
    assert.equal(counts[99], counts[0], `live tensors: step 1 ${counts[0]}, step 100 ${counts[99]}`);
    assert.ok(losses[99] < losses[0], `the loss goes down: ${losses[0]} → ${losses[99]}`);
    opt.dispose();
    tf.dispose([x, y]);
    ad.vars.forEach((v) => v.dispose());
    disposeVit(vit);
  });
});
