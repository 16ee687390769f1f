/**
 * Adapters out and back (lib/io/peft.ts) and merged encoders as transformers folders (lib/io/hf-export.ts).
 * Golden: a peft LoRA adapter written in peft's format by test/fixtures/gen_checkpoints.py (rank_pattern /
 * alpha_pattern included) with the forward computed in PyTorch as peft's LoRA Linear does — the kit must import it
 * and reproduce that forward. Round trips: kit adapters → peft files → kit adapters bit for bit, for the HF Dinov2,
 * HF ViTMAE (decoder adapters too) and timm module conventions, including the exact re-expressions (whole-qkv →
 * query/key/value; Q/V slices → one block adapter on timm's fused qkv).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import {
  createVit, disposeVit, vitForward, loadConverted, vitConfigFromHf, HfModelConfig, loadPeftAdapter, savePeftAdapter,
  peftAdapterFiles, createLora, loraHooks, disposeLora, qvTarget, loraVariables, LoraAdapters, createMae, disposeMae,
  saveHfPretrained, readStateDict, sameTensor, mergeLora, disposeTree, VitConfig, maeVariables,
} from '../lib';
import { maxAbsDiff } from './util';

const CK = path.join(__dirname, 'fixtures', 'ckpt');
const gold = JSON.parse(fs.readFileSync(path.join(CK, 'keymaps_golden.json'), 'utf8'));
const x = (): tf.Tensor4D => tf.tensor4d(gold.input_nhwc as number[], [2, 16, 16, 3]);

function sameAdapters(a: LoraAdapters, b: LoraAdapters): void {
  const va = loraVariables(a);
  const vb = loraVariables(b);
  assert.deepEqual([...vb.keys()].sort(), [...va.keys()].sort());
  for (const [k, v] of va) assert.equal(maxAbsDiff(v.dataSync(), vb.get(k)!.dataSync()), 0, k);
  for (const [site, m] of a.modules) {
    const n = b.modules.get(site)!;
    assert.deepEqual([n.kind, n.rank, n.scale, n.dropout, n.slices.map((s) => s.name)], [m.kind, m.rank, m.scale, m.dropout, m.slices.map((s) => s.name)], site);
  }
}

describe('io: peft adapters and transformers export', () => {
  let dir = '';
  let before = 0;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-peft-'));
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    assert.equal(tf.memory().numTensors, before, 'tensor leak');
  });

  it('imports a peft adapter written in peft format (rank_pattern, alpha_pattern) and reproduces the PyTorch forward', () => {
    const vit = createVit(vitConfigFromHf(gold.hf_dinov2_reg2_config as HfModelConfig).vit, {}, { skipInit: true });
    loadConverted(path.join(CK, 'hf_dinov2_reg2_micro.safetensors'), vit.params);
    const { adapters, config } = loadPeftAdapter(path.join(CK, 'hf_dinov2_reg2_peft'), vit.params);
    assert.equal(config.base_model_name_or_path, 'facebook/dinov2-micro');
    const q = adapters.modules.get('blocks.0.attn.qkv')!;
    assert.deepEqual([q.kind, q.rank, q.scale, q.slices.map((s) => s.name)], ['qkv', 4, 2, ['q', 'v']]);
    const p1 = adapters.modules.get('blocks.1.attn.proj')!;
    assert.deepEqual([p1.rank, p1.scale], [2, 0.5]);
    const ref = gold.hf_dinov2_reg2_peft as { shape: number[]; values: number[] };
    const [B, T, D] = ref.shape;
    const { cls, pt } = tf.tidy(() => {
      const o = vitForward(vit, x(), { hooks: { linear: loraHooks(adapters) } });
      return { cls: o.cls.arraySync() as number[][], pt: o.patchTokens.arraySync() as number[][][] };
    });
    let m = 0;
    for (let b = 0; b < B; b++) {
      for (let d = 0; d < D; d++) m = Math.max(m, Math.abs(cls[b][d] - ref.values[b * T * D + d]));
      for (let t = 3; t < T; t++) for (let d = 0; d < D; d++) m = Math.max(m, Math.abs(pt[b][t - 3][d] - ref.values[(b * T + t) * D + d]));
    }
    assert.ok(m < 2e-5, `LoRA forward differs from PyTorch by ${m}`);
    // merged == unmerged after import
    const merged = mergeLora(vit.params, adapters);
    const mm = tf.tidy(() => maxAbsDiff(vitForward({ ...vit, params: merged }, x()).cls.dataSync(), cls.flat()));
    assert.ok(mm < 2e-5, `merged vs unmerged ${mm}`);
    disposeTree(merged);
    disposeLora(adapters);
    disposeVit(vit);
  });

  it('kit → peft → kit is exact for HF Dinov2 names (Q/V slices, proj, fc1, per-target ranks and scales)', () => {
    const cfg: Partial<VitConfig> = { imgSize: 16, patchSize: 4, embedDim: 24, depth: 3, numHeads: 3, posEmbedGrid: null };
    const vit = createVit('vit_small_patch14_dinov2', cfg, { seed: 1 });
    const lora = createLora(vit.params, {
      rank: 4, alpha: 1, init: 'truncNormal',
      targets: [qvTarget([0, 1, 2]), { sites: 'blocks.*.attn.proj', layers: [2], rank: 2, scaling: 0.75 }, { sites: 'mlp.fc1', layers: [1], rank: 3, alpha: 6 }],
    }, { seed: 5 });
    const out = path.join(dir, 'adapter');
    savePeftAdapter(out, lora, { base: 'hf-dinov2', baseModelName: 'facebook/dinov2-small' });
    const cfgJson = JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8'));
    assert.deepEqual([cfgJson.peft_type, cfgJson.r, cfgJson.lora_alpha, cfgJson.bias], ['LORA', 4, 1, 'none']);
    assert.deepEqual(cfgJson.rank_pattern, { 'encoder.layer.1.mlp.fc1': 3, 'encoder.layer.2.attention.output.dense': 2 });
    assert.deepEqual(cfgJson.alpha_pattern, { 'encoder.layer.1.mlp.fc1': 6, 'encoder.layer.2.attention.output.dense': 1.5 });
    const st = readStateDict(path.join(out, 'adapter_model.safetensors')).tensors;
    assert.deepEqual(st.get('base_model.model.encoder.layer.0.attention.attention.value.lora_A.weight')!.shape, [4, 24]);
    assert.deepEqual(st.get('base_model.model.encoder.layer.0.attention.attention.value.lora_B.weight')!.shape, [24, 4]);
    const back = loadPeftAdapter(out, vit.params).adapters;
    sameAdapters(lora, back);
    disposeLora(back);
    disposeLora(lora);
    disposeVit(vit);
  });

  it('exact re-expressions: whole-qkv (PYRA shared-qkv) on HF names, Q/V slices on timm names; same forward after import', () => {
    const cfg: Partial<VitConfig> = { imgSize: 16, patchSize: 4, embedDim: 24, depth: 2, numHeads: 3, numClasses: 0 };
    const vit = createVit('vit_small_patch16_224', cfg, { seed: 2 });
    const cases: Array<[string, Parameters<typeof createLora>[1], 'hf-dinov2' | 'timm']> = [
      ['shared-qkv → query/key/value', { rank: 4, scaling: 1, init: 'truncNormal', targets: [{ sites: 'attn.qkv', kind: 'shared-qkv' }] }, 'hf-dinov2'],
      ['Q/V slices → one block adapter on qkv', { rank: 4, alpha: 2, init: 'truncNormal', targets: [qvTarget()] }, 'timm'],
    ];
    for (const [what, lcfg, base] of cases) {
      const lora = createLora(vit.params, lcfg, { seed: 9 });
      const files = peftAdapterFiles(lora, { base });
      assert.ok(files.notes.length > 0, `${what}: no note about the re-expression`);
      savePeftAdapter(path.join(dir, base), lora, { base });
      const back = loadPeftAdapter(path.join(dir, base), vit.params, { base }).adapters;
      const d = tf.tidy(() => {
        const a = vitForward(vit, x(), { hooks: { linear: loraHooks(lora) } }).prenorm;
        const b = vitForward(vit, x(), { hooks: { linear: loraHooks(back) } }).prenorm;
        return maxAbsDiff(a.dataSync(), b.dataSync());
      });
      assert.ok(d < 1e-5, `${what}: forward differs by ${d}`);
      disposeLora(lora);
      disposeLora(back);
    }
    disposeVit(vit);
  });

  it('ViTMAE names: encoder and decoder adapters out and back; refusals name what peft cannot hold', () => {
    const fr = vitConfigFromHf(gold.hf_vitmae_config as HfModelConfig);
    const mae = createMae(fr.vit, { decoder: fr.decoder, seed: 3 });
    const enc = createLora(mae.encoder.params, { rank: 4, init: 'truncNormal', targets: [qvTarget(), { sites: 'mlp.fc2', rank: 2 }] }, { seed: 1 });
    const dec = createLora(mae.decoder, { rank: 2, init: 'truncNormal', targets: [{ sites: 'decoder_blocks.*.attn.qkv', kind: 'qkv' }] }, { seed: 2 });
    savePeftAdapter(dir, [enc, dec], { base: 'hf-vitmae', prefix: 'vit.' });
    const names = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')).target_modules as string[];
    assert.ok(names.includes('vit.encoder.layer.0.output.dense') && names.includes('decoder.decoder_layers.0.attention.attention.value'), names.join(', '));
    const back = loadPeftAdapter(dir, [mae.encoder.params, mae.decoder]).adapters;
    const all = new Map([...loraVariables(enc), ...loraVariables(dec)]);
    for (const [k, v] of loraVariables(back)) assert.equal(maxAbsDiff(v.dataSync(), all.get(k)!.dataSync()), 0, k);
    assert.equal(loraVariables(back).size, all.size);
    // different dropouts cannot be one lora_dropout
    const d2 = createLora(mae.encoder.params, { rank: 2, dropout: 0.1, targets: [{ sites: 'blocks.0.attn.proj' }] });
    assert.throws(() => peftAdapterFiles([enc, d2], { base: 'hf-vitmae' }), /one lora_dropout for all modules; these adapters use 0, 0\.1/);
    // q and v of one layer with different ranks do not fit the kit's one-rank qkv adapter
    const bad = path.join(dir, 'bad');
    fs.mkdirSync(bad);
    fs.copyFileSync(path.join(dir, 'adapter_model.safetensors'), path.join(bad, 'adapter_model.safetensors'));
    const c = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
    fs.writeFileSync(path.join(bad, 'adapter_config.json'), JSON.stringify({ ...c, use_dora: true }));
    assert.throws(() => loadPeftAdapter(bad, [mae.encoder.params, mae.decoder]), /use_dora/);
    fs.writeFileSync(path.join(bad, 'adapter_config.json'), JSON.stringify({ ...c, rank_pattern: { 'vit.encoder.layer.0.attention.attention.query': 3 } }));
    assert.throws(() => loadPeftAdapter(bad, [mae.encoder.params, mae.decoder]), /'vit\.encoder\.layer\.0\.attention\.attention\.query' has lora_A \[4,24\] and lora_B \[24,4\] but rank 3/);
    [enc, dec, d2, back].forEach(disposeLora);
    disposeMae(mae);
  });

  it('a merged encoder saved as a transformers folder reloads bit for bit (Dinov2 with registers; ViTMAEForPreTraining)', async () => {
    const cfg = gold.hf_dinov2_reg2_config as HfModelConfig;
    const vit = createVit(vitConfigFromHf(cfg).vit, {}, { skipInit: true });
    const src = path.join(CK, 'hf_dinov2_reg2_micro.safetensors');
    loadConverted(src, vit.params);
    saveHfPretrained(path.join(dir, 'dinov2'), vit, 'dinov2');
    const written = readStateDict(path.join(dir, 'dinov2', 'model.safetensors')).tensors;
    const orig = readStateDict(src).tensors;
    assert.deepEqual([...written.keys()].sort(), [...orig.keys()].sort());
    for (const [k, t] of orig) assert.ok(sameTensor(t, written.get(k)!), k);
    const conf = JSON.parse(fs.readFileSync(path.join(dir, 'dinov2', 'config.json'), 'utf8'));
    assert.deepEqual([conf.model_type, conf.num_register_tokens, conf.hidden_size], ['dinov2_with_registers', 2, 24]);
    disposeVit(vit);
    const fr = vitConfigFromHf(gold.hf_vitmae_config as HfModelConfig);
    const mae = createMae(fr.vit, { decoder: fr.decoder, skipInit: true });
    const msrc = path.join(CK, 'hf_vitmae_micro.safetensors');
    loadConverted(msrc, maeVariables(mae));
    saveHfPretrained(path.join(dir, 'mae'), mae, 'vit_mae');
    const mw = readStateDict(path.join(dir, 'mae', 'model.safetensors')).tensors;
    for (const [k, t] of readStateDict(msrc).tensors) assert.ok(sameTensor(t, mw.get(k)!), k);
    assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'mae', 'config.json'), 'utf8')).architectures[0], 'ViTMAEForPreTraining');
    disposeMae(mae);
  });
});
