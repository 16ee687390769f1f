/**
 * Google's JAX ViT checkpoints (`.npz`: vit_jax `ViT-B_16.npz`, AugReg `B_16-i21k-300ep-…npz`, big_vision
 * `params/…`) ↔ the kit, as timm's converter reads them (huggingface/pytorch-image-models
 * `timm/models/vision_transformer.py` `_load_weights`):
 *
 * | npz (flax layout) | kit (torch layout) |
 * |---|---|
 * | `embedding/kernel` [p, p, C, D] (HWIO) | `patch_embed.proj.weight` [D, C, p, p] (permute 3, 2, 0, 1) |
 * | `cls` [1, 1, D]; `Transformer/posembed_input/pos_embedding` (big_vision: `pos_embedding`) [1, 1+N, D] | `cls_token`, `pos_embed` |
 * | `…/encoderblock_i/LayerNorm_0` (big_vision `LayerNorm_0`) `scale`/`bias` | `blocks.i.norm1.weight/bias` |
 * | `…/MultiHeadDotProductAttention_1` (bv `_0`) `{query,key,value}/kernel` [D, H, dh], `bias` [H, dh] | `blocks.i.attn.qkv` [3D, D] (each kernel flattened to [D, H·dh], transposed, Q K V stacked) |
 * | `…/out/kernel` [H, dh, D], `out/bias` | `blocks.i.attn.proj.weight` [D, H·dh] |
 * | `…/LayerNorm_2` (bv `LayerNorm_1`) | `blocks.i.norm2` |
 * | `…/MlpBlock_3` (bv `MlpBlock_0`) `Dense_0`, `Dense_1` kernels [in, out] | `blocks.i.mlp.fc1`, `fc2` [out, in] |
 * | `Transformer/encoder_norm` | `norm` |
 * | `head/kernel` [D, K], `head/bias` | `head.weight` [K, D], `head.bias` |
 *
 * Prefixes `opt/target/` (old vit_jax) and `params/` (big_vision) are detected as timm does, and the scanned layout
 * (`Transformer/encoderblock/…` with a leading layer axis) is unstacked. `pre_logits/*` (the in21k representation
 * layer) is reported as ignored, as timm drops it. Models without a class token (big_vision 'gap' / 'map' heads) are
 * refused. `fromKit` writes the vit_jax / AugReg naming (unprefixed, `encoderblock_i`).
 */
import type { SafeTensor } from '../safetensors';
import { KeyMap, MapBuilder, Mapped, concat0, index0, permuteT, reshapeT, rows0 } from './common';

export interface BigVisionMapOptions {
  /** Number of attention heads (needed by fromKit to reshape kernels to [D, H, dh]). */
  numHeads?: number;
}

