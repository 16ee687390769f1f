/**
 * Memory and compute of one training step from shapes alone — nothing is allocated — so batch, gradient accumulation
 * and activation recomputation can be chosen before a run starts (`planRun` in recipes/plan.ts does this for a recipe).
 *
 * What a step of the kit holds at its peak (fp32, 4 bytes an element):
 *   parameters     every variable of the model and its adapters (frozen ones too)
 *   optimizer      AdamW: two moments per trainable element (SGD with momentum: one)
 *   inputs         one micro-batch of images
 * and then the larger of two phases (the step's first tidy ends between them):
 *   backward       the gradients of the trainable set (with accumulation > 1 also the running sum across
 *                  micro-batches) + the activations of one micro-batch:
 *                  what the forward keeps for the backward. tfjs keeps every tensor a tidy made
 *                  until the tidy ends, so it is the sum of the forward's intermediate tensors: per block and image
 *                  `ACT.tokenD`·N·D + `ACT.scores`·heads·N² + `ACT.tokenMlp`·N·mlp floats (N = the block's tokens, after
 *                  ToMe's merge for the MLP part), plus the backward's working set (`ACT.backward` blocks' worth).
 *                  With recomputation (lib/vit/checkpoint.ts) only each block's input [N, D] is kept, plus one block's
 *                  forward and backward while it is recomputed (`ACT.recomputed`);
 *   update         the optimizer update: `UPDATE_COPIES` copies of the trainable set (gradients, clipped copies, new
 *                  moments and the update's temporaries). For full fine-tuning at small batches this phase sets the
 *                  peak, and recomputation cannot lower it.
 * The coefficients were counted from the kit's forward on the wasm backend (bench/heap-peak.ts measures the malloc
 * high-water mark of a step); test/plan.test.ts holds the estimate within 25 % of that measurement over a grid
 * (full / LoRA / ExPLoRA, with and without recomputation, ToMe, MAE, accumulation). Other backends allocate
 * differently (WebGPU buffers are pooled, TensorFlow frees intermediates eagerly), so on a GPU read it as an estimate
 * of the same order, not a bound.
 *
 * FLOPs: 2 × MACs (lib/tome/flops.ts: linear layers and attention matmuls, after merges); the backward costs one
 * forward for the activation gradients plus the weight gradients of the trainable matrices (all of them for full
 * fine-tuning: ≈ 2 forwards, the usual 3× rule; ≈ 1 forward when only adapters train); recomputation adds one forward.
 */
import { checkKeys, checkNumber, checkOneOf } from './check';
import { VitConfig, gridHW, imgHW, mlpHidden } from './vit/config';
import { RSchedule, tokenCounts } from './tome/schedule';
import { vitMacs } from './tome/flops';

/**
 * Floats the forward keeps per image, by shape (fitted to the kit's forward on wasm, bench/heap-peak.ts): per block
 * `tokenD`·N·D + `scores`·heads·N² + `tokenMlp`·N·mlp, per LoRA-adapted linear site `loraSite`·N·D, per merging block
 * (ToMe / PYRA) `merge`·N·D, for the MAE decoder's prediction and normalised-pixel loss `maePred`·patches·p²C, and the
 * backward's working set, `backward` times the largest block. With recomputation the forward keeps each block's
 * input N·D and, while one block is re-run and differentiated, `recomputed` times that block.
 */
export const ACT = Object.freeze({ tokenD: 14, scores: 3, tokenMlp: 4, loraSite: 4.6, merge: 7.5, maePred: 10, backward: 1.5, recomputed: 1.5 });

/**
 * Copies of the trainable set the optimizer update holds at once (the gradients, their clipped copies and the update's
 * temporaries before the tidy that applies it ends): measured 12 for AdamW on wasm; SGD with momentum is taken as half
 * (not measured).
 */
export const UPDATE_COPIES = Object.freeze({ adamw: 12, sgd: 6 });

/** MAE decoder shape (what `MaeConfig.decoder` holds). */
export interface DecoderShape {
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio?: number;
}

export interface StepPlanInput {
  /** The (encoder) ViT configuration. */
  encoder: VitConfig;
  /** MAE: the decoder (the encoder then sees the visible tokens only). */
  decoder?: DecoderShape | null;
  /** MAE mask ratio (default 0.75 with a decoder). */
  maskRatio?: number;
  /** Element counts of every variable (model + adapters), or their total. */
  params: number | readonly number[];
  /** Element counts of the trainable variables, or their total. */
  trainable: number | readonly number[];
  /** Trainable elements that are weight matrices of linear layers of the encoder (for FLOPs; default: all of them when
   *  the whole encoder trains, else the trainable count relative to the encoder's). */
  optimizer?: 'adamw' | 'sgd';
  /** Images per optimizer step (the effective batch). */
  batch: number;
  /** Linear sites of the encoder (and decoder) that carry a LoRA branch (e.g. Q and V of 11 blocks: 22). */
  loraSites?: number;
  /** Micro-batches per optimizer step (batch / accumulate images go through the model at a time). */
  accumulate?: number;
  /** Activation recomputation per block. */
  recompute?: boolean;
  /** ToMe / PYRA merge schedule (tokens merged per block). */
  tome?: RSchedule | null;
}

export interface StepPlan {
  /** Bytes by part; `peakBytes` is their sum. */
  bytes: { params: number; optimizer: number; inputs: number; gradients: number; activations: number; update: number };
  /** Which phase sets the peak: the forward/backward (gradients + activations) or the optimizer update. */
  peakPhase: 'backward' | 'update';
  peakBytes: number;
  /** Images through the model at a time (batch / accumulate). */
  microBatch: number;
  /** FLOPs of one optimizer step (all micro-batches), forward and backward (and recomputation). */
  flops: { forward: number; backward: number; recompute: number; total: number };
  /** Tokens per encoder block (entering it). */
  tokens: number[];
}

