/**
 * ExPLoRA with the MAE objective (ExPLoRA `scripts/pretrain_mae.sh`, `mae/pretrain.py`): extended pre-training of an MAE (RGB) or SatMAE group-channel
 * (multispectral) model with the ExPLoRA parameter rule, plus the MAE optimisation recipe.
 *
 * Parameters (recipe from `lib/peft/explora.ts`, applied to encoder + decoder):
 * - `M-ExPLoRA-[L]-r64` (fMoW-RGB, `mae_visualize_vit_large` init): block L fully trainable; LoRA r64 (α = 1 ⇒ scale
 *   1/64) on the Q and V slices of `blocks.i.attn.qkv` of every other block; LoRA r8 on Q, V of all
 *   `decoder_blocks.i.attn.qkv`; every LayerNorm (encoder and decoder) and the CLS token trainable; `decoder_embed`,
 *   `decoder_pred`, `mask_token`, patch embedding and the fixed sin-cos tables frozen. Encoder count for ViT-L/16:
 *   18,722,816.
 * - `M-ExPLoRA-[1,L]-r32` (fMoW-Sentinel, SatMAE group-channel ViT-L/8): blocks 1 and L trainable, LoRA r32, and
 *   `--unfreeze_embed`: the group patch embeddings `patch_embed.g.*` and the per-group heads `decoder_pred.g.*` train
 *   (they are new: the RGB checkpoint's shapes do not fit); decoder LoRA r32 (ExPLoRA's `mae/pretrain.py` uses the
 *   encoder rank when `--decoder_lora_rank` is not given). Trainable: 28,827,648 encoder + 870,016 decoder =
 *   29,697,664, the paper's "29.7M" (the script prints the trainable count of the whole MAE, decoder included).
 * - `M-ExPLoRA-[L]-r32` (fMoW-temporal, SatMAE temporal ViT-L/16): rank 32 as the paper's temporal configuration;
 *   the unfrozen block set [L] and the decoder rank 32 are UNCONFIRMED (the temporal script was not readable).
 *
 * Optimisation (`scripts/pretrain_mae.sh`, MAE `util/lr_sched.py`): AdamW β = (0.9, 0.95), weight decay 0, lr =
 * blr·effective batch/256 (blr 4.5e-4, batch 1024 ⇒ 1.8e-3), linear warm-up (1 epoch) then half-cycle cosine to 0,
 * evaluated per iteration; mask ratio 0.75 with norm-pix targets. One kit step = one optimizer step on the effective
 * batch, so `itersPerEpoch` = dataset size / effective batch. The run trains with the kit's generic `trainLoop` /
 * `trainStep` (its `loss`, `optimizer`, `schedule`, `weightDecay`, and `accumulate` = `train.accumIter` micro-batches
 * of `microBatch` images per step: MAE's `accum_iter`, ExPLoRA's script 4 GPUs × 64 × accum 4 = 1024).
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys, lookup } from '../lib/check';
import { Rng } from '../lib/rng';
import { ParamTree } from '../lib/tree';
import { Optimizer, OptimizerConfig, ADAMW_MAE, checkOptimizerConfig } from '../lib/train/optim';
import { Schedule, scaledLr, checkSchedule } from '../lib/train/schedule';
import { VitHooks } from '../lib/vit/forward';
import { Vit } from '../lib/vit/params';
import { applyExplora, exploraRecipe, ExploraRecipe, ExploraSetup } from '../lib/peft/explora';
import { EXPLORA_PRESETS } from './explora-presets';
import { loraHooks, mergeLora } from '../lib/peft/lora';
import { Mae, maeForward } from '../lib/mae/mae';
import { SatMaeGroup, satMaeGroupForward } from '../lib/mae/satmae-group';
import { SatMaeTemporal, satMaeTemporalForward, Timestamps } from '../lib/mae/satmae-temporal';

/** MAE-objective optimisation settings of an ExPLoRA run. */
export interface ExploraMaeTrain {
  /** Base lr; lr = blr·effectiveBatch/256. */
  blr: number;
  /** Images per optimizer step (ExPLoRA: 4 GPUs × 64 × accum 4 = 1024). */
  effectiveBatch: number;
  epochs: number;
  warmupEpochs: number;
  minLr: number;
  weightDecay: number;
  optimizer: OptimizerConfig;
  maskRatio: number;
  normPixLoss: boolean;
  /** Micro-batches per optimizer step (gradient accumulation; effectiveBatch / accumIter images each). Default 1. */
  accumIter: number;
}

