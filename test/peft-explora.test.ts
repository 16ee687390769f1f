import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { saveCheckpoint, loadCheckpoint } from '../lib/io/checkpoint';
import { createVit, disposeVit, Vit, ParamFactory, createBlockParams } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { flattenTree, disposeTree, countParams } from '../lib/tree';
import { Rng } from '../lib/rng';
import { Optimizer, ADAMW_MAE } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { vitShapes } from '../lib/peft/shapes';
import { loraHooks, mergeLora, disposeLora, loraVariables } from '../lib/peft/lora';
import { formatTrainSummary } from '../lib/peft/trainable';
import {
  parseExploraNotation, formatExploraNotation, exploraRecipe, resolveBlocks, countExplora, applyExplora,
} from '../lib/peft/explora';
import { EXPLORA_PRESETS } from '../recipes/explora-presets';
import { maxAbsDiff, randArray } from './util';

function shapesEqual(a: Map<string, { shape: readonly number[] }>, b: Map<string, { shape: readonly number[] }>): void {
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [k, v] of a) assert.deepEqual([...v.shape], [...b.get(k)!.shape], k);
}

describe('peft/explora: notation', () => {
  it('parses and prints the paper notation', () => {
    for (const s of ['D-ExPLoRA-[L]-r64', 'M-ExPLoRA-[1,L]-r32', 'D-ExPLoRA-[1,L-1,L]-r64', 'D-ExPLoRA-[L]', 'D-ExPLoRA-[2,5,L-3]-r8']) {
      assert.equal(formatExploraNotation(parseExploraNotation(s)), s);
    }
    assert.deepEqual(parseExploraNotation('D-ExPLoRA-[1,L-1,L]-r64'), { family: 'D', unfrozen: [1, 'L-1', 'L'], rank: 64 });
    assert.deepEqual(parseExploraNotation('D-ExPLoRA-[L]'), { family: 'D', unfrozen: ['L'], rank: null });
    assert.equal(formatExploraNotation(parseExploraNotation(' M-ExPLoRA-[1, L]-r32 ')), 'M-ExPLoRA-[1,L]-r32');
  });

  it('rejects unknown notation with a clear error', () => {
    assert.throws(() => parseExploraNotation('X-ExPLoRA-[L]-r64'), /unknown ExPLoRA notation 'X-ExPLoRA-\[L\]-r64': expected <D\|M>-ExPLoRA-\[blocks\]-r<rank>, e\.g\. D-ExPLoRA-\[L\]-r64/);
    assert.throws(() => parseExploraNotation('D-ExPLoRA-L-r64'), /unknown ExPLoRA notation/);
    assert.throws(() => parseExploraNotation('D-ExPLoRA-[L]-r'), /unknown ExPLoRA notation/);
    assert.throws(() => parseExploraNotation('D-ExPLoRA-[L]-r0'), /rank must be ≥ 1/);
    assert.throws(() => parseExploraNotation('D-ExPLoRA-[0]-r64'), /block '0' is not a 1-based index, 'L' or 'L-k'/);
    assert.throws(() => parseExploraNotation('D-ExPLoRA-[L+1]-r64'), /block 'L\+1' is not/);
    assert.throws(() => exploraRecipe('D-ExPLoRA-[L]-r64', { rnak: 3 } as never), /ExploraRecipe overrides: unknown key 'rnak'/);
    assert.throws(() => resolveBlocks([25], 24), /block '25' is outside 1\.\.24 \(the model has 24 blocks\)/);
    assert.throws(() => resolveBlocks(['L-24'], 24), /block 'L-24' is outside/);
    assert.deepEqual(resolveBlocks([1, 'L-1', 'L'], 24), [0, 22, 23]);
    assert.deepEqual(resolveBlocks(['L', 'L'], 12), [11]);
  });

  it('presets: α = 1, Q and V, norms + cls, DINOv2 heads, MAE decoder r8, multispectral embeddings', () => {
    const d = EXPLORA_PRESETS['D-ExPLoRA-[L]-r64'];
    assert.equal(d.alpha, 1);
    assert.deepEqual(d.slices, ['q', 'v']);
    assert.ok(d.unfreezeNorms && d.unfreezeCls && !d.unfreezeEmbed);
    assert.equal(d.decoderRank, null);
    assert.equal(EXPLORA_PRESETS['M-ExPLoRA-[L]-r64'].decoderRank, 8);
    assert.equal(EXPLORA_PRESETS['M-ExPLoRA-[1,L]-r32'].unfreezeEmbed, true);
    assert.equal(exploraRecipe('D-ExPLoRA-[L]-r16', { alpha: 2 }).alpha, 2);
    assert.ok(!d.loraProj && !d.loraMlp);
  });

  it('ablation switches: K slice, attn.proj (rank r) and MLP (rank r/4) LoRA on the LoRA blocks', () => {
    const B = vitShapes('vit_base_patch14_dinov2');
    const base = 9_288_192;
    const D = 768;
    assert.equal(countExplora(B, exploraRecipe('D-ExPLoRA-[L]-r64', { slices: ['q', 'k', 'v'] })).trainableEncoder, base + 11 * 2 * 64 * D);
    assert.equal(countExplora(B, exploraRecipe('D-ExPLoRA-[L]-r64', { loraProj: true })).trainableEncoder, base + 11 * 2 * 64 * D);
    assert.equal(countExplora(B, exploraRecipe('D-ExPLoRA-[L]-r64', { loraMlp: true })).trainableEncoder, base + 11 * 16 * (D + 4 * D) * 2);
  });
});

