/**
 * The one training step: non-finite values caught before any state change (loss, metric, gradient of a named path,
 * overflowing norm, state update, lr — each compared bit for bit over every variable and moment), skipping counted,
 * named metrics, state updates and the post-update hook, gradient accumulation against the full batch, the
 * reduceGrads seam, parameter groups (lr scale, layer decay, decay mask, per-group clip, frozen iterations, several
 * optimizer configurations) against hand-computed AdamW / SGD, option and config validation, resume checks.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { Optimizer, ADAMW_DEFAULTS, ADAMW_MAE, SGD_MOMENTUM, checkOptimizerConfig } from '../lib/train/optim';
import { trainStep, trainLoop, StepInfo, LossOutput } from '../lib/train/step';
import { resolveParamSettings } from '../lib/train/groups';
import { crossEntropy } from '../lib/train/loss';
import { saveCheckpoint, loadCheckpoint } from '../lib/io/checkpoint';
import { createVit, disposeVit, vitVariables, Vit } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { Rng } from '../lib/rng';
import { assertClose, randArray } from './util';

function vars(entries: Array<[string, number[], number[]]>): Map<string, tf.Variable> {
  return new Map(entries.map(([p, vals, shape]) => [p, tf.variable(tf.tensor(vals, shape), true, `ts-${p}-${Math.random()}`)]));
}

/** Every parameter and optimizer moment as raw bits (plus the counters). */
function snapshot(params: ReadonlyMap<string, tf.Variable>, opt: Optimizer, extra: tf.Variable[] = []): { bits: Map<string, Uint32Array>; step: number } {
  const bits = new Map<string, Uint32Array>();
  for (const [k, v] of params) bits.set(`param.${k}`, new Uint32Array(Float32Array.from(v.dataSync()).buffer));
  for (const [k, v] of opt.stateTensors()) bits.set(`state.${k}`, new Uint32Array(Float32Array.from(v.dataSync()).buffer));
  extra.forEach((v, i) => bits.set(`extra.${i}`, new Uint32Array(Float32Array.from(v.dataSync()).buffer)));
  return { bits, step: opt.step };
}

function assertSameBits(a: ReturnType<typeof snapshot>, b: ReturnType<typeof snapshot>, what: string): void {
  assert.equal(b.step, a.step, `${what}: optimizer step counter changed`);
  for (const [k, x] of a.bits) assert.deepEqual(b.bits.get(k), x, `${what}: ${k} changed`);
}

/** A tiny model: w [2, 3], b [3]; loss = mean((x·w + b − y)²) on fixed data. */
function tiny(seed = 1): { params: Map<string, tf.Variable>; x: tf.Tensor2D; y: tf.Tensor2D; loss: () => tf.Scalar; dispose: () => void } {
  const params = vars([['w', Array.from(randArray(6, seed)), [2, 3]], ['b', Array.from(randArray(3, seed + 1)), [3]]]);
  const x = tf.tensor2d(randArray(8, seed + 2), [4, 2]);
  const y = tf.tensor2d(randArray(12, seed + 3), [4, 3]);
  const loss = (): tf.Scalar => tf.mean(tf.square(tf.sub(tf.add(tf.matMul(x, params.get('w')!), params.get('b')!), y))) as tf.Scalar;
  return { params, x, y, loss, dispose: () => tf.dispose([x, y, ...params.values()]) };
}