const TRAIN_KEYS: readonly (keyof ExploraMaeTrain)[] = [
  'blr', 'effectiveBatch', 'epochs', 'warmupEpochs', 'minLr', 'weightDecay', 'optimizer', 'maskRatio', 'normPixLoss', 'accumIter',
];

/** ExPLoRA MAE fMoW-RGB settings (ExPLoRA `scripts/pretrain_mae.sh`; `--epochs 400` is the script value, the stopping point is UNCONFIRMED). */
export const EXPLORA_MAE_TRAIN: Readonly<ExploraMaeTrain> = Object.freeze({
  blr: 4.5e-4,
  effectiveBatch: 1024,
  epochs: 400,
  warmupEpochs: 1,
  minLr: 0,
  weightDecay: 0,
  optimizer: ADAMW_MAE,
  maskRatio: 0.75,
  normPixLoss: true,
  accumIter: 1,
});

/** Validated training settings from overrides of `EXPLORA_MAE_TRAIN`. */
export function exploraMaeTrain(overrides: Partial<ExploraMaeTrain> = {}, base: ExploraMaeTrain = EXPLORA_MAE_TRAIN): ExploraMaeTrain {
  checkKeys('ExploraMaeTrain', overrides, TRAIN_KEYS);
  const t = { ...base, ...overrides };
  for (const k of ['blr', 'effectiveBatch', 'epochs'] as const) {
    if (!(t[k] > 0)) throw new Error(`ExploraMaeTrain.${k}: expected > 0, got ${t[k]}`);
  }
  if (!(t.warmupEpochs >= 0 && t.warmupEpochs <= t.epochs)) throw new Error(`ExploraMaeTrain.warmupEpochs: expected in [0, epochs=${t.epochs}], got ${t.warmupEpochs}`);
  if (!(t.minLr >= 0) || !(t.weightDecay >= 0)) throw new Error('ExploraMaeTrain: minLr and weightDecay must be ≥ 0');
  if (!(Number.isInteger(t.accumIter) && t.accumIter >= 1)) throw new Error(`ExploraMaeTrain.accumIter: expected an integer ≥ 1, got ${t.accumIter}`);
  if (t.effectiveBatch % t.accumIter !== 0) throw new Error(`ExploraMaeTrain.accumIter: effectiveBatch ${t.effectiveBatch} is not a multiple of accumIter ${t.accumIter}`);
  checkOptimizerConfig(t.optimizer, 'ExploraMaeTrain.optimizer');
  return Object.freeze(t);
}

/** Peak learning rate: blr·effectiveBatch/256 (1.8e-3 for the ExPLoRA run). */
export function exploraMaeLr(t: ExploraMaeTrain = EXPLORA_MAE_TRAIN): number {
  return scaledLr(t.blr, t.effectiveBatch);
}

/** The per-iteration lr schedule: linear warm-up over warmupEpochs, half-cycle cosine to minLr at `epochs`. */
export function exploraMaeSchedule(itersPerEpoch: number, t: ExploraMaeTrain = EXPLORA_MAE_TRAIN): Schedule {
  if (!(itersPerEpoch > 0) || !Number.isInteger(itersPerEpoch)) throw new Error(`exploraMaeSchedule: itersPerEpoch must be a positive integer, got ${itersPerEpoch}`);
  return checkSchedule({
    kind: 'cosine',
    base: exploraMaeLr(t),
    min: t.minLr,
    totalIters: Math.round(t.epochs * itersPerEpoch),
    warmupIters: Math.round(t.warmupEpochs * itersPerEpoch),
    warmupStart: 0,
  });
}

/** A named ExPLoRA-MAE preset: the parameter recipe and the optimisation settings. */
export interface ExploraMaePreset {
  recipe: ExploraRecipe;
  train: ExploraMaeTrain;
}

export const EXPLORA_MAE_PRESETS = {
  /** MAE ViT-L/16 on fMoW-RGB. */
  'M-ExPLoRA-[L]-r64': { recipe: EXPLORA_PRESETS['M-ExPLoRA-[L]-r64'], train: EXPLORA_MAE_TRAIN },
  /** SatMAE group-channel ViT-L/8 on fMoW-Sentinel: [1,L], r32 (decoder r32), group patch embeddings (+ heads) trainable. Optimiser values UNCONFIRMED (RGB values). */
  'M-ExPLoRA-[1,L]-r32': { recipe: EXPLORA_PRESETS['M-ExPLoRA-[1,L]-r32'], train: EXPLORA_MAE_TRAIN },
  /** SatMAE temporal ViT-L/16 on fMoW-temporal: r32 (the paper's temporal rank); [L] and decoder r32 UNCONFIRMED; optimiser values UNCONFIRMED (RGB values). */
  'M-ExPLoRA-[L]-r32': { recipe: EXPLORA_PRESETS['M-ExPLoRA-[L]-r32'], train: EXPLORA_MAE_TRAIN },
} satisfies Record<string, ExploraMaePreset>;