describe('peft/explora: exact trainable counts (encoder only, as the paper: 12.7M / 18.7M / 43.4M)', () => {
  const L = vitShapes('vit_large_patch14_dinov2');
  const B = vitShapes('vit_base_patch14_dinov2');
  const rows: Array<[string, number, number]> = [
    ['D-ExPLoRA-[L]', 12_695_552, 7_125_504],
    ['D-ExPLoRA-[L]-r8', 13_449_216, 7_395_840],
    ['D-ExPLoRA-[L]-r16', 14_202_880, 7_666_176],
    ['D-ExPLoRA-[L]-r32', 15_710_208, 8_206_848],
    ['D-ExPLoRA-[L]-r64', 18_724_864, 9_288_192],
    ['D-ExPLoRA-[L]-r128', 24_754_176, 11_450_880],
    ['D-ExPLoRA-[1,L]-r32', 28_173_312, 15_194_880],
    ['D-ExPLoRA-[1,L]-r64', 31_056_896, 16_177_920],
    ['D-ExPLoRA-[1,L-1,L]-r64', 43_388_928, 23_067_648],
  ];
  for (const [n, l, b] of rows) {
    it(`${n}: ViT-L ${l.toLocaleString('en-US')}, ViT-B ${b.toLocaleString('en-US')}`, () => {
      assert.equal(countExplora(L, n).trainableEncoder, l);
      assert.equal(countExplora(B, n).trainableEncoder, b);
    });
  }

  it('MAE ViT-L/16: M-[L]-r64 18,722,816; M-[1,L]-r32 28,169,216 (encoder only, decoder LoRA not counted)', () => {
    const mae = vitShapes('mae_vit_large_patch16');
    assert.equal(countExplora(mae, 'M-ExPLoRA-[L]-r64').trainableEncoder, 18_722_816);
    assert.equal(countExplora(mae, 'M-ExPLoRA-[1,L]-r32').trainableEncoder, 28_169_216);
    // the multispectral preset also trains the patch embedding (RGB p16 here: 3·16²·1024 + 1024)
    assert.equal(countExplora(mae, EXPLORA_PRESETS['M-ExPLoRA-[1,L]-r32']).trainableEncoder, 28_169_216 + 3 * 256 * 1024 + 1024);
  });

  it('the paper percentage: 18,724,864 / 303,301,632 (ViT-L/16 encoder) = 6.17 %', () => {
    const s = countExplora(L, 'D-ExPLoRA-[L]-r64', { encoderTotal: 303_301_632 });
    assert.equal(s.pctEncoder.toFixed(2), '6.17');
    assert.equal(countExplora(vitShapes('vit_large_patch16_224'), 'D-ExPLoRA-[L]').encoderTotal, 303_301_632);
  });

  it('on a real allocated DINOv2 ViT-L/14 tree: shapes agree with createVit, D-[L]-r64 = 18,724,864, D-[L] = 12,695,552', function () {
    this.timeout(120000);
    const vit = createVit('vit_large_patch14_dinov2', {}, { skipInit: true });
    try {
      shapesEqual(flattenTree(vit.params), L);
      const ex = applyExplora({ encoder: vit.params }, 'D-ExPLoRA-[L]-r64');
      assert.equal(ex.selection.summary.trainableEncoder, 18_724_864);
      assert.equal([...ex.selection.trainable.values()].reduce((s, v) => s + v.size, 0), 18_724_864);
      assert.equal(ex.selection.summary.encoderTotal, 304_368_640);
      assert.deepEqual(ex.unfrozen, [23]);
      assert.equal(ex.lora!.modules.size, 23);
      assert.ok(!ex.lora!.modules.has('blocks.23.attn.qkv'));
      assert.ok(ex.selection.trainable.has('blocks.23.mlp.fc1.weight'));
      assert.ok(ex.selection.trainable.has('blocks.5.norm2.bias') && ex.selection.trainable.has('norm.weight'));
      assert.ok(ex.selection.trainable.has('cls_token'));
      assert.ok(!ex.selection.trainable.has('blocks.5.attn.qkv.weight') && !ex.selection.trainable.has('pos_embed'));
      assert.ok(!ex.selection.trainable.has('mask_token') && !ex.selection.trainable.has('patch_embed.proj.weight'));
      assert.equal(flattenTree(vit.params).get('blocks.5.attn.proj.weight')!.trainable, false);
      const text = formatTrainSummary(ex.selection.summary);
      assert.match(text, /unfrozen blocks \[L\] \(0-based 23\)\s+yes\s+14\s+12,598,272/);
      disposeLora(ex.lora!);
      const ex0 = applyExplora({ encoder: vit.params }, 'D-ExPLoRA-[L]');
      assert.equal(ex0.lora, null);
      assert.equal(ex0.selection.summary.trainableEncoder, 12_695_552);
      ex0.dispose(); // no adapters: a no-op
    } finally {
      disposeVit(vit);
    }
  });

  it('vitShapes agrees with createVit on variants (registers, mask token, LayerScale, avg pool, head, no qkv bias, sin-cos)', () => {
    const variants: Array<[Parameters<typeof vitShapes>[0], object]> = [
      ['vit_small_patch14_reg4_dinov2', { imgSize: 28, depth: 2, embedDim: 16, numHeads: 2, numClasses: 3 }],
      ['mae_vit_base_patch16', { imgSize: 32, depth: 2, embedDim: 16, numHeads: 2, pool: 'avg', numClasses: 4, qkvBias: false }],
      ['vit_tiny_patch16_224', { imgSize: 32, depth: 1, embedDim: 8, numHeads: 2, mlpRatio: 2 }],
    ];
    for (const [p, o] of variants) {
      const v = createVit(p, o);
      shapesEqual(flattenTree(v.params), vitShapes(p, o));
      disposeVit(v);
    }
  });
});

