/**
 * Issue 19 item 6 (the parts outside lib/train): ViT config validation (normEps, layerScale, strings where numbers
 * belong reported as strings, never coerced), NaN/Inf inside a loaded checkpoint, and errors after disposal that name
 * what was disposed.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { vitConfig } from '../lib/vit/config';
import { createVit, disposeVit, vitVariables } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { createLora, disposeLora, loraHooks, mergeLora, qvTarget } from '../lib/peft/lora';
import { saveCheckpoint, loadCheckpoint } from '../lib/io/checkpoint';
import { readSafetensors, writeSafetensors, TensorToWrite } from '../lib/io/safetensors';
import { createMae, disposeMae, maeForward } from '../lib/mae/mae';
import { Rng } from '../lib/rng';
import { fmtValue } from '../lib/check';
import { noLeak } from './util';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-rconfig-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('ViT config validation (issue 19.6)', () => {
  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['normEps 0', { normEps: 0 }, /VitConfig\.normEps: expected a finite number > 0 .*, got 0/],
    ['normEps negative', { normEps: -1e-6 }, /VitConfig\.normEps: .*got -0\.000001/],
    ['normEps NaN', { normEps: NaN }, /VitConfig\.normEps: .*got NaN/],
    ['normEps Infinity', { normEps: Infinity }, /VitConfig\.normEps: .*got Infinity/],
    ['normEps as a string', { normEps: '1e-6' }, /VitConfig\.normEps: .*got '1e-6' \(a string\)/],
    ['layerScale NaN', { layerScale: NaN }, /VitConfig\.layerScale: expected a finite number ≥ 0 \(the LayerScale init value\) or null, got NaN/],
    ['layerScale negative', { layerScale: -1 }, /VitConfig\.layerScale: .*got -1/],
    ['layerScale as a string', { layerScale: '1e-5' }, /VitConfig\.layerScale: .*got '1e-5' \(a string\)/],
    ['imgSize as a string', { imgSize: '224' }, /VitConfig\.imgSize: expected a positive integer or a \[height, width\] pair of them, got '224' \(a string\)/],
    ['imgSize one-element array', { imgSize: [224] }, /VitConfig\.imgSize: .*got \[224\]/],
    ['imgSize with a string side', { imgSize: [224, '224'] }, /VitConfig\.imgSize: .*got \[224,"224"\]/],
    ['mlpRatio as a string', { mlpRatio: '4' }, /VitConfig\.mlpRatio: expected a finite number > 0, got '4' \(a string\)/],
    ['mlpRatio Infinity', { mlpRatio: Infinity }, /VitConfig\.mlpRatio: .*got Infinity/],
    ['qkvBias as a string', { qkvBias: 'false' }, /VitConfig\.qkvBias: expected true or false, got 'false' \(a string\)/],
    ['maskToken as a number', { maskToken: 1 }, /VitConfig\.maskToken: expected true or false, got 1/],
    ['dropPathRate as a string', { dropPathRate: '0.1' }, /VitConfig\.dropPathRate: expected a number in \[0, 1\), got '0\.1' \(a string\)/],
    ['dropPathRate NaN', { dropPathRate: NaN }, /VitConfig\.dropPathRate: .*got NaN/],
    ['numClasses as a string', { numClasses: '10' }, /VitConfig\.numClasses: expected an integer ≥ 0, got '10' \(a string\)/],
    ['numRegisters fractional', { numRegisters: 1.5 }, /VitConfig\.numRegisters: expected an integer ≥ 0, got 1\.5/],
    ['depth as a string', { depth: '12' }, /VitConfig\.depth: expected a positive integer, got '12' \(a string\)/],
    ['embedDim null', { embedDim: null }, /VitConfig\.embedDim: expected a positive integer, got null/],
    ['posEmbedGrid one-element array', { posEmbedGrid: [37] }, /VitConfig\.posEmbedGrid: .*or null, got \[37\]/],
    ['pool misspelt', { pool: 'mean' }, /VitConfig\.pool: expected one of 'cls', 'avg', got 'mean' \(a string\)/],
  ];
  for (const [what, ov, re] of bad) {
    it(`${what} is refused naming the key and the value as given`, () => {
      assert.throws(() => vitConfig('vit_small_patch16_224', ov as never), re);
    });
  }

  it('a full config object missing a field is refused naming it; an override given as undefined means "not given"', () => {
    const { normEps: _drop, ...partial } = vitConfig('vit_tiny_patch16_224');
    assert.throws(() => vitConfig(partial as never), /VitConfig\.normEps: .*got undefined/);
    assert.equal(vitConfig('vit_tiny_patch16_224', { imgSize: undefined, numClasses: 3 }).imgSize, 224);
  });

  it('fmtValue shows strings as strings and non-finite numbers as such', () => {
    assert.equal(fmtValue('224'), "'224' (a string)");
    assert.equal(fmtValue([1, NaN, '2']), '[1,"NaN","2"]');
    assert.equal(fmtValue(undefined), 'undefined');
  });
});

describe('non-finite values in a loaded checkpoint (issue 19.6)', () => {
  const cfg = { imgSize: 32, depth: 1, embedDim: 16, numHeads: 2, numClasses: 4 } as const;

  it('a checkpoint holding NaN or Inf is refused naming the tensor, count and first index; the model is untouched', async () => {
    const a = createVit('vit_tiny_patch16_224', cfg, { seed: 1 });
    const file = path.join(tmp, 'good.safetensors');
    saveCheckpoint(file, { params: a.params });
    const f = readSafetensors(file);
    const poison = (key: string, at: number[], v: number): string => {
      const out = new Map<string, TensorToWrite>();
      for (const [k, t] of f.tensors) {
        const data = Float32Array.from(t.data as Float32Array);
        if (k === key) {
          const flat = at.reduce((acc, i, d) => acc * t.shape[d] + i, 0);
          data[flat] = v;
          data[flat + 1] = v;
        }
        out.set(k, { dtype: 'F32', shape: t.shape, data });
      }
      const p = path.join(tmp, `bad-${key}.safetensors`);
      writeSafetensors(p, out, f.metadata);
      return p;
    };
    const b = createVit('vit_tiny_patch16_224', cfg, { seed: 2 });
    const before = new Map([...vitVariables(b)].map(([k, v]) => [k, v.dataSync().slice()]));
    const nan = poison('blocks.0.attn.qkv.weight', [5, 3], NaN);
    assert.throws(() => loadCheckpoint(nan, { params: b.params }), /bad-blocks\.0\.attn\.qkv\.weight\.safetensors: tensor 'blocks\.0\.attn\.qkv\.weight' \[48,16\] holds 2 non-finite values \(first: NaN at \[5,3\]\); refusing to load/);
    const inf = poison('pos_embed', [0, 2, 7], -Infinity);
    assert.throws(() => loadCheckpoint(inf, { params: b.params }), /tensor 'pos_embed' \[1,5,16\] holds 2 non-finite values \(first: -Infinity at \[0,2,7\]\)/);
    for (const [k, v] of vitVariables(b)) assert.deepEqual(v.dataSync(), before.get(k), `${k} was modified by a refused load`);
    loadCheckpoint(nan, { params: b.params }, { allowNonFinite: true });
    assert.ok(Number.isNaN(vitVariables(b).get('blocks.0.attn.qkv.weight')!.dataSync()[3 * 48 + 5]), 'allowNonFinite loads it as asked');
    [a, b].forEach(disposeVit);
  });
});

describe('errors after disposal name what was disposed (issue 19.6)', () => {
  const cfg = { imgSize: 32, depth: 1, embedDim: 16, numHeads: 2, numClasses: 4 } as const;

  it('ViT forward, save and load of a disposed ViT; a disposed input', async () => {
    await noLeak(() => {
      const vit = createVit('vit_tiny_patch16_224', cfg);
      const file = path.join(tmp, 'live.safetensors');
      saveCheckpoint(file, { params: vit.params });
      const x = tf.zeros([1, 32, 32, 3]) as tf.Tensor4D;
      disposeVit(vit);
      assert.throws(() => tf.tidy(() => vitForward(vit, x).logits!), /ViT forward: parameter 'cls_token' was disposed \(disposeVit was called on this ViT/);
      assert.throws(() => saveCheckpoint(path.join(tmp, 'dead.safetensors'), { params: vit.params }), /saveCheckpoint: parameter 'cls_token' was disposed/);
      assert.throws(() => loadCheckpoint(file, { params: vit.params }), /loadCheckpoint\(.*live\.safetensors\): parameter 'cls_token' was disposed \(the target was disposed; assigning would silently revive it\)/);
      assert.ok(vitVariables(vit).get('cls_token')!.isDisposed, 'the refused load did not revive it');
      x.dispose();
      const other = createVit('vit_tiny_patch16_224', cfg);
      assert.throws(() => tf.tidy(() => vitForward(other, x).logits!), /ViT input: the images tensor \[1,32,32,3\] was disposed before the forward/);
      disposeVit(other);
    });
  });

  it('LoRA forward and merge with disposed adapters name the site and matrix; MAE forward after disposeMae', () => {
    const vit = createVit('vit_tiny_patch16_224', cfg);
    const lora = createLora(vit.params, { rank: 2, targets: [qvTarget()] });
    disposeLora(lora);
    const x = tf.zeros([1, 32, 32, 3]) as tf.Tensor4D;
    assert.throws(() => tf.tidy(() => vitForward(vit, x, { hooks: { linear: loraHooks(lora) } }).logits!), /LoRA forward: the A matrix of the adapter at 'blocks\.0\.attn\.qkv' \(slice at column 0\) was disposed \(disposeLora/);
    assert.throws(() => mergeLora(vit.params, lora), /LoRA merge: the A matrix of the adapter at 'blocks\.0\.attn\.qkv'/);
    disposeVit(vit);
    const mae = createMae('mae_vit_base_patch16', { encoder: { imgSize: 32, depth: 1, embedDim: 16, numHeads: 2 }, decoder: { embedDim: 8, depth: 1, numHeads: 1 } } as never);
    disposeMae(mae);
    assert.throws(() => tf.tidy(() => maeForward(mae, x, { rng: new Rng(0) }).loss), /maeForward: parameter '.*' was disposed \(disposeMae was called on this model\)/);
    x.dispose();
  });
});