export type ExploraMaePresetName = keyof typeof EXPLORA_MAE_PRESETS;

function resolvePreset(p: ExploraMaePresetName | string | ExploraRecipe): ExploraMaePreset {
  if (typeof p !== 'string') return { recipe: exploraRecipe(p), train: EXPLORA_MAE_TRAIN };
  if (Object.prototype.hasOwnProperty.call(EXPLORA_MAE_PRESETS, p)) return lookup('ExPLoRA-MAE preset', EXPLORA_MAE_PRESETS, p);
  return { recipe: exploraRecipe(p), train: EXPLORA_MAE_TRAIN };
}

/** A ready-to-train ExPLoRA-MAE run over a model of type M whose training batches are of type X. */
export interface ExploraMaeRun<M, X = tf.Tensor4D> {
  model: M;
  explora: ExploraSetup;
  /** LoRA at the encoder and decoder qkv sites; pass to every forward. */
  hooks: VitHooks;
  /** What trains (fixed order) — the optimizer's parameter set. */
  trainable: Map<string, tf.Variable>;
  optimizer: Optimizer;
  train: ExploraMaeTrain;
  /** Peak lr (blr·batch/256). */
  lr: number;
  /** The lr schedule for a dataset of `itersPerEpoch` optimizer steps per epoch. */
  schedule(itersPerEpoch: number): Schedule;
  /** Weight decay as a schedule for `trainLoop` (constant `train.weightDecay`; 0 for ExPLoRA). */
  weightDecay: Schedule;
  /** Micro-batches per optimizer step, for `trainLoop`'s `accumulate` (= `train.accumIter`). */
  accumulate: number;
  /** Images per micro-batch (effectiveBatch / accumIter): the loader's batch size. */
  microBatch: number;
  /** The training loss of a batch (for `trainLoop`'s `loss`): masking and drop-path from `rng`. */
  loss(batch: X, rng: Rng): tf.Scalar;
  /** Free the adapters and the optimizer state (the model stays). */
  dispose(): void;
}

export interface ExploraMaeOptions {
  /** Seed of the LoRA A initialisation. */
  seed?: number;
  /** Overrides of the preset's optimisation settings. */
  train?: Partial<ExploraMaeTrain>;
}

function buildRun<M, X>(
  model: M,
  parts: { encoder: ParamTree; decoder: ParamTree },
  preset: ExploraMaePreset,
  opts: ExploraMaeOptions,
  forwardLoss: (batch: X, rng: Rng, hooks: VitHooks, t: ExploraMaeTrain) => tf.Scalar,
): ExploraMaeRun<M, X> {
  const train = exploraMaeTrain(opts.train ?? {}, preset.train);
  const explora = applyExplora(parts, preset.recipe, { seed: opts.seed ?? 0 });
  const hooks: VitHooks = explora.lora ? { linear: loraHooks(explora.lora) } : {};
  const trainable = explora.selection.trainable;
  // AdamW with wd 0 (ExPLoRA); the kit's default decay mask (no decay on biases / norms / tokens) is MAE's too.
  let optimizer: Optimizer;
  try {
    optimizer = new Optimizer(train.optimizer, trainable);
  } catch (e) {
    explora.dispose();
    throw e;
  }
  return {
    model,
    explora,
    hooks,
    trainable,
    optimizer,
    train,
    lr: exploraMaeLr(train),
    schedule: (ipe) => exploraMaeSchedule(ipe, train),
    weightDecay: { kind: 'constant', value: train.weightDecay },
    accumulate: train.accumIter,
    microBatch: train.effectiveBatch / train.accumIter,
    loss: (batch, rng) => forwardLoss(batch, rng, hooks, train),
    dispose: () => {
      optimizer.dispose();
      explora.dispose();
    },
  };
}

/**
 * Set up ExPLoRA on an RGB MAE: LoRA adapters, trainable flags, AdamW(0.9, 0.95) over the trainable set, schedule.
 * @example
 *   const mae = createMae('mae_vit_large_patch16'); // then load mae_visualize_vit_large weights
 *   const run = setupExploraMae(mae, 'M-ExPLoRA-[L]-r64');
 *   console.log(formatTrainSummary(run.explora.selection.summary)); // 18,722,816 trainable encoder parameters
 *   await trainLoop({params: run.trainable, optimizer: run.optimizer, lr: run.schedule(itersPerEpoch), steps, seed,
 *                    batch, loss: (x, rng) => run.loss(x, rng), weightDecay: run.weightDecay, accumulate: run.accumulate});
 *   // batch(step, micro): micro-batch `micro` of `run.microBatch` images, e.g. loader.batchAt(step·accumulate + micro)
 */
