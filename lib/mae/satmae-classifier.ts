/**
 * What the SatMAE downstream classifiers (group-channel `satmae-group-vit.ts`, temporal `satmae-temporal-vit.ts`)
 * share after their tokenizers: the classifier fields of the config, the pooled head, the forward from input tokens to
 * logits, and taking over a pre-trained MAE's encoder (SatMAE `models_vit_group_channels.py` / `models_vit_temporal.py`,
 * the same classes in ExPLoRA's fine-tuning code).
 *
 * - Blocks: timm blocks with drop-path rates linear over depth (`torch.linspace(0, p, depth)`).
 * - Pool 'avg' (the official default, `global_pool=True`): mean of all patch tokens of the last block output (pre-norm,
 *   CLS excluded) → `fc_norm` → `head`; pool 'cls': `norm` → token 0 → `head`.
 */
import * as tf from '@tensorflow/tfjs';
import { fmtValue } from '../check';
import { disposeTree, flattenTree, ParamTree } from '../tree';
import { BlockParams, LinearParams, NormParams, ParamFactory } from '../vit/params';
import { ForwardEnv, linearSite, norm, VitHooks } from '../vit/forward';
import { dropPathRates } from '../vit/config';
import { blockStack } from '../vit/block-stack';
import { CheckpointOptions } from '../vit/checkpoint';
import { Rng } from '../rng';
import { LoraAdapters, mergeLora } from '../peft/lora';

/** The classifier fields of a SatMAE classifier config. */
export interface ClassifierFields {
  /** 'avg' (SatMAE / ExPLoRA default `global_pool`) or 'cls'. */
  pool: 'avg' | 'cls';
  /** Classes of the head (fMoW: 62, EuroSAT: 10); 0 = no head. */
  numClasses: number;
  /** Maximum drop-path rate (timm linear rule over depth). ExPLoRA fine-tuning: 0.2. */
  dropPathRate: number;
}

export const CLASSIFIER_KEYS = ['pool', 'numClasses', 'dropPathRate'] as const;

/** Defaults: average pooling, fMoW's 62 classes, drop-path 0.2 (ExPLoRA fine-tuning). */
export const CLASSIFIER_DEFAULTS: Readonly<ClassifierFields> = Object.freeze({ pool: 'avg', numClasses: 62, dropPathRate: 0.2 });

/** A classifier config from an MAE config: the MAE's encoder fields `keys`, and the classifier defaults. */
export function classifierConfigFrom<C, K extends keyof C>(mae: C, keys: readonly K[]): Pick<C, K> & ClassifierFields {
  const encoder = Object.fromEntries(keys.map((k) => [k, mae[k]])) as Pick<C, K>;
  return { ...encoder, ...CLASSIFIER_DEFAULTS };
}

/** Check the classifier fields of config `name`. */
export function checkClassifierFields(name: string, c: ClassifierFields): void {
  if (!Number.isInteger(c.numClasses) || c.numClasses < 0) throw new Error(`${name}.numClasses: expected a non-negative integer, got ${fmtValue(c.numClasses)}`);
  if (c.pool !== 'avg' && c.pool !== 'cls') throw new Error(`${name}.pool: expected 'avg' or 'cls', got ${String(c.pool)}`);
  if (!(c.dropPathRate >= 0 && c.dropPathRate < 1)) throw new Error(`${name}.dropPathRate: expected a number in [0, 1), got ${c.dropPathRate}`);
}

/** The parameters after the tokenizer. */
export interface ClassifierParams {
  blocks: BlockParams[];
  /** pool 'cls' only */
  norm?: NormParams;
  /** pool 'avg' only */
  fc_norm?: NormParams;
  /** [D, numClasses]; absent with numClasses 0 */
  head?: LinearParams;
}

/** The pooling norm and the head (timm init: `head` trunc-normal 0.02) of width D. */
export function createClassifierHead(f: ParamFactory, D: number, c: ClassifierFields): Omit<ClassifierParams, 'blocks'> {
  const out: Omit<ClassifierParams, 'blocks'> = c.pool === 'cls' ? { norm: f.norm('norm', D) } : { fc_norm: f.norm('fc_norm', D) };
  if (c.numClasses > 0) out.head = f.linear('head', D, c.numClasses, { kind: 'truncNormal', std: 0.02 });
  return out;
}

