/**
 * PYRA's ablation variants and generator designs (lib/tome/pyra.ts): PyTorch golden for one merge step of every
 * variant (outputs, sizes and gradients; test/fixtures/gen_pyra_variants.py), identity at init where it holds, the
 * parameter counts (ours beside the paper's 8.64 K / 70.66 K / 73.73 K), the gradient pattern at step 0 (including the
 * dead last merging block), W_r initialisation options and variant validation.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { createVit, disposeVit, Vit } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { crossEntropy } from '../lib/train/loss';
import { bipartiteSoftMatching } from '../lib/tome/matching';
import { mergeWavg } from '../lib/tome/merge';
import { tomeHooks, pyraHooks } from '../lib/tome/hooks';
import { vitMacs } from '../lib/tome/flops';
import { pyraSchedule } from '../lib/tome/schedule';
import {
  createPyra, disposePyra, pyraModulator, pyraVariables, pyraParamCount, countPyraParams, pyraVariant, pyraVariantLabel,
  PyraBlockParams, PyraVariant, PYRA_ABLATIONS, PYRA_RELEASED, PyraAblationName,
} from '../lib/tome/pyra';
import { vitConfig } from '../lib/vit/config';
import { assertClose, noLeak, randArray, maxAbsDiff } from './util';

interface GoldCase {
  name: string; variant: PyraVariant; B: number; N: number; C: number; D: number; r: number; rEff: number; dist: boolean;
  x: number[]; size: number[]; metric: number[]; src: number[]; dst: number[]; unm: number[];
  params: Record<string, number[]>; paramShapes: Record<string, number[]>; w: number[]; out: number[]; sizeOut: number[];
  gradX: number[]; grads: Record<string, number[]>;
}
const gold = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'pyra_variants_golden.json'), 'utf8')) as { cases: GoldCase[] };

/** The fixture's parameters as a PYRA block (python names a, b, gamma, beta, full, fc1, fc2 → kit paths). */
function blockFrom(c: GoldCase): { block: PyraBlockParams; vars: Map<string, tf.Variable> } {
  const v = (k: string): tf.Variable => tf.tidy(() => tf.variable(tf.tensor(c.params[k], c.paramShapes[k])));
  const vars = new Map<string, tf.Variable>();
  const block: PyraBlockParams = {};
  const put = (py: string, set: (t: tf.Variable) => void): void => {
    if (!(py in c.params)) return;
    const t = v(py);
    vars.set(py, t);
    set(t);
  };
  put('a', (t) => (block.pyra_a = t));
  put('b', (t) => (block.pyra_b = t));
  put('full', (t) => (block.pyra_full = t));
  if ('gamma' in c.params) {
    const gamma = v('gamma');
    const beta = v('beta');
    vars.set('gamma', gamma);
    vars.set('beta', beta);
    block.pyra_norm = { weight: gamma, bias: beta };
  }
  if ('fc1' in c.params) {
    const fc1 = v('fc1');
    const fc2 = v('fc2');
    vars.set('fc1', fc1);
    vars.set('fc2', fc2);
    block.pyra_mlp = { fc1: { weight: fc1 }, fc2: { weight: fc2 } };
  }
  return { block, vars };
}

const MICRO = { imgSize: 32, patchSize: 4, embedDim: 32, depth: 4, numHeads: 2, numClasses: 5 } as const; // 65 tokens
const SCHED = [8, 8, 8, 8];

