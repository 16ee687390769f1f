import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { createVit, disposeVit } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { Rng } from '../lib/rng';
import { fillInit } from '../lib/init';
import { extractFeatures, featureCache, probeInput, disposeFeatures, FeatureCache } from '../lib/eval/features';
import { linearProbe, DINOV2_LINEAR_PROBE } from '../lib/eval/linear-probe';
import { createLora, qvTarget, loraHooks, disposeLora } from '../lib/peft/lora';
import { maxAbsDiff, randArray, noLeak } from './util';

/**
 * Synthetic features with a planted linear rule: label = argmax(z·W*) with z ~ N(0, 1)^D. `where` says which part of
 * the cache carries z: the last block's CLS ('cls') or the mean patch token ('patch'); everything else is noise.
 */
function planted(N: number, D: number, K: number, where: 'cls' | 'patch', seed: number, wstar: Float32Array): FeatureCache {
  const rng = new Rng(seed);
  const nLast = 4;
  const cls = new Float32Array(N * nLast * D).map(() => rng.normal());
  const patch = new Float32Array(N * D).map(() => rng.normal());
  const labels = new Int32Array(N);
  for (let i = 0; i < N; i++) {
    const z = where === 'cls' ? cls.subarray((i * nLast + nLast - 1) * D, (i * nLast + nLast) * D) : patch.subarray(i * D, (i + 1) * D);
    let best = -Infinity;
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += z[d] * wstar[d * K + k];
      if (s > best) {
        best = s;
        labels[i] = k;
      }
    }
  }
  return featureCache(cls, patch, labels, nLast, D);
}

function fillNormal(n: number, std: number, name: string, seed: number): Float32Array {
  return fillInit(n, { kind: 'normal', std }, Rng.derive(seed, name));
}

describe('eval/features', () => {
  it('caches the last n blocks’ normed CLS tokens and the mean patch token, one backbone pass per batch', async () => {
    const vit = createVit('vit_tiny_patch16_224', { imgSize: 16, patchSize: 8, embedDim: 16, depth: 3, numHeads: 2 }, { seed: 3 });
    const lora = createLora(vit.params, { rank: 2, targets: [qvTarget()] });
    for (const m of lora.modules.values()) for (const s of m.slices) s.B.assign(tf.ones(s.B.shape).mul(0.3));
    const imgs = randArray(5 * 16 * 16 * 3, 4);
    const mk = (lo: number, hi: number) => ({ images: tf.tensor4d(imgs.slice(lo * 768, hi * 768), [hi - lo, 16, 16, 3]), labels: [lo, hi - 1].slice(0, hi - lo).concat(hi - lo > 2 ? [7] : []) });
    const before = tf.memory().numTensors;
    const hooks = { linear: loraHooks(lora) };
    const c = await extractFeatures(vit, [mk(0, 2), mk(2, 5)], { nLast: 2, hooks });
    assert.equal(tf.memory().numTensors, before + 3, 'only the three cache tensors remain (batches disposed)');
    assert.deepEqual(c.cls.shape, [5, 2, 16]);
    assert.deepEqual(c.patchMean.shape, [5, 16]);
    assert.deepEqual(Array.from(c.labels.dataSync()), [0, 1, 2, 4, 7]);
    const ref = tf.tidy(() => {
      const o = vitForward(vit, tf.tensor4d(imgs, [5, 16, 16, 3]), { hooks, returnLayers: 2 });
      return [tf.stack([o.intermediates[0].cls, o.intermediates[1].cls], 1).dataSync(), tf.mean(o.patchTokens, 1).dataSync(), o.cls.dataSync()];
    });
    assert.ok(maxAbsDiff(c.cls.dataSync(), ref[0]) < 1e-5);
    assert.ok(maxAbsDiff(c.patchMean.dataSync(), ref[1]) < 1e-5);
    const x = probeInput(c, 1, true);
    assert.deepEqual(x.shape, [5, 32]);
    const xd = x.dataSync();
    for (let i = 0; i < 5; i++) assert.ok(maxAbsDiff(xd.slice(i * 32, i * 32 + 16), ref[2].slice(i * 16, (i + 1) * 16)) < 1e-5, 'n=1 input = last CLS');
    assert.deepEqual(probeInput(c, 2, false).shape, [5, 32]);
    tf.dispose(x);
    await assert.rejects(extractFeatures(vit, [mk(0, 1)], { nLast: 4 }), /nLast must be an integer in \[1, 3\], got 4/);
    await assert.rejects(extractFeatures(vit, [{ images: tf.zeros([2, 16, 16, 3]) as tf.Tensor4D, labels: [1] }], { nLast: 1 }), /batch has 2 images but 1 labels/);
    await assert.rejects(extractFeatures(vit, [], { nLast: 1 }), /no batches/);
    assert.throws(() => probeInput(c, 3, false), /nLast must be in \[1, 2\]/);
    assert.throws(() => featureCache(new Float32Array(3), new Float32Array(2), new Int32Array(1), 1, 2), /cls has 3 values, expected N·n·D = 1·1·2/);
    disposeFeatures(c);
    disposeLora(lora);
    disposeVit(vit);
  });
});

