/**
 * Patch-token features for the segmentation head from the kit's backbones: the raw (pre-final-norm) outputs of the
 * last n blocks, CLS and registers removed, one [B, L, D] tensor per layer (oldest first), plus the patch grid.
 *
 * - `vitSegTokens`: a plain / DINOv2 / MAE-fine-tune ViT (RGB SpaceNet with the fMoW-RGB backbone).
 * - `groupSegTokens`: the SatMAE group-channel classifier (multispectral): its G·L tokens are group-major, so each cell's
 *   feature is the mean of its G group tokens ([B, G, L, D] → [B, L, D]).
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../rng';
import { Vit } from '../vit/params';
import { VitHooks, makeEnv, prepareTokens, runBlocks, splitTokens, checkImages } from '../vit/forward';
import { dropPathRates } from '../vit/config';
import { blockStack } from '../vit/block-stack';
import { SatMaeGroupVit, satMaeGroupVitTokens } from '../mae/satmae-group-vit';
import { satMaeGroupGrid } from '../mae/satmae-group';

export interface SegTokenOptions {
  /** How many of the last block outputs to return (default 1). */
  layers?: number;
  training?: boolean;
  rng?: Rng | null;
  hooks?: VitHooks;
}

export interface SegTokens {
  /** One [B, L, D] tensor per layer, oldest first. */
  tokens: tf.Tensor3D[];
  /** Patch grid [gh, gw] (L = gh·gw, row-major). */
  grid: [number, number];
}

/** Patch tokens of the last `layers` blocks of a ViT. images [B, H, W, C]. */
export function vitSegTokens(vit: Vit, images: tf.Tensor4D, opts: SegTokenOptions = {}): SegTokens {
  const n = opts.layers ?? 1;
  const grid = checkImages(vit.config, images);
  const env = makeEnv({ training: opts.training, rng: opts.rng ?? null, hooks: opts.hooks });
  const { layers } = runBlocks(vit, prepareTokens(vit, images, env), env, { returnLayers: n });
  return { tokens: layers.map((l) => splitTokens(l, vit.config.numRegisters).patchTokens), grid };
}

/** Per-cell tokens (mean over the G groups) of the last `layers` blocks of the group-channel classifier. */
export function groupSegTokens(m: SatMaeGroupVit, images: tf.Tensor4D, opts: SegTokenOptions = {}): SegTokens {
  const n = opts.layers ?? 1;
  const c = m.config;
  if (!Number.isInteger(n) || n < 1 || n > c.depth) throw new Error(`groupSegTokens: layers must be an integer in [1, ${c.depth}], got ${n}`);
  const env = makeEnv({ training: opts.training, rng: opts.rng ?? null, hooks: opts.hooks });
  const { gh, gw, L, G } = satMaeGroupGrid(m);
  const rates = dropPathRates({ depth: c.depth, dropPathRate: c.dropPathRate, dropPathMode: 'linear' });
  const out: tf.Tensor3D[] = [];
  blockStack(m.params.blocks, satMaeGroupVitTokens(m, images, env), { prefix: 'blocks', numHeads: c.numHeads, eps: c.normEps, dropPath: rates }, env, (state, i) => {
    if (i >= c.depth - n) {
      const B = state.x.shape[0];
      const D = state.x.shape[2];
      const cells = state.x.slice([0, 1, 0], [B, G * L, D]).reshape([B, G, L, D]); // drop CLS; group-major → [B, G, L, D]
      out.push(tf.mean(cells, 1) as tf.Tensor3D); // [B, L, D]
    }
  });
  return { tokens: out, grid: [gh, gw] };
}
