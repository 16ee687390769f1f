/**
 * Activation recomputation (lib/vit/checkpoint.ts) composed with token merging and the MAE encoder / decoder:
 * loss, gradients of every trainable variable and the merged token state equal the plain backward within 1e-5, with
 * drop-path randomness and the ToMe / PYRA matching replayed; no tensor left behind; less memory held.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { createVit, disposeVit, vitVariables, Vit } from '../lib/vit/params';
import { vitForward, VitForwardOptions, VitHooks, MergeSiteInput, TokenState } from '../lib/vit/forward';
import { replayOr, CheckpointOptions } from '../lib/vit/checkpoint';
import { createLora, disposeLora, loraHooks, loraVariables, qvTarget, LoraAdapters } from '../lib/peft/lora';
import { tomeHooks, pyraHooks } from '../lib/tome/hooks';
import { createPyra, disposePyra, pyraVariables } from '../lib/tome/pyra';
import { createMae, disposeMae, maeForward, maeVariables } from '../lib/mae/mae';
import { randomMasking } from '../lib/mae/masking';
import { crossEntropy } from '../lib/train/loss';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { Rng } from '../lib/rng';
import { randArray } from './util';

/** 32 px, patch 4: 64 patches + CLS, so several ToMe / PYRA merges fit in 4 blocks. */
const SMALL = { imgSize: 32, patchSize: 4, embedDim: 24, depth: 4, numHeads: 3, numClasses: 5, dropPathRate: 0.2 } as const;

function images(b: number, seed: number): tf.Tensor4D {
  return tf.tensor4d(randArray(b * 32 * 32 * 3, seed), [b, 32, 32, 3]);
}

function lora(vit: Vit, seed: number): LoraAdapters {
  return createLora(vit.params, { rank: 4, targets: [qvTarget()], init: 'truncNormal' }, { seed });
}

/** ExPLoRA-like: adapters on every block, the last block and all norms unfrozen, plus extra sets. */
function trainable(vit: Vit, ...extra: Map<string, tf.Variable>[]): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  const last = vit.config.depth - 1;
  for (const [p, v] of vitVariables(vit)) if (p.startsWith(`blocks.${last}.`) || /(^|\.)norm/.test(p) || p.startsWith('head.')) out.set(p, v);
  for (const m of extra) for (const [p, v] of m) out.set(p, v);
  return out;
}

/** Loss, gradients by path and (optionally) extra outputs, read back; the forward runs under variableGrads. */
function lossAndGrads(params: Map<string, tf.Variable>, f: () => { loss: tf.Scalar; extra?: Record<string, tf.Tensor | null> }) {
  const vars = [...params.values()];
  const extraOut: Record<string, Float32Array> = {};
  tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => {
      const r = f();
      for (const [k, t] of Object.entries(r.extra ?? {})) if (t) extraOut[k] = t.dataSync().slice() as Float32Array;
      return r.loss;
    }, vars);
    extraOut.loss = value.dataSync().slice() as Float32Array;
    for (const [p, v] of params) extraOut[`grad ${p}`] = grads[v.name].dataSync().slice() as Float32Array;
  });
  return extraOut;
}

/** Every array equal within 1e-5 of its scale (max |x|); loss within 1e-6 relative. */
function assertSame(a: Record<string, Float32Array>, b: Record<string, Float32Array>, what: string): number {
  assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
  let worst = 0;
  for (const k of Object.keys(b)) {
    const x = a[k];
    const y = b[k];
    assert.equal(x.length, y.length, `${what} ${k}: length`);
    let scale = 0;
    let d = 0;
    for (let i = 0; i < y.length; i++) {
      scale = Math.max(scale, Math.abs(y[i]));
      d = Math.max(d, Math.abs(x[i] - y[i]));
    }
    assert.ok(d <= 1e-5 * scale + 1e-12, `${what} ${k}: max |recomputed − plain| = ${d} > 1e-5 × ${scale}`);
    worst = Math.max(worst, scale > 0 ? d / scale : 0);
  }
  assert.ok(Math.abs(a.loss[0] - b.loss[0]) <= 1e-6 * Math.abs(b.loss[0]), `${what} loss ${a.loss[0]} vs ${b.loss[0]}`);
  return worst;
}

function gradsNonZero(r: Record<string, Float32Array>, prefix: string): void {
  const ks = Object.keys(r).filter((k) => k.startsWith(`grad ${prefix}`));
  assert.ok(ks.length > 0, `no gradient named ${prefix}*`);
  for (const k of ks) assert.ok(r[k].some((v) => v !== 0), `${k} is all zero: that path is not exercised`);
}

