/**
 * ExPLoRA's supervised LoRA fine-tuning protocol (ExPLoRA `scripts/finetune.sh` + `finetune/finetune.py`):
 * after extended pre-training (adapters merged), fine-tune with
 * - LoRA r8 (α = 1 ⇒ scale 1/8) on the Q and V slices of the fused qkv of **all** blocks, no unfrozen blocks/norms;
 * - a new linear head (trunc-normal σ = 2e-5, bias 0), trainable;
 * - mean-pooling of the patch tokens (pre-norm) → `fc_norm` → head (timm `global_pool=True`); `fc_norm` is new and,
 *   since no norm-unfreeze flag is given, stays **frozen at its init (γ = 1, β = 0)**;
 * - drop-path 0.2 (timm linear rule over depth), label smoothing 0.1 (mixup/cutmix off), AdamW (0.9, 0.999),
 *   weight decay 0, layer decay 1.0, blr 1e-3 ⇒ lr = blr·batch/256 = 5e-4 at batch 128, 120 epochs, 5 warm-up
 *   epochs, cosine to 1e-6.
 * Trainable count (encoder only): ViT-L 24 blocks · 2 · 2 · 8 · 1024 = 786,432; ViT-B 294,912 (+ the head).
 *
 * @example
 *   const vit = createVit('vit_large_patch14_224', finetuneVitOverrides(62)); // then load the merged ExPLoRA weights
 *   const ft = setupFinetune(vit, EXPLORA_FINETUNE, {seed: 0});
 *   await trainLoop({params: ft.selection.trainable, optimizer: ft.optimizer(), loss: ft.loss, lr: ft.lrSchedule(itersPerEpoch), ...});
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../lib/rng';
import { fillInit } from '../lib/init';
import { checkKeys } from '../lib/check';
import { Vit } from '../lib/vit/params';
import { VitConfig } from '../lib/vit/config';
import { vitForward } from '../lib/vit/forward';
import { crossEntropy } from '../lib/train/loss';
import { Optimizer, OptimizerConfig, ADAMW_DEFAULTS, layerDecayScale } from '../lib/train/optim';
import { Schedule, scaledLr } from '../lib/train/schedule';
import { LoraAdapters, createLora, qvTarget, QkvSlice, loraHooks, disposeLora } from '../lib/peft/lora';
import { TrainSelection, selectTrainable, FREEZE_REST, TrainSpec } from '../lib/peft/trainable';

export interface FinetunePreset {
  rank: number;
  alpha: number;
  slices: readonly QkvSlice[];
  dropPath: number;
  labelSmoothing: number;
  /** base lr; lr = blr · batchSize / 256 */
  blr: number;
  batchSize: number;
  epochs: number;
  warmupEpochs: number;
  minLr: number;
  weightDecay: number;
  layerDecay: number;
  optimizer: OptimizerConfig;
  /** std of the new head's trunc-normal init */
  headInitStd: number;
}

const PRESET_KEYS: readonly (keyof FinetunePreset)[] = [
  'rank', 'alpha', 'slices', 'dropPath', 'labelSmoothing', 'blr', 'batchSize', 'epochs', 'warmupEpochs', 'minLr',
  'weightDecay', 'layerDecay', 'optimizer', 'headInitStd',
];

/** The paper's fine-tuning preset (tweak with a spread: `{...EXPLORA_FINETUNE, epochs: 10}`). */
export const EXPLORA_FINETUNE: FinetunePreset = Object.freeze({
  rank: 8,
  alpha: 1,
  slices: ['q', 'v'] as const,
  dropPath: 0.2,
  labelSmoothing: 0.1,
  blr: 1e-3,
  batchSize: 128,
  epochs: 120,
  warmupEpochs: 5,
  minLr: 1e-6,
  weightDecay: 0,
  layerDecay: 1,
  optimizer: ADAMW_DEFAULTS,
  headInitStd: 2e-5,
});

/** ViT config overrides for the fine-tuning model: mean-pool + fc_norm, a head, drop-path with timm's linear rule. */
export function finetuneVitOverrides(numClasses: number, preset: FinetunePreset = EXPLORA_FINETUNE): Partial<VitConfig> {
  if (!Number.isInteger(numClasses) || numClasses <= 0) throw new Error(`finetuneVitOverrides: numClasses must be a positive integer, got ${numClasses}`);
  return { pool: 'avg', numClasses, dropPathRate: preset.dropPath, dropPathMode: 'linear' };
}

