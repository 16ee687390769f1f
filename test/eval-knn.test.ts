import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { Rng } from '../lib/rng';
import { knnClassify, knnEvaluate, KNN_DEFAULTS } from '../lib/eval/knn';
import { featureCache, disposeFeatures } from '../lib/eval/features';
import { noLeak } from './util';

/** Naive DINO-style weighted kNN in plain JS (cosine, top-k, exp(sim/T) votes, argmax; ties → lower class). */
function naiveKnn(tr: number[][], trY: number[], te: number[][], k: number, T: number, C: number): number[] {
  const norm = (v: number[]) => {
    const n = Math.max(Math.sqrt(v.reduce((s, x) => s + x * x, 0)), 1e-12);
    return v.map((x) => x / n);
  };
  const trN = tr.map(norm);
  return te.map((q0) => {
    const q = norm(q0);
    const sims = trN.map((t, i) => ({ i, s: t.reduce((acc, x, d) => acc + x * q[d], 0) }));
    sims.sort((a, b) => b.s - a.s || a.i - b.i);
    const votes = new Array(C).fill(0);
    for (const { i, s } of sims.slice(0, k)) votes[trY[i]] += Math.exp(s / T);
    let best = 0;
    for (let c = 1; c < C; c++) if (votes[c] > votes[best]) best = c;
    return best;
  });
}

function gaussian(n: number, d: number, rng: Rng): number[][] {
  return Array.from({ length: n }, () => Array.from({ length: d }, () => rng.normal()));
}

describe('eval/knn (weighted kNN, DINO protocol)', () => {
  it('defaults: k = 20, T = 0.07', () => {
    assert.equal(KNN_DEFAULTS.k, 20);
    assert.equal(KNN_DEFAULTS.temperature, 0.07);
  });

  it('matches a naive reference (predictions for several k, chunked)', () => {
    const rng = new Rng(5);
    const tr = gaussian(60, 6, rng);
    const trY = tr.map(() => rng.int(4));
    const te = gaussian(25, 6, rng);
    const teY = te.map(() => rng.int(4));
    const run = (cfg: object) => {
      const t = [tf.tensor2d(tr), tf.tensor1d(trY, 'int32'), tf.tensor2d(te), tf.tensor1d(teY, 'int32')] as const;
      try {
        return knnClassify({ features: t[0], labels: t[1] }, { features: t[2], labels: t[3] }, cfg);
      } finally {
        tf.dispose([...t]);
      }
    };
    const res = run({ k: [1, 5, 20], chunk: 7 });
    for (const r of res) {
      const ref = naiveKnn(tr, trY, te, r.k, 0.07, 4);
      assert.deepEqual(Array.from(r.predictions), ref, `k=${r.k}`);
      assert.equal(r.top1, ref.filter((p, i) => p === teY[i]).length / te.length);
      assert.equal(r.top5, null); // 4 classes
    }
    // the temperature is applied: T = 0.5 (flatter weights) also matches the reference, and differs from T = 0.07 here
    const warm = run({ k: 20, temperature: 0.5 });
    const refWarm = naiveKnn(tr, trY, te, 20, 0.5, 4);
    assert.deepEqual(Array.from(warm[0].predictions), refWarm);
    assert.notDeepEqual(refWarm, naiveKnn(tr, trY, te, 20, 0.07, 4));
  });

  it('recovers planted class structure in synthetic features (near-perfect top-1; top-5 = 1 with 10 classes)', async () => {
    const rng = new Rng(11);
    const C = 10;
    const D = 16;
    const centers = gaussian(C, D, rng);
    const sample = (n: number): [number[][], number[]] => {
      const y = Array.from({ length: n }, () => rng.int(C));
      return [y.map((c) => centers[c].map((m) => m + 0.3 * rng.normal())), y];
    };
    const [tr, trY] = sample(400);
    const [te, teY] = sample(200);
    // through feature caches (last block CLS = the planted vector; earlier blocks noise)
    const toCache = (x: number[][], y: number[]) => {
      const cls = new Float32Array(x.length * 2 * D);
      x.forEach((v, i) => {
        for (let d = 0; d < D; d++) {
          cls[(i * 2) * D + d] = rng.normal();
          cls[(i * 2 + 1) * D + d] = v[d];
        }
      });
      return featureCache(cls, new Float32Array(x.length * D), Int32Array.from(y), 2, D);
    };
    const a = toCache(tr, trY);
    const b = toCache(te, teY);
    const [r] = await noLeak(() => knnEvaluate(a, b));
    assert.equal(r.k, 20);
    assert.ok(r.top1 > 0.97, `top1 ${r.top1}`);
    assert.equal(r.top5, 1);
    // shuffled labels → chance level
    const shuffled = featureCache(a.cls.dataSync() as Float32Array, new Float32Array(400 * D), Int32Array.from(new Rng(1).shuffle([...trY])), 2, D);
    const [s] = knnEvaluate(shuffled, b);
    assert.ok(s.top1 < 0.3, `shuffled top1 ${s.top1}`);
    [a, b, shuffled].forEach(disposeFeatures);
  });

  it('bad input gets clear errors', () => {
    tf.tidy(() => {
      const tr = { features: tf.ones([5, 3]) as tf.Tensor2D, labels: tf.tensor1d([0, 1, 0, 1, 0], 'int32') };
      const te = { features: tf.ones([2, 3]) as tf.Tensor2D, labels: tf.tensor1d([0, 1], 'int32') };
      assert.throws(() => knnClassify(tr, te, { k: 6 }), /k must be an integer in \[1, 5\] \(training samples\), got 6/);
      assert.throws(() => knnClassify(tr, { ...te, features: tf.ones([2, 4]) as tf.Tensor2D }), /train features have width 3, test features 4/);
      assert.throws(() => knnClassify(tr, te, { k: 2, temperature: 0 }), /knnClassify: temperature: expected a finite number > 0, got 0/);
      assert.throws(() => knnClassify(tr, te, { K: 3 } as never), /KnnConfig: unknown key 'K'/);
      assert.throws(() => knnClassify(tr, { ...te, labels: tf.tensor1d([0], 'int32') }, { k: 2 }), /5\/2 feature rows but 5\/1 labels \(train\/test\)/);
    });
  });
});
