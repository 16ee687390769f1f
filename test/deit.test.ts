/**
 * DeiT with a distillation token (timm `VisionTransformerDistilled`): golden against a plain-PyTorch re-implementation
 * of timm's forward (test/fixtures/gen_deit.py; weights as a timm-named safetensors file loaded through
 * `loadTimmCheckpoint`), ToMe and PYRA with both prefix tokens protected, the DeiT presets' exact parameter counts, the
 * PYRA DeiT-B schedules, LoRA / PYRA presets and the ExPLoRA trainability spec on a distilled model, checkpoints.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { createVit, disposeVit, Vit, vitVariables, encoderParamCount } from '../lib/vit/params';
import { vitForward, norm } from '../lib/vit/forward';
import { vitConfig, VIT_PRESETS } from '../lib/vit/config';
import { vitShapes } from '../lib/peft/shapes';
import { applyExplora } from '../lib/peft/explora';
import { loadTimmCheckpoint, saveTimmCheckpoint } from '../lib/io/timm';
import { tomeHooks, pyraHooks, finalSizes } from '../lib/tome/hooks';
import { createPyra, disposePyra } from '../lib/tome/pyra';
import { tokenCounts, pyraSchedule, PYRA_SCHEDULES } from '../lib/tome/schedule';
import { vitMacs } from '../lib/tome/flops';
import { crossEntropy } from '../lib/train/loss';
import { Rng } from '../lib/rng';
import { buildPyraModel, PYRA_PRESETS, pyraParamReport, PyraPresetConfig } from '../recipes/pyra-presets';
import { assertClose, noLeak, randArray, maxAbsDiff } from './util';

const FX = path.join(__dirname, 'fixtures');
interface Outs { features: number[]; pre_logits: number[]; logits: number[]; cls_logits: number[]; dist_logits: number[]; sizes: number[] }
const gold = JSON.parse(fs.readFileSync(path.join(FX, 'deit_golden.json'), 'utf8')) as {
  config: { img: number; patch: number; chans: number; D: number; depth: number; heads: number; mlp: number; classes: number };
  file: string;
  input: { shape: number[]; rand_array_seed: number };
  schedule: number[];
  pyra: Array<{ a: number[]; b: number[]; gamma: number[]; beta: number[] }>;
  runs: Record<'plain' | 'tome' | 'pyra', { out: Outs; shapes: Record<string, number[]> }>;
  plain_f32_vs_f64_max: number;
  param_count: number;
};
const C = gold.config;
const OVR = { imgSize: C.img, patchSize: C.patch, embedDim: C.D, depth: C.depth, numHeads: C.heads, mlpRatio: C.mlp, numClasses: C.classes };

/** Kit outputs in the fixture's terms. */
function outputs(vit: Vit, x: tf.Tensor4D, hooks = {}): Outs {
  return tf.tidy(() => {
    const o = vitForward(vit, x, { hooks });
    return {
      features: Array.from(norm(vit.params.norm!, o.prenorm, vit.config.normEps).dataSync()),
      pre_logits: Array.from(o.pooled.dataSync()),
      logits: Array.from(o.logits!.dataSync()),
      cls_logits: Array.from(o.distilled!.clsLogits!.dataSync()),
      dist_logits: Array.from(o.distilled!.distLogits!.dataSync()),
      sizes: finalSizes(o.state).flat(),
    };
  });
}