/** The trainability spec of the protocol: LoRA and head train; fc_norm and everything else frozen. */
export const FINETUNE_SPEC: TrainSpec = Object.freeze([
  { match: /(^|\.)lora_[AB]\./, train: true, group: 'LoRA (Q,V) all blocks' },
  { match: /^head\./, train: true, group: 'head' },
  { match: /^fc_norm\./, train: false, group: 'fc_norm (frozen at identity)' },
  FREEZE_REST,
]);

export interface FinetuneSetup {
  preset: FinetunePreset;
  lora: LoraAdapters;
  selection: TrainSelection;
  hooks: { linear: ReturnType<typeof loraHooks> };
  /** Loss of a batch for `trainLoop`: CE with label smoothing on the LoRA-adapted model, training mode (drop-path). */
  loss: (batch: { images: tf.Tensor4D; labels: tf.Tensor1D }, rng: Rng) => tf.Scalar;
  /** Logits in eval mode (no drop-path), adapters applied. */
  predict: (images: tf.Tensor4D) => tf.Tensor2D;
  /** lr = blr · batch / 256 with warm-up and cosine to minLr, per iteration. */
  lrSchedule: (itersPerEpoch: number) => Schedule;
  /** A fresh AdamW over the trainable set (layer decay as in the preset). */
  optimizer: () => Optimizer;
  dispose: () => void;
}

/**
 * Set up LoRA fine-tuning of `vit` (pool 'avg' with a head; see `finetuneVitOverrides`). By default re-initialises the
 * head (trunc-normal σ = headInitStd, bias 0) and resets fc_norm to identity — the model's head and fc_norm are new in
 * this protocol — then creates the adapters and resolves the trainable set.
 */
export function setupFinetune(
  vit: Vit,
  preset: FinetunePreset = EXPLORA_FINETUNE,
  opts: { seed?: number; initHead?: boolean } = {},
): FinetuneSetup {
  checkKeys('FinetunePreset', preset, PRESET_KEYS);
  const cfg = vit.config;
  if (cfg.pool !== 'avg' || !vit.params.fc_norm) {
    throw new Error(`setupFinetune: the protocol mean-pools patch tokens into fc_norm; build the model with finetuneVitOverrides(numClasses) (pool is '${cfg.pool}')`);
  }
  if (!vit.params.head) throw new Error('setupFinetune: the model has no head (numClasses = 0); use finetuneVitOverrides(numClasses)');
  if (cfg.dropPathRate !== preset.dropPath) {
    throw new Error(`setupFinetune: the model's dropPathRate is ${cfg.dropPathRate} but the preset uses ${preset.dropPath}; build it with finetuneVitOverrides`);
  }
  const seed = opts.seed ?? 0;
  if (opts.initHead ?? true) {
    const h = vit.params.head;
    const fc = vit.params.fc_norm;
    // the new values are temporaries: tidy frees them once assigned (4 tensors per setup leaked before)
    tf.tidy(() => {
      h.weight.assign(tf.tensor(fillInit(h.weight.size, { kind: 'truncNormal', std: preset.headInitStd }, Rng.derive(seed, 'head.weight')), h.weight.shape));
      if (h.bias) h.bias.assign(tf.zerosLike(h.bias));
      fc.weight.assign(tf.onesLike(fc.weight));
      fc.bias.assign(tf.zerosLike(fc.bias));
    });
  }
  const lora = createLora(vit.params, { rank: preset.rank, alpha: preset.alpha, targets: [qvTarget(undefined, { slices: preset.slices })] }, { seed });
  let selection: TrainSelection;
  try {
    selection = selectTrainable([vit.params, lora.params], FINETUNE_SPEC);
  } catch (e) {
    disposeLora(lora);
    throw e;
  }
  const hooks = { linear: loraHooks(lora) };
  return {
    preset,
    lora,
    selection,
    hooks,
    loss: (batch, rng) =>
      crossEntropy(vitForward(vit, batch.images, { training: true, rng, hooks }).logits!, batch.labels, preset.labelSmoothing),
    predict: (images) => vitForward(vit, images, { hooks }).logits!,
    lrSchedule: (itersPerEpoch) => {
      if (!(itersPerEpoch > 0)) throw new Error(`lrSchedule: itersPerEpoch must be > 0, got ${itersPerEpoch}`);
      return {
        kind: 'cosine',
        base: scaledLr(preset.blr, preset.batchSize),
        min: preset.minLr,
        totalIters: preset.epochs * itersPerEpoch,
        warmupIters: preset.warmupEpochs * itersPerEpoch,
      };
    },
    optimizer: () =>
      new Optimizer(preset.optimizer, selection.trainable, preset.layerDecay === 1 ? {} : { lrScale: layerDecayScale(cfg.depth, preset.layerDecay) }),
    dispose: () => disposeLora(lora),
  };
}
