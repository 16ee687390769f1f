/**
 * DINOv2 checkpoints ↔ the kit (facebookresearch/dinov2: `dinov2/models/vision_transformer.py`, `dinov2/hub/
 * backbones.py`, `dinov2/train/ssl_meta_arch.py`, `dinov2/layers/dino_head.py`).
 *
 * - Released backbones (`dinov2_vitl14_pretrain.pth`, `…_reg4_pretrain.pth`): a plain state dict whose names are the
 *   kit's own (`cls_token`, `pos_embed` [1, 1+37², D], `mask_token` [1, D], `register_tokens` [1, R, D],
 *   `patch_embed.proj.*`, `blocks.i.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}`,
 *   `norm.*`): every key loads as is.
 * - Training checkpoints (`model` of the fvcore checkpointer, or `teacher_checkpoint.pth`'s `teacher`): keys under
 *   `student.` / `teacher.` then `backbone.`, `dino_head.`, `ibot_head.`; with `block_chunks > 0` the blocks are
 *   `blocks.<chunk>.<i>` (each chunk is padded with Identity modules, so <i> is the global block index). The map picks
 *   one part (teacher by default, as DINOv2's evaluation does), unchunks the blocks, and maps the heads into the kit's
 *   DINO head names when asked (`heads: true`), else reports them as ignored.
 * `fromKit` writes the released layout, or the training layout with `prefix` and `blockChunks`.
 */
import type { SafeTensor } from '../safetensors';
import { KeyMap, MapBuilder, Mapped } from './common';

export interface Dinov2MapOptions {
  /** Training checkpoints: which network to read (default 'teacher'). */
  part?: 'teacher' | 'student';
  /** Also map `dino_head.*` / `ibot_head.*` (kit DINO head names are the same). Default false: reported as ignored. */
  heads?: boolean;
  /** fromKit: prefix every key (e.g. 'teacher.backbone.') — heads go under the part's prefix without 'backbone.'. */
  prefix?: string;
  /** fromKit: write blocks as `blocks.<chunk>.<i>` with this many chunks (DINOv2 `block_chunks`). */
  blockChunks?: number;
}

const HEAD = /^(dino_head|ibot_head)\./;

/** Strip `module.` and a training checkpoint's part / `backbone.` prefixes; returns the kit-side key or null. */
function stripKey(k: string, part: string): { key: string; head: boolean } | { skip: string } {
  let key = k.startsWith('module.') ? k.slice(7) : k;
  const m = /^(teacher|student)\.(.*)$/.exec(key);
  if (m) {
    if (m[1] !== part) return { skip: `${m[1]} weights (part '${part}' selected)` };
    key = m[2];
  }
  if (key.startsWith('backbone.')) return { key: key.slice(9), head: false };
  return { key, head: HEAD.test(key) };
}

export const dinov2KeyMap: KeyMap<Dinov2MapOptions> = {
  name: 'dinov2',
  reference: 'facebookresearch/dinov2 dinov2/models/vision_transformer.py, dinov2/train/ssl_meta_arch.py',
  toKit(src: ReadonlyMap<string, SafeTensor>, opts: Dinov2MapOptions = {}): Mapped {
    const part = opts.part ?? 'teacher';
    const b = new MapBuilder(src, 'DINOv2 checkpoint');
    let chunked = 0;
    let registers = 0;
    const parts = new Set<string>();
    for (const [k, t] of src) {
      const s = stripKey(k, part);
      if ('skip' in s) {
        b.skip(k, 'ignored', s.skip);
        continue;
      }
      if (k !== s.key) parts.add(k.slice(0, k.length - s.key.length));
      if (s.head) {
        if (opts.heads) b.put(s.key, t, [k], 'loaded', k === s.key ? undefined : 'prefix removed');
        else b.skip(k, 'ignored', 'DINO/iBOT head (pass heads: true to load it into the kit head)');
        continue;
      }
      const c = /^blocks\.(\d+)\.(\d+)\.(.*)$/.exec(s.key);
      if (c) {
        chunked = Math.max(chunked, Number(c[1]) + 1);
        b.put(`blocks.${c[2]}.${c[3]}`, t, [k], 'loaded', `renamed (block chunk ${c[1]} unchunked)`);
        continue;
      }
      if (s.key === 'register_tokens') registers = t.shape[1] ?? 0;
      b.put(s.key, t, [k], 'loaded', k === s.key ? undefined : `prefix '${k.slice(0, k.length - s.key.length)}' removed`);
    }
    return b.finish({ info: { blockChunks: chunked, registers, prefixes: [...parts], part } });
  },
  fromKit(kit: ReadonlyMap<string, SafeTensor>, opts: Dinov2MapOptions = {}): Map<string, SafeTensor> {
    const out = new Map<string, SafeTensor>();
    const depth = Math.max(0, ...[...kit.keys()].map((k) => (/^blocks\.(\d+)\./.exec(k) ? Number(/^blocks\.(\d+)\./.exec(k)![1]) + 1 : 0)));
    const chunks = opts.blockChunks ?? 0;
    const per = chunks > 0 ? Math.ceil(depth / chunks) : 0;
    const prefix = opts.prefix ?? '';
    const headPrefix = prefix.endsWith('backbone.') ? prefix.slice(0, -9) : prefix;
    for (const [k, t] of kit) {
      if (HEAD.test(k)) {
        out.set(headPrefix + k, t);
        continue;
      }
      const m = /^blocks\.(\d+)\.(.*)$/.exec(k);
      const key = m && per > 0 ? `blocks.${Math.floor(Number(m[1]) / per)}.${m[1]}.${m[2]}` : k;
      out.set(prefix + key, t);
    }
    return out;
  },
};
