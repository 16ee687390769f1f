/**
 * The DINOv2 objective assembled like upstream's SSL meta-architecture (DINOv2 `dinov2/train/ssl_meta_arch.py`):
 *
 *   teacher (no gradient): backbone on the 2 global crops (unmasked) → CLS [2B, D] and patch tokens [2B, N, D] →
 *     head on CLS, iBOT head (shared by default) on the patch tokens at the masked positions → targets by centering
 *     (separate CLS / patch centers) or Sinkhorn-Knopp at temperature τ_t;
 *   student: backbone on the global crops with iBOT masks (mask token replaces the masked patch embeddings before the
 *     position embedding) and on the n local crops → CLS tokens through the DINO head, masked patch tokens through the
 *     iBOT head → DINO loss (swapped teacher chunks, 2 + 2n pairs), iBOT loss (1/|M_b|, over 2B images), KoLeo on the
 *     pre-head backbone CLS of the global crops per chunk → total = 1·DINO + 0.1·KoLeo + 1·iBOT.
 *
 * Split in two: `dinov2Targets` (teacher, gradient-free) then `dinov2StudentLoss` (under the gradient tape); the
 * D-ExPLoRA recipe runs both inside the generic train step's loss, with the center updates deferred to after the step's
 * finiteness check. `dinov2LossFromFeatures` runs both on given backbone features (the golden test).
 * A multi-crop batch is crop-major, as upstream's collate: global [g1 of all B images; g2 of all], local [l1 …; l2 …].
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys, fmtValue, checkNumber } from '../check';
import { Vit } from '../vit/params';
import { VitHooks, vitForward } from '../vit/forward';
import { Rng } from '../rng';
import { DinoHeadConfig, DinoHeadsParams, DINO_HEAD_DEFAULTS, dinoHeadForward, ibotHeadOf, l2Normalize } from './head';
import { stopGradient, CenterState, CENTERING, TeacherTargetMode, TeacherTemp, TEACHER_TEMP_DEFAULTS, checkTargetMode, createCenter, teacherTargets, rowEntropy, marginalEntropy } from './teacher';
import { DinoLossWeights, DINO_LOSS_WEIGHTS, STUDENT_TEMP, dinoClsLoss, ibotPatchLoss, koleoPerChunk, combineDinoLosses } from './loss';
import { IbotMaskConfig, IBOT_MASK_DEFAULTS, IbotMasks, ibotMaskConfig, ibotMaskTensor } from './masking';
import type { StateUpdate } from '../train/step';

/** The objective's settings (DINOv2 `ssl_default_config.yaml` values as defaults). */
export interface Dinov2Objective {
  /** Head sizes (inDim comes from the backbone). */
  head: Omit<DinoHeadConfig, 'inDim'>;
  /** `ibot.separate_head` (default false: the DINO head scores the masked patches too). */
  separateIbotHead: boolean;
  studentTemp: number;
  teacherTemp: TeacherTemp;
  /** Centering (momentum 0.9) or Sinkhorn-Knopp (3 iterations). */
  targets: TeacherTargetMode;
  weights: DinoLossWeights;
  masking: IbotMaskConfig;
  /** Local crops per image (8). */
  nLocalCrops: number;
  /** Global / local crop sizes (224 / 98 for patch 14; 96 in the patch-16 configs). */
  globalCropSize: number;
  localCropSize: number;
}

export const DINOV2_OBJECTIVE_KEYS: readonly (keyof Dinov2Objective)[] = [
  'head', 'separateIbotHead', 'studentTemp', 'teacherTemp', 'targets', 'weights', 'masking', 'nLocalCrops', 'globalCropSize', 'localCropSize',
];