export function setupExploraMae(mae: Mae, preset: ExploraMaePresetName | string | ExploraRecipe = 'M-ExPLoRA-[L]-r64', opts: ExploraMaeOptions = {}): ExploraMaeRun<Mae> {
  const p = resolvePreset(preset);
  return buildRun<Mae, tf.Tensor4D>(mae, { encoder: mae.encoder.params, decoder: mae.decoder }, p, opts, (images, rng, hooks, t) => {
    const m = t.normPixLoss === mae.config.normPixLoss ? mae : { ...mae, config: { ...mae.config, normPixLoss: t.normPixLoss } };
    return maeForward(m, images, { rng, training: true, hooks, maskRatio: t.maskRatio }).loss;
  });
}

/**
 * Split a one-tree MAE model (SatMAE group / temporal) into its encoder part and its decoder part (`decoder_*`,
 * `mask_token`), as `applyExplora` wants them.
 */
export function splitMaeTree(params: object): { encoder: ParamTree; decoder: ParamTree } {
  const encoder: Record<string, unknown> = {};
  const decoder: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(params)) (/^(decoder_|mask_token$)/.test(k) ? decoder : encoder)[k] = v;
  return { encoder, decoder };
}

/**
 * Set up ExPLoRA on a SatMAE group-channel model (default `M-ExPLoRA-[1,L]-r32`: the group patch embeddings and
 * per-group heads train too).
 */
export function setupExploraSatMaeGroup(
  model: SatMaeGroup,
  preset: ExploraMaePresetName | string | ExploraRecipe = 'M-ExPLoRA-[1,L]-r32',
  opts: ExploraMaeOptions = {},
): ExploraMaeRun<SatMaeGroup> {
  const p = resolvePreset(preset);
  return buildRun<SatMaeGroup, tf.Tensor4D>(model, splitMaeTree(model.params), p, opts, (images, rng, hooks, t) => {
    const m = t.normPixLoss === model.config.normPixLoss ? model : { ...model, config: { ...model.config, normPixLoss: t.normPixLoss } };
    return satMaeGroupForward(m, images, { rng, training: true, hooks, maskRatio: t.maskRatio }).loss;
  });
}

/** A SatMAE temporal training batch: images [B, T, H, W, C] and timestamps [B][T][3] (year − 2002, month − 1, hour). */
export interface TemporalBatch {
  images: tf.Tensor5D;
  timestamps: Timestamps;
}

/**
 * Set up ExPLoRA on a SatMAE temporal model. Default `M-ExPLoRA-[L]-r32`: the paper's temporal rank 32 (the kit used
 * the RGB r64 before); the unfrozen set [L] and the decoder rank are UNCONFIRMED. The patch embedding is shared with
 * RGB, so it stays frozen.
 */
export function setupExploraSatMaeTemporal(
  model: SatMaeTemporal,
  preset: ExploraMaePresetName | string | ExploraRecipe = 'M-ExPLoRA-[L]-r32',
  opts: ExploraMaeOptions = {},
): ExploraMaeRun<SatMaeTemporal, TemporalBatch> {
  const p = resolvePreset(preset);
  return buildRun<SatMaeTemporal, TemporalBatch>(model, splitMaeTree(model.params), p, opts, (b, rng, hooks, t) => {
    const m = t.normPixLoss === model.config.normPixLoss ? model : { ...model, config: { ...model.config, normPixLoss: t.normPixLoss } };
    return satMaeTemporalForward(m, b.images, b.timestamps, { rng, training: true, hooks, maskRatio: t.maskRatio }).loss;
  });
}

/**
 * Step 6 of ExPLoRA: merge the encoder adapters into the weights and drop the decoder. Returns a new `Vit` (new
 * variables; the run's model is untouched) to fine-tune or linear-probe without hooks.
 */
export function mergeExploraMaeEncoder(run: ExploraMaeRun<Mae, tf.Tensor4D>): Vit {
  const enc = run.model.encoder;
  if (!run.explora.lora) return { ...enc, params: mergeLora(enc.params, [], { allowMissing: true }) };
  return { ...enc, params: mergeLora(enc.params, run.explora.lora, { allowMissing: true, scopeKind: 'explora-merged' }) };
}