describe('peft/explora: the recipe on micro models', () => {
  const MICRO = { imgSize: 16, depth: 3, embedDim: 32, numHeads: 2 } as const;
  let vit: Vit;
  let x: tf.Tensor4D;
  before(() => {
    vit = createVit('vit_small_patch14_dinov2', { ...MICRO, patchSize: 8, posEmbedGrid: 2 }, { seed: 4 });
    x = tf.tensor4d(randArray(2 * 16 * 16 * 3, 3), [2, 16, 16, 3]);
  });
  after(() => {
    disposeVit(vit);
    x.dispose();
  });

  it('D-[L]-r4 with a DINO head: only the selected variables move, 0 leaks per step; merge equals unmerged, also after a save/load', () => {
    const f = new ParamFactory('head', 1);
    const heads = { dino_head: { mlp: [f.linear('dino_head.mlp.0', 32, 8, { kind: 'truncNormal', std: 0.02 })] } };
    const ex = applyExplora({ encoder: vit.params, heads }, 'D-ExPLoRA-[L]-r4', { seed: 2 });
    const lora = ex.lora!;
    assert.deepEqual([...lora.modules.keys()], ['blocks.0.attn.qkv', 'blocks.1.attn.qkv']);
    const rows = Object.fromEntries(ex.selection.summary.rows.map((r) => [r.group, r]));
    assert.equal(rows['objective extras'].params, 32 * 8 + 8);
    assert.equal(rows['objective extras'].encoderParams, 0);
    const all = new Map([...flattenTree(vit.params), ...flattenTree(heads), ...loraVariables(lora)]);
    const before = new Map([...all].map(([k, v]) => [k, v.dataSync().slice()]));
    const opt = new Optimizer(ADAMW_MAE, ex.selection.trainable);
    const hooks = { linear: loraHooks(lora) };
    const target = tf.tensor2d(randArray(2 * 8, 5), [2, 8]);
    const loss = (): tf.Scalar => {
      const o = vitForward(vit, x, { hooks, returnLayers: 1 });
      const h = tf.add(tf.matMul(o.cls, heads.dino_head.mlp[0].weight), heads.dino_head.mlp[0].bias!);
      return tf.mean(tf.square(tf.sub(h, target))) as tf.Scalar;
    };
    let n = -1;
    for (let s = 0; s < 4; s++) {
      trainStep({ params: ex.selection.trainable, optimizer: opt, loss, lr: 1e-2, weightDecay: 0 });
      if (s === 2) n = tf.memory().numTensors;
      if (s === 3) assert.equal(tf.memory().numTensors, n, 'a step leaked tensors');
    }
    for (const [k, v] of all) {
      const moved = maxAbsDiff(v.dataSync(), before.get(k)!) > 0;
      assert.equal(moved, ex.selection.trainable.has(k), `${k}: moved=${moved} trainable=${ex.selection.trainable.has(k)}`);
    }
    // hand-off: merge the adapters into a new base, run without hooks
    const merged = mergeLora(vit.params, lora);
    const a = tf.tidy(() => vitForward({ ...vit, params: merged }, x).cls.dataSync());
    const b = tf.tidy(() => vitForward(vit, x, { hooks }).cls.dataSync());
    assert.ok(maxAbsDiff(a, b) <= 1e-5, `merged vs unmerged ${maxAbsDiff(a, b)}`);
    // the stage boundary on disk: save the merged encoder (PyTorch layout), load it into a fresh model, same features
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'explora-'));
    const file = path.join(dir, 'encoder.safetensors');
    saveCheckpoint(file, { params: merged, meta: { notation: ex.notation } });
    const fresh = createVit('vit_small_patch14_dinov2', { ...MICRO, patchSize: 8, posEmbedGrid: 2 }, { seed: 99 });
    const rep = loadCheckpoint(file, { params: fresh.params });
    assert.equal(rep.meta.notation, 'D-ExPLoRA-[L]-r4');
    const c = tf.tidy(() => vitForward(fresh, x).cls.dataSync());
    assert.ok(maxAbsDiff(c, b) <= 1e-5, `reloaded vs unmerged ${maxAbsDiff(c, b)}`);
    disposeVit(fresh);
    fs.rmSync(dir, { recursive: true });
    disposeTree(merged);
    opt.dispose();
    target.dispose();
    disposeTree(heads);
    disposeLora(lora);
  });

  it('M-[L]-r4 with an MAE decoder: decoder Q,V LoRA r8→r2 and decoder norms train; decoder embed/pred/mask frozen; decoder not counted', () => {
    const mae = createVit('mae_vit_base_patch16', { ...MICRO, patchSize: 8 }, { seed: 1 });
    const f = new ParamFactory('dec', 2);
    const dec = {
      mask_token: f.make('mask_token', [1, 1, 16], { kind: 'normal', std: 0.02 }),
      decoder_embed: f.linear('decoder_embed', 32, 16, { kind: 'xavierUniform', fanIn: 32, fanOut: 16 }),
      decoder_blocks: [0, 1].map((i) => createBlockParams(f, `decoder_blocks.${i}`, 16, 64, { qkvBias: true, layerScale: null, init: 'mae' })),
      decoder_norm: f.norm('decoder_norm', 16),
      decoder_pred: f.linear('decoder_pred', 16, 192, { kind: 'xavierUniform', fanIn: 16, fanOut: 192 }),
    };
    assert.throws(() => applyExplora({ encoder: mae.params }, 'M-ExPLoRA-[L]-r4'), /puts LoRA r8 on the MAE decoder; pass parts\.decoder/);
    const ex = applyExplora({ encoder: mae.params, decoder: dec }, exploraRecipe('M-ExPLoRA-[L]-r4', { decoderRank: 2 }));
    assert.deepEqual([...ex.lora!.modules.keys()], ['blocks.0.attn.qkv', 'blocks.1.attn.qkv', 'decoder_blocks.0.attn.qkv', 'decoder_blocks.1.attn.qkv']);
    assert.equal(ex.lora!.modules.get('decoder_blocks.0.attn.qkv')!.rank, 2);
    assert.equal(ex.lora!.modules.get('decoder_blocks.0.attn.qkv')!.scale, 1 / 2);
    const t = ex.selection.trainable;
    for (const k of ['decoder_norm.weight', 'decoder_blocks.1.norm2.bias', 'decoder_blocks.0.attn.qkv.lora_B.v.weight', 'cls_token']) assert.ok(t.has(k), k);
    for (const k of ['decoder_embed.weight', 'decoder_pred.weight', 'mask_token', 'decoder_blocks.0.attn.qkv.weight', 'pos_embed']) assert.ok(!t.has(k), k);
    // encoder-only count: block 2 + other norms + final norm + cls + encoder LoRA
    const D = 32;
    const enc = 12 * D * D + 13 * D + 2 * 4 * D + 2 * D + D + 2 * 2 * 2 * 4 * D;
    assert.equal(ex.selection.summary.trainableEncoder, enc);
    assert.equal(ex.selection.summary.encoderTotal, countParams(mae.params));
    const decTrain = 2 * 2 * 2 * 2 * 16 + 2 * 4 * 16 + 2 * 16;
    assert.equal(ex.selection.summary.trainable, enc + decTrain);
    // the multispectral flag adds patch embeddings and decoder_pred
    disposeLora(ex.lora!);
    const ms = applyExplora({ encoder: mae.params, decoder: dec }, exploraRecipe('M-ExPLoRA-[1,L]-r4', { decoderRank: 2, unfreezeEmbed: true }));
    assert.ok(ms.selection.trainable.has('patch_embed.proj.weight') && ms.selection.trainable.has('decoder_pred.bias'));
    assert.ok(ms.selection.trainable.has('blocks.0.mlp.fc2.weight') && !ms.lora!.modules.has('blocks.0.attn.qkv'));
    const n = tf.memory().numTensors;
    ms.dispose();
    assert.equal(tf.memory().numTensors, n - 12); // A, B × Q, V on encoder block 1 and both decoder blocks
    disposeTree(dec);
    disposeVit(mae);
  });
});