/** DINOv2 defaults: K 65,536 / bottleneck 256 / hidden 2048, shared head, τ_s 0.1, τ_t 0.04→0.07 over 30 epochs, centering, 1/0.1/1, masks [0.1,0.5] on half the globals, 2×224 + 8×98. */
export const DINOV2_OBJECTIVE: Dinov2Objective = Object.freeze({
  head: DINO_HEAD_DEFAULTS,
  separateIbotHead: false,
  studentTemp: STUDENT_TEMP,
  teacherTemp: TEACHER_TEMP_DEFAULTS,
  targets: CENTERING,
  weights: DINO_LOSS_WEIGHTS,
  masking: IBOT_MASK_DEFAULTS,
  nLocalCrops: 8,
  globalCropSize: 224,
  localCropSize: 98,
});

/** Overrides accepted by `dinov2Objective`: nested records may be partial. */
export type Dinov2ObjectiveOverrides = Partial<Omit<Dinov2Objective, 'head' | 'teacherTemp' | 'weights' | 'masking'>> & {
  head?: Partial<Dinov2Objective['head']>;
  teacherTemp?: Partial<TeacherTemp>;
  weights?: Partial<DinoLossWeights>;
  masking?: Partial<IbotMaskConfig>;
};

/** Validated objective from a base (default DINOv2) and overrides; unknown keys at any level are errors. */
export function dinov2Objective(o: Dinov2ObjectiveOverrides = {}, base: Dinov2Objective = DINOV2_OBJECTIVE): Dinov2Objective {
  checkKeys('Dinov2Objective', o, DINOV2_OBJECTIVE_KEYS);
  checkKeys('Dinov2Objective.head', o.head ?? {}, ['hiddenDim', 'bottleneckDim', 'outDim', 'nlayers', 'mlpBias', 'normEps']);
  checkKeys('Dinov2Objective.teacherTemp', o.teacherTemp ?? {}, ['warmup', 'final', 'warmupEpochs']);
  checkKeys('Dinov2Objective.weights', o.weights ?? {}, ['dino', 'koleo', 'ibot']);
  const c: Dinov2Objective = {
    ...base,
    ...o,
    head: { ...base.head, ...(o.head ?? {}) },
    teacherTemp: { ...base.teacherTemp, ...(o.teacherTemp ?? {}) },
    weights: { ...base.weights, ...(o.weights ?? {}) },
    masking: ibotMaskConfig({ ...base.masking, ...(o.masking ?? {}) }),
    targets: checkTargetMode(o.targets ?? base.targets, 'Dinov2Objective.targets'),
  };
  for (const k of ['hiddenDim', 'bottleneckDim', 'outDim', 'nlayers'] as const) {
    if (!Number.isInteger(c.head[k]) || c.head[k] <= 0) throw new Error(`Dinov2Objective.head.${k}: expected a positive integer, got ${fmtValue(c.head[k])}`);
  }
  if (!Number.isInteger(c.nLocalCrops) || c.nLocalCrops < 0) throw new Error(`Dinov2Objective.nLocalCrops: expected an integer ≥ 0, got ${fmtValue(c.nLocalCrops)}`);
  for (const k of ['globalCropSize', 'localCropSize'] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw new Error(`Dinov2Objective.${k}: expected a positive integer, got ${fmtValue(c[k])}`);
  }
  checkNumber('Dinov2Objective.studentTemp', c.studentTemp, { gt: 0 });
  const t = c.teacherTemp;
  checkNumber('Dinov2Objective.teacherTemp.warmup', t.warmup, { gt: 0 });
  checkNumber('Dinov2Objective.teacherTemp.final', t.final, { gt: 0 });
  checkNumber('Dinov2Objective.teacherTemp.warmupEpochs', t.warmupEpochs, { min: 0 });
  for (const k of ['dino', 'koleo', 'ibot'] as const) {
    checkNumber(`Dinov2Objective.weights.${k}`, c.weights[k], { min: 0 });
  }
  return Object.freeze(c);
}

/** Loss state that persists across steps: the CLS and patch centers (centering mode only). */
export interface Dinov2LossState {
  clsCenter: CenterState | null;
  patchCenter: CenterState | null;
}