describe('DeiT with a distillation token (timm VisionTransformerDistilled)', () => {
  let vit: Vit;
  let x: tf.Tensor4D;
  before(() => {
    vit = createVit('deit_tiny_distilled_patch16_224', OVR, { seed: 9 });
    const rep = loadTimmCheckpoint(path.join(FX, gold.file), vit);
    assert.equal(rep.loaded.length, vitVariables(vit).size, 'every tensor loaded, nothing left at its init');
    const [B, Ch, H, W] = gold.input.shape;
    x = tf.tidy(() => tf.tensor4d(randArray(B * Ch * H * W, gold.input.rand_array_seed), [B, Ch, H, W]).transpose([0, 2, 3, 1]) as tf.Tensor4D);
  });
  after(() => {
    disposeVit(vit);
    x.dispose();
  });

  it('forward = the PyTorch reference: tokens [cls, dist, patches], both heads, their mean at inference, pre-logits mean', async () => {
    assert.equal(encoderParamCount(vit) + 2 * (C.D * C.classes + C.classes), gold.param_count);
    await noLeak(() => {
      const kit = outputs(vit, x);
      const ref = gold.runs.plain.out;
      // reference float64; PyTorch's own float32 run differs from it by gold.plain_f32_vs_f64_max (≈ 1.4e-6)
      for (const k of ['features', 'pre_logits', 'logits', 'cls_logits', 'dist_logits'] as const) {
        assertClose(kit[k], ref[k], 1e-5, 1e-5, `plain ${k}`);
      }
      assert.ok(maxAbsDiff(kit.cls_logits, kit.dist_logits) > 0.01, 'the two heads differ (so the mean is a real check)');
    });
  });

  it('training returns both heads (logits = cls head, distilled.distLogits = dist head); eval the mean', () => {
    tf.tidy(() => {
      const tr = vitForward(vit, x, { training: true, rng: null });
      const ev = vitForward(vit, x);
      assertClose(tr.logits!.dataSync(), gold.runs.plain.out.cls_logits, 1e-5, 1e-5, 'training logits = cls head');
      assertClose(tr.distilled!.distLogits!.dataSync(), gold.runs.plain.out.dist_logits, 1e-5, 1e-5, 'dist head');
      assertClose(ev.logits!.dataSync(), gold.runs.plain.out.logits, 1e-5, 1e-5, 'eval = mean');
      assert.deepEqual(ev.patchTokens.shape, [2, 16, C.D], 'patch tokens exclude cls and dist');
    });
  });

  it('ToMe and PYRA on DeiT = the reference with cls and dist protected (sizes, order, logits)', async () => {
    await noLeak(() => {
      const tome = outputs(vit, x, tomeHooks(vit.config, { schedule: gold.schedule }));
      assertClose(tome.sizes, gold.runs.tome.out.sizes, 0, 0, 'ToMe sizes');
      for (const k of ['features', 'logits', 'cls_logits', 'dist_logits'] as const) assertClose(tome[k], gold.runs.tome.out[k], 1e-5, 1e-5, `ToMe ${k}`);
      const pyra = createPyra(vit.config, gold.schedule, { seed: 0 });
      try {
        gold.pyra.forEach((p, i) => tf.tidy(() => {
          const b = pyra.params.blocks[i]!;
          b.pyra_a!.assign(tf.tensor2d(p.a, [gold.schedule[i], 1]));
          b.pyra_b!.assign(tf.tensor2d(p.b, [1, C.D]));
          b.pyra_norm!.weight.assign(tf.tensor1d(p.gamma));
          b.pyra_norm!.bias.assign(tf.tensor1d(p.beta));
        }));
        const py = outputs(vit, x, pyraHooks(vit.config, pyra));
        assertClose(py.sizes, gold.runs.pyra.out.sizes, 0, 0, 'PYRA sizes');
        for (const k of ['features', 'logits', 'cls_logits', 'dist_logits'] as const) assertClose(py[k], gold.runs.pyra.out[k], 1e-5, 1e-5, `PYRA ${k}`);
        assert.ok(maxAbsDiff(py.logits, tome.logits) > 1e-4, 'PYRA with W_D ≠ 0 differs from ToMe');
      } finally {
        disposePyra(pyra);
      }
      // both prefix tokens stay single and in front: sizes 1 at positions 0 and 1 of every image
      const s = gold.runs.tome.out.sizes;
      const n = s.length / 2;
      assert.deepEqual([s[0], s[1], s[n], s[n + 1]], [1, 1, 1, 1]);
    });
  });

  it('merge hooks follow config.distillToken; a contradicting option is an error', () => {
    assert.throws(() => tomeHooks(vit.config, { schedule: 2, distillToken: false }), /distillToken false but the model has distillation token/);
    const plain = vitConfig('deit_tiny_patch16_224', { ...OVR });
    assert.throws(() => tomeHooks(plain, { schedule: 2, distillToken: true }), /has no distillation token/);
    // the cap counts two protected tokens: 18 tokens → at most ⌊16/2⌋ = 8
    assert.throws(() => tomeHooks(vit.config, { schedule: [9, 0, 0], onCap: 'error' }), /⌊\(18 − 2\)\/2⌋ = 8/);
  });

  it('timm checkpoint round trip (dist_token, head_dist, the 2-prefix pos_embed)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deit-'));
    const file = path.join(dir, 'deit.safetensors');
    const v2 = createVit('deit_tiny_distilled_patch16_224', OVR, { seed: 1 });
    try {
      saveTimmCheckpoint(file, vit, { noEmbedClass: false });
      loadTimmCheckpoint(file, v2);
      for (const [k, t] of vitVariables(vit)) assert.equal(maxAbsDiff(t.dataSync(), vitVariables(v2).get(k)!.dataSync()), 0, k);
      // a larger input: the pos table is resized around its two prefix rows
      const big = createVit('deit_tiny_distilled_patch16_224', { ...OVR, imgSize: 48 }, { seed: 1 });
      try {
        loadTimmCheckpoint(file, big, { resizePosEmbed: true });
        const pe = vitVariables(big).get('pos_embed')!;
        assert.deepEqual(pe.shape, [1, 2 + 36, C.D]);
        const src = vitVariables(vit).get('pos_embed')!.dataSync();
        assert.equal(maxAbsDiff(pe.dataSync().slice(0, 2 * C.D), src.slice(0, 2 * C.D)), 0, 'cls and dist rows kept');
      } finally {
        disposeVit(big);
      }
    } finally {
      disposeVit(v2);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('DeiT presets, schedules and PEFT on DeiT', () => {
  it('exact parameter counts (1000 classes): DeiT-Ti/S/B distilled 5,910,800 / 22,436,432 / 87,338,192, plain 5,717,416 / 22,050,664 / 86,567,656', () => {
    const count = (name: keyof typeof VIT_PRESETS): number => [...vitShapes(name, { numClasses: 1000 }).values()].reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
    assert.equal(count('deit_tiny_distilled_patch16_224'), 5_910_800);
    assert.equal(count('deit_small_distilled_patch16_224'), 22_436_432);
    assert.equal(count('deit_base_distilled_patch16_224'), 87_338_192);
    assert.equal(count('deit_tiny_patch16_224'), 5_717_416);
    assert.equal(count('deit_small_patch16_224'), 22_050_664);
    assert.equal(count('deit_base_patch16_224'), 86_567_656);
    // the distilled extras: dist_token D + one pos row D + head_dist D·1000 + 1000
    assert.equal(87_338_192 - 86_567_656, 768 + 768 + 768 * 1000 + 1000);
    const s = vitShapes('deit_base_distilled_patch16_224', { numClasses: 10 });
    assert.deepEqual(s.get('pos_embed')!.shape, [1, 198, 768]);
    assert.deepEqual([...s.keys()].slice(0, 3), ['cls_token', 'pos_embed', 'dist_token']);
    assert.deepEqual([...s.keys()].slice(-4), ['head.weight', 'head.bias', 'head_dist.weight', 'head_dist.bias']);
    // MAE ViT-L average-pool variant (MAE's fine-tuning model with global_pool): fc_norm instead of norm, same count as ViT-L/16
    const mae = vitShapes('mae_vit_large_patch16_avg', { numClasses: 1000 });
    assert.ok(mae.has('fc_norm.weight') && !mae.has('norm.weight'));
    assert.equal([...mae.values()].reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0), 304_326_632);
    assert.equal(vitConfig('mae_vit_large_patch16_avg').pool, 'avg');
    assert.equal(vitConfig('mae_vit_large_patch16_avg').posEmbed, 'sincos');
  });

  it("PYRA's DeiT-B schedules on the DeiT-B config: 198 → 42 (low) / 6 (high) tokens, 17.66 / 9.65 / 5.16 GMACs, no option needed", () => {
    const cfg = vitConfig('deit_base_distilled_patch16_224');
    const low = pyraSchedule('deit_base_distilled_patch16_224', 'low');
    const high = pyraSchedule('deit_base_distilled_patch16_224', 'high');
    assert.equal(tokenCounts(low, 12, { numTokens: 198, protectedTokens: 2, onCap: 'error' }).tokens[12], 42);
    assert.equal(tokenCounts(high, 12, { numTokens: 198, protectedTokens: 2, onCap: 'error' }).tokens[12], 6);
    const g = (s?: number[]) => vitMacs(cfg, { schedule: s }).gmacs.toFixed(2);
    assert.deepEqual([g(), g(low), g(high)], ['17.66', '9.65', '5.16']);
    assert.equal(PYRA_SCHEDULES.deit_base_distilled_patch16_224.protectedTokens, 2);
  });

  it('PYRA / ToMe+LoRA / LoRA presets build on a micro distilled DeiT: head_dist trains (as released) but gets no gradient from the cls-head loss', async () => {
    const vit = createVit('deit_tiny_distilled_patch16_224', { ...OVR, depth: 3 }, { seed: 2 });
    const micro = (p: PyraPresetConfig): PyraPresetConfig => ({ ...p, loraRank: 2, ...(p.schedule === null ? {} : { schedule: [5, 3, 2] }) });
    try {
      const rep = pyraParamReport(PYRA_PRESETS.pyra_deit_b16_high, { numClasses: 100 });
      assert.equal(rep.lora, 294_912);
      assert.equal(rep.pyraGenerators, 9408);
      assert.equal(rep.head, 2 * 76_900, 'both heads');
      await noLeak(() => {
        for (const name of ['pyra_deit_b16_high', 'tome_lora_deit_b16_low', 'lora_deit_b16'] as const) {
          const m = buildPyraModel(vit, micro(PYRA_PRESETS[name]), { seed: 1 });
          try {
            assert.ok(m.trainable.has('head_dist.weight') && m.trainable.has('head.weight'), name);
            assert.ok(!m.trainable.has('dist_token'), `${name}: dist_token frozen`);
            const list = [...m.trainable.values()];
            const y = tf.tensor1d([1, 3], 'int32');
            const img = tf.tensor4d(randArray(2 * 32 * 32 * 3, 4), [2, 32, 32, 3]);
            const { value, grads } = tf.variableGrads(() => crossEntropy(vitForward(vit, img, { hooks: m.hooks, training: true, rng: Rng.derive(0, 'deit') }).logits!, y), list);
            const hd = m.trainable.get('head_dist.weight')!;
            assert.ok(!grads[hd.name] || maxAbsDiff(grads[hd.name].dataSync(), new Float32Array(hd.size)) === 0, `${name}: head_dist gets no gradient`);
            assert.ok(maxAbsDiff(grads[m.trainable.get('head.weight')!.name].dataSync(), new Float32Array(hd.size)) > 0);
            tf.dispose([value, y, img, ...Object.values(grads)]);
          } finally {
            m.dispose();
          }
        }
      });
    } finally {
      disposeVit(vit);
    }
  });

  it('ExPLoRA trainability on a distilled DeiT: the distillation token unfreezes with the CLS token', () => {
    const vit = createVit('deit_tiny_distilled_patch16_224', { ...OVR, numClasses: 0 }, { seed: 2 });
    try {
      const ex = applyExplora({ encoder: vit.params }, 'D-ExPLoRA-[L]-r4');
      try {
        assert.ok(ex.selection.trainable.has('cls_token') && ex.selection.trainable.has('dist_token'));
        assert.ok(!ex.selection.trainable.has('pos_embed'));
        assert.ok(ex.lora!.modules.has('blocks.0.attn.qkv') && !ex.lora!.modules.has(`blocks.${C.depth - 1}.attn.qkv`));
      } finally {
        ex.dispose();
      }
    } finally {
      disposeVit(vit);
    }
  });

  it('bad configs: distillation token with avg pooling or registers', () => {
    assert.throws(() => vitConfig('deit_base_distilled_patch16_224', { pool: 'avg' }), /distillToken: expected false with pool 'avg' \(a distillation token needs pool 'cls'/);
    assert.throws(() => vitConfig('deit_base_distilled_patch16_224', { numRegisters: 2 }), /distillToken: expected false with 2 register tokens \(not supported together\)/);
  });
});