const PLAN_KEYS: readonly (keyof StepPlanInput)[] = ['encoder', 'decoder', 'maskRatio', 'params', 'trainable', 'optimizer', 'batch', 'accumulate', 'recompute', 'tome', 'loraSites'];

const total = (x: number | readonly number[]): number => (typeof x === 'number' ? x : x.reduce((a, b) => a + b, 0));

/** Floats one block keeps per image: N tokens (Nm after its merge), width D, `heads`, MLP width M. */
function blockFloats(N: number, Nm: number, D: number, heads: number, M: number): number {
  return ACT.tokenD * N * D + ACT.scores * heads * N * N + ACT.tokenMlp * Nm * M;
}

/** Plan one training step (see the file comment). Throws on inconsistent input, naming the field. */
export function planStep(input: StepPlanInput): StepPlan {
  checkKeys('planStep', input, PLAN_KEYS);
  const cfg = input.encoder;
  const k = input.accumulate ?? 1;
  checkNumber('planStep: batch', input.batch, { integer: true, gt: 0 });
  checkNumber('planStep: accumulate', k, { integer: true, gt: 0 });
  if (input.batch % k !== 0) throw new Error(`planStep: batch ${input.batch} is not divisible by accumulate ${k}`);
  const opt = input.optimizer ?? 'adamw';
  checkOneOf('planStep: optimizer', opt, ['adamw', 'sgd'] as const);
  const B = input.batch / k;
  const P = total(input.params);
  const T = total(input.trainable);
  if (T > P) throw new Error(`planStep: ${T} trainable elements but only ${P} parameters`);
  const [H, W] = imgHW(cfg);
  const [gh, gw] = gridHW(cfg);
  const prefix = 1 + cfg.numRegisters;
  const D = cfg.embedDim;
  const M = mlpHidden(cfg);
  const dec = input.decoder ?? null;
  const mask = dec ? input.maskRatio ?? 0.75 : 0;
  checkNumber('planStep: maskRatio', mask, { min: 0, lt: 1 });
  const patches = gh * gw;
  const visible = dec ? patches - Math.round(patches * mask) : patches;
  const tome = input.tome ?? null;
  if (tome !== null && dec) throw new Error('planStep: ToMe / PYRA merging and the MAE encoder do not combine');
  const counts = tome !== null ? tokenCounts(tome, cfg.depth, { numTokens: patches + prefix, protectedTokens: prefix }) : null;
  const tokens: number[] = counts ? counts.before : Array.from({ length: cfg.depth }, () => visible + prefix);
  const after: number[] = counts ? counts.tokens.slice(1) : tokens;
  const lora = input.loraSites ?? 0;
  checkNumber('planStep: loraSites', lora, { integer: true, min: 0 });
  const encBlocks = tokens.length;
  // per image: every block of the encoder (and the decoder), the patch embedding and the head
  const loraPerBlock = lora / encBlocks; // the adapted sites, spread over the encoder's blocks
  const blocks: number[] = tokens.map(
    (N, i) => blockFloats(N, after[i], D, cfg.numHeads, M) + (counts && after[i] < N ? ACT.merge * N * D : 0) + ACT.loraSite * loraPerBlock * N * D,
  );
  const blockIn: number[] = tokens.map((N) => N * D);
  let extra = 4 * patches * D;
  if (dec) {
    const Nd = patches + prefix;
    const Md = Math.round(dec.embedDim * (dec.mlpRatio ?? 4));
    for (let i = 0; i < dec.depth; i++) {
      blocks.push(blockFloats(Nd, Nd, dec.embedDim, dec.numHeads, Md));
      blockIn.push(Nd * dec.embedDim);
    }
    extra += 4 * Nd * dec.embedDim + ACT.maePred * patches * cfg.patchSize ** 2 * cfg.inChans;
  }
  const sum = (xs: number[]) => xs.reduce((x, y) => x + y, 0);
  const biggest = Math.max(...blocks);
  const perImage = input.recompute ? sum(blockIn) + extra + biggest * ACT.recomputed : sum(blocks) + extra + biggest * ACT.backward;
  const bytes = {
    params: 4 * P,
    optimizer: 4 * T * (opt === 'adamw' ? 2 : 1),
    inputs: 4 * B * H * W * cfg.inChans,
    gradients: 4 * T * (k > 1 ? 2 : 1),
    activations: 4 * B * perImage,
    update: 4 * T * UPDATE_COPIES[opt],
  };
  const backwardPhase = bytes.gradients + bytes.activations;
  // FLOPs per image: 2 × MACs (encoder after merges; the MAE decoder on all tokens)
  const enc = vitMacs(cfg, tome !== null ? { schedule: tome } : {}).total * (visible / patches);
  const decMacs = dec ? dec.depth * (12 * (patches + prefix) * dec.embedDim ** 2 + 2 * (patches + prefix) ** 2 * dec.embedDim) : 0;
  const fwd = 2 * (enc + decMacs) * input.batch;
  // weight gradients: the share of the model's matrices that train (≈ T / P), on top of the activation gradients
  const back = fwd * (1 + Math.min(1, T / P));
  const re = input.recompute ? fwd : 0;
  return {
    bytes,
    peakBytes: bytes.params + bytes.optimizer + bytes.inputs + Math.max(backwardPhase, bytes.update),
    peakPhase: backwardPhase >= bytes.update ? 'backward' : 'update',
    microBatch: B,
    flops: { forward: fwd, backward: back, recompute: re, total: fwd + back + re },
    tokens,
  };
}