describe('activation recomputation with merge hooks and the MAE encoder', () => {
  it('ViT + LoRA + ToMe (proportional attention, source tracking, drop-path): same loss, gradients, sizes and sources', () => {
    const vit = createVit('vit_tiny_patch16_224', { ...SMALL, pool: 'avg' }, { seed: 1 });
    const ad = lora(vit, 2);
    const hooks: VitHooks = tomeHooks(vit.config, { schedule: [8, 8, 6, 4], traceSource: true }, { linear: loraHooks(ad) });
    const params = trainable(vit, loraVariables(ad));
    const x = images(3, 3);
    const y = tf.tensor1d([0, 4, 2], 'int32');
    const run = (ck: CheckpointOptions | null) =>
      lossAndGrads(params, () => {
        const o = vitForward(vit, x, { hooks, training: true, rng: new Rng(5), checkpoint: ck });
        assert.equal(o.state.x.shape[1], 65 - 26, 'tokens after four merges');
        return { loss: crossEntropy(o.logits!, y), extra: { size: o.state.size, source: o.state.source } };
      });
    const plain = run(null);
    const ckpt = run({ trainable: params });
    const worst = assertSame(ckpt, plain, 'ToMe');
    gradsNonZero(plain, 'blocks.0.attn.qkv.lora_');
    assert.ok(plain.size.some((v) => v > 1), 'tokens were merged');
    console.log(`      worst ${worst.toExponential(2)} of scale over ${Object.keys(plain).length} arrays`);
    tf.dispose([x, y]);
    disposeLora(ad);
    disposeVit(vit);
  });

  it('ViT + LoRA + PYRA (re-activation trained, drop-path): same loss and gradients, PYRA parameters included', () => {
    const vit = createVit('vit_tiny_patch16_224', SMALL, { seed: 6 });
    const ad = lora(vit, 7);
    const pyra = createPyra(vit.config, [8, 8, 6, 4], { seed: 8 });
    for (const [p, v] of pyraVariables(pyra)) if (p.endsWith('pyra_b')) v.assign(tf.tidy(() => tf.tensor(randArray(v.size, 9), v.shape).mul(0.3)));
    const hooks = pyraHooks(vit.config, pyra, {}, { linear: loraHooks(ad) });
    const params = trainable(vit, loraVariables(ad), pyraVariables(pyra));
    const x = images(2, 10);
    const y = tf.tensor1d([1, 3], 'int32');
    const opts = (ck: CheckpointOptions | null): VitForwardOptions => ({ hooks, training: true, rng: new Rng(11), checkpoint: ck });
    const plain = lossAndGrads(params, () => ({ loss: crossEntropy(vitForward(vit, x, opts(null)).logits!, y) }));
    const ckpt = lossAndGrads(params, () => ({ loss: crossEntropy(vitForward(vit, x, opts({ trainable: params })).logits!, y) }));
    assertSame(ckpt, plain, 'PYRA');
    gradsNonZero(plain, 'blocks.1.pyra_a');
    gradsNonZero(plain, 'blocks.2.pyra_b');
    tf.dispose([x, y]);
    disposePyra(pyra);
    disposeLora(ad);
    disposeVit(vit);
  });

  it('MAE: encoder and decoder blocks recomputed (LoRA on both, drop-path): same loss, prediction and gradients', () => {
    const mae = createMae('mae_vit_base_patch16', {
      encoder: { imgSize: 32, patchSize: 4, embedDim: 24, depth: 3, numHeads: 3, dropPathRate: 0.2 },
      decoder: { embedDim: 16, depth: 2, numHeads: 2 },
      seed: 12,
    });
    const ad = createLora([mae.encoder.params, mae.decoder], { rank: 4, targets: [qvTarget(), { sites: 'decoder_blocks.*.attn.qkv', kind: 'qkv' }], init: 'truncNormal' }, { seed: 13 });
    const params = new Map<string, tf.Variable>(loraVariables(ad));
    for (const [p, v] of maeVariables(mae)) if (v.trainable && (p.startsWith('blocks.2.') || p.startsWith('decoder_blocks.1.') || p === 'norm.weight')) params.set(p, v);
    const x = images(2, 14);
    const plan = randomMasking(new Rng(15), 2, 64, 0.75);
    const run = (ck: CheckpointOptions | null) =>
      lossAndGrads(params, () => {
        const o = maeForward(mae, x, { plan, hooks: { linear: loraHooks(ad) }, training: true, rng: new Rng(16), checkpoint: ck });
        return { loss: o.loss, extra: { pred: o.pred } };
      });
    const plain = run(null);
    const ckpt = run({ trainable: params });
    assertSame(ckpt, plain, 'MAE');
    gradsNonZero(plain, 'blocks.0.attn.qkv.lora_');
    gradsNonZero(plain, 'decoder_blocks.0.attn.qkv.lora_');
    x.dispose();
    disposeLora(ad);
    disposeMae(mae);
  });

  it('the backward re-run replays the recorded choice instead of computing it again', () => {
    const vit = createVit('vit_tiny_patch16_224', { ...SMALL, depth: 2 }, { seed: 17 });
    let made = 0;
    let calls = 0;
    // drops a token chosen by a counter: a re-derived choice in the re-run would differ from the forward's
    const merge = ({ prefix, state, env }: MergeSiteInput): TokenState => {
      calls++;
      const N = state.x.shape[1];
      const { drop } = replayOr(env.replay, prefix, () => ({ drop: 1 + (made++ % (N - 1)) }));
      const keep = tf.tensor1d(Array.from({ length: N }, (_, i) => i).filter((i) => i !== drop), 'int32');
      return { x: tf.gather(state.x, keep, 1) as tf.Tensor3D, size: state.size, source: state.source };
    };
    const params = new Map([...vitVariables(vit)].filter(([p]) => p.startsWith('blocks.')));
    const x = images(1, 18);
    const y = tf.tensor1d([2], 'int32');
    const ck = lossAndGrads(params, () => ({ loss: crossEntropy(vitForward(vit, x, { hooks: { merge }, checkpoint: { trainable: params } }).logits!, y) }));
    assert.equal(calls, 4, 'the hook ran in the forward and in the re-run of both blocks');
    assert.equal(made, 2, 'the choice was made once per block');
    made = 0; // the plain path makes the same two choices
    const plain = lossAndGrads(params, () => ({ loss: crossEntropy(vitForward(vit, x, { hooks: { merge } }).logits!, y) }));
    assertSame(ck, plain, 'replayed choice');
    tf.dispose([x, y]);
    disposeVit(vit);
  });

  it('training steps with ToMe + recomputation leave no tensor behind; an inference call records nothing', () => {
    const vit = createVit('vit_tiny_patch16_224', SMALL, { seed: 19 });
    const ad = lora(vit, 20);
    const hooks: VitHooks = tomeHooks(vit.config, { schedule: 6 }, { linear: loraHooks(ad) });
    const params = trainable(vit, loraVariables(ad));
    const opt = new Optimizer(ADAMW_DEFAULTS, params);
    const x = images(2, 21);
    const y = tf.tensor1d([2, 3], 'int32');
    const counts: number[] = [];
    for (let s = 0; s < 4; s++) {
      trainStep({ params, optimizer: opt, lr: 1e-3, loss: () => crossEntropy(vitForward(vit, x, { hooks, training: true, rng: Rng.derive(0, 'step', s), checkpoint: { trainable: params } }).logits!, y) });
      counts.push(tf.memory().numTensors);
    }
    assert.ok(counts.every((c) => c === counts[0]), `live tensors after each step: ${counts.join(', ')}`);
    const before = tf.memory().numTensors;
    tf.tidy(() => vitForward(vit, x, { hooks, checkpoint: { trainable: params } }).logits!.dataSync());
    assert.equal(tf.memory().numTensors, before);
    opt.dispose();
    tf.dispose([x, y]);
    disposeLora(ad);
    disposeVit(vit);
  });

  it('holds less memory: peak bytes of a ToMe + LoRA gradient computation drop with recomputation (depth 8)', async () => {
    const vit = createVit('vit_tiny_patch16_224', { ...SMALL, depth: 8, embedDim: 48 }, { seed: 22 });
    const ad = lora(vit, 23);
    const hooks: VitHooks = tomeHooks(vit.config, { schedule: 4 }, { linear: loraHooks(ad) });
    const params = trainable(vit, loraVariables(ad));
    const x = images(4, 24);
    const y = tf.tensor1d([0, 1, 2, 3], 'int32');
    /** Peak bytes above the bytes live before the gradient computation (engine accounting). */
    const peak = async (ck: boolean): Promise<number> => {
      const base = tf.memory().numBytes;
      const info = await tf.profile(() => {
        tf.tidy(() => {
          const { value, grads } = tf.variableGrads(
            () => crossEntropy(vitForward(vit, x, { hooks, training: true, rng: new Rng(1), checkpoint: ck ? { trainable: params } : null }).logits!, y),
            [...params.values()],
          );
          tf.dispose([value, ...Object.values(grads)]);
        });
      });
      return info.peakBytes - base;
    };
    const plain = await peak(false);
    const ckpt = await peak(true);
    console.log(`      peak above the model: plain ${(plain / 1e6).toFixed(2)} MB, recomputed ${(ckpt / 1e6).toFixed(2)} MB (${(ckpt / plain).toFixed(2)}×)`);
    assert.ok(ckpt < 0.6 * plain, `recomputation should hold well under the plain backward's activations: ${ckpt} vs ${plain} bytes`);
    tf.dispose([x, y]);
    disposeLora(ad);
    disposeVit(vit);
  });
});
