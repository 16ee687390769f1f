/**
 * The asynchronous read path (lib/reads.ts) against the synchronous one, on wasm: `trainStepAsync` (two tidies around
 * one awaited read — what runs on webgpu) gives bit-identical parameters, moments, state, metrics and outcomes to
 * `trainStep` (one synchronous tidy) — happy path, named metrics, state updates, afterUpdate, accumulation, the
 * reduceGrads seam, every non-finite case in error and skip mode, a throwing loss — with no tensor left behind;
 * `trainLoop`, D-ExPLoRA (`trainExploraDino`) and M-ExPLoRA forced onto the async path give the same runs; the eval
 * helpers' async variants (linear probe, kNN, accuracy, features, throughput, dataset accuracy) give the same results.
 * The same code runs against wasm on webgpu in test/webgpu.test.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep, trainStepAsync, trainStepAuto, trainLoop, StepArgs, StepResult, StepInfo, LossOutput } from '../lib/train/step';
import { crossEntropy, accuracy, accuracyAsync } from '../lib/train/loss';
import { readSync, readAsync, readAuto, setReadMode, syncReads, backendReadsSync, ReadPlan } from '../lib/reads';
import { createVit, disposeVit } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { createLora, disposeLora, loraHooks, loraVariables, qvTarget } from '../lib/peft/lora';
import { createMae, disposeMae } from '../lib/mae/mae';
import { exploraRecipe } from '../lib/peft/explora';
import { extractFeatures, featureCache, disposeFeatures, FeatureCache } from '../lib/eval/features';
import { linearProbe, linearProbeAsync } from '../lib/eval/linear-probe';
import { knnEvaluate, knnEvaluateAsync, knnClassify, knnClassifyAsync, knnFeatures } from '../lib/eval/knn';
import { measureThroughput, measureThroughputAsync, compareThroughput, compareThroughputAsync, sweepTome, sweepTomeAsync } from '../lib/tome/throughput';
import { setupExploraMae } from '../recipes/explora-mae';
import { createExploraDino, dExploraConfig, trainExploraDino, DExploraConfig, DinoStepMetrics } from '../recipes/explora-dino';
import { Rng } from '../lib/rng';
import { randArray } from './util';
import type { Loader } from '../data-loaders/dataset';
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { runRecipe } from '../recipes/run';
import type { RecipeInput } from '../recipes/recipe';
import { saveCheckpoint, saveCheckpointAsync } from '../lib/io/checkpoint';

type Bits = Map<string, Uint32Array>;

function bits(vars: ReadonlyMap<string, tf.Variable>, prefix = ''): Bits {
  return new Map([...vars].map(([k, v]) => [`${prefix}${k}`, new Uint32Array(Float32Array.from(v.dataSync()).buffer)]));
}

function assertSameBits(a: Bits, b: Bits, what: string): void {
  assert.equal(b.size, a.size, `${what}: ${b.size} vs ${a.size} tensors`);
  for (const [k, x] of a) {
    const y = b.get(k);
    assert.ok(y, `${what}: no '${k}'`);
    const i = x.findIndex((v, j) => v !== y[j]);
    assert.ok(i < 0, `${what}: '${k}' differs at [${i}]: ${new Float32Array(x.buffer)[i]} (sync) vs ${new Float32Array(y.buffer)[i]} (async)`);
  }
}

function optimizerBits(opt: Optimizer): Bits {
  return bits(opt.stateTensors() as ReadonlyMap<string, tf.Variable>, 'state.');
}

/** Results without wall times (the only field allowed to differ). */
function sameResults<T extends object>(a: T[], b: T[], what: string): void {
  const strip = (x: T): unknown => JSON.parse(JSON.stringify(x, (k, v) => (k === 'seconds' ? undefined : Number.isNaN(v) ? 'NaN' : v)));
  assert.deepEqual(b.map(strip), a.map(strip), what);
}

