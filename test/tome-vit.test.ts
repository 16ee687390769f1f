/**
 * ToMe and PYRA inside the ViT forward (micro ViT, 65 tokens): identities, size bookkeeping, proportional attention,
 * PYRA = ToMe at init, PYRA's gradient pattern, composition with a linear (LoRA-style) hook, training without leaks,
 * and the errors for bad schedules / models.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { createVit, disposeVit, Vit, vitVariables } from '../lib/vit/params';
import { vitForward, blockForward, VitHooks, makeEnv, TokenState, MergeSiteInput } from '../lib/vit/forward';
import { multiHeadAttention } from '../lib/ops/nn';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { tomeHooks, pyraHooks } from '../lib/tome/hooks';
import { createPyra, disposePyra, pyraVariables, Pyra } from '../lib/tome/pyra';
import { tokenCounts } from '../lib/tome/schedule';
import { assertClose, noLeak, randArray, maxAbsDiff } from './util';

const MICRO = { imgSize: 32, patchSize: 4, embedDim: 32, depth: 4, numHeads: 2, numClasses: 5 } as const; // 64 patches + cls
const SCHED = [8, 8, 8, 8];

function images(B: number, seed = 1): tf.Tensor4D {
  return tf.tensor4d(randArray(B * 32 * 32 * 3, seed), [B, 32, 32, 3]);
}

/** Wrap a hook set so every merged state is reported (sizes per block). */
function spy(h: VitHooks, onState: (index: number, s: TokenState) => void): VitHooks {
  return {
    ...h,
    merge: (inp: MergeSiteInput) => {
      const s = h.merge!(inp);
      onState(inp.index, s);
      return s;
    },
  };
}

/** A LoRA-shaped linear hook on qkv: y + x·A·B with fixed non-zero A, B (stands in for lib/peft). */
function qkvDeltaHook(D: number, rank = 2): { hooks: VitHooks; vars: tf.Variable[] } {
  const A = tf.variable(tf.tensor2d(randArray(D * rank, 11), [D, rank]).mul(0.3));
  const Bm = tf.variable(tf.tensor2d(randArray(rank * 3 * D, 12), [rank, 3 * D]).mul(0.3));
  return {
    vars: [A, Bm],
    hooks: {
      linear: (site, x, y) => (site.endsWith('.attn.qkv') ? (tf.add(y, tf.matMul(tf.matMul(x, A), Bm)) as tf.Tensor2D) : y),
    },
  };
}

