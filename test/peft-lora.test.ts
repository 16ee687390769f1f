import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createVit, disposeVit, Vit, ParamFactory, createBlockParams } from '../lib/vit/params';
import { vitForward, blockForward, makeEnv } from '../lib/vit/forward';
import { flattenTree, disposeTree } from '../lib/tree';
import { Rng } from '../lib/rng';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { saveCheckpoint, loadCheckpoint } from '../lib/io/checkpoint';
import { readSafetensors } from '../lib/io/safetensors';
import {
  createLora, loraConfig, qvTarget, loraHooks, loraVariables, loraParamCount, disposeLora, mergeLora, unmergeLora,
  planLora, loraPlanCount, loraDelta, exploraLoraKey, range, LoraAdapters, composeLinearHooks, cloneLora,
} from '../lib/peft/lora';
import { matchPath, layerIndexOf } from '../lib/peft/patterns';
import { maxAbsDiff, randArray, noLeak } from './util';

const MICRO = { imgSize: 16, patchSize: 8, embedDim: 32, depth: 3, numHeads: 2, numClasses: 5 } as const;

function micro(seed = 1, extra: object = {}): Vit {
  return createVit('vit_tiny_patch16_224', { ...MICRO, ...extra }, { seed });
}

function images(b = 2, seed = 7): tf.Tensor4D {
  return tf.tensor4d(randArray(b * 16 * 16 * 3, seed), [b, 16, 16, 3]);
}

/** Give every B a random value so the adapters do something. */
function randomizeB(lora: LoraAdapters, seed = 3): void {
  let k = seed;
  for (const m of lora.modules.values()) {
    for (const s of m.slices) s.B.assign(tf.tensor(randArray(s.B.size, k++), s.B.shape).mul(0.5));
  }
}

function snapshot(m: Map<string, tf.Variable>): Map<string, Float32Array> {
  return new Map([...m].map(([k, v]) => [k, v.dataSync().slice() as Float32Array]));
}

function fwd(vit: Vit, x: tf.Tensor4D, lora?: LoraAdapters | null): Float32Array {
  return tf.tidy(() => {
    const o = vitForward(vit, x, { hooks: lora ? { linear: loraHooks(lora) } : {}, returnLayers: 2 });
    return tf.concat([o.logits!.flatten(), o.cls.flatten(), o.intermediates[0].patchTokens.flatten()]).dataSync() as Float32Array;
  });
}

describe('peft/patterns', () => {
  it('glob strings match the whole path or a dotted suffix; regexes search', () => {
    assert.ok(matchPath('blocks.3.attn.qkv', 'attn.qkv'));
    assert.ok(matchPath('blocks.3.attn.qkv', 'blocks.*.attn.qkv'));
    assert.ok(!matchPath('decoder_blocks.3.attn.qkv', 'blocks.*.attn.qkv'));
    assert.ok(matchPath('decoder_blocks.3.attn.qkv', 'attn.qkv'));
    assert.ok(!matchPath('blocks.3.attn.qkv', 'qk'));
    assert.ok(matchPath('blocks.23.mlp.fc1.weight', 'blocks.23.*'));
    assert.ok(!matchPath('blocks.2.mlp.fc1.weight', 'blocks.23.*'));
    assert.ok(matchPath('blocks.1.norm1.weight', 'norm1.weight'));
    assert.ok(!matchPath('blocks.1.fc_norm1.weight', 'norm1.weight'));
    assert.ok(matchPath('fc_norm.bias', /norm/));
    assert.equal(layerIndexOf('blocks.7.mlp.fc1'), 7);
    assert.equal(layerIndexOf('decoder_blocks.2.attn.qkv'), 2);
    assert.equal(layerIndexOf('head'), null);
    assert.throws(() => matchPath('x', ''), /non-empty string or a RegExp/);
  });
});

