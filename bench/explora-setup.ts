/**
 * Bench-only ExPLoRA-style trainable set on a ViT (what bench/peer_torch.py --config explora builds in PyTorch):
 * the last block unfrozen, every LayerNorm, the CLS token and the head train; LoRA rank r (scale 1/r) on the Q and V
 * slices of `blocks.i.attn.qkv` for every other block, through the `linear` hook; everything else is frozen.
 *
 * The LoRA delta here is a benchmark stand-in (the kit's LoRA module lives in lib/peft); it uses the same site and
 * the same arithmetic: y + [s·x·A_q·B_q | 0 | s·x·A_v·B_v].
 */
import * as tf from '@tensorflow/tfjs';
import { Vit, vitVariables } from '../lib/vit/params';
import { ForwardEnv, VitHooks } from '../lib/vit/forward';
import { linear } from '../lib/ops/fast';
import { Rng } from '../lib/rng';

export interface ExploraBench {
  trainable: Map<string, tf.Variable>;
  hooks: VitHooks;
  dispose(): void;
}

export function exploraBench(vit: Vit, rank: number, seed = 0): ExploraBench {
  const { depth, embedDim: D } = vit.config;
  const last = depth - 1;
  const all = vitVariables(vit);
  const trainable = new Map<string, tf.Variable>();
  for (const [path, v] of all) {
    const train =
      path.startsWith(`blocks.${last}.`) || /(^|\.)norm/.test(path) || path.startsWith('head.') || path === 'cls_token';
    if (train) trainable.set(path, v);
  }
  const rng = new Rng(seed);
  const lora = new Map<number, { aq: tf.Variable; bq: tf.Variable; av: tf.Variable; bv: tf.Variable }>();
  const created: tf.Variable[] = [];
  const mk = (path: string, shape: [number, number], zero: boolean): tf.Variable => {
    const n = shape[0] * shape[1];
    const vals = zero ? new Float32Array(n) : Float32Array.from({ length: n }, () => rng.normal(0, 1 / Math.sqrt(shape[0])));
    const v = tf.variable(tf.tensor2d(vals, shape), true, `bench/${path}#${Math.random().toString(36).slice(2, 8)}`);
    trainable.set(path, v);
    created.push(v);
    return v;
  };
  for (let i = 0; i < last; i++) {
    const p = `blocks.${i}.attn.qkv.lora`;
    lora.set(i, {
      aq: mk(`${p}.A_q`, [D, rank], false),
      bq: mk(`${p}.B_q`, [rank, D], true),
      av: mk(`${p}.A_v`, [D, rank], false),
      bv: mk(`${p}.B_v`, [rank, D], true),
    });
  }
  const s = 1 / rank;
  const hooks: VitHooks = {
    linear: (site: string, x: tf.Tensor2D, y: tf.Tensor2D, _env: ForwardEnv): tf.Tensor2D => {
      const m = /^blocks\.(\d+)\.attn\.qkv$/.exec(site);
      const l = m ? lora.get(Number(m[1])) : undefined;
      if (!l) return y;
      const dq = tf.mul(linear(linear(x, l.aq), l.bq), s); // [M, D]
      const dv = tf.mul(linear(linear(x, l.av), l.bv), s); // [M, D]
      return tf.add(y, tf.concat([dq, tf.zerosLike(dq), dv], 1)) as tf.Tensor2D; // [M, 3D]
    },
  };
  return { trainable, hooks, dispose: () => created.forEach((v) => v.dispose()) };
}
