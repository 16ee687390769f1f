/**
 * Key maps against files written by PyTorch (test/fixtures/gen_checkpoints.py, torch 1.13): each micro model is saved
 * in an official layout (DINOv2 released / training, MAE, SatMAE group + temporal, ExPLoRA encoder-only / full, HF
 * Dinov2 / ViTMAE safetensors, vit_jax AugReg and big_vision .npz) with its reference forward computed in float64 by
 * a functional forward written against that layout's own names. Loaded through `loadConverted`, the kit must reproduce
 * it; every map must round-trip its keys bit for bit; errors must name keys and shapes; failed loads change nothing.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import {
  Vit, createVit, disposeVit, vitForward, vitVariables, kitToTorch, loadConverted, readStateDict, KEY_MAPS, SafeTensor,
  sameTensor, createMae, maeVariables, disposeMae, createSatMaeGroup, satMaeGroupVariables, disposeSatMaeGroup,
  createSatMaeTemporal, satMaeTemporalVariables, disposeSatMaeTemporal, createDinoHeads, vitConfigFromHf, HfModelConfig,
  keyReportRows, keyReportSummary, flattenTree, VitConfig, detectKeyMap, disposeTree,
} from '../lib';
import { maxAbsDiff } from './util';
import { loadImage, preprocess8, IMAGENET_STATS, normalize, centerCrop, resizeShorter, Img } from '../data-loaders/index';

const CK = path.join(__dirname, 'fixtures', 'ckpt');
const gold = JSON.parse(fs.readFileSync(path.join(CK, 'keymaps_golden.json'), 'utf8'));
const { img, patch, dim, heads, depth } = gold.config as Record<string, number>;
const x = (): tf.Tensor4D => tf.tensor4d(gold.input_nhwc as number[], [2, img, img, 3]);
const tok = (name: string): { shape: number[]; values: number[] } => gold[name];

const MICRO: Partial<VitConfig> = { imgSize: img, patchSize: patch, embedDim: dim, depth, numHeads: heads, numClasses: 0, posEmbedGrid: null };

/** Compare the kit's normed CLS and patch tokens with a reference [B, 1+R+N, D] token array. */
function checkTokens(vit: Vit, ref: { shape: number[]; values: number[] }, R: number, tol = 2e-5): number {
  const [B, T, D] = ref.shape;
  const out = vitForward(vit, x());
  const cls = out.cls.arraySync() as number[][];
  const pt = out.patchTokens.arraySync() as number[][][];
  let m = 0;
  for (let b = 0; b < B; b++) {
    for (let d = 0; d < D; d++) m = Math.max(m, Math.abs(cls[b][d] - ref.values[(b * T) * D + d]));
    for (let t = 1 + R; t < T; t++) for (let d = 0; d < D; d++) m = Math.max(m, Math.abs(pt[b][t - 1 - R][d] - ref.values[(b * T + t) * D + d]));
  }
  assert.ok(m <= tol, `tokens differ from the PyTorch reference by ${m}`);
  return m;
}

/** Each kit variable (torch layout) equals the file tensor of the same name (identity maps). */
function checkVariablesEqual(vars: Map<string, tf.Variable>, file: string, opts: { select?: string } = {}): void {
  const sd = readStateDict(file, opts).tensors;
  for (const [k, v] of vars) {
    const t = sd.get(k);
    assert.ok(t, `'${k}' not in ${path.basename(file)}`);
    const kt = tf.tidy(() => kitToTorch(k, v));
    assert.deepEqual(kt.shape, t.shape, k);
    assert.equal(maxAbsDiff(kt.dataSync(), t.data), 0, `'${k}' differs`);
    kt.dispose();
  }
}

function roundTrip(map: keyof typeof KEY_MAPS, src: ReadonlyMap<string, SafeTensor>, opts: Record<string, unknown> = {}, skip: RegExp | null = null): void {
  const km = KEY_MAPS[map] as unknown as { toKit: (s: ReadonlyMap<string, SafeTensor>, o: unknown) => { tensors: Map<string, SafeTensor> }; fromKit: (k: ReadonlyMap<string, SafeTensor>, o: unknown) => Map<string, SafeTensor> };
  const back = km.fromKit(km.toKit(src, opts).tensors, opts);
  const want = [...src.keys()].filter((k) => !skip || !skip.test(k));
  assert.deepEqual([...back.keys()].sort(), want.sort(), `${map}: keys after the round trip`);
  for (const k of want) assert.ok(sameTensor(back.get(k)!, src.get(k)!), `${map}: '${k}' changed in the round trip`);
}