export interface ClassifierForwardOptions {
  training?: boolean;
  rng?: Rng | null;
  hooks?: VitHooks;
  /** Override the configured maximum drop-path rate for this call. */
  dropPathRate?: number;
  /** Activation recomputation per block (see lib/vit/checkpoint.ts). */
  checkpoint?: CheckpointOptions | null;
}

export const CLASSIFIER_FORWARD_KEYS: readonly (keyof ClassifierForwardOptions)[] = ['training', 'rng', 'hooks', 'dropPathRate', 'checkpoint'];

export interface ClassifierOutput {
  /** All tokens after the last block, pre-norm [B, 1 + N, D] (N = G·L group tokens or T·L frame tokens). */
  prenorm: tf.Tensor3D;
  /** What the head sees [B, D]. */
  pooled: tf.Tensor2D;
  /** [B, numClasses] or null without a head. */
  logits: tf.Tensor2D | null;
}

/**
 * Input tokens [B, 1 + N, D] (CLS first, codes added) → blocks → pooled features [B, D] → logits. Call inside a tidy.
 * LoRA attaches through `env.hooks` at `blocks.i.attn.qkv`; `dropPathRate` overrides the configured maximum.
 */
export function classifierForward(
  params: ClassifierParams,
  c: ClassifierFields & { depth: number; numHeads: number; normEps: number },
  tokens: tf.Tensor3D,
  env: ForwardEnv,
  dropPathRate?: number,
): ClassifierOutput {
  const rates = dropPathRates({ depth: c.depth, dropPathRate: dropPathRate ?? c.dropPathRate, dropPathMode: 'linear' });
  const x = blockStack(params.blocks, tokens, { prefix: 'blocks', numHeads: c.numHeads, eps: c.normEps, dropPath: rates }, env).x;
  const [B, T, D] = x.shape;
  let pooled: tf.Tensor2D;
  if (c.pool === 'avg') {
    const mean = tf.mean(x.slice([0, 1, 0], [B, T - 1, D]), 1); // global pool over the patch tokens, CLS excluded
    pooled = norm(params.fc_norm!, mean, c.normEps) as tf.Tensor2D;
  } else {
    pooled = (norm(params.norm!, x, c.normEps) as tf.Tensor3D).slice([0, 0, 0], [B, 1, D]).reshape([B, D]) as tf.Tensor2D;
  }
  const logits = params.head ? (linearSite(env, 'head', params.head, pooled) as tf.Tensor2D) : null;
  return { prenorm: x, pooled, logits };
}

/**
 * Copy a pre-trained MAE's encoder into a fresh classifier `clf`, as SatMAE / ExPLoRA fine-tuning loads it
 * (`load_state_dict(strict=False)`): every classifier variable whose path does not match `fresh` must exist in
 * `encoder` with the same shape and is overwritten (with `lora`, the adapters are merged into copies first — step 6
 * of ExPLoRA — and the copies disposed after). On a missing key or a shape mismatch `clf` is disposed and the error
 * names the key. Returns `clf`.
 */
export function loadMaeEncoder<M>(
  what: string,
  clf: M,
  model: { variables: (m: M) => Map<string, tf.Variable>; dispose: (m: M) => void; fresh: RegExp },
  encoder: ParamTree,
  lora: LoraAdapters | readonly LoraAdapters[] | null | undefined,
): M {
  const src = lora ? mergeLora(encoder, lora, { allowMissing: true }) : encoder;
  try {
    const from = flattenTree(src);
    for (const [k, v] of model.variables(clf)) {
      if (model.fresh.test(k)) continue;
      const s = from.get(k);
      if (!s) throw new Error(`${what}: the MAE has no '${k}'`);
      if (s.shape.join() !== v.shape.join()) throw new Error(`${what}: '${k}' is [${s.shape}] in the MAE, [${v.shape}] in the classifier`);
      v.assign(s);
    }
  } catch (e) {
    model.dispose(clf);
    throw e;
  } finally {
    if (lora) disposeTree(src);
  }
  return clf;
}
