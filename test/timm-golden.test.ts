/**
 * The kit's ViT against the REAL timm VisionTransformer (timm 1.0.29, torch 2.11; fixtures made by
 * test/fixtures/gen_timm.py on a GPU machine, CPU float32 numbers and float64 recomputations committed).
 * timm safetensors files are loaded through `loadTimmCheckpoint` (io/timm.ts) into `createVit(vitConfigFromTimm(..))`.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import {
  Vit, createVit, disposeVit, vitForward, norm, vitVariables, encoderParamCount, VIT_PRESETS, VitPresetName, vitConfig, mlpHidden,
  gridResizeMatrix, readSafetensors, loadTimmCheckpoint, timmToKit, timmStateDict, saveTimmCheckpoint, vitConfigFromTimm,
  SafeFile, SafeTensor,
} from '../lib';
import { randArray, maxAbsDiff } from './util';

const FX = path.join(__dirname, 'fixtures');

interface Outs { features: number[]; pre_logits: number[]; logits: number[] }
interface InputRec { shape: number[]; rand_array_seed: number; head: number[]; sum: number }
interface Run { input: InputRec; out: { shapes: Record<string, number[]>; f32: Outs; f64: Outs; f32_vs_f64_max: Record<string, number> } }
interface Case extends Run {
  name: string;
  timm_kwargs: Record<string, unknown>;
  file: string;
  keys: Record<string, number[]>;
  introspect: { num_prefix_tokens: number; no_embed_class: boolean };
  dynamic: Run[];
  error?: string;
}
const gold = JSON.parse(fs.readFileSync(path.join(FX, 'timm_golden.json'), 'utf8')) as {
  timm_version: string;
  torch_version: string;
  cases: Case[];
  resample: { from: [number, number]; input: number[]; cases: { to: [number, number]; antialias: boolean; out: number[] }[] };
  presets: Record<string, Record<string, unknown>>;
};

/** The fixture's input: test/util randArray (same xorshift stream as the generator), NCHW → NHWC. */
function input(rec: InputRec): tf.Tensor4D {
  const n = rec.shape.reduce((a, b) => a * b, 1);
  const data = randArray(n, rec.rand_array_seed);
  assert.deepEqual(Array.from(data.subarray(0, 4)), rec.head, 'input stream differs from the generator');
  assert.ok(Math.abs(data.reduce((s, v) => s + v, 0) - rec.sum) < 1e-3, 'input checksum');
  const [B, C, H, W] = rec.shape;
  return tf.tidy(() => tf.tensor4d(data, [B, C, H, W]).transpose([0, 2, 3, 1]) as tf.Tensor4D); // NCHW → NHWC
}

/** Kit outputs in timm's terms: forward_features tokens (norm applied unless fc_norm pooling), pre-logits, logits. */
function kitOutputs(vit: Vit, x: tf.Tensor4D): Outs {
  return tf.tidy(() => {
    const o = vitForward(vit, x);
    const feats = vit.params.norm ? norm(vit.params.norm, o.prenorm, vit.config.normEps) : o.prenorm; // [B, 1+R+N, D]
    return {
      features: Array.from(feats.dataSync()),
      pre_logits: Array.from(o.pooled.dataSync()),
      logits: Array.from((o.logits ?? o.pooled).dataSync()),
    };
  });
}

const measured: string[] = [];
const KINDS = ['features', 'pre_logits', 'logits'] as const;
/**
 * Tolerance against timm float32 and float64. Measured (wasm backend): ≤ 3.0e-6 everywhere, the size of timm's own
 * float32-vs-float64 error on these models (≤ 2.3e-6); 1e-5 leaves room for other backends' summation orders.
 */
const TOL = 1e-5;