/** Multiply by `scale` in the forward, gradient replaced by `grad` (to plant NaN / Inf / huge gradients). */
function plantGrad(x: tf.Tensor, grad: number): tf.Tensor {
  const f = tf.customGrad(((a: tf.Tensor) => ({ value: a.clone(), gradFunc: (dy: tf.Tensor) => tf.fill(dy.shape, grad) })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x) as tf.Tensor;
}

describe('trainStep: non-finite values are caught before any state change', () => {
  const cases: Array<{ name: string; loss: (t: ReturnType<typeof tiny>) => tf.Scalar | LossOutput; lr?: number; term: RegExp }> = [
    { name: 'loss NaN', loss: (t) => tf.mul(t.loss(), NaN) as tf.Scalar, term: /^the loss is NaN$/ },
    { name: 'loss Inf', loss: (t) => tf.div(t.loss(), 0) as tf.Scalar, term: /^the loss is Infinity$/ },
    { name: 'a named metric', loss: (t) => ({ loss: t.loss(), metrics: { ok: tf.scalar(1), acc: tf.scalar(NaN) } }), term: /^metric 'acc' is NaN$/ },
    {
      name: 'the gradient of one path',
      loss: (t) => tf.sum(tf.mul(plantGrad(t.params.get('b')!, NaN), 0)).add(t.loss()) as tf.Scalar,
      term: /^the gradient of 'b' has 3 NaN and 0 ±Inf entries \(of 3\)$/,
    },
    {
      name: 'a global norm that overflows (finite gradients)',
      loss: (t) => tf.sum(tf.mul(plantGrad(t.params.get('w')!, 3e38), 0)).add(t.loss()) as tf.Scalar,
      term: /^the gradient norm of clip group 'all' is Infinity although every gradient is finite \(overflow\)$/,
    },
    { name: 'the learning rate', loss: (t) => t.loss(), lr: NaN, term: /^the learning rate is NaN$/ },
    { name: 'an infinite learning rate', loss: (t) => t.loss(), lr: Infinity, term: /^the learning rate is Infinity$/ },
  ];
  for (const c of cases) {
    it(`${c.name}: error names it, the step and the lr; every variable and moment bit-identical; skip mode counts it`, () => {
      const t = tiny();
      const opt = new Optimizer(ADAMW_DEFAULTS, t.params);
      const center = tf.variable(tf.tensor1d([1, 2]), false, `center-${Math.random()}`);
      // two good steps first, so that moments and counters are non-trivial
      for (let i = 0; i < 2; i++) trainStep({ params: t.params, optimizer: opt, lr: 0.01, weightDecay: 0.1, loss: t.loss, iteration: i + 1 });
      const before = snapshot(t.params, opt, [center]);
      const n0 = tf.memory().numTensors;
      let hooked = 0;
      const loss = (): tf.Scalar | LossOutput => {
        const r = c.loss(t);
        const base: LossOutput = r instanceof tf.Tensor ? { loss: r } : r;
        return { ...base, updates: [{ path: 'center', variable: center, value: tf.add(center, 1) }] };
      };
      const args = { params: t.params, optimizer: opt, lr: c.lr ?? 0.01, weightDecay: 0.1, clipGradNorm: 1, loss, iteration: 3, afterUpdate: () => void hooked++ };
      assert.throws(() => trainStep(args), (e: Error) => {
        const m = /^trainStep: (.*) at step 3 \(lr (.*)\); nothing was updated/.exec(e.message);
        assert.ok(m, e.message);
        assert.match(m[1], c.term);
        assert.equal(m[2], String(c.lr ?? 0.01), 'the message names the lr');
        return true;
      });
      assertSameBits(before, snapshot(t.params, opt, [center]), 'after the error');
      assert.equal(tf.memory().numTensors, n0, 'no tensor left behind by the failed step');
      const r = trainStep({ ...args, nonFinite: 'skip' });
      assert.match(String(r.skipped), c.term, 'the skipped step says why');
      assert.equal(opt.skipped, 1);
      assert.equal(opt.iteration, 3, 'iteration = updates + skipped');
      assertSameBits(before, snapshot(t.params, opt, [center]), 'after the skipped step');
      assert.equal(tf.memory().numTensors, n0, 'no tensor left behind by the skipped step');
      assert.equal(hooked, 0, 'afterUpdate does not run for a failed or skipped step');
      // a good step still works afterwards, and applies the state update after the optimizer update
      const ok = trainStep({ ...args, lr: 0.01, loss: () => ({ loss: t.loss(), updates: [{ path: 'center', variable: center, value: tf.add(center, 1) }] }) });
      assert.ok(!ok.skipped && Number.isFinite(ok.loss));
      assert.deepEqual(Array.from(center.dataSync()), [2, 3]);
      assert.equal(hooked, 1);
      assert.equal(opt.step, 3);
      opt.dispose();
      center.dispose();
      t.dispose();
    });
  }

  it('a non-finite state update (e.g. a DINO center) blocks the whole step; negative lr / weight decay are errors', () => {
    const t = tiny();
    const opt = new Optimizer(ADAMW_DEFAULTS, t.params);
    const center = tf.variable(tf.tensor1d([1, 2]), false, `center-${Math.random()}`);
    const before = snapshot(t.params, opt, [center]);
    assert.throws(
      () => trainStep({ params: t.params, optimizer: opt, lr: 0.1, iteration: 0, loss: () => ({ loss: t.loss(), updates: [{ path: 'dino_loss.center', variable: center, value: tf.div(center, tf.tensor1d([1, 0])) }] }) }),
      /the state update of 'dino_loss.center' is non-finite at step 0/,
    );
    assertSameBits(before, snapshot(t.params, opt, [center]), 'after a bad state update');
    assert.throws(() => trainStep({ params: t.params, optimizer: opt, lr: -1e-3, loss: t.loss }), /learning rate must be a number ≥ 0, got -0.001 at step 0/);
    assert.throws(() => trainStep({ params: t.params, optimizer: opt, lr: 1e-3, weightDecay: -1, loss: t.loss }), /weight decay must be a number ≥ 0, got -1/);
    assert.throws(() => trainStep({ params: t.params, optimizer: opt, lr: 1e-3, loss: t.loss, clipGradNorm: { backbone: 1 } }), /clipGradNorm: unknown clip group 'backbone'; the parameter groups define: all/);
    assert.throws(() => trainStep({ params: t.params, optimizer: opt, lr: 1e-3, loss: t.loss, lrr: 1 } as never), /trainStep: unknown key 'lrr'/);
    assertSameBits(before, snapshot(t.params, opt, [center]), 'after the refused calls');
    opt.dispose();
    center.dispose();
    t.dispose();
  });
});

describe('trainStep: metrics, hooks, seam', () => {
  it('returns every metric by name (tensor or number), the loss and per-group norms; no tensors left', () => {
    const t = tiny();
    const opt = new Optimizer(ADAMW_DEFAULTS, t.params);
    const n0 = tf.memory().numTensors;
    const r = trainStep({
      params: t.params, optimizer: opt, lr: 1e-2,
      loss: () => {
        const l = t.loss();
        return { loss: l, metrics: { twice: tf.mul(l, 2) as tf.Scalar, same: l, count: 7 } };
      },
    });
    assert.equal(tf.memory().numTensors, n0);
    assert.deepEqual(Object.keys(r.metrics), ['twice', 'same', 'count']);
    assert.equal(r.metrics.same, r.loss);
    assertClose([r.metrics.twice], [2 * r.loss], 1e-6, 1e-6);
    assert.equal(r.metrics.count, 7);
    assert.deepEqual(Object.keys(r.gradNorms), ['all']);
    assert.equal(r.gradNorms.all, r.gradNorm);
    assert.throws(() => trainStep({ params: t.params, optimizer: opt, lr: 1e-2, loss: () => ({ loss: t.loss(), metrics: { v: tf.ones([2]) as tf.Scalar } }) }), /metric 'v' must be a scalar tensor or a number, got shape \[2\]/);
    assert.equal(tf.memory().numTensors, n0);
    // an error thrown by the loss function mid-forward: propagated, nothing left on the tape, nothing changed
    const before = snapshot(t.params, opt);
    assert.throws(() => trainStep({ params: t.params, optimizer: opt, lr: 1e-2, loss: () => {
      t.loss();
      return tf.matMul(t.x, tf.ones([3, 3])) as unknown as tf.Scalar;
    } }), /Error in matMul|inner dimensions|must match/i);
    assert.throws(() => trainStep({ params: t.params, optimizer: opt, lr: 1e-2, loss: () => tf.add(t.x, 1) as unknown as tf.Scalar }), /the loss must be a scalar tensor, got shape \[4,2\]/);
    assert.equal(tf.memory().numTensors, n0);
    assertSameBits(before, snapshot(t.params, opt), 'after the failing loss');
    opt.dispose();
    t.dispose();
  });

  it('reduceGrads sees the path-keyed gradients before clipping and the update (SGD: p − lr·reduce(g))', () => {
    const t = tiny();
    const opt = new Optimizer({ ...SGD_MOMENTUM, momentum: 0 }, t.params);
    const w0 = Float32Array.from(t.params.get('w')!.dataSync());
    let gw: Float32Array | null = null;
    trainStep({
      params: t.params, optimizer: opt, lr: 0.1, loss: t.loss,
      reduceGrads: (g) => {
        assert.deepEqual([...g.keys()], ['w', 'b']);
        gw = Float32Array.from(g.get('w')!.dataSync());
        return new Map([...g].map(([k, x]) => [k, tf.mul(x, 2)]));
      },
    });
    const w1 = t.params.get('w')!.dataSync();
    assertClose(w1, Array.from(w0, (x, i) => x - 0.1 * 2 * gw![i]), 1e-6, 0, 'w after SGD with doubled gradient');
    assert.throws(
      () => trainStep({ params: t.params, optimizer: opt, lr: 0.1, loss: t.loss, reduceGrads: (g) => new Map([...g, ['z', g.get('b')!]]) }),
      /reduceGrads returned a gradient for 'z', which is not in the trainable set/,
    );
    opt.dispose();
    t.dispose();
  });
});

describe('gradient accumulation', () => {
  const CFG = { imgSize: 16, patchSize: 8, depth: 2, embedDim: 16, numHeads: 2, numClasses: 3 } as const;
  const data = (): { x: tf.Tensor4D; y: tf.Tensor1D } => {
    const rng = new Rng(5);
    return {
      x: tf.tensor4d(Float32Array.from({ length: 8 * 16 * 16 * 3 }, () => rng.normal(0, 1)), [8, 16, 16, 3]),
      y: tf.tensor1d(Int32Array.from({ length: 8 }, () => rng.int(3)), 'int32'),
    };
  };

  it('2 micro-batches of 4 = the full batch of 8 (mean CE): gradients within 1e-6·max|g| per tensor, SGD update within 1e-6', () => {
    const { x, y } = data();
    const grads: Array<Map<string, Float32Array>> = [];
    const after: Array<Map<string, Float32Array>> = [];
    for (const k of [1, 2]) {
      const vit = createVit('vit_tiny_patch16_224', CFG, { seed: 3 });
      const params = vitVariables(vit);
      const opt = new Optimizer({ ...SGD_MOMENTUM, momentum: 0 }, params);
      const n0 = tf.memory().numTensors;
      trainStep({
        params, optimizer: opt, lr: 0.5, microBatches: k,
        loss: (i) => {
          const xs = k === 1 ? x : (x.slice([4 * i, 0, 0, 0], [4, -1, -1, -1]) as tf.Tensor4D);
          const ys = k === 1 ? y : (y.slice([4 * i], [4]) as tf.Tensor1D);
          return crossEntropy(vitForward(vit, xs).logits!, ys);
        },
        reduceGrads: (g) => {
          grads.push(new Map([...g].map(([p, t]) => [p, Float32Array.from(t.dataSync())])));
          return g;
        },
      });
      assert.equal(tf.memory().numTensors, n0, `accumulation k=${k} left tensors behind`);
      assert.equal(opt.step, 1, 'one optimizer step for k micro-batches');
      after.push(new Map([...params].map(([p, v]) => [p, Float32Array.from(v.dataSync())])));
      opt.dispose();
      disposeVit(vit);
    }
    // fp32: the two sums are ordered differently, so they agree to rounding — measured max |Δ| = 2.2e-7 of the
    // tensor's largest |g| (wasm); the tolerance is 1e-6 of each tensor's max |g|
    let worst = 0;
    for (const [p, full] of grads[0]) {
      const acc = grads[1].get(p)!;
      const scale = Math.max(...Array.from(full, Math.abs));
      assertClose(acc, full, 1e-6 * scale + 1e-9, 0, `accumulated gradient of ${p}`);
      for (let i = 0; i < full.length; i++) worst = Math.max(worst, Math.abs(acc[i] - full[i]) / scale);
      assertClose(after[1].get(p)!, after[0].get(p)!, 1e-6, 0, `parameter ${p} after the update`);
    }
    if (process.env.ACCUM_DEBUG) console.log('max |Δ| / max |g| over tensors', worst);
    tf.dispose([x, y]);
  });

  it('trainLoop accumulate: loss = mean of micro losses, per-micro randomness, exact resume, no leaks', async function () {
    this.timeout(60000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-accum-'));
    const mk = (): { vit: Vit; params: Map<string, tf.Variable>; opt: Optimizer } => {
      const vit = createVit('vit_tiny_patch16_224', { ...CFG, dropPathRate: 0.2 }, { seed: 1 });
      const params = vitVariables(vit);
      return { vit, params, opt: new Optimizer(ADAMW_DEFAULTS, params) };
    };
    const batch = (step: number, micro: number): { x: tf.Tensor4D; y: tf.Tensor1D } => {
      const rng = Rng.derive(9, 'data', step, micro);
      return {
        x: tf.tensor4d(Float32Array.from({ length: 2 * 768 }, () => rng.normal(0, 1)), [2, 16, 16, 3]),
        y: tf.tensor1d(Int32Array.from({ length: 2 }, () => rng.int(3)), 'int32'),
      };
    };
    const seen: string[] = [];
    const run = (m: ReturnType<typeof mk>, from: number, to: number, onStep?: (i: StepInfo) => void): Promise<StepInfo[]> =>
      trainLoop({
        params: m.params, optimizer: m.opt, steps: 6, startStep: from, endStep: to, seed: 4, accumulate: 3,
        lr: { kind: 'cosine', base: 3e-3, min: 1e-5, warmupIters: 1, totalIters: 6 }, weightDecay: { kind: 'constant', value: 0.05 }, clipGradNorm: 1,
        batch,
        loss: (b, rng, step, micro) => {
          seen.push(`${step}.${micro}`);
          const l = crossEntropy(vitForward(m.vit, b.x, { training: true, rng }).logits!, b.y);
          return { loss: l, metrics: { micro } };
        },
        onStep,
      });
    const a = mk();
    const counts: number[] = [];
    const full = await run(a, 0, 6, () => counts.push(tf.memory().numTensors));
    assert.equal(new Set(counts).size, 1, `live tensors per step ${counts}`);
    assert.deepEqual(seen.slice(0, 6), ['0.0', '0.1', '0.2', '1.0', '1.1', '1.2']);
    assert.equal(full[0].metrics!.micro, 1, 'metrics are averaged over the micro-batches (0, 1, 2)');
    assert.equal(a.opt.step, 6);
    const b = mk();
    await run(b, 0, 3);
    const file = path.join(dir, 'ckpt.safetensors');
    saveCheckpoint(file, { params: b.params, optimizer: b.opt });
    const c = mk();
    loadCheckpoint(file, { params: c.params, optimizer: c.opt });
    const resumed = await run(c, c.opt.iteration, 6);
    assert.deepEqual(resumed.map((i) => i.loss), full.slice(3).map((i) => i.loss));
    for (const [k, v] of a.params) assert.deepEqual(c.params.get(k)!.dataSync(), v.dataSync(), `${k} after the resumed run`);
    for (const m of [a, b, c]) {
      m.opt.dispose();
      disposeVit(m.vit);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('parameter groups', () => {
  it('per-group lr scale, layer decay, decay mask and per-group clip match a hand-computed AdamW update (3 steps)', () => {
    // blocks.0.w (layer 1 of depth 2), blocks.1.b (rank 1), head.w; rules: layer decay 0.5 on blocks, head lr ×2,
    // decay off for head.w, clip group 'blocks' (max 0.5) and 'head' (max 10)
    const params = vars([
      ['blocks.0.w', [1, -2], [1, 2]],
      ['blocks.1.b', [0.5, 0.25], [2]],
      ['head.w', [0.3, -0.7], [2, 1]],
    ]);
    const opt = new Optimizer({ kind: 'adamw', beta1: 0.8, beta2: 0.9, eps: 1e-6 }, params, {
      groups: [
        { clip: 'blocks' },
        { match: '^blocks\\.', layerDecay: { depth: 2, decay: 0.5 } },
        { match: '^head\\.', lrScale: 2, weightDecay: false, clip: 'head' },
      ],
    });
    assert.deepEqual(opt.groups().map((g) => [g.paths, g.lrScale, g.decay, g.clip]), [
      [['blocks.0.w'], 0.25, true, 'blocks'],
      [['blocks.1.b'], 0.5, false, 'blocks'],
      [['head.w'], 2, false, 'head'],
    ]);
    const G = [
      { 'blocks.0.w': [0.6, -0.8], 'blocks.1.b': [0.0, 1.0], 'head.w': [3, 4] },
      { 'blocks.0.w': [0.1, 0.1], 'blocks.1.b': [-0.2, 0.1], 'head.w': [-1, 2] },
      { 'blocks.0.w': [-0.3, 0.2], 'blocks.1.b': [0.4, 0.4], 'head.w': [0.5, 0.5] },
    ] as Array<Record<string, number[]>>;
    const lr = 0.1, wd = 0.2;
    const scale: Record<string, number> = { 'blocks.0.w': 0.25, 'blocks.1.b': 0.5, 'head.w': 2 };
    const decay: Record<string, boolean> = { 'blocks.0.w': true, 'blocks.1.b': false, 'head.w': false };
    const clipOf: Record<string, string> = { 'blocks.0.w': 'blocks', 'blocks.1.b': 'blocks', 'head.w': 'head' };
    const maxNorm: Record<string, number> = { blocks: 0.5, head: 10 };
    const ref: Record<string, number[]> = { 'blocks.0.w': [1, -2], 'blocks.1.b': [0.5, 0.25], 'head.w': [0.3, -0.7] };
    const m: Record<string, number[]> = { 'blocks.0.w': [0, 0], 'blocks.1.b': [0, 0], 'head.w': [0, 0] };
    const v: Record<string, number[]> = { 'blocks.0.w': [0, 0], 'blocks.1.b': [0, 0], 'head.w': [0, 0] };
    G.forEach((g, s) => {
      const r = trainStep({
        params, optimizer: opt, lr, weightDecay: wd, clipGradNorm: maxNorm,
        loss: () => tf.addN([...params].map(([p, x]) => tf.sum(tf.mul(x, tf.tensor(g[p], x.shape))))) as tf.Scalar,
      });
      const norms: Record<string, number> = {};
      for (const grp of ['blocks', 'head']) norms[grp] = Math.sqrt(Object.keys(g).filter((p) => clipOf[p] === grp).reduce((a, p) => a + g[p].reduce((b, x) => b + x * x, 0), 0));
      assertClose([r.gradNorms.blocks, r.gradNorms.head], [norms.blocks, norms.head], 1e-6, 1e-6, `group norms at step ${s}`);
      const t = s + 1;
      for (const p of Object.keys(g)) {
        const coef = Math.min(maxNorm[clipOf[p]] / (norms[clipOf[p]] + 1e-6), 1);
        const plr = lr * scale[p];
        ref[p] = ref[p].map((x, i) => {
          const gi = g[p][i] * coef;
          m[p][i] = 0.8 * m[p][i] + 0.2 * gi;
          v[p][i] = 0.9 * v[p][i] + 0.1 * gi * gi;
          const xd = decay[p] ? x * (1 - plr * wd) : x;
          return xd - (plr * (m[p][i] / (1 - 0.8 ** t))) / (Math.sqrt(v[p][i] / (1 - 0.9 ** t)) + 1e-6);
        });
      }
    });
    for (const [p, x] of params) assertClose(x.dataSync(), ref[p], 2e-6, 0, p);
    opt.dispose();
    params.forEach((x) => x.dispose());
  });

  it('frozen for k iterations (DINOv2 last_layer): lr 0, the Adam moments advance; it moves from iteration k on', () => {
    const params = vars([['mlp.w', [1, 2], [1, 2]], ['last_layer.w', [3, 4], [1, 2]]]);
    const opt = new Optimizer(ADAMW_DEFAULTS, params, { groups: [{ match: '(^|\\.)last_layer\\.', freezeIters: 2 }] });
    const last = params.get('last_layer.w')!;
    const m = opt.stateTensors().get('exp_avg.last_layer.w')!;
    const loss = (): tf.Scalar => tf.sum(tf.mul(tf.addN([...params.values()].map((x) => tf.sum(x))), 1)) as tf.Scalar;
    const mHist: number[] = [];
    for (let it = 0; it < 3; it++) {
      const before = Float32Array.from(last.dataSync());
      trainStep({ params, optimizer: opt, lr: 0.1, weightDecay: 0.5, loss, iteration: it });
      const moved = last.dataSync().some((x, i) => x !== before[i]);
      assert.equal(moved, it >= 2, `last layer at iteration ${it}: ${moved ? 'moved' : 'frozen'}`);
      mHist.push(m.dataSync()[0]);
      assert.ok(params.get('mlp.w')!.dataSync()[0] < 1, 'the rest trains from the start');
    }
    // m = 0.1·(1 + 0.9 + 0.81) after 3 steps of gradient 1: the moments advanced during the frozen iterations
    assertClose(mHist, [0.1, 0.19, 0.271], 1e-6, 0, 'exp_avg of the frozen path');
    assert.equal(opt.lrOf('last_layer.w', 0.1, 1), 0);
    assert.equal(opt.lrOf('last_layer.w', 0.1, 2), 0.1);
    opt.dispose();
    params.forEach((x) => x.dispose());
  });

  it('several optimizer configurations in one step: SGD on the head, AdamW elsewhere; state keyed by path', () => {
    const params = vars([['enc.w', [1, 2], [1, 2]], ['head.w', [0.5, -0.5], [1, 2]]]);
    const opt = new Optimizer(ADAMW_DEFAULTS, params, { optimizers: { head: { ...SGD_MOMENTUM, momentum: 0.5 } }, groups: [{ match: '^head\\.', optimizer: 'head', weightDecay: false }] });
    assert.deepEqual([...opt.stateTensors().keys()], ['exp_avg.enc.w', 'exp_avg_sq.enc.w', 'momentum_buffer.head.w']);
    const g = [0.2, -0.4];
    let p = [0.5, -0.5];
    let buf = [0, 0];
    for (let s = 0; s < 2; s++) {
      trainStep({ params, optimizer: opt, lr: 0.1, loss: () => tf.add(tf.sum(tf.mul(params.get('head.w')!, tf.tensor2d([g], [1, 2]))), tf.sum(params.get('enc.w')!)) as tf.Scalar });
      buf = buf.map((b, i) => (s === 0 ? g[i] : 0.5 * b + g[i]));
      p = p.map((x, i) => x - 0.1 * buf[i]);
    }
    assertClose(params.get('head.w')!.dataSync(), p, 1e-6, 0, 'SGD head');
    // AdamW with a constant gradient 1: each step moves by lr (bias-corrected m̂/√v̂ = 1), plus decoupled decay 0
    assertClose(params.get('enc.w')!.dataSync(), [1 - 0.2, 2 - 0.2], 1e-5, 0, 'AdamW encoder');
    assert.throws(() => new Optimizer(ADAMW_DEFAULTS, params, { groups: [{ match: '^head', optimizer: 'probe' }] }), /'head.w' is assigned optimizer 'probe', which is not configured; valid: main/);
    opt.dispose();
    params.forEach((x) => x.dispose());
  });

  it('rules are validated and must match something (unless optional)', () => {
    const params = vars([['a.weight', [1, 2], [1, 2]]]);
    assert.throws(() => new Optimizer(ADAMW_DEFAULTS, params, { groups: [{ match: '^head\\.', lrScale: 2 }] }), /OptimizerOptions.groups\[0\] \(match "\^head\\\\."\) matches no trainable path/);
    assert.doesNotThrow(() => new Optimizer(ADAMW_DEFAULTS, params, { groups: [{ match: '^head\\.', lrScale: 2, optional: true }] }).dispose());
    assert.throws(() => new Optimizer(ADAMW_DEFAULTS, params, { groups: [{ lrscale: 2 } as never] }), /OptimizerOptions.groups\[0\]: unknown key 'lrscale'/);
    assert.throws(() => new Optimizer(ADAMW_DEFAULTS, params, { groups: [{ lrScale: -1 }] }), /groups\[0\]\.lrScale: expected a finite number ≥ 0, got -1/);
    assert.throws(() => new Optimizer(ADAMW_DEFAULTS, params, { groups: [{ match: '(' }] }), /groups\[0\]\.match: invalid regular expression/);
    assert.throws(() => new Optimizer(ADAMW_DEFAULTS, params, { groups: [{ freezeIters: 1.5 }] }), /groups\[0\]\.freezeIters: expected an integer ≥ 0, got 1.5/);
    assert.throws(() => new Optimizer(ADAMW_DEFAULTS, params, { groups: [{ layerDecay: { depth: 2, decay: 1.5 } }] }), /groups\[0\]\.layerDecay\.decay: expected in \(0, 1\], got 1.5/);
    params.forEach((x) => x.dispose());
  });
});

describe('validation', () => {
  it('optimizer configs: betas in [0, 1), eps > 0, SGD momentum / dampening / nesterov; errors name the key', () => {
    assert.throws(() => checkOptimizerConfig({ ...ADAMW_DEFAULTS, beta1: 1 }), /OptimizerConfig\(adamw\)\.beta1: expected a number in \[0, 1\), got 1/);
    assert.throws(() => checkOptimizerConfig({ ...ADAMW_DEFAULTS, beta2: -0.1 }), /\.beta2: expected a number in \[0, 1\), got -0.1/);
    assert.throws(() => checkOptimizerConfig({ ...ADAMW_DEFAULTS, eps: 0 }), /\.eps: expected a number > 0, got 0/);
    assert.throws(() => checkOptimizerConfig({ ...ADAMW_DEFAULTS, eps: '1e-8' as never }), /\.eps: expected a number > 0, got "1e-8"/);
    assert.throws(() => checkOptimizerConfig({ kind: 'adamw', beta1: 0.9, beta2: 0.999 } as never), /OptimizerConfig\(adamw\)\.eps: missing/);
    assert.throws(() => checkOptimizerConfig({ ...SGD_MOMENTUM, momentum: -1 }), /\.momentum: expected a number ≥ 0, got -1/);
    assert.throws(() => checkOptimizerConfig({ ...SGD_MOMENTUM, nesterov: true, dampening: 0.1 }), /Nesterov momentum needs momentum > 0 and dampening 0/);
    assert.throws(() => checkOptimizerConfig({ kind: 'adam' } as never), /OptimizerConfig\.kind: unknown optimizer 'adam'; valid: adamw, sgd/);
    const params = vars([['w', [1], [1]]]);
    assert.throws(() => new Optimizer({ ...ADAMW_MAE, beta1: 1.2 }, params), /beta1: expected a number in \[0, 1\), got 1.2/);
    const opt = new Optimizer(ADAMW_DEFAULTS, params);
    assert.throws(() => tf.tidy(() => opt.apply(new Map([['w', tf.ones([1])]]), -0.1, 0)), /Optimizer.apply lr: expected a finite number ≥ 0, got -0.1/);
    assert.throws(() => tf.tidy(() => opt.apply(new Map([['w', tf.ones([1])]]), 0.1, NaN)), /Optimizer.apply weightDecay: expected a finite number ≥ 0, got NaN/);
    assert.equal(opt.step, 0, 'a refused apply changes nothing');
    opt.dispose();
    params.forEach((x) => x.dispose());
  });

  it('trainLoop validates its options before step 0 (unknown key, schedules, ranges)', async () => {
    const t = tiny();
    const opt = new Optimizer(ADAMW_DEFAULTS, t.params);
    let calls = 0;
    const base = { params: t.params, optimizer: opt, steps: 10, seed: 0, batch: () => (calls++, {}), loss: () => t.loss(), lr: { kind: 'constant', value: 1e-3 } as const };
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ lrSchedule: 1 }, /trainLoop: unknown key 'lrSchedule'/],
      [{ lr: { kind: 'cosine', base: 1e-3, min: 0, warmupIters: 20, totalIters: 10 } }, /trainLoop.lr: warmupIters must be in \[0, totalIters=10\], got 20/],
      [{ lr: { kind: 'cosine', base: NaN, min: 0, warmupIters: 0, totalIters: 10 } }, /trainLoop.lr.base: expected a finite number, got null/],
      [{ lr: { kind: 'constant', value: -1e-3 } }, /trainLoop.lr.value: expected ≥ 0, got -0.001/],
      [{ lr: { kind: 'cosine', base: 1e-3, min: 0, warmupIters: 0, totalIters: 0 } }, /trainLoop.lr: totalIters must be > 0, got 0/],
      [{ weightDecay: { kind: 'linear', from: 0.04, to: -0.4, iters: 10 } }, /trainLoop.weightDecay.to: expected ≥ 0, got -0.4/],
      [{ steps: 0 }, /trainLoop.steps: expected an integer > 0, got 0/],
      [{ startStep: 5, endStep: 3 }, /trainLoop: startStep 5 is after endStep 3/],
      [{ endStep: 11 }, /trainLoop.endStep: expected an integer in \[0, steps = 10\], got 11/],
      [{ accumulate: 0 }, /trainLoop.accumulate: expected an integer ≥ 1, got 0/],
      [{ nonFinite: 'ignore' }, /trainLoop.nonFinite: expected 'error' or 'skip', got "ignore"/],
      [{ clipGradNorm: -1 }, /trainLoop.clipGradNorm: expected a finite number ≥ 0/],
      [{ seed: undefined }, /trainLoop.seed: missing/],
    ];
    for (const [o, re] of bad) await assert.rejects(() => trainLoop({ ...base, ...o } as never), re, JSON.stringify(o));
    assert.equal(calls, 0, 'no batch was requested: everything is checked before step 0');
    assert.equal(opt.step, 0);
    opt.dispose();
    t.dispose();
  });
});

describe('resume checks (checkpoint optimizer metadata)', () => {
  it('a different optimizer config, trainable set or group settings is an error naming what differs; allowOptimizerChange loads anyway', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-resume-check-'));
    const file = path.join(dir, 'c.safetensors');
    const t = tiny();
    const opt = new Optimizer(ADAMW_DEFAULTS, t.params, { groups: [{ match: '^b$', lrScale: 0.5 }] });
    trainStep({ params: t.params, optimizer: opt, lr: 1e-2, loss: t.loss });
    saveCheckpoint(file, { params: t.params, optimizer: opt });
    const u = tiny(7);
    const cases: Array<[Optimizer, RegExp]> = [
      [new Optimizer(ADAMW_MAE, u.params, { groups: [{ match: '^b$', lrScale: 0.5 }] }), /resuming with another optimizer than the checkpoint's: optimizer 'main' beta2: 0.999 \(checkpoint\) vs 0.95 \(now\)/],
      [new Optimizer(ADAMW_DEFAULTS, u.params, { groups: [{ match: '^b$', lrScale: 0.25 }] }), /parameter group of 'b' lrScale: 0.5 \(checkpoint\) vs 0.25 \(now\)/],
      [new Optimizer(ADAMW_DEFAULTS, u.params, { groups: [{ match: '^b$', lrScale: 0.5, clip: 'bias' }] }), /parameter group of 'b' clip: "all" \(checkpoint\) vs "bias" \(now\)/],
      [new Optimizer(ADAMW_DEFAULTS, new Map([['w', u.params.get('w')!]])), /trainable paths in the checkpoint but not in this optimizer: 'b'/],
      [new Optimizer({ ...SGD_MOMENTUM }, u.params), /optimizer 'main' kind: "adamw" \(checkpoint\) vs "sgd" \(now\)/],
    ];
    const wBefore = Float32Array.from(u.params.get('w')!.dataSync());
    for (const [o, re] of cases) {
      assert.throws(() => loadCheckpoint(file, { params: u.params, optimizer: o }, { strict: false }), re);
      assert.deepEqual(u.params.get('w')!.dataSync(), wBefore, 'nothing loaded');
      assert.equal(o.step, 0);
    }
    const rep = loadCheckpoint(file, { params: u.params, optimizer: cases[1][0] }, { allowOptimizerChange: true });
    assert.equal(cases[1][0].step, 1);
    assert.equal(rep.meta.step, 1);
    for (const [o] of cases) o.dispose();
    opt.dispose();
    t.dispose();
    u.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('skipped steps are saved and restored, so the resumed loop starts at the right iteration', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-skip-'));
    const file = path.join(dir, 'c.safetensors');
    const t = tiny();
    const opt = new Optimizer(ADAMW_DEFAULTS, t.params);
    trainStep({ params: t.params, optimizer: opt, lr: 1e-2, loss: t.loss });
    trainStep({ params: t.params, optimizer: opt, lr: NaN, loss: t.loss, nonFinite: 'skip' });
    assert.deepEqual([opt.step, opt.skipped, opt.iteration], [1, 1, 2]);
    saveCheckpoint(file, { params: t.params, optimizer: opt });
    const u = tiny();
    const o2 = new Optimizer(ADAMW_DEFAULTS, u.params);
    loadCheckpoint(file, { params: u.params, optimizer: o2 });
    assert.deepEqual([o2.step, o2.skipped, o2.iteration], [1, 1, 2]);
    o2.dispose();
    opt.dispose();
    t.dispose();
    u.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('group resolution', () => {
  it('resolveParamSettings composes lr multipliers in rule order and lets the last rule win for the rest', () => {
    const params = vars([['blocks.1.attn.qkv.weight', [1, 2], [1, 2]], ['patch_embed.proj.weight', [1, 2], [1, 2]], ['blocks.1.norm1.weight', [1], [1]]]);
    const s = resolveParamSettings(params, [
      { clip: 'backbone', weightDecay: true },
      { match: '\\.bias$|norm|gamma', weightDecay: false },
      { layerDecay: { depth: 2, decay: 0.9 } },
      { match: '(^|\\.)patch_embed\\.', lrScale: 0.2 },
    ], { decay: () => true, lrScale: () => 1 });
    assert.equal(s.get('blocks.1.attn.qkv.weight')!.lrScale, 0.9);
    assert.equal(s.get('patch_embed.proj.weight')!.lrScale, 0.9 ** 3 * 0.2);
    assert.deepEqual([s.get('blocks.1.norm1.weight')!.decay, s.get('patch_embed.proj.weight')!.decay], [false, true]);
    assert.ok([...s.values()].every((x) => x.clip === 'backbone' && x.optimizer === 'main' && x.freezeIters === 0));
    params.forEach((x) => x.dispose());
  });
});