/** Fresh (zero) centers for an objective with K prototypes. */
export function createDinov2LossState(obj: Dinov2Objective): Dinov2LossState {
  if (obj.targets.kind !== 'centering') return { clsCenter: null, patchCenter: null };
  const K = obj.head.outDim;
  return { clsCenter: createCenter(K, obj.targets.momentum, 'dino_loss.center'), patchCenter: createCenter(K, obj.targets.momentum, 'ibot_patch_loss.center') };
}

/** Variables of the loss state keyed as in DINOv2 state dicts (`dino_loss.center`, `ibot_patch_loss.center`). */
export function dinov2StateVariables(s: Dinov2LossState): Map<string, tf.Variable> {
  const m = new Map<string, tf.Variable>();
  if (s.clsCenter) m.set('dino_loss.center', s.clsCenter.center);
  if (s.patchCenter) m.set('ibot_patch_loss.center', s.patchCenter.center);
  return m;
}

export function disposeDinov2LossState(s: Dinov2LossState): void {
  for (const v of dinov2StateVariables(s).values()) if (!v.isDisposed) v.dispose();
}

/** A multi-crop batch: global crops [2B, H, W, C] and local crops [nLocal·B, h, w, C] (crop-major), or null. */
export interface MultiCrop {
  global: tf.Tensor4D;
  local: tf.Tensor4D | null;
  /** images per crop */
  B: number;
  nLocal: number;
}

/**
 * Stack loader views [g1, g2, l1 … ln] (each [B, h, w, C], e.g. `batch.views` of a `dinoMultiCrop` loader) into a
 * crop-major multi-crop batch. Checks: 2 + nLocal views, equal batch sizes, equal global shapes, equal local shapes.
 * Call inside a tidy.
 */
export function multiCropBatch(views: readonly tf.Tensor4D[], nLocal: number): MultiCrop {
  if (views.length !== 2 + nLocal) {
    throw new Error(`multi-crop batch: expected 2 global + ${nLocal} local = ${2 + nLocal} views, got ${fmtValue(views.length)} (check nLocalCrops against the loader's dinoMultiCrop nLocal)`);
  }
  const B = views[0].shape[0];
  views.forEach((v, i) => {
    if (v.rank !== 4) throw new Error(`multi-crop batch: view ${i} must be [B, H, W, C], got [${v.shape}]`);
    if (v.shape[0] !== B) throw new Error(`multi-crop batch: view ${i} has ${v.shape[0]} images, view 0 has ${B}`);
  });
  const same = (a: tf.Tensor, b: tf.Tensor): boolean => a.shape.every((d, i) => d === b.shape[i]);
  if (!same(views[0], views[1])) throw new Error(`multi-crop batch: the global crops differ in shape: [${views[0].shape}] vs [${views[1].shape}]`);
  for (let i = 3; i < views.length; i++) {
    if (!same(views[i], views[2])) throw new Error(`multi-crop batch: local crop ${i - 2} has shape [${views[i].shape}], local crop 0 has [${views[2].shape}]`);
  }
  const global = tf.concat([views[0], views[1]], 0) as tf.Tensor4D; // [2B, H, W, C]
  const local = nLocal > 0 ? (tf.concat(views.slice(2) as tf.Tensor4D[], 0) as tf.Tensor4D) : null; // [nLocal·B, h, w, C]
  return { global, local, B, nLocal };
}

/** Gather the masked patch rows: patches [2B, N, D] → [M, D] at `masks.indices` (b·N + p, image-major). */
export function gatherMasked(patches: tf.Tensor3D, masks: IbotMasks): tf.Tensor2D {
  const [n, N, D] = patches.shape;
  if (n !== masks.n || N !== masks.grid[0] * masks.grid[1]) {
    throw new Error(`iBOT masks are for ${masks.n} images × ${masks.grid[0]}x${masks.grid[1]} patches, the crops give [${n}, ${N}]`);
  }
  return tf.gather(patches.reshape([n * N, D]), tf.tensor1d(masks.indices, 'int32')) as tf.Tensor2D; // [M, D]
}