describe('tome: PYRA variants (ablations, generator designs)', () => {
  it(`PyTorch golden: one merge step of every variant — tokens, sizes and gradients (${gold.cases.length} cases)`, async () => {
    const seen = new Set<string>();
    await noLeak(() => {
      for (const c of gold.cases) {
        const { block, vars } = blockFrom(c);
        const x = tf.tidy(() => tf.variable(tf.tensor3d(c.x, [c.B, c.N, c.D])));
        try {
          tf.tidy(() => {
            const size = tf.tensor3d(c.size, [c.B, c.N, 1]);
            const m = bipartiteSoftMatching(tf.tensor3d(c.metric, [c.B, c.N, c.C]), c.r, { distillToken: c.dist })!;
            assert.deepEqual(Array.from(m.src.dataSync()), c.src, `${c.name}: src`);
            assert.deepEqual(Array.from(m.dst.dataSync()), c.dst, `${c.name}: dst`);
            const variant = pyraVariant(c.variant);
            const mod = pyraModulator(block, 0, variant);
            const w = tf.tensor3d(c.w, [c.B, c.N - c.rEff, c.D]);
            const list = [x, ...vars.values()];
            const { value, grads } = tf.variableGrads(() => {
              const out = mergeWavg(m, x, size, { modulate: mod });
              assertClose(out.x.dataSync(), c.out, 1e-5, 1e-5, `${c.name}: merged tokens`);
              assertClose(out.size.dataSync(), c.sizeOut, 0, 0, `${c.name}: sizes`);
              return tf.sum(tf.mul(out.x, w)) as tf.Scalar;
            }, list);
            value.dispose();
            assertClose(grads[x.name].dataSync(), c.gradX, 1e-5, 1e-5, `${c.name}: d/dx`);
            for (const [k, t] of vars) {
              assert.ok(grads[t.name], `${c.name}: ${k} gets a gradient`);
              assertClose(grads[t.name].dataSync(), c.grads[k], 1e-5, 1e-4, `${c.name}: d/d${k}`);
            }
          });
          seen.add(`${c.variant.design}/${c.variant.generators}/${c.variant.activation}`);
        } finally {
          x.dispose();
          tf.dispose([...vars.values()]);
        }
      }
    });
    assert.ok(seen.size >= 8, `variants covered: ${[...seen]}`);
  });

  describe('in the ViT forward (micro ViT, 65 tokens, schedule [8, 8, 8, 8])', () => {
    let vit: Vit;
    const images = (B: number, seed = 1): tf.Tensor4D => tf.tensor4d(randArray(B * 32 * 32 * 3, seed), [B, 32, 32, 3]);
    before(() => {
      vit = createVit('vit_tiny_patch16_224', MICRO, { seed: 3 });
    });
    after(() => disposeVit(vit));

    it('every ablation preset starts at ToMe exactly (W_D / the last layer zero, W_r zero where it acts alone)', async () => {
      await noLeak(() => {
        for (const [name, v] of Object.entries(PYRA_ABLATIONS)) {
          const p = createPyra(vit.config, SCHED, { seed: 4, variant: v });
          try {
            tf.tidy(() => {
              const x = images(2);
              const a = vitForward(vit, x, { hooks: pyraHooks(vit.config, p, { traceSource: true }) });
              const b = vitForward(vit, x, { hooks: tomeHooks(vit.config, { schedule: SCHED, traceSource: true }) });
              assert.equal(maxAbsDiff(a.logits!.dataSync(), b.logits!.dataSync()), 0, `${name}: logits`);
              assert.equal(maxAbsDiff(a.state.source!.dataSync(), b.state.source!.dataSync()), 0, `${name}: sources`);
            });
          } finally {
            disposePyra(p);
          }
        }
        // W_r only with the released U(−1, 1) init is NOT the identity: the channel factor 2σ(W_rᵀM) ≠ 1
        const p = createPyra(vit.config, SCHED, { seed: 4, variant: { generators: 'wr' } });
        try {
          tf.tidy(() => {
            const x = images(2);
            const a = vitForward(vit, x, { hooks: pyraHooks(vit.config, p) }).logits!.dataSync();
            const b = vitForward(vit, x, { hooks: tomeHooks(vit.config, { schedule: SCHED }) }).logits!.dataSync();
            assert.ok(maxAbsDiff(a, b) > 1e-4);
          });
        } finally {
          disposePyra(p);
        }
      });
    });

    it('gradient flow at step 0: which generators learn first, and the last merging block is dead for every variant', () => {
      const labels = tf.tensor1d([0, 3], 'int32');
      const x = images(2, 8);
      const norm = (t: tf.Tensor | undefined): number => (t ? Math.sqrt(tf.tidy(() => tf.sum(tf.square(t)).dataSync()[0])) : 0);
      // expected at step 0 (blocks 0–2): live = non-zero gradient, zero = exactly zero
      const expect: Record<PyraAblationName, { live: RegExp; zero: RegExp | null }> = {
        wr_noact: { live: /pyra_a$/, zero: /pyra_norm/ }, // W_r = 0: M does not reach the output yet
        wr_act: { live: /pyra_a$/, zero: /pyra_norm/ },
        wd_noact: { live: /pyra_b$/, zero: /pyra_norm/ },
        wd_act: { live: /pyra_b$/, zero: /pyra_norm/ },
        both_noact: { live: /pyra_b$/, zero: /pyra_a$|pyra_norm/ },
        pyra: { live: /pyra_b$/, zero: /pyra_a$|pyra_norm/ },
        pyra_gaussian_wr: { live: /pyra_b$/, zero: /pyra_a$|pyra_norm/ },
        full_matrix: { live: /pyra_full$/, zero: null },
        gated_mlp: { live: /fc2\.weight$/, zero: /fc1\.weight$|pyra_norm/ },
      };
      try {
        for (const [name, v] of Object.entries(PYRA_ABLATIONS) as [PyraAblationName, PyraVariant][]) {
          const p = createPyra(vit.config, SCHED, { seed: 6, variant: v });
          const vars = pyraVariables(p);
          try {
            const list = [...vars.values()];
            const { value, grads } = tf.variableGrads(() => crossEntropy(vitForward(vit, x, { hooks: pyraHooks(vit.config, p) }).logits!, labels), list);
            for (const [k, t] of vars) {
              const g = norm(grads[t.name]);
              if (k.startsWith('blocks.3.')) assert.equal(g, 0, `${name}: ${k} (last merging block) must be dead with cls pooling`);
              else if (expect[name].live.test(k)) assert.ok(g > 0, `${name}: ${k} gets a gradient at step 0`);
              else if (expect[name].zero?.test(k)) assert.equal(g, 0, `${name}: ${k} gets exactly zero at step 0`);
            }
            tf.dispose([value, ...Object.values(grads)]);
          } finally {
            disposePyra(p);
          }
        }
      } finally {
        tf.dispose([labels, x]);
      }
    });

    it('a variant that has moved off its init changes the merged tokens, never the sizes (block 0, same matching)', () => {
      for (const name of ['wr_act', 'wd_noact', 'both_noact', 'full_matrix', 'gated_mlp'] as const) {
        const p = createPyra(vit.config, SCHED, { seed: 7, variant: PYRA_ABLATIONS[name] });
        try {
          for (const [k, t] of pyraVariables(p)) {
            if (!/norm/.test(k)) t.assign(tf.tidy(() => tf.tensor(randArray(t.size, 50 + t.size), t.shape).mul(0.5)));
          }
          tf.tidy(() => {
            const x = images(2, 5);
            const at0: Record<string, { x: tf.Tensor; size: tf.Tensor }> = {};
            const spy = (h: ReturnType<typeof tomeHooks>, key: string): ReturnType<typeof tomeHooks> => ({
              ...h,
              merge: (inp) => {
                const st = h.merge!(inp);
                if (inp.index === 0) at0[key] = { x: st.x, size: st.size! };
                return st;
              },
            });
            const a = vitForward(vit, x, { hooks: spy(pyraHooks(vit.config, p), 'pyra') });
            const b = vitForward(vit, x, { hooks: spy(tomeHooks(vit.config, { schedule: SCHED }), 'tome') });
            assert.ok(maxAbsDiff(a.logits!.dataSync(), b.logits!.dataSync()) > 1e-5, `${name}: logits`);
            assert.ok(maxAbsDiff(at0.pyra.x.dataSync(), at0.tome.x.dataSync()) > 1e-5, `${name}: merged tokens of block 0`);
            assert.equal(maxAbsDiff(at0.pyra.size.dataSync(), at0.tome.size.dataSync()), 0, `${name}: sizes are not modulated`);
          });
        } finally {
          disposePyra(p);
        }
      }
    });
  });

  it("parameter counts: ours beside the paper's (ViT-B/16 high: PYRA 9,408 = 8,637 that can learn; 8.64 K; gated MLP 73,728 = 73.73 K)", () => {
    const high = pyraSchedule('vit_base_patch16_224', 'high');
    const low = pyraSchedule('vit_base_patch16_224', 'low');
    const c = (v: Partial<PyraVariant>, s = high) => pyraParamCount(s, 768, v);
    assert.deepEqual(c({}), { generators: 9408, layerNorm: 12 * 1536, total: 9408 + 18432, lastBlock: 771 });
    assert.equal(c({}).generators - c({}).lastBlock, 8637, '9,408 minus the dead last block = 8,637 ≈ the paper\'s 8.64 K');
    assert.equal(c({}, low).generators, 9402);
    assert.equal(c(PYRA_ABLATIONS.wr_act).generators, 192);
    assert.equal(c(PYRA_ABLATIONS.wd_act).generators, 12 * 768);
    assert.equal(c(PYRA_ABLATIONS.both_noact).generators, 9408);
    assert.equal(c(PYRA_ABLATIONS.full_matrix).generators, 192 * 768, 'full r×D matrices: 147,456 (the paper says 70.66 K = 92 · 768)');
    assert.equal(c(PYRA_ABLATIONS.full_matrix).layerNorm, 0, 'no M, no LayerNorm');
    assert.equal(c(PYRA_ABLATIONS.gated_mlp).generators, 73728, 'gated MLP h = 4: 2·4·768·12 = 73,728 = the paper\'s 73.73 K');
    assert.equal(c({ design: 'gatedMlp', mlpHidden: 8 }).generators, 2 * 73728);
    // allocated parameters agree with the analytic counts, for every variant
    const cfg = vitConfig('vit_tiny_patch16_224', MICRO);
    for (const [name, v] of Object.entries(PYRA_ABLATIONS)) {
      const p = createPyra(cfg, SCHED, { seed: 1, variant: v });
      try {
        assert.deepEqual(countPyraParams(p), pyraParamCount(SCHED, 32, v), name);
      } finally {
        disposePyra(p);
      }
    }
    // MACs of the generators: released 2rD per merging block, one generator rD, full matrix 0, MLP 2rhD
    const B = vitConfig('vit_base_patch16_224');
    assert.equal(vitMacs(B, { schedule: high, pyra: true }).pyra, 2 * 192 * 768);
    assert.equal(vitMacs(B, { schedule: high, pyra: PYRA_ABLATIONS.wd_act }).pyra, 192 * 768);
    assert.equal(vitMacs(B, { schedule: high, pyra: PYRA_ABLATIONS.full_matrix }).pyra, 0);
    assert.equal(vitMacs(B, { schedule: high, pyra: PYRA_ABLATIONS.gated_mlp }).pyra, 2 * 192 * 4 * 768);
  });

  it('W_r initialisation: released U(−1, 1) by default, the paper\'s Gaussian N(0, 1) as an option, zeros', () => {
    const cfg = { depth: 1, embedDim: 8 };
    const vals = (wrInit: PyraVariant['wrInit']): Float32Array => {
      const p = createPyra(cfg, [4000], { seed: 3, variant: { wrInit } });
      const a = p.params.blocks[0]!.pyra_a!.dataSync().slice() as Float32Array;
      disposePyra(p);
      return a;
    };
    const mean = (a: Float32Array): number => a.reduce((s, v) => s + v, 0) / a.length;
    const sd = (a: Float32Array): number => {
      const m = mean(a);
      return Math.sqrt(a.reduce((s, v) => s + (v - m) ** 2, 0) / a.length);
    };
    const u = vals('uniform');
    assert.ok(Math.max(...u) <= 1 && Math.min(...u) >= -1 && Math.max(...u) > 0.99 && Math.min(...u) < -0.99);
    assert.ok(Math.abs(sd(u) - 1 / Math.sqrt(3)) < 0.02, `U(−1,1) sd ${sd(u)}`);
    const n = vals('normal');
    assert.ok(Math.abs(sd(n) - 1) < 0.04 && Math.abs(mean(n)) < 0.05 && Math.max(...n.map(Math.abs)) > 2.5, `N(0,1) sd ${sd(n)}`);
    assert.equal(Math.max(...vals('zeros').map(Math.abs)), 0);
    assert.equal(PYRA_RELEASED.wrInit, 'uniform');
  });

  it('bad variants name the problem; labels', () => {
    assert.throws(() => pyraVariant({ design: 'mlp' as never }), /variant\.design: expected one of parallel, full, gatedMlp, got mlp/);
    assert.throws(() => pyraVariant({ generator: 'wr' } as never), /unknown key 'generator'/);
    assert.throws(() => pyraVariant({ design: 'full', generators: 'wd' }), /applies to the parallel design only/);
    assert.throws(() => pyraVariant({ generators: 'wd', wrInit: 'normal' }), /no W_r/);
    assert.throws(() => pyraVariant({ mlpHidden: 0 }), /mlpHidden: expected a positive integer/);
    assert.throws(() => createPyra({ depth: 1, embedDim: 4 }, [2], { variant: { activation: 'yes' as never } }), /activation: expected one of true, false/);
    assert.equal(pyraVariantLabel(pyraVariant(PYRA_ABLATIONS.wd_noact)), 'W_D only, no act.');
    assert.equal(pyraVariantLabel(pyraVariant(PYRA_ABLATIONS.pyra_gaussian_wr)), 'W_r & W_D, W_r normal');
    // parameters of one variant run with another's hooks: an error naming the missing parameter
    const p = createPyra({ depth: 1, embedDim: 4 }, [2], { variant: PYRA_ABLATIONS.wd_act });
    try {
      assert.throws(() => pyraModulator(p.params.blocks[0]!, 0, pyraVariant({})), /W_r & W_D needs pyra_a \(W_r\)/);
    } finally {
      disposePyra(p);
    }
  });
});