function check(label: string, vit: Vit, run: Run): Record<string, number> {
  const x = input(run.input);
  const kit = kitOutputs(vit, x);
  x.dispose();
  const errs: Record<string, number> = {};
  for (const k of KINDS) {
    assert.equal(kit[k].length, run.out.f32[k].length, `${label} ${k}: size ${kit[k].length} vs timm [${run.out.shapes[k]}]`);
    errs[`${k}/f32`] = maxAbsDiff(kit[k], run.out.f32[k]);
    errs[`${k}/f64`] = maxAbsDiff(kit[k], run.out.f64[k]);
  }
  measured.push(`${label}: ${Object.entries(errs).map(([k, v]) => `${k} ${v.toExponential(1)}`).join(', ')}`);
  for (const [k, v] of Object.entries(errs)) assert.ok(v <= TOL, `${label} ${k}: max |kit − timm| = ${v} > ${TOL}`);
  return errs;
}

function loadCase(c: Case, overrides = {}): Vit {
  const vit = createVit(vitConfigFromTimm(c.timm_kwargs, overrides), {}, { skipInit: true });
  const rep = loadTimmCheckpoint(path.join(FX, c.file), vit);
  assert.equal(rep.noEmbedClass, c.introspect.no_embed_class, 'no_embed_class inferred');
  assert.equal(1 + rep.numRegisters, c.introspect.num_prefix_tokens);
  assert.deepEqual(rep.missing, []);
  assert.deepEqual(rep.resized, []);
  assert.equal(rep.loaded.length, vitVariables(vit).size);
  return vit;
}

