/**
 * lib/eval/ridge-probe.ts: closed-form ridge classifiers on standardised features, against numpy's solution
 * (test/fixtures/gen_ridge.py → ridge_golden.json); grid selection on val; Cholesky; errors; no leaks.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { readFileSync } from 'fs';
import * as path from 'path';
import { featureCache, disposeFeatures } from '../lib/eval/features';
import { ridgeProbe, choleskySolve } from '../lib/eval/ridge-probe';

interface Golden {
  N: number;
  NV: number;
  D: number;
  K: number;
  Xtr: number[];
  ytr: number[];
  Xva: number[];
  yva: number[];
  cases: Array<{ lambda: number; W: number[]; valScores: number[]; valAcc: number }>;
}
const G = JSON.parse(readFileSync(path.join(__dirname, 'fixtures', 'ridge_golden.json'), 'utf8')) as Golden;

describe('eval/ridge-probe', () => {
  it('Cholesky solve = the exact solution of a small SPD system; non-SPD is an error', () => {
    const A = Float64Array.from([4, 2, 0.6, 2, 5, 1, 0.6, 1, 3]);
    const x = [1, -2, 0.5];
    const B = Float64Array.from([0, 1, 2].map((i) => A[i * 3] * x[0] + A[i * 3 + 1] * x[1] + A[i * 3 + 2] * x[2]));
    const got = choleskySolve(A, 3, B, 1);
    got.forEach((v, i) => assert.ok(Math.abs(v - x[i]) < 1e-12));
    assert.throws(() => choleskySolve(Float64Array.from([1, 2, 2, 1]), 2, Float64Array.from([1, 1]), 1), /not positive definite/);
  });

  it('matches numpy: standardised features, centred one-hot targets, penalty λ·N; val scores and accuracies', () => {
    const tr = featureCache(Float32Array.from(G.Xtr), new Float32Array(G.N * G.D), Int32Array.from(G.ytr), 1, G.D);
    const va = featureCache(Float32Array.from(G.Xva), new Float32Array(G.NV * G.D), Int32Array.from(G.yva), 1, G.D);
    const n0 = tf.memory().numTensors;
    const run = ridgeProbe(tr, va, { nLastBlocks: [1], avgpool: [false], lambdas: G.cases.map((c) => c.lambda) });
    for (const c of G.cases) {
      const name = `n1_cls_lambda${c.lambda}`;
      const s = run.predict(va, name);
      const got = s.dataSync();
      s.dispose();
      let worst = 0;
      got.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - c.valScores[i]))));
      assert.ok(worst < 2e-4, `λ ${c.lambda}: max |Δ score| ${worst}`);
      assert.ok(Math.abs(run.accuracy(va, name) - c.valAcc) < 1e-9);
      assert.ok(Math.abs(run.results.find((r) => r.name === name)!.valAcc - c.valAcc) < 1e-9);
    }
    assert.equal(run.best.valAcc, Math.max(...run.results.map((r) => r.valAcc)));
    run.dispose();
    assert.equal(tf.memory().numTensors, n0, 'nothing left after dispose');
    assert.throws(() => ridgeProbe(tr, va, { nLastBlocks: [2] }), /nLastBlocks entry 2 is outside \[1, 1\]/);
    assert.throws(() => ridgeProbe(tr, va, { nLastBlocks: [1], lambdas: [0] }), /lambdas must be positive/);
    assert.throws(() => ridgeProbe(tr, va, { lam: 1 } as never), /unknown key 'lam'/);
    assert.equal(tf.memory().numTensors, n0, 'errors leak nothing');
    [tr, va].forEach(disposeFeatures);
  });

  it('near-collinear features: a grid entry whose system is not positive definite is skipped, not fatal; none left = error naming the entries', () => {
    // 40 samples, 8 columns that are the same feature up to float32 noise (a collapsed encoder): with λ = 1e-30 the
    // Gram matrix + λ·N is singular to working precision; λ = 1 regularises it.
    const N = 40;
    const D = 8;
    const x = new Float32Array(N * D);
    const y = new Int32Array(N);
    for (let i = 0; i < N; i++) {
      y[i] = i % 2;
      for (let j = 0; j < D; j++) x[i * D + j] = (y[i] ? 1 : -1) * (1 + 0.01 * Math.sin(i)) + 1e-7 * Math.cos(i * j);
    }
    const tr = featureCache(x, new Float32Array(N * D), y, 1, D);
    const va = featureCache(x.slice(), new Float32Array(N * D), y.slice(), 1, D);
    const n0 = tf.memory().numTensors;
    const run = ridgeProbe(tr, va, { nLastBlocks: [1], avgpool: [false], lambdas: [1e-30, 1] });
    assert.deepEqual(run.skipped, ['n1_cls_lambda1e-30']);
    assert.deepEqual(run.results.map((r) => r.name), ['n1_cls_lambda1']);
    assert.equal(run.best.valAcc, 1);
    run.dispose();
    assert.throws(() => ridgeProbe(tr, va, { nLastBlocks: [1], avgpool: [false], lambdas: [1e-30] }), /no grid entry could be solved .*n1_cls_lambda1e-30.*use larger lambdas/);
    assert.equal(tf.memory().numTensors, n0, 'nothing left, also after the error');
    [tr, va].forEach(disposeFeatures);
  });
});