describe('io: key maps against PyTorch-written checkpoints', () => {
  let before = 0;
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    assert.equal(tf.memory().numTensors, before, 'tensor leak');
  });

  it('DINOv2 released backbone (registers, LayerScale, mask_token), zip and legacy .pth: forward matches', () => {
    for (const f of ['dinov2_micro_reg2_pretrain.pth', 'dinov2_micro_reg2_pretrain_legacy.pth']) {
      const vit = createVit('vit_small_patch14_dinov2', { ...MICRO, numRegisters: 2 }, { skipInit: true });
      const file = path.join(CK, f);
      const report = loadConverted(file, vit.params, { map: 'dinov2' });
      assert.equal(report.counts.loaded, flattenTree(vit.params).size, keyReportSummary(report));
      assert.ok(report.rows.some((r) => r.target === 'mask_token' && r.status === 'loaded'));
      tf.tidy(() => checkTokens(vit, tok('dinov2'), 2));
      roundTrip('dinov2', readStateDict(file).tensors);
      disposeVit(vit);
    }
  });

  it('DINOv2 training checkpoint: teacher part, chunked blocks, heads on request; exact round trip of the layout', () => {
    const file = path.join(CK, 'dinov2_micro_train.pth');
    const vit = createVit('vit_small_patch14_dinov2', { ...MICRO, numRegisters: 2 }, { skipInit: true });
    const report = loadConverted(file, vit.params, {});
    assert.equal(report.map, 'dinov2');
    assert.ok(report.rows.some((r) => r.sources[0] === 'teacher.backbone.blocks.1.1.mlp.fc2.weight' && r.target === 'blocks.1.mlp.fc2.weight' && r.status === 'loaded' && /chunk 1/.test(r.note ?? '')));
    assert.ok(report.rows.filter((r) => r.status === 'ignored' && /student/.test(r.note ?? '')).length > 0);
    tf.tidy(() => checkTokens(vit, tok('dinov2'), 2));
    // the student part is another network
    loadConverted(file, vit.params, { mapOptions: { part: 'student' } });
    const m = tf.tidy(() => maxAbsDiff(vitForward(vit, x()).cls.dataSync().slice(0, dim), tok('dinov2').values.slice(0, dim)));
    assert.ok(m > 1e-3, 'student weights were not loaded');
    // heads into the kit's DINO head
    const hc = gold.dinov2_head_config;
    const h = createDinoHeads({ inDim: dim, hiddenDim: hc.hidden, bottleneckDim: hc.bottleneck, outDim: hc.out }, { skipInit: true });
    const both = new Map([...flattenTree(vit.params), ...flattenTree(h.params)]);
    const r2 = loadConverted(file, both, { mapOptions: { heads: true } });
    assert.equal(r2.counts.kept, 0);
    for (const [k, ref] of Object.entries<{ shape: number[]; values: number[] }>(gold.dinov2_head)) {
      const v = both.get(`dino_head.${k}`)!;
      const t = tf.tidy(() => kitToTorch(`dino_head.${k}`, v));
      assert.ok(maxAbsDiff(t.dataSync(), ref.values) < 1e-6, k);
      t.dispose();
    }
    // round trip of the teacher half: kit → training layout (prefix + 2 chunks) → kit
    const sd = readStateDict(file).tensors;
    const teacher = new Map([...sd].filter(([k]) => k.startsWith('teacher.')));
    roundTrip('dinov2', teacher, { prefix: 'teacher.backbone.', blockChunks: 2, heads: true });
    disposeVit(vit);
    disposeTree(h.params);
  });

  it('MAE: encoder-only pretrain file, and the visualize file (decoder) into an MAE; decoder refused by an encoder unless encoderOnly', () => {
    const enc: Partial<VitConfig> = { ...MICRO };
    const vit = createVit('mae_vit_base_patch16', enc, { skipInit: true });
    const r = loadConverted(path.join(CK, 'mae_micro_pretrain.pth'), vit.params);
    assert.equal(r.map, 'dinov2'); // plain encoder names: any of the ViT maps fits
    tf.tidy(() => checkTokens(vit, tok('mae'), 0));
    const vis = path.join(CK, 'mae_micro_visualize.pth');
    assert.throws(() => loadConverted(vis, vit.params, { map: 'mae' }), /no place in the model: decoder_embed\.weight \[16,24\]/);
    const r2 = loadConverted(vis, vit.params, { map: 'mae', mapOptions: { encoderOnly: true } });
    assert.ok(r2.counts.ignored >= 10, keyReportSummary(r2));
    const dc = gold.mae_decoder_config;
    const mae = createMae('mae_vit_base_patch16', { encoder: enc, decoder: { embedDim: dc.dim, depth: dc.depth, numHeads: dc.heads }, skipInit: true });
    const r3 = loadConverted(vis, maeVariables(mae));
    assert.equal(r3.map, 'mae');
    tf.tidy(() => checkTokens(mae.encoder, tok('mae'), 0));
    checkVariablesEqual(maeVariables(mae), vis);
    roundTrip('mae', readStateDict(vis).tensors);
    disposeVit(vit);
    disposeMae(mae);
  });

  it('SatMAE group-channel and temporal pre-training checkpoints load into the kit models name for name', () => {
    const g = gold.satmae_group_config;
    const m = createSatMaeGroup('satmae_group_vit_base_patch8', {
      imgSize: img, patchSize: patch, embedDim: g.dim, depth: 1, numHeads: g.heads, channelEmbedDim: g.channel,
      decoder: { embedDim: g.decoder, depth: 1, numHeads: g.decoder_heads }, decoderChannelEmbedDim: g.decoder_channel,
    }, { skipInit: true });
    const file = path.join(CK, 'satmae_group_micro.pth');
    const r = loadConverted(file, satMaeGroupVariables(m));
    assert.equal(r.map, 'mae');
    assert.equal(r.info?.satmaeGroup, true);
    checkVariablesEqual(satMaeGroupVariables(m), file);
    disposeSatMaeGroup(m);
    const t = gold.satmae_temporal_config;
    const mt = createSatMaeTemporal('satmae_temporal_vit_base_patch16', {
      imgSize: img, patchSize: patch, embedDim: t.dim, depth: 1, numHeads: t.heads, timeEmbedDim: t.time,
      decoder: { embedDim: t.decoder, depth: 1, numHeads: t.decoder_heads }, decoderTimeEmbedDim: t.decoder_time,
    }, { skipInit: true });
    const ft = path.join(CK, 'satmae_temporal_micro.pth'); // legacy torch format
    loadConverted(ft, satMaeTemporalVariables(mt), { map: 'mae' });
    checkVariablesEqual(satMaeTemporalVariables(mt), ft);
    disposeSatMaeTemporal(mt);
  });

  it('ExPLoRA encoder-only and full files: fused qkv loaded, split projections checked, LoRA factors returned (unmerge gives W0)', () => {
    const cfg = { ...MICRO, numRegisters: 0 };
    for (const f of ['explora_micro_encoder_only.pth', 'explora_micro_full.pth']) {
      const vit = createVit('vit_small_patch14_dinov2', cfg, { skipInit: true });
      const r = loadConverted(path.join(CK, f), vit.params, { map: 'explora' });
      tf.tidy(() => checkTokens(vit, tok('explora'), 0));
      if (f.includes('full')) {
        assert.equal(r.counts.checked, 12, keyReportSummary(r)); // q/k/v_proj weight + bias, 2 blocks
        assert.ok(r.rows.some((row) => row.status === 'ignored' && /dino_head/.test(row.sources[0])));
        const A = r.extras!.get('blocks.0.attn.qkv.lora_A.q.weight')!;
        const Bm = r.extras!.get('blocks.0.attn.qkv.lora_B.q.weight')!;
        assert.deepEqual([A.shape, Bm.shape], [[gold.explora_rank, dim], [dim, gold.explora_rank]]);
        const w0 = tf.tidy(() => {
          const q = kitToTorch('blocks.0.attn.qkv.weight', vitVariables(vit).get('blocks.0.attn.qkv.weight')!).slice([0, 0], [dim, dim]);
          const delta = tf.matMul(tf.tensor2d(Bm.data as Float32Array, Bm.shape as [number, number]), tf.tensor2d(A.data as Float32Array, A.shape as [number, number])).mul(1 / gold.explora_rank);
          return q.sub(delta).dataSync();
        });
        assert.ok(maxAbsDiff(w0, gold.explora_w0_q.values) < 1e-5, 'qkv − s·B·A is not the pre-merge weight');
        // a file whose split projections disagree with the fused qkv is refused unless told which to trust
        const sd = readStateDict(path.join(CK, f));
        const bad = new Map(sd.tensors);
        const q = bad.get('backbone.blocks.1.attn.q_proj.weight')!;
        bad.set('backbone.blocks.1.attn.q_proj.weight', { ...q, data: (q.data as Float32Array).map((v, i) => (i === 0 ? v + 1 : v)) });
        assert.throws(() => loadConverted({ tensors: bad, metadata: {} }, vit.params, { map: 'explora' }), /q_proj\.weight.*differ from the rows of the fused 'blocks\.1\.attn\.qkv\.weight'/);
        const r3 = loadConverted({ tensors: bad, metadata: {} }, vit.params, { map: 'explora', mapOptions: { qkvFrom: 'proj' } });
        assert.ok(r3.rows.some((row) => /qkvFrom: 'proj'/.test(row.note ?? '')));
        // kit → full-file layout (prefix, split copies) → kit
        const teacher = new Map([...sd.tensors].filter(([k]) => !/lora_|dino_head/.test(k)));
        roundTrip('explora', teacher, { prefix: 'backbone.', writeProj: true });
      }
      disposeVit(vit);
    }
  });

  it('HF Dinov2WithRegisters and Dinov2ForImageClassification safetensors (config.json → kit config)', () => {
    const cfg = gold.hf_dinov2_reg2_config as HfModelConfig;
    const fr = vitConfigFromHf(cfg);
    assert.equal(fr.vit.numRegisters, 2);
    const vit = createVit(fr.vit, {}, { skipInit: true });
    const file = path.join(CK, 'hf_dinov2_reg2_micro.safetensors');
    const r = loadConverted(file, vit.params);
    assert.equal(r.map, 'hf-dinov2');
    assert.equal(r.counts.converted, 2 * depth, keyReportSummary(r)); // one fused qkv weight + bias per layer
    tf.tidy(() => checkTokens(vit, tok('hf_dinov2_reg2'), 2));
    roundTrip('hf-dinov2', readStateDict(file).tensors);
    disposeVit(vit);
    const v2 = createVit(vitConfigFromHf({ ...cfg, model_type: 'dinov2' }).vit, {}, { skipInit: true });
    const fc = path.join(CK, 'hf_dinov2_cls_micro.safetensors');
    const r2 = loadConverted(fc, v2.params);
    assert.ok(r2.rows.some((row) => row.sources[0] === 'classifier.weight' && row.status === 'ignored'));
    tf.tidy(() => checkTokens(v2, tok('hf_dinov2_cls'), 0));
    roundTrip('hf-dinov2', readStateDict(fc).tensors, { prefix: 'dinov2.' }, /^classifier\./);
    disposeVit(v2);
  });

  it('HF ViTMAEForPreTraining safetensors: layer_norm_eps 1e-12 from config.json, encoder forward matches, decoder loaded', () => {
    const fr = vitConfigFromHf(gold.hf_vitmae_config as HfModelConfig);
    assert.equal(fr.vit.normEps, 1e-12);
    const mae = createMae(fr.vit, { decoder: fr.decoder, skipInit: true });
    const file = path.join(CK, 'hf_vitmae_micro.safetensors');
    const r = loadConverted(file, maeVariables(mae));
    assert.equal(r.map, 'hf-vitmae');
    assert.equal(r.counts.kept, 0);
    tf.tidy(() => checkTokens(mae.encoder, tok('hf_vitmae'), 0));
    roundTrip('hf-vitmae', readStateDict(file).tensors);
    disposeMae(mae);
  });

  it('JAX ViT .npz: vit_jax/AugReg names and big_vision scanned + compressed; tokens and logits match', () => {
    for (const [f, key] of [['augreg_micro.npz', 'augreg'], ['bigvision_micro_scanned.npz', 'bigvision_scanned']]) {
      const vit = createVit('vit_base_patch16_224', { ...MICRO, numClasses: gold.jax_head_classes }, { skipInit: true });
      const file = path.join(CK, f);
      const r = loadConverted(file, vit.params);
      assert.equal(r.map, 'big-vision');
      tf.tidy(() => checkTokens(vit, tok(key), 0));
      const lg = tf.tidy(() => vitForward(vit, x()).logits!.dataSync());
      assert.ok(maxAbsDiff(lg, tok(`${key}_logits`).values) < 2e-5, 'logits');
      const src = readStateDict(file).tensors;
      if (key === 'augreg') {
        assert.equal(r.rows.filter((row) => row.status === 'ignored' && /pre_logits/.test(row.sources[0])).length, 2);
        roundTrip('big-vision', src, { numHeads: heads }, /^pre_logits\//);
      } else {
        const km = KEY_MAPS['big-vision'];
        const kit1 = km.toKit(src).tensors;
        const kit2 = km.toKit(km.fromKit(kit1, { numHeads: heads })).tensors;
        for (const [k, t] of kit1) assert.ok(sameTensor(t, kit2.get(k)!), k);
      }
      disposeVit(vit);
    }
  });

  it('a mismatched model is refused naming the source key and both shapes, and nothing is assigned', () => {
    const vit = createVit('vit_small_patch14_dinov2', { ...MICRO, numRegisters: 2, embedDim: 30, numHeads: 3 }, { seed: 3 });
    const snap = new Map([...vitVariables(vit)].map(([k, v]) => [k, v.dataSync().slice()]));
    assert.throws(
      () => loadConverted(path.join(CK, 'dinov2_micro_reg2_pretrain.pth'), vit.params),
      /'cls_token' \[1,1,24\] → kit 'cls_token' has shape \[1,1,24\] but the model needs \[1,1,30\]/,
    );
    const hf = createVit(vitConfigFromHf(gold.hf_dinov2_reg2_config as HfModelConfig).vit, {}, { seed: 1 });
    const hfSnap = new Map([...vitVariables(hf)].map(([k, v]) => [k, v.dataSync().slice()]));
    const sd = readStateDict(path.join(CK, 'hf_dinov2_reg2_micro.safetensors')).tensors;
    const bad = new Map(sd);
    const kk = 'encoder.layer.1.attention.attention.key.weight';
    bad.set(kk, { ...sd.get(kk)!, shape: [20, 24], data: sd.get(kk)!.data.slice(0, 480) });
    assert.throws(
      () => loadConverted({ tensors: bad, metadata: {} }, hf.params),
      /'encoder\.layer\.1\.attention\.attention\.query\.weight' \[24,24\] \+ 'encoder\.layer\.1\.attention\.attention\.key\.weight' \[20,24\] \+ .* → kit 'blocks\.1\.attn\.qkv\.weight' has shape \[68,24\] but the model needs \[72,24\]/,
    );
    const fc1 = 'encoder.layer.0.mlp.fc1.weight';
    const bad2 = new Map(sd);
    bad2.set(fc1, { ...sd.get(fc1)!, shape: [24, 96] });
    assert.throws(() => loadConverted({ tensors: bad2, metadata: {} }, hf.params), /'encoder\.layer\.0\.mlp\.fc1\.weight' \[24,96\] → kit 'blocks\.0\.mlp\.fc1\.weight' has shape \[24,96\] but the model needs \[96,24\]/);
    for (const [k, v] of vitVariables(hf)) assert.equal(maxAbsDiff(v.dataSync(), hfSnap.get(k)!), 0, `'${k}' changed`);
    for (const [k, v] of vitVariables(vit)) assert.equal(maxAbsDiff(v.dataSync(), snap.get(k)!), 0, `'${k}' changed`);
    disposeVit(vit);
    disposeVit(hf);
  });

  it('truncated files are refused naming the tensor (zip .pth, legacy .pth, .npz, safetensors)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-trunc-'));
    try {
      const cut = (f: string, frac: number): string => {
        const buf = fs.readFileSync(path.join(CK, f));
        const out = path.join(dir, `cut-${f}`);
        fs.writeFileSync(out, buf.subarray(0, Math.floor(buf.length * frac)));
        return out;
      };
      const vit = createVit('vit_small_patch14_dinov2', { ...MICRO, numRegisters: 2 }, { skipInit: true });
      assert.throws(() => loadConverted(cut('dinov2_micro_reg2_pretrain.pth', 0.6), vit.params), /tensor '[\w.]+' \[[\d,]*\] F32.*(missing|truncated)/);
      assert.throws(() => loadConverted(cut('dinov2_micro_reg2_pretrain_legacy.pth', 0.6), vit.params), /tensor '[\w.]+' \[[\d,]*\] F32.*truncated/);
      const v2 = createVit('vit_base_patch16_224', { ...MICRO, numClasses: gold.jax_head_classes }, { skipInit: true });
      assert.throws(() => loadConverted(cut('augreg_micro.npz', 0.7), v2.params), /(array '[^']+'|entry '[^']+\.npy').*truncated/);
      const hf = createVit(vitConfigFromHf(gold.hf_dinov2_reg2_config as HfModelConfig).vit, {}, { skipInit: true });
      assert.throws(() => loadConverted(cut('hf_dinov2_reg2_micro.safetensors', 0.7), hf.params), /tensor '[\w.]+'.*truncated/);
      disposeVit(vit);
      disposeVit(v2);
      disposeVit(hf);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an image file through the 8-bit (Pillow) preprocessing reproduces the PyTorch tokens; the float path does not', async () => {
    const vit = createVit(vitConfigFromHf(gold.hf_dinov2_reg2_config as HfModelConfig).vit, {}, { skipInit: true });
    loadConverted(path.join(CK, 'hf_dinov2_reg2_micro.safetensors'), vit.params);
    const img = await loadImage(path.join(__dirname, 'fixtures', 'pil-resample8.png'));
    const ref = tok('hf_dinov2_reg2_image');
    const cls = (x: Img): Float32Array => tf.tidy(() => vitForward(vit, tf.tensor4d(x.data, [1, 16, 16, 3])).cls.dataSync() as Float32Array);
    const exact = cls(preprocess8(img, { resize: 20, crop: 16, interp: 'bicubic', stats: IMAGENET_STATS }));
    const float = cls(normalize(centerCrop(resizeShorter(img, 20, 'bicubic'), 16), IMAGENET_STATS));
    const e8 = maxAbsDiff(exact, ref.values.slice(0, dim));
    const ef = maxAbsDiff(float, ref.values.slice(0, dim));
    if (process.env.VITPEFT_VERBOSE) console.log(`      CLS vs PyTorch: 8-bit path ${e8}, float path ${ef}`);
    assert.ok(e8 < 2e-5, `8-bit path: CLS differs from PyTorch by ${e8}`);
    assert.ok(ef > 100 * e8 && ef > 1e-4, `float path unexpectedly close (${ef} vs ${e8})`);
    disposeVit(vit);
  });

  it('detects the key map from key names and prints a key report', () => {
    assert.equal(detectKeyMap(['embedding/kernel']), 'big-vision');
    assert.equal(detectKeyMap(['embeddings.patch_embeddings.projection.weight', 'encoder.layer.0.layer_scale1.lambda1']), 'hf-dinov2');
    assert.equal(detectKeyMap(['vit.embeddings.patch_embeddings.projection.weight']), 'hf-vitmae');
    assert.equal(detectKeyMap(['backbone.blocks.0.attn.q_proj.weight']), 'explora');
    assert.equal(detectKeyMap(['reg_token', 'blocks.0.attn.qkv.weight']), 'timm');
    const vit = createVit(vitConfigFromHf(gold.hf_dinov2_reg2_config).vit, {}, { skipInit: true });
    const r = loadConverted(path.join(CK, 'hf_dinov2_reg2_micro.safetensors'), vit.params);
    const rows = keyReportRows(r);
    assert.ok(rows.some((row) => row.kit === 'blocks.0.attn.qkv.weight' && row.status === 'converted' && /query/.test(row.source)));
    disposeVit(vit);
  });
});