/** Teacher outputs turned into targets. */
export interface Dinov2Targets {
  /** [2B, K] targets of the global crops in crop order (not swapped). */
  cls: tf.Tensor2D;
  /** [M, K] targets of the masked patches. */
  patch: tf.Tensor2D;
}

/** Backbone features of the teacher: CLS [2B, D] (post final norm) and patch tokens [2B, N, D]. */
export interface TeacherFeatures {
  cls: tf.Tensor2D;
  patch: tf.Tensor3D;
}

/**
 * Teacher targets from teacher backbone features: heads, then centering (updates the centers — or, with `pending`,
 * proposes their updates for the train step to apply after its checks) or Sinkhorn-Knopp. Gradient-free (targets are
 * wrapped in `stopGradient`; the teacher's variables are not trainable). Call inside a tidy.
 */
export function dinov2TargetsFromFeatures(t: TeacherFeatures, heads: DinoHeadsParams, headCfg: DinoHeadConfig, masks: IbotMasks, temp: number, obj: Dinov2Objective, state: Dinov2LossState, pending?: StateUpdate[]): Dinov2Targets {
  const clsLogits = dinoHeadForward(heads.dino_head, t.cls, headCfg); // [2B, K]
  const cls = teacherTargets(obj.targets, clsLogits, temp, state.clsCenter, pending);
  let patch: tf.Tensor2D;
  if (masks.indices.length > 0) {
    const patchLogits = dinoHeadForward(ibotHeadOf(heads), gatherMasked(t.patch, masks), headCfg); // [M, K]
    patch = teacherTargets(obj.targets, patchLogits, temp, state.patchCenter, pending);
  } else {
    patch = tf.zeros([0, headCfg.outDim]);
  }
  return { cls: stopGradient(cls) as tf.Tensor2D, patch: stopGradient(patch) as tf.Tensor2D };
}

/** Backbone features of the student: global CLS [2B, D] (masked crops), local CLS [nLocal·B, D] or null, global patch tokens [2B, N, D]. */
export interface StudentFeatures {
  clsGlobal: tf.Tensor2D;
  clsLocal: tf.Tensor2D | null;
  patchGlobal: tf.Tensor3D;
}

export interface Dinov2Losses {
  total: tf.Scalar;
  dino: tf.Scalar;
  ibot: tf.Scalar;
  koleo: tf.Scalar;
}

/** Student losses from student backbone features and the teacher's targets. Runs under the gradient tape. */
export function dinov2LossesFromFeatures(s: StudentFeatures, heads: DinoHeadsParams, headCfg: DinoHeadConfig, masks: IbotMasks, targets: Dinov2Targets, obj: Dinov2Objective, nLocal: number): Dinov2Losses {
  const sg = dinoHeadForward(heads.dino_head, s.clsGlobal, headCfg); // [2B, K]
  const sl = s.clsLocal ? dinoHeadForward(heads.dino_head, s.clsLocal, headCfg) : null; // [nLocal·B, K]
  const dino = dinoClsLoss({ studentGlobal: sg, studentLocal: sl, teacherProbs: targets.cls, nLocal, studentTemp: obj.studentTemp }).loss;
  let ibot: tf.Scalar;
  if (masks.indices.length > 0) {
    const sm = dinoHeadForward(ibotHeadOf(heads), gatherMasked(s.patchGlobal, masks), headCfg); // [M, K]
    ibot = ibotPatchLoss(sm, targets.patch, masks.weights, masks.n, obj.studentTemp);
  } else {
    ibot = tf.scalar(0);
  }
  const koleo = obj.weights.koleo > 0 ? koleoPerChunk(s.clsGlobal, 2) : tf.scalar(0);
  return { total: combineDinoLosses({ dino, koleo, ibot }, obj.weights), dino, ibot, koleo };
}