export const bigVisionKeyMap: KeyMap<BigVisionMapOptions> = {
  name: 'big-vision',
  reference: 'huggingface/pytorch-image-models timm/models/vision_transformer.py _load_weights',
  toKit(src: ReadonlyMap<string, SafeTensor>): Mapped {
    const b = new MapBuilder(src, 'JAX ViT checkpoint (.npz)');
    let prefix = '';
    let bv = false;
    if (src.has('opt/target/embedding/kernel')) prefix = 'opt/target/';
    else if (src.has('params/embedding/kernel')) [prefix, bv] = ['params/', true];
    else if (src.has('params/img/embedding/kernel')) [prefix, bv] = ['params/img/', true];
    const key = (k: string): string => prefix + k;
    if (!src.has(key('embedding/kernel'))) throw new Error(`JAX ViT checkpoint: no '${key('embedding/kernel')}' (not a ViT .npz, or a hybrid ResNet ViT)`);
    if (!src.has(key('cls'))) throw new Error(`JAX ViT checkpoint: no '${key('cls')}' — a model without a class token ('gap' / 'map' pooling) has no kit equivalent`);
    if ([...src.keys()].some((k) => k.includes('MAPHead_'))) throw new Error('JAX ViT checkpoint: attention-pooling head (MAPHead) has no kit equivalent');
    const [mha, mlp, ln2] = bv ? ['MultiHeadDotProductAttention_0', 'MlpBlock_0', 'LayerNorm_1'] : ['MultiHeadDotProductAttention_1', 'MlpBlock_3', 'LayerNorm_2'];
    const scanned = src.has(key('Transformer/encoderblock/LayerNorm_0/scale'));
    const depth = scanned
      ? src.get(key('Transformer/encoderblock/LayerNorm_0/scale'))!.shape[0]
      : [...src.keys()].filter((k) => new RegExp(`^${prefix.replace(/\//g, '\\/')}Transformer/encoderblock_\\d+/LayerNorm_0/scale$`).test(k)).length;
    const ek = key('embedding/kernel');
    b.put('patch_embed.proj.weight', permuteT(b.get(ek), [3, 2, 0, 1], ek), [ek], 'converted', 'HWIO → OIHW');
    b.put('patch_embed.proj.bias', b.get(key('embedding/bias')), [key('embedding/bias')], 'loaded', 'renamed');
    b.put('cls_token', b.get(key('cls')), [key('cls')], 'loaded', 'renamed');
    const pk = key(bv ? 'pos_embedding' : 'Transformer/posembed_input/pos_embedding');
    b.put('pos_embed', b.get(pk), [pk], 'loaded', 'renamed');
    for (let i = 0; i < depth; i++) {
      const bp = scanned ? key('Transformer/encoderblock/') : key(`Transformer/encoderblock_${i}/`);
      const at = (k: string): SafeTensor => (scanned ? index0(b.get(bp + k), i) : b.get(bp + k));
      const src1 = (k: string): string => bp + k;
      const kp = `blocks.${i}`;
      const note = scanned ? `layer ${i} of the scanned stack` : 'renamed';
      const ln = (kit: string, jax: string): void => {
        b.put(`${kp}.${kit}.weight`, at(`${jax}/scale`), [src1(`${jax}/scale`)], scanned ? 'converted' : 'loaded', note);
        b.put(`${kp}.${kit}.bias`, at(`${jax}/bias`), [src1(`${jax}/bias`)], scanned ? 'converted' : 'loaded', note);
      };
      ln('norm1', 'LayerNorm_0');
      const qkvK = ['query', 'key', 'value'].map((n) => `${mha}/${n}/kernel`);
      const qkvB = ['query', 'key', 'value'].map((n) => `${mha}/${n}/bias`);
      const kern = qkvK.map((k) => {
        const t = at(k); // [D, H, dh] → [D, H·dh] → [H·dh, D]
        return permuteT(reshapeT(t, [t.shape[0], t.shape[1] * t.shape[2]], k), [1, 0], k);
      });
      b.put(`${kp}.attn.qkv.weight`, concat0(kern, `${kp}.attn.qkv.weight`), qkvK.map(src1), 'converted', 'query/key/value kernels [D, H, dh] → rows of qkv [3D, D]');
      const bias = qkvB.map((k) => {
        const t = at(k);
        return reshapeT(t, [t.shape[0] * t.shape[1]], k);
      });
      b.put(`${kp}.attn.qkv.bias`, concat0(bias, `${kp}.attn.qkv.bias`), qkvB.map(src1), 'converted', 'query/key/value biases [H, dh] stacked');
      const ok = `${mha}/out/kernel`;
      const o = at(ok); // [H, dh, D] → [H·dh, D] → [D, H·dh]
      b.put(`${kp}.attn.proj.weight`, permuteT(reshapeT(o, [o.shape[0] * o.shape[1], o.shape[2]], ok), [1, 0], ok), [src1(ok)], 'converted', 'out kernel [H, dh, D] → [D, H·dh]');
      b.put(`${kp}.attn.proj.bias`, at(`${mha}/out/bias`), [src1(`${mha}/out/bias`)], scanned ? 'converted' : 'loaded', note);
      ln('norm2', ln2);
      for (const [r, fc] of [
        [0, 'fc1'],
        [1, 'fc2'],
      ] as const) {
        const dk = `${mlp}/Dense_${r}/kernel`;
        b.put(`${kp}.mlp.${fc}.weight`, permuteT(at(dk), [1, 0], dk), [src1(dk)], 'converted', 'kernel [in, out] → [out, in]');
        b.put(`${kp}.mlp.${fc}.bias`, at(`${mlp}/Dense_${r}/bias`), [src1(`${mlp}/Dense_${r}/bias`)], scanned ? 'converted' : 'loaded', note);
      }
    }
    // scanned stacks were consumed layer by layer above
    if (scanned) for (const k of src.keys()) if (k.startsWith(key('Transformer/encoderblock/'))) b.used.add(k);
    b.put('norm.weight', b.get(key('Transformer/encoder_norm/scale')), [key('Transformer/encoder_norm/scale')], 'loaded', 'renamed');
    b.put('norm.bias', b.get(key('Transformer/encoder_norm/bias')), [key('Transformer/encoder_norm/bias')], 'loaded', 'renamed');
    if (src.has(key('head/kernel'))) {
      const hk = key('head/kernel');
      b.put('head.weight', permuteT(b.get(hk), [1, 0], hk), [hk], 'converted', 'kernel [D, K] → [K, D]');
      b.put('head.bias', b.get(key('head/bias')), [key('head/bias')], 'loaded', 'renamed');
    }
    for (const k of src.keys()) {
      if (k.startsWith(key('pre_logits/'))) b.skip(k, 'ignored', 'in21k representation layer (timm drops it)');
      else if (!k.startsWith(prefix) && prefix) b.skip(k, 'ignored', `outside '${prefix}' (optimizer state)`);
    }
    return b.finish({ info: { prefix, bigVision: bv, scanned, depth } });
  },
  fromKit(kit: ReadonlyMap<string, SafeTensor>, opts: BigVisionMapOptions = {}): Map<string, SafeTensor> {
    const H = opts.numHeads;
    if (!H) throw new Error('big-vision fromKit: numHeads is needed to reshape attention kernels to [D, H, dh]');
    const out = new Map<string, SafeTensor>();
    const get = (k: string): SafeTensor => {
      const t = kit.get(k);
      if (!t) throw new Error(`big-vision fromKit: kit tensor '${k}' missing`);
      return t;
    };
    const w = get('patch_embed.proj.weight');
    out.set('embedding/kernel', permuteT(w, [2, 3, 1, 0], 'patch_embed.proj.weight'));
    out.set('embedding/bias', get('patch_embed.proj.bias'));
    out.set('cls', get('cls_token'));
    out.set('Transformer/posembed_input/pos_embedding', get('pos_embed'));
    for (let i = 0; kit.has(`blocks.${i}.norm1.weight`); i++) {
      const kp = `blocks.${i}`;
      const bp = `Transformer/encoderblock_${i}/`;
      const mha = `${bp}MultiHeadDotProductAttention_1/`;
      out.set(`${bp}LayerNorm_0/scale`, get(`${kp}.norm1.weight`));
      out.set(`${bp}LayerNorm_0/bias`, get(`${kp}.norm1.bias`));
      const qkv = get(`${kp}.attn.qkv.weight`); // [3D, D]
      const D = qkv.shape[1];
      const dh = D / H;
      ['query', 'key', 'value'].forEach((n, j) => {
        const r = rows0(qkv, j * D, D); // [H·dh, D] → [D, H·dh] → [D, H, dh]
        out.set(`${mha}${n}/kernel`, reshapeT(permuteT(r, [1, 0], n), [D, H, dh], n));
        out.set(`${mha}${n}/bias`, reshapeT(rows0(get(`${kp}.attn.qkv.bias`), j * D, D), [H, dh], n));
      });
      const p = get(`${kp}.attn.proj.weight`); // [D, H·dh] → [H·dh, D] → [H, dh, D]
      out.set(`${mha}out/kernel`, reshapeT(permuteT(p, [1, 0], 'proj'), [H, dh, D], 'proj'));
      out.set(`${mha}out/bias`, get(`${kp}.attn.proj.bias`));
      out.set(`${bp}LayerNorm_2/scale`, get(`${kp}.norm2.weight`));
      out.set(`${bp}LayerNorm_2/bias`, get(`${kp}.norm2.bias`));
      for (const [r, fc] of [
        [0, 'fc1'],
        [1, 'fc2'],
      ] as const) {
        out.set(`${bp}MlpBlock_3/Dense_${r}/kernel`, permuteT(get(`${kp}.mlp.${fc}.weight`), [1, 0], fc));
        out.set(`${bp}MlpBlock_3/Dense_${r}/bias`, get(`${kp}.mlp.${fc}.bias`));
      }
    }
    out.set('Transformer/encoder_norm/scale', get('norm.weight'));
    out.set('Transformer/encoder_norm/bias', get('norm.bias'));
    if (kit.has('head.weight')) {
      out.set('head/kernel', permuteT(get('head.weight'), [1, 0], 'head'));
      out.set('head/bias', get('head.bias'));
    }
    return out;
  },
};