/** w [2, 3], b [3], a non-trainable state s [3]; loss = mean((x·w + b − y)²) on fixed data. */
function tiny(seed: number) {
  const mk = (name: string, vals: Float32Array, shape: number[], trainable = true) => tf.variable(tf.tensor(vals, shape), trainable, `reads-${name}-${seed}-${Math.random()}`);
  const params = new Map([['w', mk('w', randArray(6, seed), [2, 3])], ['b', mk('b', randArray(3, seed + 1), [3])]]);
  const state = mk('s', new Float32Array(3), [3], false);
  const xs = [0, 1, 2].map((i) => tf.tensor2d(randArray(8, seed + 10 + i), [4, 2]));
  const y = tf.tensor2d(randArray(12, seed + 3), [4, 3]);
  const opt = new Optimizer({ ...ADAMW_DEFAULTS }, params);
  const pred = (i: number) => tf.add(tf.matMul(xs[i], params.get('w')!), params.get('b')!);
  const loss = (i: number): tf.Scalar => tf.mean(tf.square(tf.sub(pred(i), y))) as tf.Scalar;
  return {
    params, state, opt, loss, pred,
    all: () => new Map([...bits(params), ...optimizerBits(opt), ...bits(new Map([['s', state]]), 'extra.')]),
    dispose: () => {
      opt.dispose();
      tf.dispose([...xs, y, state, ...params.values()]);
    },
  };
}

type Tiny = ReturnType<typeof tiny>;

/** Run the same steps on two identical tiny models, one per path; compare outcomes, bits and live tensors. */
async function bothPaths(what: string, steps: number, args: (t: Tiny, step: number) => Omit<StepArgs, 'params' | 'optimizer'>): Promise<{ sync: Array<StepResult | string>; async: Array<StepResult | string> }> {
  const out: { sync: Array<StepResult | string>; async: Array<StepResult | string> } = { sync: [], async: [] };
  const snaps: Bits[][] = [[], []];
  for (const [pi, path] of (['sync', 'async'] as const).entries()) {
    const t = tiny(7);
    for (let s = 0; s < steps; s++) {
      const before = tf.memory().numTensors;
      const a: StepArgs = { params: t.params, optimizer: t.opt, ...args(t, s) };
      try {
        out[path].push(path === 'sync' ? trainStep(a) : await trainStepAsync(a));
      } catch (e) {
        out[path].push(`error: ${(e as Error).message}`);
      }
      assert.equal(tf.memory().numTensors, before, `${what} (${path}) step ${s}: ${tf.memory().numTensors - before} tensors left behind`);
      snaps[pi].push(t.all());
    }
    t.dispose();
  }
  sameResults(out.sync as object[], out.async as object[], `${what}: step results`);
  snaps[0].forEach((s, i) => assertSameBits(s, snaps[1][i], `${what} after step ${i}`));
  return out;
}

