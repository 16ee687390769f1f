/**
 * ExPLoRA's LoRA fine-tuning protocol for any classifier whose blocks carry the kit's `blocks.<i>.attn.qkv` sites —
 * the SatMAE group-channel and temporal downstream classifiers (lib/mae/satmae-*-vit.ts) as well as a plain `Vit`
 * (recipes/finetune.ts keeps the `Vit` form with its preset): LoRA on the Q,V slices of every block's qkv (α/r
 * scaling, B = 0 so the adapted model equals the base at init), a new head (trunc-normal σ = `headInitStd`, bias 0)
 * that trains, `fc_norm` reset to identity and frozen, everything else frozen (`FINETUNE_SPEC`), cross-entropy with
 * label smoothing in training mode (drop-path from the classifier's config).
 *
 * @example
 *   const clf = satMaeGroupVitFromMae(mae, {numClasses: 62}, {lora: run.explora.lora});
 *   const ft = setupClassifierFinetune({params: clf.params, forward: (x, o) => satMaeGroupVitForward(clf, x, o).logits!},
 *                                      {rank: 8, alpha: 1, labelSmoothing: 0.1, headInitStd: 2e-5}, {seed: 0});
 *   await trainLoop({params: ft.selection.trainable, loss: ft.loss, ...}); ft.dispose();
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../lib/rng';
import { fillInit } from '../lib/init';
import type { ParamTree } from '../lib/tree';
import type { VitHooks } from '../lib/vit/forward';
import { crossEntropy } from '../lib/train/loss';
import { LoraAdapters, createLora, disposeLora, loraHooks, qvTarget } from '../lib/peft/lora';
import { TrainSelection, selectTrainable } from '../lib/peft/trainable';
import { FINETUNE_SPEC } from './finetune';

/** The classifier to fine-tune: its parameter tree (with `head`, and `fc_norm` when it mean-pools) and its forward. */
export interface FinetuneClassifier<X> {
  params: ParamTree;
  /** Logits [B, K] (inside a tidy / train step); `hooks` carries the LoRA adapters. */
  forward: (x: X, o: { training?: boolean; rng?: Rng | null; hooks?: VitHooks }) => tf.Tensor2D;
}

export interface ClassifierFinetune<X> {
  lora: LoraAdapters;
  selection: TrainSelection;
  hooks: VitHooks;
  loss: (batch: { x: X; labels: tf.Tensor1D }, rng: Rng) => tf.Scalar;
  predict: (x: X) => tf.Tensor2D;
  dispose: () => void;
}

interface Linear {
  weight: tf.Variable;
  bias?: tf.Variable;
}

/** Set up the protocol on `m` (re-initialises `head` and resets `fc_norm`; see the module comment). */
export function setupClassifierFinetune<X>(
  m: FinetuneClassifier<X>,
  p: { rank: number; alpha: number; labelSmoothing: number; headInitStd: number },
  opts: { seed: number },
): ClassifierFinetune<X> {
  const tree = m.params as Record<string, unknown>;
  const head = tree.head as Linear | undefined;
  if (!head) throw new Error('setupClassifierFinetune: the classifier has no head (numClasses = 0)');
  tf.tidy(() => {
    head.weight.assign(tf.tensor(fillInit(head.weight.size, { kind: 'truncNormal', std: p.headInitStd }, Rng.derive(opts.seed, 'head.weight')), head.weight.shape));
    if (head.bias) head.bias.assign(tf.zerosLike(head.bias));
    const fc = tree.fc_norm as Linear | undefined;
    if (fc) {
      fc.weight.assign(tf.onesLike(fc.weight));
      if (fc.bias) fc.bias.assign(tf.zerosLike(fc.bias));
    }
  });
  const lora = createLora(m.params, { rank: p.rank, alpha: p.alpha, targets: [qvTarget()] }, { seed: opts.seed });
  let selection: TrainSelection;
  try {
    selection = selectTrainable([m.params, lora.params], FINETUNE_SPEC);
  } catch (e) {
    disposeLora(lora);
    throw e;
  }
  const hooks: VitHooks = { linear: loraHooks(lora) };
  return {
    lora,
    selection,
    hooks,
    loss: (b, rng) => crossEntropy(m.forward(b.x, { training: true, rng, hooks }), b.labels, p.labelSmoothing),
    predict: (x) => m.forward(x, { hooks }),
    dispose: () => disposeLora(lora),
  };
}