describe(`timm golden (timm ${gold.timm_version}, torch ${gold.torch_version})`, () => {
  after(() => {
    if (measured.length) console.log(`      max |kit − timm|:\n        ${measured.join('\n        ')}`);
  });

  it('the fixture holds every case (none failed in the generator)', () => {
    assert.deepEqual(gold.cases.map((c) => c.name), ['plain', 'dinov2_avg', 'dinov2_token', 'reg4', 'reg2_embedclass']);
    for (const c of gold.cases) assert.equal(c.error, undefined, `${c.name}: ${c.error}`);
  });

  for (const c of gold.cases) {
    it(`${c.name}: forward_features tokens, pre-logits and logits match timm (≤ ${TOL})`, () => {
      const vit = loadCase(c);
      try {
        check(c.name, vit, c);
        c.dynamic.forEach((d) => check(`${c.name} @${d.input.shape[2]}x${d.input.shape[3]}`, vit, d));
      } finally {
        disposeVit(vit);
      }
    });
  }

  it("dynamic sizes need timm's antialiased resample: plain PyTorch bicubic ('size') is off by > 1e-2", () => {
    const c = gold.cases.find((k) => k.name === 'plain')!;
    const vit = loadCase(c, { posEmbedInterp: 'size' });
    try {
      for (const d of c.dynamic) {
        const x = input(d.input);
        const kit = kitOutputs(vit, x);
        x.dispose();
        assert.ok(maxAbsDiff(kit.features, d.out.f64.features) > 1e-2, 'the wrong interpolation should be visible');
      }
    } finally {
      disposeVit(vit);
    }
  });

  it("loading at another size (resizePosEmbed, timm's antialiased resample at load) equals timm's dynamic_img_size", () => {
    for (const [name, size] of [['plain', 48], ['reg4', 56]] as const) {
      const c = gold.cases.find((k) => k.name === name)!;
      const d = c.dynamic.find((r) => r.input.shape[2] === size && r.input.shape[3] === size)!;
      const vit = createVit(vitConfigFromTimm({ ...c.timm_kwargs, img_size: size }), {}, { skipInit: true });
      // another grid: the layout cannot be read off the target's table any more (reg4: 9 and 9 − 5 are both squares)
      const rep = loadTimmCheckpoint(path.join(FX, c.file), vit, { resizePosEmbed: true, noEmbedClass: c.introspect.no_embed_class });
      assert.deepEqual(rep.resized, ['pos_embed']);
      check(`${name} loaded at ${size}`, vit, d);
      disposeVit(vit);
    }
  });

  it("resample_abs_pos_embed: 'size-antialias' = antialias=True, 'size' = antialias=False (≤ 2e-6)", () => {
    const r = gold.resample;
    const [fh, fw] = r.from;
    for (const c of r.cases) {
      const [th, tw] = c.to;
      const m = gridResizeMatrix({ from: [fh, fw], to: [th, tw], mode: c.antialias ? 'size-antialias' : 'size' });
      const D = r.input.length / (fh * fw);
      const out = new Float64Array(th * tw * D);
      for (let o = 0; o < th * tw; o++)
        for (let i = 0; i < fh * fw; i++) for (let d = 0; d < D; d++) out[o * D + d] += m[o * fh * fw + i] * r.input[i * D + d];
      const e = maxAbsDiff(out, c.out);
      assert.ok(e <= 2e-6, `${fh}x${fw} → ${th}x${tw} antialias=${c.antialias}: ${e}`);
    }
  });

  it('export back to timm layout: exact for the file it came from (plain, reg4); reg2_embedclass reloads to the same outputs', () => {
    for (const name of ['plain', 'reg4']) {
      const c = gold.cases.find((k) => k.name === name)!;
      const vit = loadCase(c);
      const sd = timmStateDict(vit, { noEmbedClass: c.introspect.no_embed_class });
      const file = readSafetensors(path.join(FX, c.file));
      assert.deepEqual([...sd.keys()].sort(), [...file.tensors.keys()].sort(), `${name}: keys`);
      for (const [k, t] of file.tensors) {
        assert.deepEqual(sd.get(k)!.shape, t.shape, `${name} ${k} shape`);
        assert.equal(maxAbsDiff(sd.get(k)!.data, t.data), 0, `${name} ${k} values`);
      }
      disposeVit(vit);
    }
    const c = gold.cases.find((k) => k.name === 'reg2_embedclass')!;
    const vit = loadCase(c);
    const tmp = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'timm-')), 'reg2.safetensors');
    saveTimmCheckpoint(tmp, vit, { noEmbedClass: false });
    const back = createVit(vit.config, {}, { skipInit: true });
    const keys = Object.fromEntries([...readSafetensors(tmp).tensors].map(([k, t]) => [k, t.shape]));
    assert.deepEqual(keys, c.keys, 'same timm keys and shapes as the original');
    assert.equal(loadTimmCheckpoint(tmp, back).noEmbedClass, false);
    check('reg2_embedclass (re-exported)', back, c);
    fs.rmSync(path.dirname(tmp), { recursive: true });
    disposeVit(vit);
    disposeVit(back);
  });

  it('converter errors name the key and the shapes', () => {
    const reg4 = gold.cases.find((k) => k.name === 'reg4')!;
    const two = createVit(vitConfigFromTimm({ ...reg4.timm_kwargs, reg_tokens: 2 }), {}, { skipInit: true });
    assert.throws(() => loadTimmCheckpoint(path.join(FX, reg4.file), two), /'register_tokens' has shape \[1,4,24\] but 'register_tokens' needs \[1,2,24\]/);
    disposeVit(two);
    const vit = createVit(vitConfigFromTimm(reg4.timm_kwargs), {}, { skipInit: true });
    assert.throws(() => loadTimmCheckpoint(path.join(FX, reg4.file), vit, { noEmbedClass: false }), /'pos_embed' has shape \[1,5,24\] but 'pos_embed' needs \[1,10,24\]/);
    disposeVit(vit);
    const t = (shape: number[]): SafeTensor => ({ dtype: 'F32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    const sf = (entries: [string, number[]][]): SafeFile => ({ tensors: new Map(entries.map(([k, s]) => [k, t(s)])), metadata: {} });
    assert.throws(() => timmToKit(sf([['cls_token', [1, 1, 2]], ['pos_embed', [1, 5, 2]], ['norm_pre.weight', [2]]])), /'norm_pre\.weight' \(pre_norm=True/);
    assert.throws(() => timmToKit(sf([['cls_token', [1, 1, 2]], ['pos_embed', [1, 5, 2]], ['blocks.0.attn.q_norm.weight', [2]]])), /q_norm\.weight' \(qk_norm=True\)/);
    assert.throws(() => timmToKit(sf([['pos_embed', [1, 4, 2]]])), /no 'cls_token'/);
    assert.throws(() => timmToKit(sf([['cls_token', [1, 1, 2]], ['pos_embed', [1, 4, 3]]])), /'pos_embed' has shape \[1,4,3\], expected \[1, L, 2\]/);
    // 25 rows with 9 prefix tokens: 25 and 16 are both squares, so the layout must be given
    assert.throws(() => timmToKit(sf([['cls_token', [1, 1, 2]], ['reg_token', [1, 8, 2]], ['pos_embed', [1, 25, 2]]])), /pass noEmbedClass/);
    assert.equal(timmToKit(sf([['cls_token', [1, 1, 2]], ['reg_token', [1, 8, 2]], ['pos_embed', [1, 25, 2]]]), { noEmbedClass: false }).file.tensors.get('pos_embed')!.shape[1], 17);
    assert.throws(() => vitConfigFromTimm({ class_token: false }), /class_token=false: the kit's ViT always has a CLS token/);
    assert.throws(() => vitConfigFromTimm({ global_pool: 'map' }), /global_pool="map"/);
    assert.throws(() => vitConfigFromTimm({ embed_dims: 8 }), /embed_dims/);
  });

  it("the kit's presets agree with timm's registered models (sizes, eps, pool; parameter counts up to mask_token / CLS position)", () => {
    for (const [tname, p] of Object.entries(gold.presets)) {
      assert.equal(p.error, undefined, `${tname}: ${p.error}`);
      const kname = tname.replace(/\.mae$/, '') as VitPresetName;
      const k = vitConfig(kname);
      const where = `${tname} vs kit ${kname}`;
      assert.deepEqual(p.img_size, [k.imgSize, k.imgSize], `${where} img_size`);
      assert.deepEqual(p.patch_size, [k.patchSize, k.patchSize], `${where} patch_size`);
      assert.equal(p.embed_dim, k.embedDim, `${where} embed_dim`);
      assert.equal(p.depth, k.depth, `${where} depth`);
      assert.equal(p.num_heads, k.numHeads, `${where} heads`);
      assert.equal(p.mlp_hidden, mlpHidden(k), `${where} mlp`);
      assert.equal(p.qkv_bias, k.qkvBias, `${where} qkv_bias`);
      assert.equal(p.reg_tokens, k.numRegisters, `${where} registers`);
      assert.equal(p.global_pool, k.pool === 'cls' ? 'token' : 'avg', `${where} pool`);
      assert.match(String(p.norm), /eps=1e-06/);
      assert.equal(k.normEps, 1e-6);
      assert.equal(p.act, "GELU(approximate='none')");
      // timm initialises DINOv2 LayerScale at 1e-5 (training value); the kit's presets use the hub builder's 1.0
      assert.equal(p.layer_scale_init === null, k.layerScale === null, `${where} layer scale present`);
      assert.equal(p.no_embed_class, k.numRegisters > 0, `${where}: timm stores registers' models with no_embed_class`);
    }
    for (const name of ['vit_small_patch16_224', 'vit_small_patch14_dinov2', 'vit_small_patch14_reg4_dinov2'] as const) {
      const vit = createVit(name, {}, { skipInit: true });
      const D = VIT_PRESETS[name].embedDim;
      const extra = (vit.params.mask_token ? D : 0) + (VIT_PRESETS[name].numRegisters > 0 ? D : 0);
      assert.equal(encoderParamCount(vit), (gold.presets[name].n_params_no_head as number) + extra, name);
      disposeVit(vit);
    }
  });
});