/** Multiply by 1 in the forward, gradient replaced by `grad` (plants NaN / Inf gradients). */
function plantGrad(x: tf.Tensor, grad: number): tf.Tensor {
  const f = tf.customGrad(((a: tf.Tensor) => ({ value: a.clone(), gradFunc: (dy: tf.Tensor) => tf.fill(dy.shape, grad) })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x) as tf.Tensor;
}

describe('reads: the asynchronous step and eval path equal the synchronous one (wasm)', function () {
  this.timeout(300000);
  afterEach(() => setReadMode('auto'));

  it('read plans: both drivers give the same values; a failed read closes the plan (its finally frees what it kept)', async () => {
    assert.equal(backendReadsSync('wasm'), true);
    assert.equal(backendReadsSync('webgpu'), typeof (globalThis as { OffscreenCanvas?: unknown }).OffscreenCanvas !== 'undefined');
    function* sumPlan(x: tf.Tensor): ReadPlan<number> {
      const s = tf.sum(x);
      try {
        const [v] = yield [s];
        return v[0];
      } finally {
        s.dispose();
      }
    }
    const x = tf.tensor1d([1, 2, 3.5]);
    const before = tf.memory().numTensors;
    assert.equal(readSync(sumPlan(x)), 6.5);
    assert.equal(await readAsync(sumPlan(x)), 6.5);
    assert.equal(await readAuto(sumPlan(x)), 6.5);
    assert.equal(tf.memory().numTensors, before);
    let closed = 0;
    function* failing(): ReadPlan<number> {
      const gone = tf.scalar(1);
      gone.dispose();
      const kept = tf.scalar(2);
      try {
        yield [kept, gone];
        return 0;
      } finally {
        kept.dispose();
        closed++;
      }
    }
    assert.throws(() => readSync(failing()), /disposed/);
    await assert.rejects(readAsync(failing()), /disposed/);
    assert.equal(closed, 2);
    assert.equal(tf.memory().numTensors, before);
    x.dispose();
    assert.equal(syncReads(), true);
    setReadMode('async');
    assert.equal(syncReads(), false);
    assert.throws(() => setReadMode('fast' as never), /setReadMode: expected 'auto', 'sync' or 'async', got "fast"/);
  });

  it('trainStep vs trainStepAsync: clipping, weight decay, metrics, state updates, afterUpdate — bit-identical, no leaks', async () => {
    let after = 0;
    await bothPaths('happy path', 3, (t, s) => ({
      lr: 0.05,
      weightDecay: 0.1,
      clipGradNorm: 0.5,
      loss: (): LossOutput => {
        const l = t.loss(s);
        return {
          loss: l,
          metrics: { half: tf.mul(l, 0.5) as tf.Scalar, step: s },
          updates: [{ path: 's', variable: t.state, value: tf.mean(t.pred(s), 0) }],
        };
      },
      afterUpdate: () => void after++,
    }));
    assert.equal(after, 6, 'afterUpdate once per applied step on each path');
    const hooks = { sync: 0, async: 0 };
    const t = tiny(3);
    await trainStepAsync({ params: t.params, optimizer: t.opt, lr: 0.1, loss: () => t.loss(0), afterUpdate: () => void hooks.async++ });
    trainStep({ params: t.params, optimizer: t.opt, lr: 0.1, loss: () => t.loss(1), afterUpdate: () => void hooks.sync++ });
    const r = await trainStepAuto({ params: t.params, optimizer: t.opt, lr: 0.1, loss: () => t.loss(2) });
    assert.deepEqual(hooks, { sync: 1, async: 1 });
    assert.equal(t.opt.step, 3);
    assert.ok(Number.isFinite(r.loss));
    t.dispose();
  });

  it('accumulation (3 micro-batches) and the reduceGrads seam: bit-identical', async () => {
    await bothPaths('accumulation', 2, (t) => ({
      lr: 0.05,
      microBatches: 3,
      loss: (i) => ({ loss: t.loss(i), metrics: { m: tf.mul(t.loss(i), i + 1) as tf.Scalar } }),
      reduceGrads: (g) => new Map([...g].map(([p, x]) => [p, tf.mul(x, 0.5)])),
    }));
  });

  it('non-finite loss / metric / gradient / overflow / state update / lr: same message or skip, nothing changed, no leaks', async () => {
    const cases: Array<[string, (t: Tiny) => Omit<StepArgs, 'params' | 'optimizer' | 'nonFinite'>, RegExp]> = [
      ['loss NaN', (t) => ({ lr: 0.1, loss: () => tf.mul(t.loss(0), NaN) as tf.Scalar }), /the loss is NaN/],
      ['metric Inf', (t) => ({ lr: 0.1, loss: () => ({ loss: t.loss(0), metrics: { bad: tf.scalar(Infinity) } }) }), /metric 'bad' is Infinity/],
      ['gradient NaN', (t) => ({ lr: 0.1, loss: () => tf.mean(tf.add(plantGrad(t.params.get('b')!, NaN), t.loss(0))) as tf.Scalar }), /the gradient of 'b' has 3 NaN and 0 ±Inf entries \(of 3\)/],
      ['overflow', (t) => ({ lr: 0.1, loss: () => tf.mean(tf.add(plantGrad(t.params.get('w')!, 3e38), t.loss(0))) as tf.Scalar }), /clip group 'all' is Infinity although every gradient is finite \(overflow\)/],
      ['state update', (t) => ({ lr: 0.1, loss: () => ({ loss: t.loss(0), updates: [{ path: 's', variable: t.state, value: tf.fill([3], NaN) }] }) }), /the state update of 's' is non-finite/],
      ['lr NaN', (t) => ({ lr: NaN, loss: () => t.loss(0) }), /the learning rate is NaN/],
    ];
    for (const [name, mk, re] of cases) {
      const e = await bothPaths(`${name} (error)`, 1, (t) => ({ ...mk(t), nonFinite: 'error' }));
      assert.match(String(e.async[0]), re, name);
      assert.match(String(e.async[0]), /nothing was updated/);
      const s = await bothPaths(`${name} (skip)`, 2, (t, i) => (i === 0 ? { ...mk(t), nonFinite: 'skip' } : { lr: 0.1, loss: () => t.loss(1) }));
      assert.match((s.async[0] as StepResult).skipped!, re, name);
      assert.ok(!(s.async[1] as StepResult).skipped);
    }
  });

  it('a loss that throws: the same error on both paths, no tensor left behind', async () => {
    const r = await bothPaths('throwing loss', 1, (t) => ({
      lr: 0.1,
      loss: () => {
        t.loss(0);
        throw new Error('boom in the loss');
      },
    }));
    assert.match(String(r.async[0]), /boom in the loss/);
  });

  it('trainLoop forced onto the async path: the same ViT + LoRA run (steps, metrics, parameters, moments)', async () => {
    const run = async (mode: 'auto' | 'async') => {
      setReadMode(mode);
      const vit = createVit('vit_tiny_patch16_224', { imgSize: 16, patchSize: 8, embedDim: 16, depth: 2, numHeads: 2, numClasses: 3 }, { seed: 1 });
      const lora = createLora(vit.params, { rank: 2, targets: [qvTarget()] }, { seed: 2 });
      const params = new Map<string, tf.Variable>([...loraVariables(lora), ['head.weight', vit.params.head!.weight], ['head.bias', vit.params.head!.bias!]]);
      const optimizer = new Optimizer(ADAMW_DEFAULTS, params);
      const hooks = { linear: loraHooks(lora) };
      const live: number[] = [];
      const infos = await trainLoop({
        params, optimizer, steps: 3, seed: 0, accumulate: 2, clipGradNorm: 1,
        lr: { kind: 'cosine', base: 1e-2, min: 0, warmupIters: 1, totalIters: 3 },
        batch: (s, m) => ({ x: tf.tensor4d(randArray(2 * 16 * 16 * 3, 10 * s + m + 1), [2, 16, 16, 3]), y: tf.tensor1d([s % 3, m % 3], 'int32') }),
        loss: (b, rng) => {
          const logits = vitForward(vit, b.x, { hooks, training: true, rng }).logits!;
          return { loss: crossEntropy(logits, b.y), metrics: { acc: tf.mean(tf.cast(tf.equal(tf.argMax(logits, -1), b.y), 'float32')) as tf.Scalar } };
        },
        onStep: () => void live.push(tf.memory().numTensors),
      });
      const all = new Map([...bits(params), ...optimizerBits(optimizer)]);
      optimizer.dispose();
      disposeLora(lora);
      disposeVit(vit);
      return { infos, all, live };
    };
    const a = await run('auto');
    const b = await run('async');
    sameResults<StepInfo>(a.infos, b.infos, 'trainLoop infos');
    assertSameBits(a.all, b.all, 'trainLoop');
    assert.equal(new Set(b.live).size, 1, `live tensors per step (async): ${b.live}`);
  });

  it('D-ExPLoRA: stepAsync and trainExploraDino on the async path = step (student, teacher EMA, centers, moments, metrics)', async () => {
    const MICRO: DExploraConfig = dExploraConfig('D_EXPLORA_L_R64', {
      model: 'vit_small_patch14_dinov2',
      modelOverrides: { imgSize: 16, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2, posEmbedGrid: null },
      recipe: 'D-ExPLoRA-[L]-r2',
      objective: { head: { hiddenDim: 16, bottleneckDim: 8, outDim: 32 }, nLocalCrops: 1, globalCropSize: 16, localCropSize: 8, teacherTemp: { warmupEpochs: 1 } },
      train: { batchSize: 2, epochs: 3, itersPerEpoch: 1, warmupEpochs: 1, freezeLastLayerEpochs: 1, dropPathRate: 0.1 },
    });
    const views = (seed: number): tf.Tensor4D[] => [
      tf.tensor4d(randArray(2 * 16 * 16 * 3, seed), [2, 16, 16, 3]),
      tf.tensor4d(randArray(2 * 16 * 16 * 3, seed + 1), [2, 16, 16, 3]),
      tf.tensor4d(randArray(2 * 8 * 8 * 3, seed + 2), [2, 8, 8, 3]),
    ];
    // a loader stand-in: batch k gives fixed views
    const loader = { batchAt: async (k: number) => ({ views: views(10 * k) }) } as unknown as Loader;
    const results: Array<{ m: DinoStepMetrics[]; all: Bits; live: number[] }> = [];
    for (const mode of ['sync-step', 'async-step', 'async-loop'] as const) {
      const run = createExploraDino(MICRO, { seed: 3 });
      const m: DinoStepMetrics[] = [];
      const live: number[] = [];
      if (mode === 'async-loop') {
        setReadMode('async');
        m.push(...(await trainExploraDino(run, loader, { steps: 3, onStep: () => void live.push(tf.memory().numTensors) })));
        setReadMode('auto');
      } else {
        for (let it = 0; it < 3; it++) {
          const v = views(10 * it);
          m.push(mode === 'sync-step' ? run.step(v, it) : await run.stepAsync(v, it));
          v.forEach((x) => x.dispose());
          live.push(tf.memory().numTensors);
        }
      }
      results.push({ m, all: bits(run.variables({ optimizer: true })), live });
      run.dispose();
    }
    for (const r of results.slice(1)) {
      sameResults(results[0].m, r.m, 'D-ExPLoRA metrics');
      assertSameBits(results[0].all, r.all, 'D-ExPLoRA student / teacher / centers / moments');
      assert.equal(new Set(r.live).size, 1, `live tensors per step: ${r.live}`);
    }
    assert.ok(results[0].m.every((x) => Number.isFinite(x.loss) && x.koleo !== undefined));
  });

  it('M-ExPLoRA through trainLoop (accumulation 2) on the async path = the sync path', async () => {
    const run = async (mode: 'auto' | 'async') => {
      setReadMode(mode);
      const mae = createMae('mae_vit_base_patch16', { encoder: { imgSize: 16, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2 }, decoder: { embedDim: 8, depth: 1, numHeads: 2 }, seed: 2 });
      const r = setupExploraMae(mae, exploraRecipe('M-ExPLoRA-[L]-r4', { decoderRank: 2 }), { seed: 1, train: { effectiveBatch: 4, accumIter: 2, blr: 0.05 } });
      const x = tf.tensor4d(randArray(4 * 16 * 16 * 3, 5), [4, 16, 16, 3]);
      const infos = await trainLoop({
        params: r.trainable, optimizer: r.optimizer, steps: 2, seed: 0, lr: r.schedule(1), weightDecay: r.weightDecay, accumulate: r.accumulate,
        batch: (_s, micro) => x.slice([micro * r.microBatch, 0, 0, 0], [r.microBatch, -1, -1, -1]) as tf.Tensor4D,
        loss: (b, rng) => r.loss(b, rng),
      });
      const all = new Map([...bits(r.trainable), ...optimizerBits(r.optimizer)]);
      x.dispose();
      r.dispose();
      disposeMae(mae);
      return { infos, all };
    };
    const a = await run('auto');
    const b = await run('async');
    sameResults<StepInfo>(a.infos, b.infos, 'M-ExPLoRA infos');
    assertSameBits(a.all, b.all, 'M-ExPLoRA');
  });

  it('eval helpers: the async variants give the same results (features, linear probe, kNN, accuracy, throughput)', async () => {
    const vit = createVit('vit_tiny_patch16_224', { imgSize: 16, patchSize: 8, embedDim: 16, depth: 2, numHeads: 2, numClasses: 3 }, { seed: 4 });
    const batches = () => [0, 1, 2].map((i) => ({ images: tf.tensor4d(randArray(6 * 16 * 16 * 3, 30 + i), [6, 16, 16, 3]), labels: tf.tensor1d([0, 1, 2, 0, 1, 2].map((l) => (l + i) % 3), 'int32') }));
    const before = tf.memory().numTensors;
    const fs = await extractFeatures(vit, batches(), { nLast: 2 });
    setReadMode('async');
    const fa = await extractFeatures(vit, batches(), { nLast: 2 });
    setReadMode('auto');
    const same = (a: FeatureCache, b: FeatureCache) => {
      for (const k of ['cls', 'patchMean', 'labels'] as const) assert.deepEqual(Array.from(b[k].dataSync()), Array.from(a[k].dataSync()), `features.${k}`);
    };
    same(fs, fa);
    disposeFeatures(fa);
    // separable synthetic features for the probe and kNN (the tiny random ViT's are not)
    const rng = new Rng(9);
    const synth = (n: number): FeatureCache => {
      const labels = Int32Array.from({ length: n }, (_, i) => i % 3);
      const cls = Float32Array.from({ length: n * 2 * 8 }, (_, j) => rng.normal(0, 1) + (Math.floor(j / 8) % 2 === 1 && j % 8 === labels[Math.floor(j / 16)] ? 3 : 0));
      return featureCache(cls, Float32Array.from({ length: n * 8 }, () => rng.normal(0, 1)), labels, 2, 8);
    };
    const tr = synth(30);
    const va = synth(12);
    const cfg = { nLastBlocks: [1, 2], avgpool: [false, true], lrs: [0.01, 0.1], batchSize: 8, epochs: 2, seed: 1 };
    const p1 = linearProbe(tr, va, cfg);
    const p2 = await linearProbeAsync(tr, va, cfg);
    assert.deepEqual(p2.results, p1.results);
    assert.deepEqual(p2.losses, p1.losses);
    assert.equal(await p2.accuracyAsync(va), p1.accuracy(va));
    assert.ok(p1.best.valAcc > 0.5, `probe val accuracy ${p1.best.valAcc}`);
    p1.dispose();
    p2.dispose();
    const k1 = knnEvaluate(tr, va, { k: [1, 5] });
    const k2 = await knnEvaluateAsync(tr, va, { k: [1, 5] });
    assert.deepEqual(k2, k1);
    const k3 = knnEvaluate(fs, fs, { k: 2 });
    assert.deepEqual(await knnEvaluateAsync(fs, fs, { k: 2 }), k3);
    const logits = tf.tensor2d(randArray(30, 3), [10, 3]);
    const labels = tf.tensor1d([0, 1, 2, 0, 1, 2, 0, 1, 2, 0], 'int32');
    assert.equal(await accuracyAsync(logits, labels), accuracy(logits, labels));
    tf.dispose([logits, labels]);
    const t1 = measureThroughput(vit, { mode: 'tome', schedule: 1 }, { batch: 2, warmup: 0, iters: 1 });
    const t2 = await measureThroughputAsync(vit, { mode: 'tome', schedule: 1 }, { batch: 2, warmup: 0, iters: 1 });
    assert.deepEqual({ ...t2, msPerIter: 0, imgPerSec: 0 }, { ...t1, msPerIter: 0, imgPerSec: 0 });
    assert.ok(t2.imgPerSec > 0);
    const timeless = <T extends { msPerIter: number; imgPerSec: number; speedup?: number }>(rs: T[]) => rs.map((r) => ({ ...r, msPerIter: 0, imgPerSec: 0, speedup: 0 }));
    const topts = { batch: 2, warmup: 0, iters: 1 };
    assert.deepEqual(timeless(await compareThroughputAsync(vit, { schedule: 1 }, topts)), timeless(compareThroughput(vit, { schedule: 1 }, topts)));
    assert.deepEqual(timeless(await sweepTomeAsync(vit, [0, 2], topts)), timeless(sweepTome(vit, [0, 2], topts)));
    const ky = { features: knnFeatures(tr), labels: tr.labels };
    assert.deepEqual(await knnClassifyAsync(ky, ky, { k: [1, 3] }), knnClassify(ky, ky, { k: [1, 3] }));
    ky.features.dispose();
    [fs, tr, va].forEach(disposeFeatures);
    assert.equal(tf.memory().numTensors, before, 'eval helpers left tensors behind');
    disposeVit(vit);
  });
});

describe('reads: runRecipe on the asynchronous path = the synchronous one (wasm)', function () {
  this.timeout(600000);
  let tmp = '';
  let prevCache: string | undefined;
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-reads-run-'));
    prevCache = process.env.VITPEFT_CACHE_DIR;
    process.env.VITPEFT_CACHE_DIR = path.join(tmp, 'cache');
  });
  after(() => {
    setReadMode('auto');
    if (prevCache === undefined) delete process.env.VITPEFT_CACHE_DIR;
    else process.env.VITPEFT_CACHE_DIR = prevCache;
    rmSync(tmp, { recursive: true, force: true });
  });
  const EMB = { kind: 'embedded', domain: 'satellite-rgb', seed: 3, size: 16, satellitePerClass: 5, naturalPerClass: 5 } as const;
  const norm = { name: 'normalize', stats: 'imagenet' } as const;
  const split = (s: string) => ({ splits: [{ split: s, subset: null }], transform: norm });
  /** LoRA + head, accuracy evaluations, state checkpoints; M-ExPLoRA with a linear probe + kNN evaluation. */
  const recipes = (): RecipeInput[] => [
    {
      name: 'reads-lora',
      seed: 1,
      model: { kind: 'vit', preset: 'vit_tiny_patch16_224', overrides: { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2, numClasses: 10 } },
      adapters: { kind: 'lora', rank: 4, alpha: 1, dropout: 0, init: 'kaiming', targets: [{ sites: ['attn.qkv'], exclude: [], layers: null, kind: 'qkv', slices: ['q', 'v'], rank: null, alpha: null, scaling: null, dropout: null, init: null }], train: ['head.*'] },
      objective: { kind: 'supervised', labelSmoothing: 0.1 },
      data: { source: EMB, train: { splits: [{ split: 'train', subset: null }], transform: { name: 'supervised', size: 16, rrcScale: [0.5, 1], hflip: true, stats: 'imagenet' } } },
      batch: 8,
      steps: 4,
      lr: 1e-2,
      schedule: { kind: 'cosine', warmup: { steps: 1 }, minLr: 0, warmupStart: 0 },
      eval: { kind: 'accuracy', test: split('test'), at: { every: 2 }, batch: 4 },
      checkpointEvery: 2,
    },
    {
      name: 'reads-mae',
      seed: 7,
      model: { kind: 'mae', preset: 'mae_vit_base_patch16', encoder: { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2 }, decoder: { embedDim: 16, depth: 1, numHeads: 2 } },
      adapters: { kind: 'explora', notation: 'M-ExPLoRA-[L]-r4', overrides: { decoderRank: 2 } },
      objective: { kind: 'mae', maskRatio: 0.75, normPixLoss: true },
      data: { source: EMB, train: { splits: [{ split: 'train', subset: null }], transform: { name: 'mae-pretrain', size: 16, stats: 'imagenet' } } },
      batch: 8,
      steps: 3,
      optimizer: { kind: 'adamw', betas: [0.9, 0.95], eps: 1e-8, layerDecay: 1, patchEmbedLrMult: 1 },
      lr: 2e-3,
      schedule: { kind: 'cosine', warmup: { steps: 1 }, minLr: 0, warmupStart: 0 },
      eval: {
        kind: 'probe', train: split('train'), val: split('val'), test: split('test'), at: { steps: [3] }, featureBatch: 7,
        probe: { nLastBlocks: [1, 2], avgpool: [false, true], lrs: [1e-2, 0.1], batchSize: 10, epochs: 2, itersPerEpoch: 3, momentum: 0.9, weightDecay: 0, initStd: 0.01 },
        knn: { k: 5, temperature: 0.07 },
        saveEncoder: false,
      },
    },
  ];
  const strip = (rows: Array<Record<string, unknown>>) => rows.map(({ time: _t, seconds: _s, ...r }) => r);

  it('steps, evaluations (accuracy, linear probe, kNN), checks, diagnostics and the state checkpoint are identical', async () => {
    for (const r of recipes()) {
      const runs = [];
      for (const mode of ['sync', 'async'] as const) {
        setReadMode(mode);
        runs.push(await runRecipe(r, { root: path.join(tmp, mode) }));
      }
      setReadMode('auto');
      const [a, b] = runs;
      assert.equal(b.status, 'done', r.name);
      assert.deepEqual(strip(b.steps as never), strip(a.steps as never), `${r.name}: steps`);
      assert.deepEqual(strip(b.evals as never), strip(a.evals as never), `${r.name}: evaluations`);
      assert.ok(a.evals.length > 0, `${r.name}: evaluated`);
      assert.deepEqual(b.checks, a.checks, `${r.name}: checks`);
      assert.ok(a.checks.every((c) => c.ok), `${r.name}: checks ok`);
      const state = (d: string) => readFileSync(path.join(d, 'checkpoints', 'state.safetensors'));
      if (r.name === 'reads-lora') assert.ok(state(b.dir).equals(state(a.dir)), 'state checkpoint: the same bytes');
    }
  });

  it('saveCheckpointAsync writes the bytes saveCheckpoint writes; a non-finite value is refused the same way, nothing left behind', async () => {
    const vit = createVit('vit_tiny_patch16_224', { imgSize: 16, patchSize: 8, embedDim: 16, depth: 1, numHeads: 2, numClasses: 3 }, { seed: 2 });
    const opt = new Optimizer(ADAMW_DEFAULTS, new Map([['head.weight', vit.params.head!.weight]]));
    const before = tf.memory().numTensors;
    const f1 = path.join(tmp, 'a.safetensors');
    const f2 = path.join(tmp, 'b.safetensors');
    saveCheckpoint(f1, { params: vit.params, optimizer: opt, meta: { x: 1 } });
    await saveCheckpointAsync(f2, { params: vit.params, optimizer: opt, meta: { x: 1 } });
    assert.ok(readFileSync(f2).equals(readFileSync(f1)));
    const v = vit.params.cls_token as tf.Variable;
    const old = v.clone();
    const nan = tf.fill(v.shape, NaN);
    v.assign(nan);
    nan.dispose();
    await assert.rejects(saveCheckpointAsync(f2, { params: vit.params }), /'cls_token' holds a non-finite value \(NaN at flat index 0 .*nothing was written/);
    v.assign(old);
    old.dispose();
    assert.ok(readFileSync(f2).equals(readFileSync(f1)), 'the previous file is unchanged');
    assert.equal(tf.memory().numTensors, before);
    opt.dispose();
    disposeVit(vit);
  });
});