describe('tome: ToMe / PYRA in the ViT forward', () => {
  let vit: Vit;
  let pyra: Pyra;
  before(() => {
    vit = createVit('vit_tiny_patch16_224', MICRO, { seed: 3 });
    pyra = createPyra(vit.config, SCHED, { seed: 4 });
  });
  after(() => {
    disposeVit(vit);
    disposePyra(pyra);
  });

  it('ToMe with r = 0 equals the unmerged ViT exactly (max |Δ| = 0)', async () => {
    await noLeak(() =>
      tf.tidy(() => {
        const x = images(2);
        const ref = vitForward(vit, x);
        for (const schedule of [0, [0, 0, 0, 0], { r: 0, inflect: -1 }] as const) {
          const out = vitForward(vit, x, { hooks: tomeHooks(vit.config, { schedule }) });
          assert.equal(maxAbsDiff(out.logits!.dataSync(), ref.logits!.dataSync()), 0);
          assert.equal(maxAbsDiff(out.prenorm.dataSync(), ref.prenorm.dataSync()), 0);
          assert.equal(out.state.size, null);
        }
      }),
    );
  });

  it('sizes always sum to the original token count, sources partition the tokens, counts follow the schedule', async () => {
    await noLeak(() =>
      tf.tidy(() => {
        const x = images(3, 2);
        for (const schedule of [SCHED, 16, { r: 10, inflect: -1 }, [30, 20, 12, 9]]) {
          const seen: number[] = [];
          const hooks = spy(tomeHooks(vit.config, { schedule, traceSource: true }), (i, s) => {
            assert.ok(s.size);
            for (const total of tf.sum(s.size!, [1, 2]).dataSync()) assert.equal(total, 65, `block ${i}: Σ size = ${total}`);
            for (const c of tf.sum(s.source!, 1).dataSync()) assert.equal(c, 1);
            seen.push(s.x.shape[1]);
          });
          const out = vitForward(vit, x, { hooks });
          const expected = tokenCounts(schedule, 4, { numTokens: 65 }).tokens.slice(1);
          assert.deepEqual(seen.filter((_, k) => k < expected.length), expected.slice(0, seen.length));
          assert.equal(out.prenorm.shape[1], expected[3]);
          assert.deepEqual(out.state.source!.shape, [3, expected[3], 65]);
          assertClose(tf.sum(out.state.source!, 2).dataSync(), out.state.size!.dataSync(), 0, 0, 'size = group size');
        }
      }),
    );
  });

  it('proportional attention equals explicit key repetition (attention op and a whole block)', () => {
    tf.tidy(() => {
      const sizes = [1, 3, 2, 1, 4];
      const N = sizes.length;
      const D = 32;
      const rep = sizes.flatMap((s, i) => new Array<number>(s).fill(i)); // token i repeated s_i times
      const idx = tf.tensor1d(rep, 'int32');
      // (1) the attention op: + log(size) per key == keys and values repeated
      const q = tf.tensor3d(randArray(N * D, 21), [1, N, D]);
      const k = tf.tensor3d(randArray(N * D, 22), [1, N, D]);
      const v = tf.tensor3d(randArray(N * D, 23), [1, N, D]);
      const bias = tf.log(tf.tensor2d(sizes, [1, N]));
      const prop = multiHeadAttention(q, k, v, 2, bias, false).out;
      const kr = tf.gather(k, idx, 1) as tf.Tensor3D;
      const vr = tf.gather(v, idx, 1) as tf.Tensor3D;
      const qr = tf.gather(q, idx, 1) as tf.Tensor3D;
      const repeated = tf.gather(multiHeadAttention(qr, kr, vr, 2, null, false).out, tf.tensor1d(sizes.map((_, i) => rep.indexOf(i)), 'int32'), 1);
      assertClose(prop.dataSync(), repeated.dataSync(), 2e-6, 1e-5, 'attention');
      // (2) a whole block with the kit's propAttn switch: sized tokens == each token present size-many times
      const x = tf.tensor3d(randArray(N * D, 24), [1, N, D]);
      const env = makeEnv({ hooks: { propAttn: true } });
      const o = { prefix: 'blocks.1', index: 1, numHeads: 2, eps: 1e-6, dropPath: 0 };
      const sized = blockForward(vit.params.blocks[1], { x, size: tf.tensor3d(sizes, [1, N, 1]), source: null }, o, env);
      const full = blockForward(vit.params.blocks[1], { x: tf.gather(x, idx, 1) as tf.Tensor3D, size: null, source: null }, o, makeEnv());
      const firstCopy = tf.gather(full.x, tf.tensor1d(sizes.map((_, i) => rep.indexOf(i)), 'int32'), 1);
      assertClose(sized.x.dataSync(), firstCopy.dataSync(), 2e-6, 1e-5, 'block');
      // and without the switch the sized block differs (the test can fail)
      const off = blockForward(vit.params.blocks[1], { x, size: tf.tensor3d(sizes, [1, N, 1]), source: null }, o, makeEnv());
      assert.ok(maxAbsDiff(off.x.dataSync(), firstCopy.dataSync()) > 1e-4);
    });
  });

  it('PYRA at init equals ToMe exactly (max |Δ| = 0), with and without a LoRA-style qkv hook', async () => {
    const lora = qkvDeltaHook(32);
    await noLeak(() =>
      tf.tidy(() => {
        const x = images(2, 5);
        for (const base of [{}, lora.hooks]) {
          const tome = vitForward(vit, x, { hooks: tomeHooks(vit.config, { schedule: SCHED, traceSource: true }, base) });
          const py = vitForward(vit, x, { hooks: pyraHooks(vit.config, pyra, { traceSource: true }, base) });
          assert.equal(maxAbsDiff(py.logits!.dataSync(), tome.logits!.dataSync()), 0);
          assert.equal(maxAbsDiff(py.prenorm.dataSync(), tome.prenorm.dataSync()), 0);
          assert.equal(maxAbsDiff(py.state.size!.dataSync(), tome.state.size!.dataSync()), 0);
          assert.equal(maxAbsDiff(py.state.source!.dataSync(), tome.state.source!.dataSync()), 0);
        }
        // the qkv hook changes the keys, hence the matching: the composed hooks really carry it
        const plain = vitForward(vit, x, { hooks: tomeHooks(vit.config, { schedule: SCHED, traceSource: true }) });
        const withLora = vitForward(vit, x, { hooks: tomeHooks(vit.config, { schedule: SCHED, traceSource: true }, lora.hooks) });
        assert.ok(maxAbsDiff(plain.logits!.dataSync(), withLora.logits!.dataSync()) > 0);
      }),
    );
    tf.dispose(lora.vars);
  });

  it('PYRA differs from ToMe once W_D ≠ 0 (the re-activation is live; sizes are not modulated)', () => {
    const p2 = createPyra(vit.config, SCHED, { seed: 4 });
    try {
      // W_D ≠ 0 in block 2 only: matchings up to block 2 are unchanged, so the sizes after block 2 must be identical
      p2.params.blocks[2]!.pyra_b!.assign(tf.tidy(() => tf.tensor2d(randArray(32, 9), [1, 32])));
      tf.tidy(() => {
        const x = images(2, 5);
        const at2: Record<string, TokenState> = {};
        const grab = (name: string) => (i: number, st: TokenState) => {
          if (i === 2) at2[name] = st;
        };
        const tome = vitForward(vit, x, { hooks: spy(tomeHooks(vit.config, { schedule: SCHED }), grab('tome')) });
        const py = vitForward(vit, x, { hooks: spy(pyraHooks(vit.config, p2), grab('pyra')) });
        assert.ok(maxAbsDiff(py.logits!.dataSync(), tome.logits!.dataSync()) > 1e-6);
        assert.ok(maxAbsDiff(at2.pyra.x.dataSync(), at2.tome.x.dataSync()) > 1e-6, 'merged tokens of block 2 differ');
        assert.equal(maxAbsDiff(at2.pyra.size!.dataSync(), at2.tome.size!.dataSync()), 0, 'sizes are not modulated');
      });
    } finally {
      disposePyra(p2);
    }
  });

  it('gradients reach W_D at step 0 and W_r only after W_D moves', () => {
    const p = createPyra(vit.config, SCHED, { seed: 6 });
    const labels = tf.tensor1d([0, 3], 'int32');
    const x = images(2, 8);
    const vars = pyraVariables(p);
    const grads = (): Map<string, Float32Array> => {
      const list = [...vars.values()];
      const { value, grads: g } = tf.variableGrads(() => crossEntropy(vitForward(vit, x, { hooks: pyraHooks(vit.config, p) }).logits!, labels), list);
      const out = new Map<string, Float32Array>();
      for (const [path, v] of vars) out.set(path, g[v.name] ? (g[v.name].dataSync() as Float32Array) : new Float32Array(v.size));
      tf.dispose([value, ...Object.values(g)]);
      return out;
    };
    const norm = (a: Float32Array): number => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
    try {
      const g0 = grads();
      // Blocks 0–2: their merges feed later attention, hence the cls token. Block 3 (the last) merges after its
      // attention and only per-token MLPs follow, so with cls pooling its PYRA parameters get exactly zero gradient
      // (true of the released code as well).
      for (let i = 0; i < 3; i++) {
        assert.ok(norm(g0.get(`blocks.${i}.pyra_b`)!) > 0, `W_D of block ${i} gets a gradient at step 0`);
        assert.equal(norm(g0.get(`blocks.${i}.pyra_a`)!), 0, `W_r of block ${i} gets exactly zero at step 0`);
      }
      assert.equal(norm(g0.get('blocks.3.pyra_b')!) + norm(g0.get('blocks.3.pyra_a')!), 0, 'last block: dead with cls pooling');
      // one optimiser step on the PYRA parameters moves W_D; then W_r receives gradient
      const opt = new Optimizer(ADAMW_DEFAULTS, vars);
      trainStep({ params: vars, optimizer: opt, lr: 1e-2, loss: () => crossEntropy(vitForward(vit, x, { hooks: pyraHooks(vit.config, p) }).logits!, labels) });
      opt.dispose();
      const g1 = grads();
      for (let i = 0; i < 3; i++) assert.ok(norm(g1.get(`blocks.${i}.pyra_a`)!) > 0, `W_r of block ${i} gets a gradient after W_D moved`);
    } finally {
      disposePyra(p);
      tf.dispose([labels, x]);
    }
  });

  it('trains PYRA + head + a qkv adapter with trainStep: 0 leaked tensors across steps, only trainables move', () => {
    const p = createPyra(vit.config, SCHED, { seed: 7 });
    const lora = qkvDeltaHook(32);
    const labels = tf.tensor1d([1, 2, 4], 'int32');
    const x = images(3, 9);
    const all = vitVariables(vit);
    const trainable = new Map<string, tf.Variable>([...pyraVariables(p), ['head.weight', all.get('head.weight')!], ['lora.A', lora.vars[0]], ['lora.B', lora.vars[1]]]);
    const frozen = all.get('blocks.0.attn.qkv.weight')!;
    const frozenBefore = frozen.dataSync().slice();
    const opt = new Optimizer(ADAMW_DEFAULTS, trainable);
    const hooks = pyraHooks(vit.config, p, {}, lora.hooks);
    try {
      const losses: number[] = [];
      const counts: number[] = [];
      for (let s = 0; s < 3; s++) {
        losses.push(trainStep({ params: trainable, optimizer: opt, lr: 1e-2, weightDecay: 1e-4, loss: () => crossEntropy(vitForward(vit, x, { hooks, training: true }).logits!, labels) }).loss);
        counts.push(tf.memory().numTensors);
      }
      assert.equal(counts[2], counts[1], `tensor count across steps: ${counts}`);
      assert.ok(losses.every(Number.isFinite));
      assert.equal(maxAbsDiff(frozen.dataSync(), frozenBefore), 0, 'the frozen backbone did not move');
      assert.ok(maxAbsDiff(p.params.blocks[0]!.pyra_b!.dataSync(), new Float32Array(32)) > 0, 'W_D moved');
    } finally {
      opt.dispose();
      disposePyra(p);
      tf.dispose([...lora.vars, labels, x]);
    }
  });

  it('bad input: schedule longer than the depth, r that would reach the cls token, registers, double merge hooks', () => {
    assert.throws(() => tomeHooks(vit.config, { schedule: [1, 2, 3, 4, 5] }), /5 entries but the model has only 4 blocks/);
    assert.throws(() => tomeHooks(vit.config, { schedule: -2 }), /non-negative integer/);
    assert.throws(() => tomeHooks(vit.config, { schedule: { r: 4, inflect: 2 } }), /inflect: expected a number in \[-1, 1\]/);
    assert.throws(() => tomeHooks(vit.config, { schedule: 4, traceSorce: true } as never), /unknown key 'traceSorce'/);
    // 65 → 33 → 17 → 9: r = 32, 16, 8 are the caps; one more than the cap in block 3 (9 tokens: cap 4) would reach cls
    assert.throws(() => tomeHooks(vit.config, { schedule: [32, 16, 8, 5], onCap: 'error' }), /block 3 asks to merge r = 5 of 9 tokens.*cls/);
    assert.throws(() => createPyra(vit.config, [8, 8, 8]), /3 entries, the model has 4 blocks/);
    const bad = createPyra(vit.config, [32, 16, 8, 5]);
    try {
      assert.throws(() => pyraHooks(vit.config, bad), /block 3 asks to merge r = 5 of 9 tokens.*cls/);
    } finally {
      disposePyra(bad);
    }
    // run time: PYRA sized for 224-like inputs fed a smaller image → the cap binds → clear error
    const small = createPyra(vit.config, [20, 8, 8, 8]);
    try {
      const hooks = pyraHooks(vit.config, small);
      assert.throws(
        () => tf.tidy(() => vitForward(vit, tf.zeros([1, 16, 16, 3]) as tf.Tensor4D, { hooks }).prenorm),
        /blocks\.0: r = 20 exceeds the cap ⌊\(17 − 1\)\/2⌋ = 8/,
      );
    } finally {
      disposePyra(small);
    }
    const reg = createVit('vit_tiny_patch16_224', { ...MICRO, numRegisters: 2 }, { seed: 1 });
    try {
      assert.throws(() => tomeHooks(reg.config, { schedule: 4 }), /2 register tokens/);
    } finally {
      disposeVit(reg);
    }
    const h = tomeHooks(vit.config, { schedule: 4 });
    assert.throws(() => tomeHooks(vit.config, { schedule: 4 }, h), /already have a merge hook/);
    assert.throws(() => pyraHooks(vit.config, pyra, { onCap: 'cap' } as never), /unknown key 'onCap'/);
  });

  it('ToMe caps silently by default (as the reference) and keeps the linear hook of its base', () => {
    tf.tidy(() => {
      const out = vitForward(vit, images(1), { hooks: tomeHooks(vit.config, { schedule: 100 }) });
      assert.deepEqual(out.prenorm.shape, [1, tokenCounts(100, 4, { numTokens: 65 }).tokens[4], 32]);
      assert.equal(out.prenorm.shape[1], 5); // 65 → 33 → 17 → 9 → 5
      let calls = 0;
      const base: VitHooks = { linear: (_s, _x, y) => ((calls += 1), y) };
      const h = tomeHooks(vit.config, { schedule: 2 }, base);
      assert.equal(h.linear, base.linear);
      vitForward(vit, images(1), { hooks: h });
      assert.ok(calls > 0);
    });
  });
});
