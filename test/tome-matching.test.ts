/**
 * ToMe matching and merging: a hand-computed 6-token example, a PyTorch golden fixture (tools/gen_tome_fixture.py),
 * PYRA's re-activation against the same fixture, the two scatter-add forms, gradients, leaks and bad input.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { bipartiteSoftMatching, gradientFree, splitParity, batchGather } from '../lib/tome/matching';
import { mergeWavg, mergeSource, mergeSum, scatterAdd } from '../lib/tome/merge';
import { pyraModulator, PyraBlockParams } from '../lib/tome/pyra';
import { assertClose, noLeak, randArray, maxAbsDiff, onBackend } from './util';

const ints = (t: tf.Tensor): number[] => Array.from(t.dataSync());

// 6 tokens, 2-D keys: cls [1,0] | t1 [1,0] | t2 [0,1] | t3 [0,1] | t4 [3,4] | t5 [4,3].
// A = {t0 (cls), t2, t4}, B = {t1, t3, t5}. Cosines: t2→(0, 1, .6) best t3 = 1.0; t4→(.6, .8, .96) best t5 = .96.
const KEYS6 = [1, 0, 1, 0, 0, 1, 0, 1, 3, 4, 4, 3];
const X6 = [10, 20, 30, 40, 50, 60];

describe('tome: bipartite soft matching and merge', () => {
  it('hand-computed 6-token example: r = 2, r = 1, cap at r = 3, then a size-weighted second merge', async () => {
    await noLeak(() =>
      tf.tidy(() => {
        const metric = tf.tensor3d(KEYS6, [1, 6, 2]);
        const x = tf.tensor3d(X6, [1, 6, 1]);
        // r = 2: sources t2 (score 1.0) then t4 (.96), into t3 and t5; unmerged: cls.
        const m2 = bipartiteSoftMatching(metric, 2)!;
        assert.deepEqual([m2.r, m2.na, m2.nb], [2, 3, 3]);
        assert.deepEqual(ints(m2.src), [1, 2]);
        assert.deepEqual(ints(m2.dst), [1, 2]);
        assert.deepEqual(ints(m2.unm), [0]);
        const a = mergeWavg(m2, x, null);
        // order [unm ‖ B] = [t0, t1, (t3+t2)/2, (t5+t4)/2]
        assert.deepEqual(ints(a.x), [10, 20, 35, 55]);
        assert.deepEqual(ints(a.size), [1, 1, 2, 2]);
        // r = 1: only t2 → t3; unmerged A = [t0, t4] in ascending order.
        const m1 = bipartiteSoftMatching(metric, 1)!;
        assert.deepEqual(ints(m1.src), [1]);
        assert.deepEqual(ints(m1.unm), [0, 2]);
        const b = mergeWavg(m1, x, null);
        assert.deepEqual(ints(b.x), [10, 50, 20, 35, 60]);
        assert.deepEqual(ints(b.size), [1, 1, 1, 2, 1]);
        // r = 3 is capped at ⌊(6 − 1)/2⌋ = 2 (the cls token is never a source).
        assert.equal(bipartiteSoftMatching(metric, 3)!.r, 2);
        // Second layer on [cls, t1, m23 (size 2), m45 (size 2)]: A = {cls, m23}, B = {t1, m45}; cap ⌊3/2⌋ = 1.
        // m23's key is close to t1's → merges into it: (1·20 + 2·35)/3 = 30 with size 3.
        const metric2 = tf.tensor3d([1, 0, 1, 0, 0.9, 0.1, -1, 1], [1, 4, 2]);
        const m = bipartiteSoftMatching(metric2, 5)!;
        assert.equal(m.r, 1);
        const c = mergeWavg(m, a.x, a.size);
        assertClose(c.x.dataSync(), [10, 30, 55], 1e-5);
        assert.deepEqual(ints(c.size), [1, 3, 2]);
        // sources: cls → {0}; {1, 2, 3}; {4, 5}
        const s1 = mergeSource(m2, null, 6, 1);
        const s2 = mergeSource(m, s1, 6, 1);
        assert.deepEqual(s2.arraySync(), [[[1, 0, 0, 0, 0, 0], [0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]]]);
      }),
    );
  });

  it('distillation token: column masked, output [cls, dist, rest of unm, rest of B]', () => {
    tf.tidy(() => {
      // t1 (dist) has the same key as t2 and t4; with its column masked they must go elsewhere.
      const metric = tf.tensor3d([1, 0, 0, 1, 0, 1, 1, 0.1, 0, 1, 0.1, 1], [1, 6, 2]);
      const m = bipartiteSoftMatching(metric, 2, { distillToken: true })!;
      assert.equal(m.r, 2);
      for (const d of ints(m.dst)) assert.notEqual(d, 0, 'nothing merges into the distillation token');
      const out = mergeSum(m, tf.tensor3d([0, 1, 2, 3, 4, 5], [1, 6, 1]));
      const v = ints(out);
      assert.equal(v[0], 0, 'cls first');
      assert.equal(v[1], 1, 'dist second');
      assert.equal(v.length, 4);
    });
  });

  for (const backend of ['default', 'cpu']) {
    it(`matches the PyTorch golden fixture (indices, merged tokens, sizes, sources, PYRA re-activation) [${backend} backend]`, async () => {
      const file = path.join(__dirname, 'fixtures', 'tome_golden.json');
      const fx = JSON.parse(fs.readFileSync(file, 'utf8')) as {
        cases: Array<{
          name: string; B: number; N: number; C: number; D: number; cls: boolean; dist: boolean; pyra: boolean;
          steps: Array<{
            n: number; r: number; rEff: number; metric: number[]; xIn: number[]; sizeIn: number[]; src: number[]; dst: number[];
            unm: number[]; xOut: number[]; sizeOut: number[]; sourceOut: number[];
            pyra?: { a: number[]; b: number[]; gamma: number[]; beta: number[] };
          }>;
        }>;
      };
      assert.ok(fx.cases.length >= 5);
      const run = (fn: () => void) => (backend === 'cpu' ? onBackend('cpu', fn) : fn());
      await run(() => noLeak(() => {
        const vars: tf.Variable[] = [];
        for (const c of fx.cases) {
          let source: tf.Tensor3D | null = null;
          for (const [k, st] of c.steps.entries()) {
            const what = `${c.name} step ${k}`;
            tf.tidy(() => {
              const metric = tf.tensor3d(st.metric, [c.B, st.n, c.C]);
              const m = bipartiteSoftMatching(metric, st.r, { classToken: c.cls, distillToken: c.dist })!;
              assert.equal(m.r, st.rEff, `${what}: r`);
              assert.deepEqual(ints(m.src), st.src, `${what}: src`);
              assert.deepEqual(ints(m.dst), st.dst, `${what}: dst`);
              assert.deepEqual(ints(m.unm), st.unm, `${what}: unm`);
              const x = tf.tensor3d(st.xIn, [c.B, st.n, c.D]);
              const size = k === 0 ? null : tf.tensor3d(st.sizeIn, [c.B, st.n, 1]);
              let modulate;
              if (st.pyra) {
                const r = st.rEff;
                const p: PyraBlockParams = {
                  pyra_a: tf.variable(tf.tensor2d(st.pyra.a, [r, 1])),
                  pyra_b: tf.variable(tf.tensor2d(st.pyra.b, [1, c.D])),
                  pyra_norm: { weight: tf.variable(tf.tensor1d(st.pyra.gamma)), bias: tf.variable(tf.tensor1d(st.pyra.beta)) },
                };
                vars.push(p.pyra_a!, p.pyra_b!, p.pyra_norm!.weight, p.pyra_norm!.bias);
                modulate = pyraModulator(p, k);
              }
              for (const scatter of ['segment', 'onehot'] as const) {
                const out = mergeWavg(m, x, size, { modulate, scatter });
                assertClose(out.x.dataSync(), st.xOut, 2e-5, 2e-5, `${what}: merged x (${scatter})`);
                assertClose(out.size.dataSync(), st.sizeOut, 0, 0, `${what}: sizes`);
              }
              const next = mergeSource(m, source, st.n, c.B);
              assert.deepEqual(Array.from(next.dataSync()), st.sourceOut, `${what}: source`);
              if (source) source.dispose();
              source = tf.keep(next);
            });
          }
          if (source) (source as tf.Tensor).dispose();
        }
        tf.dispose(vars);
        assert.ok(vars.length > 0, 'the fixture has PYRA steps');
      }));
    });
  }

  it('source columns are one-hot and sizes sum to N0 through repeated merges', () => {
    tf.tidy(() => {
      const B = 3;
      let n = 23;
      let x = tf.tensor3d(randArray(B * n * 4, 7), [B, n, 4]);
      let size: tf.Tensor3D | null = null;
      let source: tf.Tensor3D | null = null;
      for (const [i, r] of [5, 5, 4, 3, 2, 9].entries()) {
        const metric = tf.tensor3d(randArray(B * n * 3, 100 + i), [B, n, 3]);
        const m = bipartiteSoftMatching(metric, r)!;
        source = mergeSource(m, source, n, B);
        ({ x, size } = mergeWavg(m, x, size));
        n -= m.r;
        assert.deepEqual(x.shape, [B, n, 4]);
        const sums = tf.sum(size, [1, 2]).dataSync();
        for (const s of sums) assert.equal(s, 23, `block ${i}: sizes sum to ${s}`);
        const colSums = tf.sum(source, 1).dataSync();
        for (const s of colSums) assert.equal(s, 1, 'every input token belongs to exactly one group');
        assertClose(tf.sum(source, 2).dataSync(), size.dataSync(), 0, 0, 'size = group cardinality');
      }
    });
  });

  it('segment and one-hot scatter-add agree, with gradients', () => {
    tf.tidy(() => {
      const v = tf.tensor3d(randArray(2 * 5 * 3, 3), [2, 5, 3]);
      const idx = tf.tensor2d([0, 2, 2, 1, 0, 3, 3, 3, 0, 1], [2, 5], 'int32');
      const f = (mode: 'segment' | 'onehot') => (t: tf.Tensor) => tf.sum(tf.mul(scatterAdd(t as tf.Tensor3D, idx, 4, mode), tf.range(1, 2 * 4 * 3 + 1).reshape([2, 4, 3])));
      assertClose(scatterAdd(v, idx, 4, 'segment').dataSync(), scatterAdd(v, idx, 4, 'onehot').dataSync(), 1e-6);
      assertClose(tf.grad(f('segment'))(v).dataSync(), tf.grad(f('onehot'))(v).dataSync(), 1e-6);
    });
  });

  it('is gradient-free: gradients flow to x through the merge but not through the matching', () => {
    tf.tidy(() => {
      const keys = tf.variable(tf.tensor3d(randArray(2 * 9 * 4, 5), [2, 9, 4]));
      const x = tf.variable(tf.tensor3d(randArray(2 * 9 * 3, 6), [2, 9, 3]));
      const { grads } = tf.variableGrads(() => {
        const m = bipartiteSoftMatching(tf.mul(keys, 1) as tf.Tensor3D, 3)!;
        return tf.sum(tf.square(mergeWavg(m, x, null).x)) as tf.Scalar;
      }, [keys, x]);
      assert.ok(grads[x.name], 'x receives a gradient');
      assert.ok(maxAbsDiff(grads[x.name].dataSync(), new Float32Array(2 * 9 * 3)) > 0);
      const gk = grads[keys.name];
      if (gk) assert.equal(maxAbsDiff(gk.dataSync(), new Float32Array(2 * 9 * 4)), 0, 'no gradient through the matching');
      keys.dispose();
      x.dispose();
    });
  });

  it('helpers: parity split of odd N, per-batch gather, gradientFree leaves no tensors', async () => {
    await noLeak(() =>
      tf.tidy(() => {
        const x = tf.tensor3d([0, 1, 2, 3, 4, 10, 11, 12, 13, 14], [2, 5, 1]);
        const { a, b } = splitParity(x);
        assert.deepEqual(ints(a), [0, 2, 4, 10, 12, 14]);
        assert.deepEqual(ints(b), [1, 3, 11, 13]);
        assert.deepEqual(ints(batchGather(x, tf.tensor2d([4, 0, 1, 3], [2, 2], 'int32'))), [4, 0, 11, 13]);
        const t = gradientFree(() => tf.add(x, 1));
        assert.deepEqual(t.shape, [2, 5, 1]);
      }),
    );
  });

  it('r = 0 or a too-short sequence returns null; bad input errors name the problem', () => {
    tf.tidy(() => {
      const metric = tf.tensor3d(randArray(1 * 3 * 2), [1, 3, 2]);
      assert.equal(bipartiteSoftMatching(metric, 0), null);
      assert.equal(bipartiteSoftMatching(tf.tensor3d([1, 2], [1, 1, 2]), 4), null, 'cls alone: nothing to merge');
      assert.throws(() => bipartiteSoftMatching(metric, -1), /non-negative integer/);
      assert.throws(() => bipartiteSoftMatching(metric, 1.5), /non-negative integer/);
      assert.throws(() => bipartiteSoftMatching(tf.zeros([3, 2]) as unknown as tf.Tensor3D, 1), /\[B, N, C\]/);
      assert.throws(() => bipartiteSoftMatching(metric, 1, { classTokn: true } as never), /unknown key 'classTokn'/);
      const m = bipartiteSoftMatching(tf.tensor3d(randArray(1 * 7 * 2), [1, 7, 2]), 2)!;
      assert.throws(() => mergeSum(m, tf.zeros([1, 6, 3]) as tf.Tensor3D), /does not match the matching/);
      assert.throws(() => scatterAdd(tf.zeros([1, 2, 3]) as tf.Tensor3D, tf.zeros([1, 2], 'int32') as tf.Tensor2D, 3, 'dense' as never), /'segment' or 'onehot'/);
    });
  });
});
