/**
 * Bench ExPLoRA setup (what bench/peer_torch.py --config explora builds in PyTorch): the kit's recipe
 * `D-ExPLoRA-[L]-r<rank>` (lib/peft/explora.ts: last block unfrozen, every LayerNorm and the CLS token train, LoRA
 * rank r with α = 1 on the Q and V slices of every other block's qkv) plus the 10-class linear head the bench's
 * cross-entropy loss needs.
 */
import * as tf from '@tensorflow/tfjs';
import { Vit } from '../lib/vit/params';
import { VitHooks } from '../lib/vit/forward';
import { applyExplora } from '../lib/peft/explora';
import { loraHooks } from '../lib/peft/lora';

export interface ExploraBench {
  trainable: Map<string, tf.Variable>;
  hooks: VitHooks;
  dispose(): void;
}

export function exploraBench(vit: Vit, rank: number, seed = 0): ExploraBench {
  const setup = applyExplora({ encoder: vit.params }, `D-ExPLoRA-[L]-r${rank}`, { seed });
  const trainable = new Map(setup.selection.trainable);
  if (vit.params.head) {
    for (const [k, v] of Object.entries(vit.params.head) as Array<[string, tf.Variable]>) {
      v.trainable = true;
      trainable.set(`head.${k}`, v);
    }
  }
  const hooks: VitHooks = setup.lora ? { linear: loraHooks(setup.lora) } : {};
  return { trainable, hooks, dispose: () => setup.dispose() };
}