/** Both halves on given features (what the golden fixture checks). Call inside a tidy. */
export function dinov2LossFromFeatures(a: {
  student: StudentFeatures;
  teacher: TeacherFeatures;
  studentHeads: DinoHeadsParams;
  teacherHeads: DinoHeadsParams;
  headConfig: DinoHeadConfig;
  masks: IbotMasks;
  teacherTemp: number;
  objective: Dinov2Objective;
  state: Dinov2LossState;
  nLocal: number;
}): Dinov2Losses & { targets: Dinov2Targets } {
  const targets = dinov2TargetsFromFeatures(a.teacher, a.teacherHeads, a.headConfig, a.masks, a.teacherTemp, a.objective, a.state);
  return { ...dinov2LossesFromFeatures(a.student, a.studentHeads, a.headConfig, a.masks, targets, a.objective, a.nLocal), targets };
}

/** One side of the objective: a backbone, its linear-site hooks (LoRA) and its heads. */
export interface DinoSide {
  vit: Vit;
  hooks: VitHooks;
  heads: DinoHeadsParams;
}

/**
 * Teacher pass on a multi-crop batch (global crops only, unmasked, eval mode) → targets. In a tidy; it may run under
 * the student's gradient tape (the teacher's variables are not trainable and the targets stop the gradient, so the
 * backward pass never visits it). `pending` defers the center updates (see `dinov2TargetsFromFeatures`).
 */
export function dinov2Targets(teacher: DinoSide, headCfg: DinoHeadConfig, batch: MultiCrop, masks: IbotMasks, temp: number, obj: Dinov2Objective, state: Dinov2LossState, pending?: StateUpdate[]): Dinov2Targets & { features: TeacherFeatures } {
  const out = vitForward(teacher.vit, batch.global, { hooks: teacher.hooks, training: false });
  const features = { cls: out.cls, patch: out.patchTokens };
  return { ...dinov2TargetsFromFeatures(features, teacher.heads, headCfg, masks, temp, obj, state, pending), features };
}

/** Student pass on a multi-crop batch (masked global crops + local crops) → losses. Under the tape; in a tidy. */
export function dinov2StudentLoss(
  student: DinoSide,
  headCfg: DinoHeadConfig,
  batch: MultiCrop,
  masks: IbotMasks,
  targets: Dinov2Targets,
  obj: Dinov2Objective,
  env: { rng: Rng | null; training: boolean; dropPathRate?: number },
): Dinov2Losses & { clsGlobal: tf.Tensor2D } {
  const g = vitForward(student.vit, batch.global, {
    hooks: student.hooks,
    masks: ibotMaskTensor(masks),
    training: env.training,
    rng: env.rng ? env.rng.fork('global') : null,
    dropPathRate: env.dropPathRate,
  });
  const l = batch.local
    ? vitForward(student.vit, batch.local, { hooks: student.hooks, training: env.training, rng: env.rng ? env.rng.fork('local') : null, dropPathRate: env.dropPathRate })
    : null;
  const feats: StudentFeatures = { clsGlobal: g.cls, clsLocal: l ? l.cls : null, patchGlobal: g.patchTokens };
  return { ...dinov2LossesFromFeatures(feats, student.heads, headCfg, masks, targets, obj, batch.nLocal), clsGlobal: g.cls };
}

/**
 * Collapse diagnostics (gradient-free; call inside a tidy): mean row entropy of the CLS targets (sharpness), entropy
 * of their mean (prototype usage; log K = uniform), and the mean per-dimension std of L2-normalised CLS features
 * (≈ 1/√D for spread features, → 0 under collapse).
 */
export function collapseMetrics(targetsCls: tf.Tensor2D, cls: tf.Tensor2D): { targetEntropy: tf.Scalar; targetMarginalEntropy: tf.Scalar; featureStd: tf.Scalar } {
  const z = l2Normalize(stopGradient(cls) as tf.Tensor2D, 1e-12);
  const featureStd = tf.mean(tf.sqrt(tf.moments(z, 0).variance)) as tf.Scalar;
  return { targetEntropy: rowEntropy(targetsCls), targetMarginalEntropy: marginalEntropy(targetsCls), featureStd };
}