describe('eval/linear-probe (DINOv2 protocol)', () => {
  const D = 12;
  const K = 4;
  const wstar = Float32Array.from(randArray(D * K, 17));

  it('recovers a planted linear rule in the last CLS token; best-on-val is reported; grid = 2 × 2 × 7', () => {
    const train = planted(1200, D, K, 'cls', 1, wstar);
    const val = planted(400, D, K, 'cls', 2, wstar);
    const test = planted(400, D, K, 'cls', 3, wstar);
    const run = linearProbe(train, val, { batchSize: 128, epochs: 30, seed: 0 });
    assert.equal(run.results.length, 2 * 2 * 7);
    assert.deepEqual(run.results.slice(0, 2).map((r) => r.name), ['n1_cls_lr0.0001', 'n1_cls_lr0.001']);
    assert.equal(run.best.valAcc, Math.max(...run.results.map((r) => r.valAcc)));
    assert.ok(run.best.valAcc > 0.9, `best val acc ${run.best.valAcc}`);
    assert.ok(run.accuracy(test) > 0.88, `test acc ${run.accuracy(test)}`);
    // the smallest lr barely moves from N(0, 0.01) init: near chance — the grid really trains each lr separately
    const tiny = run.results.find((r) => r.name === 'n1_cls_lr0.0001')!;
    assert.ok(tiny.valAcc < run.best.valAcc - 0.2, `lr 1e-4 ${tiny.valAcc} vs best ${run.best.valAcc}`);
    assert.ok(run.losses[run.losses.length - 1] < run.losses[0]);
    const logits = run.predict(test);
    assert.deepEqual(logits.shape, [400, K]);
    logits.dispose();
    run.dispose();
    [train, val, test].forEach(disposeFeatures);
  });

  it('avgpool classifiers see the mean patch token: a rule planted there is found only with avgpool', () => {
    const train = planted(800, D, K, 'patch', 4, wstar);
    const val = planted(400, D, K, 'patch', 5, wstar);
    const run = linearProbe(train, val, { batchSize: 128, epochs: 25, lrs: [0.1, 0.5], seed: 1 });
    const withPool = run.results.filter((r) => r.avgpool).map((r) => r.valAcc);
    const without = run.results.filter((r) => !r.avgpool).map((r) => r.valAcc);
    assert.ok(Math.max(...withPool) > 0.85, `avgpool ${withPool}`);
    assert.ok(Math.max(...without) < 0.5, `cls only ${without}`);
    assert.ok(run.best.avgpool);
    run.dispose();
    [train, val].forEach(disposeFeatures);
  });

  it('SGD momentum 0.9 with cosine lr and batch/256 scaling matches a naive reference; grid members train independently', () => {
    // 4 samples, F = 2 (n=1 CLS of width 2), K = 2 classes, full batch, 2 steps (lr factor 1 then 0.5).
    const cls = Float32Array.from([0.5, -1, 1.5, 0.2, -0.3, 0.8, 1, 1]);
    const labels = Int32Array.from([0, 1, 1, 0]);
    const train = featureCache(cls, new Float32Array(8), labels, 1, 2);
    const run = linearProbe(train, train, { nLastBlocks: [1], avgpool: [false], lrs: [0.5, 2], batchSize: 4, epochs: 2, itersPerEpoch: 1, seed: 3 });
    const both = run.weights('n1_cls_lr2');
    // reference from the documented init: N(0, 0.01) drawn from Rng.derive(seed, name), bias 0
    const w0 = Array.from(fillNormal(2 * 2, 0.01, 'n1_cls_lr2', 3));
    const W = [...w0];
    const b = [0, 0];
    const bufW = [0, 0, 0, 0];
    const bufB = [0, 0];
    const lr = (2 * 4) / 256;
    [1, 0.5].forEach((factor, step) => {
      const gW = [0, 0, 0, 0];
      const gB = [0, 0];
      for (let i = 0; i < 4; i++) {
        const x = [cls[2 * i], cls[2 * i + 1]];
        const z = [0, 1].map((k) => x[0] * W[k] + x[1] * W[2 + k] + b[k]);
        const m = Math.max(...z);
        const e = z.map((v) => Math.exp(v - m));
        const p = e.map((v) => v / (e[0] + e[1]));
        for (let k = 0; k < 2; k++) {
          const d = (p[k] - (labels[i] === k ? 1 : 0)) / 4;
          gW[k] += d * x[0];
          gW[2 + k] += d * x[1];
          gB[k] += d;
        }
      }
      for (let j = 0; j < 4; j++) {
        bufW[j] = step === 0 ? gW[j] : 0.9 * bufW[j] + gW[j];
        W[j] -= lr * factor * bufW[j];
      }
      for (let j = 0; j < 2; j++) {
        bufB[j] = step === 0 ? gB[j] : 0.9 * bufB[j] + gB[j];
        b[j] -= lr * factor * bufB[j];
      }
    });
    assert.ok(maxAbsDiff(both.weight.dataSync(), W) < 1e-6, `W ${Array.from(both.weight.dataSync())} vs ${W}`);
    assert.ok(maxAbsDiff(both.bias.dataSync(), b) < 1e-6);
    // the same classifier trained alone gives the same weights
    const alone = linearProbe(train, train, { nLastBlocks: [1], avgpool: [false], lrs: [2], batchSize: 4, epochs: 2, itersPerEpoch: 1, seed: 3 });
    const a = alone.weights('n1_cls_lr2');
    assert.ok(maxAbsDiff(a.weight.dataSync(), both.weight.dataSync()) < 1e-7);
    tf.dispose([both.weight, both.bias, a.weight, a.bias]);
    assert.throws(() => run.weights('n9'), /no classifier 'n9'; valid: n1_cls_lr0\.5, n1_cls_lr2/);
    run.dispose();
    alone.dispose();
    disposeFeatures(train);
  });

  it('leaks nothing: constant tensors per step, nothing left after dispose', async () => {
    const train = planted(300, D, K, 'cls', 6, wstar);
    const val = planted(100, D, K, 'cls', 7, wstar);
    const counts: number[] = [];
    await noLeak(() => {
      const run = linearProbe(train, val, { batchSize: 64, epochs: 2, lrs: [0.01] }, { onStep: () => counts.push(tf.memory().numTensors) });
      run.dispose();
    });
    assert.ok(counts.length >= 8);
    assert.equal(new Set(counts).size, 1, `numTensors per step: ${counts}`);
    // same seed ⇒ same numbers
    const a = linearProbe(train, val, { batchSize: 64, epochs: 1, lrs: [0.05], nLastBlocks: [4] });
    const b = linearProbe(train, val, { batchSize: 64, epochs: 1, lrs: [0.05], nLastBlocks: [4] });
    assert.deepEqual(a.losses, b.losses);
    a.dispose();
    b.dispose();
    [train, val].forEach(disposeFeatures);
  });

  it('standardize: same as training on pre-standardised features; converges where raw badly scaled features do not', () => {
    // badly scaled features: every dimension multiplied by a factor in [0.02, 50] and shifted
    const scaleOf = (j: number): number => Math.exp(Math.log(0.02) + (Math.log(50) - Math.log(0.02)) * ((j * 7) % 48) / 47);
    const skew = (c: FeatureCache): FeatureCache => {
      const [N, n, Dd] = c.cls.shape;
      const a = Float32Array.from(c.cls.dataSync());
      const b = Float32Array.from(c.patchMean.dataSync());
      for (let i = 0; i < N * n * Dd; i++) a[i] = a[i] * scaleOf(i % (n * Dd)) + 3;
      for (let i = 0; i < N * Dd; i++) b[i] = b[i] * scaleOf(n * Dd + (i % Dd)) - 2;
      return featureCache(a, b, Int32Array.from(c.labels.dataSync()), n, Dd);
    };
    const t0 = planted(600, D, K, 'cls', 11, wstar);
    const v0 = planted(300, D, K, 'cls', 12, wstar);
    const train = skew(t0);
    const val = skew(v0);
    const cfg = { batchSize: 128, epochs: 4, lrs: [0.01, 0.1], seed: 2 };
    const raw = linearProbe(train, val, cfg);
    const n0 = tf.memory().numTensors;
    linearProbe(train, val, { ...cfg, epochs: 1, standardize: true }).dispose();
    assert.equal(tf.memory().numTensors, n0, 'standardize leaks nothing after dispose');
    const std = linearProbe(train, val, { ...cfg, standardize: true });
    assert.ok(std.best.valAcc > 0.85, `standardised ${std.best.valAcc}`);
    assert.ok(std.best.valAcc > raw.best.valAcc + 0.15, `standardised ${std.best.valAcc} vs raw ${raw.best.valAcc}`);
    // = the probe on features standardised beforehand with the train mean / std (population variance)
    const pre = (c: FeatureCache, ref: FeatureCache): FeatureCache => {
      const [N, n, Dd] = c.cls.shape;
      const [Nr] = ref.cls.shape;
      const a = Float32Array.from(c.cls.dataSync());
      const b = Float32Array.from(c.patchMean.dataSync());
      const ra = ref.cls.dataSync();
      const rb = ref.patchMean.dataSync();
      const norm = (x: Float32Array, r: ArrayLike<number>, F: number, off: number, width: number): void => {
        for (let j = 0; j < width; j++) {
          let m = 0;
          for (let i = 0; i < Nr; i++) m += r[i * F + off + j] / Nr;
          let v = 0;
          for (let i = 0; i < Nr; i++) v += (r[i * F + off + j] - m) ** 2 / Nr;
          for (let i = 0; i < x.length / F; i++) x[i * F + off + j] = (x[i * F + off + j] - m) / (Math.sqrt(v) + 1e-6);
        }
      };
      norm(a, ra, n * Dd, 0, n * Dd); // all 4 cached blocks; the n1 input is the last block's slice
      norm(b, rb, Dd, 0, Dd);
      void N;
      return featureCache(a, b, Int32Array.from(c.labels.dataSync()), n, Dd);
    };
    const ptrain = pre(train, train);
    const pval = pre(val, train);
    const ref = linearProbe(ptrain, pval, cfg);
    for (const r of ref.results) {
      const q = std.results.find((x) => x.name === r.name)!;
      assert.ok(Math.abs(q.valAcc - r.valAcc) <= 1 / 300 + 1e-9, `${r.name}: ${q.valAcc} vs ${r.valAcc}`);
    }
    assert.ok(Math.abs(std.accuracy(val) - ref.accuracy(pval)) <= 1 / 300 + 1e-9);
    [raw, std, ref].forEach((r) => r.dispose());
    [t0, v0, train, val, ptrain, pval].forEach(disposeFeatures);
  });

  it('bad input gets clear errors', () => {
    const train = planted(20, D, K, 'cls', 8, wstar);
    const val = planted(20, D, K, 'cls', 9, wstar);
    assert.throws(() => linearProbe(train, val, { nLastBlocks: [5] }), /nLastBlocks entry 5 is outside \[1, 4\]/);
    assert.throws(() => linearProbe(train, val, { lrs: [0] }), /lrs must be positive/);
    assert.throws(() => linearProbe(train, val, { lr: 1 } as never), /LinearProbeConfig: unknown key 'lr'/);
    assert.throws(() => linearProbe(train, val, { numClasses: 2 }), /labels reach 3 but numClasses is 2/);
    assert.deepEqual(DINOV2_LINEAR_PROBE.lrs, [1e-4, 1e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1]);
    [train, val].forEach(disposeFeatures);
  });
});