describe('peft/lora', () => {
  let vit: Vit;
  let x: tf.Tensor4D;
  before(() => {
    vit = micro();
    x = images();
  });
  after(() => {
    disposeVit(vit);
    x.dispose();
  });

  it('creates Q/V-slice adapters with kit layout shapes, ExPLoRA defaults (α = 1) and kaiming A / zero B', () => {
    const lora = createLora(vit.params, { rank: 4, targets: [qvTarget()] }, { seed: 0 });
    const vars = loraVariables(lora);
    assert.deepEqual([...vars.keys()].slice(0, 4), [
      'blocks.0.attn.qkv.lora_A.q.weight',
      'blocks.0.attn.qkv.lora_A.v.weight',
      'blocks.0.attn.qkv.lora_B.q.weight',
      'blocks.0.attn.qkv.lora_B.v.weight',
    ]);
    assert.equal(vars.size, 3 * 4);
    assert.deepEqual(vars.get('blocks.0.attn.qkv.lora_A.q.weight')!.shape, [32, 4]);
    assert.deepEqual(vars.get('blocks.0.attn.qkv.lora_B.v.weight')!.shape, [4, 32]);
    const m = lora.modules.get('blocks.1.attn.qkv')!;
    assert.equal(m.scale, 1 / 4);
    assert.deepEqual(m.slices.map((s) => [s.name, s.offset, s.width]), [['q', 0, 32], ['v', 64, 32]]);
    const a = vars.get('blocks.2.attn.qkv.lora_A.v.weight')!.dataSync();
    const bound = 1 / Math.sqrt(32);
    assert.ok(Math.max(...a.map(Math.abs)) <= bound && Math.max(...a.map(Math.abs)) > 0.8 * bound);
    for (const [k, v] of vars) if (k.includes('lora_B')) assert.equal(Math.max(...v.dataSync().map(Math.abs)), 0, k);
    assert.equal(loraParamCount(lora), 3 * 2 * (32 * 4 + 4 * 32));
    // deterministic from the seed; different seeds differ
    const again = createLora(vit.params, { rank: 4, targets: [qvTarget()] }, { seed: 0 });
    const other = createLora(vit.params, { rank: 4, targets: [qvTarget()] }, { seed: 1 });
    const k = 'blocks.2.attn.qkv.lora_A.v.weight';
    assert.equal(maxAbsDiff(loraVariables(again).get(k)!.dataSync(), a), 0);
    assert.ok(maxAbsDiff(loraVariables(other).get(k)!.dataSync(), a) > 0);
    [lora, again, other].forEach(disposeLora);
  });

  it('targets by exact name, dotted suffix, glob, regex, exclude list and layer filter', () => {
    const sites = (targets: Parameters<typeof createLora>[1]['targets']): string[] => {
      const l = createLora(vit.params, { rank: 2, targets });
      const out = [...l.modules.keys()];
      disposeLora(l);
      return out;
    };
    assert.deepEqual(sites([{ sites: 'head' }]), ['head']);
    assert.deepEqual(sites([{ sites: 'blocks.1.mlp.fc2' }]), ['blocks.1.mlp.fc2']);
    assert.deepEqual(sites([{ sites: 'fc2' }]), ['blocks.0.mlp.fc2', 'blocks.1.mlp.fc2', 'blocks.2.mlp.fc2']);
    assert.deepEqual(sites([{ sites: 'mlp.*', exclude: ['fc1'] }]), ['blocks.0.mlp.fc2', 'blocks.1.mlp.fc2', 'blocks.2.mlp.fc2']);
    assert.deepEqual(sites([{ sites: /attn\.(qkv|proj)$/, exclude: [/^blocks\.0\./], layers: [0, 2] }]), ['blocks.2.attn.qkv', 'blocks.2.attn.proj']);
    assert.deepEqual(sites([{ sites: ['attn.proj', 'patch_embed.proj'], layers: [1] }]), ['blocks.1.attn.proj']);
    assert.deepEqual(sites([qvTarget([2]), { sites: 'fc1', layers: [0] }]), ['blocks.0.mlp.fc1', 'blocks.2.attn.qkv']);
    const konly = createLora(vit.params, { targets: [qvTarget(undefined, { slices: ['k'] })] });
    assert.deepEqual(konly.modules.get('blocks.0.attn.qkv')!.slices.map((s) => [s.name, s.offset]), [['k', 32]]);
    disposeLora(konly);
  });

  it('identity at init: B = 0 gives exactly the base output (max |Δ| = 0)', () => {
    const lora = createLora(vit.params, {
      rank: 4,
      alpha: 16,
      targets: [qvTarget(), { sites: ['attn.proj', 'mlp.fc1', 'mlp.fc2', 'head', 'patch_embed.proj'] }],
    });
    assert.equal(maxAbsDiff(fwd(vit, x, lora), fwd(vit, x)), 0);
    disposeLora(lora);
  });

  it('the hook adds s·(x·A)·B to the Q and V columns only (naive reference), K columns bit-identical', () => {
    const lora = createLora(vit.params, { rank: 3, alpha: 2, targets: [qvTarget([1])] });
    randomizeB(lora);
    const m = lora.modules.get('blocks.1.attn.qkv')!;
    const M = 5;
    const D = 32;
    const xs = randArray(M * D, 11);
    const base = randArray(M * 3 * D, 12);
    const out = tf.tidy(() => {
      const hook = loraHooks(lora);
      return hook('blocks.1.attn.qkv', tf.tensor2d(xs, [M, D]), tf.tensor2d(base, [M, 3 * D]), makeEnv()).dataSync();
    });
    const ref = Float32Array.from(base);
    for (const s of m.slices) {
      const A = s.A.dataSync();
      const B = s.B.dataSync();
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < D; j++) {
          let acc = 0;
          for (let r = 0; r < 3; r++) {
            let xa = 0;
            for (let c = 0; c < D; c++) xa += xs[i * D + c] * A[c * 3 + r];
            acc += xa * B[r * D + j];
          }
          ref[i * 3 * D + s.offset + j] += (2 / 3) * acc;
        }
      }
    }
    assert.ok(maxAbsDiff(out, ref) < 1e-5, `max diff ${maxAbsDiff(out, ref)}`);
    for (let i = 0; i < M; i++) for (let j = D; j < 2 * D; j++) assert.equal(out[i * 3 * D + j], base[i * 3 * D + j]);
    // unadapted sites pass through untouched (same tensor)
    tf.tidy(() => {
      const y = tf.ones([2, 3]) as tf.Tensor2D;
      assert.equal(loraHooks(lora)('blocks.0.attn.qkv', tf.ones([2, 3]), y, makeEnv()), y);
    });
    disposeLora(lora);
  });

  it('merged forward equals unmerged (≤ 1e-5), base untouched, unmerge recovers the base, disabled equals base', () => {
    const lora = createLora(vit.params, {
      rank: 4,
      alpha: 4,
      targets: [qvTarget(), { sites: ['attn.proj', 'mlp.fc2', 'patch_embed.proj'], rank: 2 }],
    });
    randomizeB(lora);
    const before = snapshot(flattenTree(vit.params));
    const unmerged = fwd(vit, x, lora);
    const baseOut = fwd(vit, x);
    assert.ok(maxAbsDiff(unmerged, baseOut) > 1e-3, 'adapters must change the output for this test to mean anything');
    const mergedParams = mergeLora(vit.params, lora);
    const merged: Vit = { ...vit, params: mergedParams };
    const d = maxAbsDiff(fwd(merged, x), unmerged);
    assert.ok(d <= 1e-5, `merged vs unmerged max |Δ| = ${d}`);
    // base untouched and distinct variables
    for (const [k, v] of flattenTree(vit.params)) assert.equal(maxAbsDiff(v.dataSync(), before.get(k)!), 0, k);
    const mflat = flattenTree(mergedParams);
    assert.deepEqual([...mflat.keys()], [...before.keys()]);
    for (const [k, v] of mflat) assert.notEqual(v, flattenTree(vit.params).get(k));
    assert.ok(maxAbsDiff(mflat.get('blocks.0.attn.qkv.weight')!.dataSync(), before.get('blocks.0.attn.qkv.weight')!) > 0);
    assert.equal(maxAbsDiff(mflat.get('blocks.0.mlp.fc1.weight')!.dataSync(), before.get('blocks.0.mlp.fc1.weight')!), 0);
    // K columns of the merged qkv are unchanged
    const W = mflat.get('blocks.2.attn.qkv.weight')!.dataSync();
    const W0 = before.get('blocks.2.attn.qkv.weight')!;
    for (let i = 0; i < 32; i++) for (let j = 32; j < 64; j++) assert.equal(W[i * 96 + j], W0[i * 96 + j]);
    // disabled (no hook) equals base
    assert.equal(maxAbsDiff(fwd(vit, x), baseOut), 0);
    const back = unmergeLora(mergedParams, lora);
    for (const [k, v] of flattenTree(back)) assert.ok(maxAbsDiff(v.dataSync(), before.get(k)!) < 1e-6, k);
    disposeTree(back);
    disposeTree(mergedParams);
    disposeLora(lora);
  });

  it('after training steps only the adapter (and head) variables changed; 0 tensors leaked per step', async () => {
    const lora = createLora(vit.params, { rank: 4, targets: [qvTarget(), { sites: 'mlp.fc1', layers: [2] }] });
    const base = flattenTree(vit.params);
    const trainable = new Map<string, tf.Variable>([...loraVariables(lora), ['head.weight', base.get('head.weight')!], ['head.bias', base.get('head.bias')!]]);
    const all = new Map([...base, ...loraVariables(lora)]);
    const before = snapshot(all);
    const opt = new Optimizer(ADAMW_DEFAULTS, trainable);
    const labels = tf.tensor1d([1, 3], 'int32');
    const hooks = { linear: loraHooks(lora) };
    let n0 = -1;
    for (let step = 0; step < 3; step++) {
      trainStep({
        params: trainable,
        optimizer: opt,
        lr: 1e-2,
        weightDecay: 0.05,
        loss: () => crossEntropy(vitForward(vit, x, { hooks, training: true, rng: Rng.derive(0, step) }).logits!, labels),
      });
      if (step === 1) n0 = tf.memory().numTensors;
      if (step === 2) assert.equal(tf.memory().numTensors, n0, 'tensors leaked by a step');
    }
    for (const [k, v] of all) {
      const changed = maxAbsDiff(v.dataSync(), before.get(k)!) > 0;
      assert.equal(changed, trainable.has(k), `${k}: changed=${changed}, trainable=${trainable.has(k)}`);
    }
    labels.dispose();
    opt.dispose();
    disposeLora(lora);
  });

  it('dropout on the adapter input: training only, needs env.rng, deterministic from the rng', () => {
    const lora = createLora(vit.params, { rank: 4, dropout: 0.5, targets: [qvTarget()] });
    randomizeB(lora);
    const m = lora.modules.get('blocks.0.attn.qkv')!;
    const xs = tf.tensor2d(randArray(6 * 32, 5), [6, 32]);
    const evalOut = tf.tidy(() => loraDelta(m, xs, { training: false, rng: null }).dataSync());
    const noDrop = createLora(vit.params, { rank: 4, targets: [qvTarget()] });
    noDrop.modules.get('blocks.0.attn.qkv')!.slices.forEach((s, i) => {
      s.A.assign(m.slices[i].A);
      s.B.assign(m.slices[i].B);
    });
    const ref = tf.tidy(() => loraDelta(noDrop.modules.get('blocks.0.attn.qkv')!, xs, { training: false, rng: null }).dataSync());
    assert.equal(maxAbsDiff(evalOut, ref), 0);
    assert.throws(() => tf.tidy(() => loraDelta(m, xs, { training: true, rng: null })), /needs an rng/);
    const t1 = tf.tidy(() => loraDelta(m, xs, { training: true, rng: new Rng(9) }).dataSync());
    const t2 = tf.tidy(() => loraDelta(m, xs, { training: true, rng: new Rng(9) }).dataSync());
    assert.equal(maxAbsDiff(t1, t2), 0);
    assert.ok(maxAbsDiff(t1, ref) > 1e-4);
    xs.dispose();
    disposeLora(lora);
    disposeLora(noDrop);
  });

  it("shared-qkv (PYRA's release): one A [D, r], one B [r, 3D] added to q, k and v; truncNormal init is non-zero", () => {
    const lora = createLora(vit.params, { rank: 4, scaling: 1, init: 'truncNormal', targets: [{ sites: 'attn.qkv', kind: 'shared-qkv' }] });
    const vars = loraVariables(lora);
    assert.deepEqual([...vars.keys()].slice(0, 2), ['blocks.0.attn.qkv.lora_A.weight', 'blocks.0.attn.qkv.lora_B.weight']);
    assert.deepEqual(vars.get('blocks.0.attn.qkv.lora_B.weight')!.shape, [4, 96]);
    assert.equal(lora.modules.get('blocks.0.attn.qkv')!.scale, 1);
    assert.equal(loraParamCount(lora), 3 * 4 * 32 * 4); // 4·D·r per block
    const b = Array.from(vars.get("blocks.0.attn.qkv.lora_B.weight")!.dataSync());
    const std = Math.sqrt(b.reduce((s, v) => s + v * v, 0) / b.length);
    assert.ok(std > 0.012 && std < 0.03, `std ${std}`);
    assert.ok(maxAbsDiff(fwd(vit, x, lora), fwd(vit, x)) > 0);
    const merged = mergeLora(vit.params, lora);
    assert.ok(maxAbsDiff(fwd({ ...vit, params: merged }, x), fwd(vit, x, lora)) <= 1e-5);
    disposeTree(merged);
    disposeLora(lora);
  });

  it('exact counts: fine-tune LoRA-r8 on Q,V of ViT-B (294,912) and the shared-qkv PYRA release (294,912)', () => {
    const b = createVit('vit_base_patch16_224', {}, { skipInit: true });
    try {
      assert.equal(loraPlanCount(planLora(b.params, loraConfig({ rank: 8, targets: [qvTarget()] }))), 294_912);
      assert.equal(loraPlanCount(planLora(b.params, loraConfig({ rank: 8, targets: [{ sites: 'attn.qkv', kind: 'shared-qkv' }] }))), 294_912);
      assert.equal(loraPlanCount(planLora(b.params, loraConfig({ rank: 64, targets: [qvTarget(range(0, 11))] }))), 11 * 4 * 64 * 768);
    } finally {
      disposeVit(b);
    }
  });

  it('works at decoder sites (decoder_blocks.i.*) and on several trees at once', () => {
    const f = new ParamFactory('dec', 3);
    const dec = { decoder_blocks: [createBlockParams(f, 'decoder_blocks.0', 16, 32, { qkvBias: true, layerScale: null, init: 'mae' })] };
    const lora = createLora([vit.params, dec], {
      rank: 4,
      targets: [qvTarget([0]), { sites: 'decoder_blocks.*.attn.qkv', kind: 'qkv', rank: 2 }],
    });
    assert.deepEqual([...lora.modules.keys()], ['blocks.0.attn.qkv', 'decoder_blocks.0.attn.qkv']);
    randomizeB(lora);
    const run = (p: typeof dec, hooks: object): Float32Array =>
      tf.tidy(() => {
        const t = tf.tensor3d(randArray(2 * 5 * 16, 4), [2, 5, 16]);
        const s = blockForward(p.decoder_blocks[0], { x: t, size: null, source: null }, { prefix: 'decoder_blocks.0', index: 0, numHeads: 2, eps: 1e-6, dropPath: 0 }, makeEnv({ hooks }));
        return s.x.dataSync() as Float32Array;
      });
    const un = run(dec, { linear: loraHooks(lora) });
    assert.ok(maxAbsDiff(un, run(dec, {})) > 1e-4);
    const mergedDec = mergeLora(dec, lora, { allowMissing: true });
    assert.ok(maxAbsDiff(run(mergedDec, {}), un) <= 1e-5);
    assert.throws(() => mergeLora(dec, lora), /no weight for 1 adapted site\(s\): blocks\.0\.attn\.qkv\.weight/);
    // two adapter sets on one forward via loraHooks([...]) / composeLinearHooks
    const l2 = createLora(vit.params, { rank: 2, targets: [{ sites: 'mlp.fc1' }] });
    randomizeB(l2);
    const enc = createLora(vit.params, { rank: 4, targets: [qvTarget([0])] });
    randomizeB(enc);
    const both = tf.tidy(() => vitForward(vit, x, { hooks: { linear: loraHooks([enc, l2]) } }).logits!.dataSync());
    const chained = tf.tidy(() => vitForward(vit, x, { hooks: { linear: composeLinearHooks(loraHooks(enc), loraHooks(l2)) } }).logits!.dataSync());
    assert.ok(maxAbsDiff(both, chained) < 1e-6);
    assert.throws(() => loraHooks([enc, enc]), /adapted by two adapter sets/);
    disposeTree(mergedDec);
    disposeTree(dec);
    [lora, l2, enc].forEach(disposeLora);
  });

  it('bad input gets clear errors', () => {
    const p = vit.params;
    assert.throws(() => createLora(p, { rank: 0, targets: [qvTarget()] }), /rank must be an integer in \[1, 31\] for site 'blocks\.0\.attn\.qkv'.*got 0/);
    assert.throws(() => createLora(p, { rank: 32, targets: [qvTarget()] }), /rank must be an integer in \[1, 31\].*got 32/);
    assert.throws(() => createLora(p, { rank: 2.5, targets: [qvTarget()] }), /rank must be an integer/);
    assert.throws(() => createLora(p, { rank: 5, targets: [{ sites: 'head' }] }), /rank must be an integer in \[1, 4\] for site 'head'/);
    assert.throws(() => createLora(p, { targets: [{ sites: 'attn.qvk' }] }), /target #0 \(sites \["attn\.qvk"\]\) matches no linear site; sites are: patch_embed\.proj, blocks\.0\.attn\.qkv/);
    assert.throws(() => createLora(p, { targets: [qvTarget([1, 7])] }), /layer index 7 matches no site/);
    assert.throws(() => createLora(p, { targets: [{ sites: 'mlp.fc1', kind: 'qkv' }] }), /'blocks\.0\.mlp\.fc1' is not a fused qkv \(weight \[32,128\], expected \[D, 3D\]\)/);
    assert.throws(() => createLora(p, { targets: [qvTarget(), { sites: /qkv$/ }] }), /site 'blocks\.0\.attn\.qkv' is already targeted by target #0/);
    assert.throws(() => createLora(p, { targets: [{ sites: 'attn.proj', slices: ['q'] }] }), /slices: only valid with kind 'qkv'/);
    assert.throws(() => createLora(p, { targets: [qvTarget(undefined, { slices: ['q', 'x' as 'q'] })] }), /distinct entries of q, k, v/);
    assert.throws(() => createLora(p, { rnak: 3, targets: [qvTarget()] } as never), /LoraConfig: unknown key 'rnak'; valid keys: alpha, dropout, init, rank, scaling, targets/);
    assert.throws(() => createLora(p, { targets: [{ sites: 'attn.proj', kind: 'lora' as never }] }), /kind: expected one of linear, qkv, shared-qkv, got 'lora'/);
    assert.throws(() => createLora(p, { targets: [] }), /at least one target/);
    assert.throws(() => createLora(p, { dropout: 1, targets: [qvTarget()] }), /dropout must be in \[0, 1\)/);
    const lora = createLora(p, { targets: [qvTarget()] });
    const other = createVit('vit_tiny_patch16_224', { ...MICRO, embedDim: 16 }, { seed: 1 });
    assert.throws(() => mergeLora(other.params, lora), /'blocks\.0\.attn\.qkv\.weight' has shape \[16,48\] but the adapter was built for \[32,96\]/);
    disposeVit(other);
    disposeLora(lora);
  });

  it('forward with adapters leaks nothing; a failed merge leaves nothing behind', async () => {
    const lora = createLora(vit.params, { rank: 4, targets: [qvTarget()] });
    await noLeak(() => fwd(vit, x, lora));
    const other = createVit('vit_tiny_patch16_224', { ...MICRO, embedDim: 16 }, { seed: 1 });
    await noLeak(() => assert.throws(() => mergeLora(other.params, lora)));
    disposeVit(other);
    disposeLora(lora);
  });

  it('checkpoint round trip: adapters are saved in PyTorch shapes (lora_A [r, in], lora_B [out, r]) and load back', () => {
    const lora = createLora(vit.params, { rank: 4, targets: [qvTarget(), { sites: 'mlp.fc1', rank: 2 }] }, { seed: 5 });
    randomizeB(lora);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-'));
    const file = path.join(dir, 'adapters.safetensors');
    saveCheckpoint(file, { params: lora.params, meta: { rank: 4 } });
    const { tensors } = readSafetensors(file);
    assert.deepEqual(tensors.get('blocks.0.attn.qkv.lora_A.q.weight')!.shape, [4, 32]);
    assert.deepEqual(tensors.get('blocks.0.attn.qkv.lora_B.v.weight')!.shape, [32, 4]);
    assert.deepEqual(tensors.get('blocks.1.mlp.fc1.lora_B.weight')!.shape, [128, 2]);
    const fresh = createLora(vit.params, { rank: 4, targets: [qvTarget(), { sites: 'mlp.fc1', rank: 2 }] }, { seed: 99 });
    const rep = loadCheckpoint(file, { params: fresh.params });
    assert.equal(rep.loaded.length, loraVariables(lora).size);
    const a = loraVariables(lora);
    for (const [k, v] of loraVariables(fresh)) assert.equal(maxAbsDiff(v.dataSync(), a.get(k)!.dataSync()), 0, k);
    assert.equal(maxAbsDiff(fwd(vit, x, fresh), fwd(vit, x, lora)), 0);
    // a different rank is refused, naming the tensor
    const wrong = createLora(vit.params, { rank: 3, targets: [qvTarget(), { sites: 'mlp.fc1', rank: 2 }] });
    assert.throws(() => loadCheckpoint(file, { params: wrong.params }), /'blocks\.0\.attn\.qkv\.lora_A\.q\.weight' has shape \[4,32\] but .* needs \[3,32\]/);
    fs.rmSync(dir, { recursive: true });
    [lora, fresh, wrong].forEach(disposeLora);
  });

  it('cloneLora: independent copies (teacher adapters), same output, frozen by default', () => {
    const lora = createLora(vit.params, { rank: 4, targets: [qvTarget()] });
    randomizeB(lora);
    const t = cloneLora(lora);
    assert.equal(maxAbsDiff(fwd(vit, x, t), fwd(vit, x, lora)), 0);
    const tv = loraVariables(t);
    assert.deepEqual([...tv.keys()], [...loraVariables(lora).keys()]);
    for (const v of tv.values()) assert.equal(v.trainable, false);
    const k = 'blocks.0.attn.qkv.lora_B.q.weight';
    tv.get(k)!.assign(tf.zerosLike(tv.get(k)!));
    assert.ok(maxAbsDiff(loraVariables(lora).get(k)!.dataSync(), tv.get(k)!.dataSync()) > 0, 'the copy shares storage');
    assert.equal(t.modules.get('blocks.0.attn.qkv')!.slices[0].B, tv.get(k));
    disposeLora(t);
    disposeLora(lora);
  });

  it("maps kit adapter keys to ExPLoRA's q_proj / v_proj names and back", () => {
    assert.equal(exploraLoraKey('blocks.3.attn.qkv.lora_A.q.weight'), 'blocks.3.attn.q_proj.lora_A.weight');
    assert.equal(exploraLoraKey('blocks.3.attn.v_proj.lora_B.weight'), 'blocks.3.attn.qkv.lora_B.v.weight');
    assert.equal(exploraLoraKey('blocks.3.mlp.fc1.lora_A.weight'), 'blocks.3.mlp.fc1.lora_A.weight');
  });
});
