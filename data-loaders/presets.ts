/**
 * The papers' preprocessing pipelines as ready `SampleTransform`s (sizes are parameters so the same recipe runs on the
 * small embedded images).
 *
 * | preset | recipe (reference) |
 * |---|---|
 * | `maePretrain` | RandomResizedCrop(size, scale 0.2–1, bicubic) + hflip + ImageNet normalise (MAE, ExPLoRA-MAE RGB) |
 * | `fmowTrain` / `fmowEval` | SatMAE RGB: fMoW mean/std, RRC(size, 0.2–1, bicubic) + hflip / Resize(int(size/0.875)) + CenterCrop(size) |
 * | `sentinelTrain` / `sentinelEval` | SatMAE Sentinel: SentinelNormalize, RRC(size, 0.2–1) + hflip / Resize(int(size/0.875)) + CenterCrop, then optional dropped bands |
 * | `vtab` | VTAB-1k (PYRA/NOAH): direct resize to size×size (bicubic), ImageNet normalise, no augmentation |
 * | `linearProbeEval` | DINOv2 linear probe eval: Resize(int(size/0.875)) + CenterCrop(size), ImageNet normalise |
 */
import type { SampleTransform } from './dataset';
import {
  compose,
  mapImages,
  normalizeWith,
  randomHFlip,
  randomResizedCrop,
  resizeCenterCrop,
  resizeTo,
  sentinelNormalizeWith,
} from './augment';
import { FMOW_RGB_STATS, IMAGENET_STATS, NormStats, SENTINEL2_STATS, dropBands } from './transforms';

/** SatMAE's eval resize: int(size / crop_pct), crop_pct = 224/256 for size ≤ 224, else 1. */
export function evalResizeFor(size: number): number {
  const cropPct = size <= 224 ? 224 / 256 : 1;
  return Math.floor(size / cropPct);
}

/** Drop bands as a SampleTransform (e.g. [0, 9, 10]). */
export function dropBandsWith(bands: readonly number[]): SampleTransform {
  return (s) => mapImages(s, (img) => dropBands(img, bands), (m) => m);
}

/** MAE pre-training augmentation. */
export function maePretrain(size: number, stats: NormStats = IMAGENET_STATS): SampleTransform {
  return compose(randomResizedCrop({ size, scale: [0.2, 1] }), randomHFlip(0.5), normalizeWith(stats));
}

/** SatMAE/ExPLoRA fMoW-RGB training transform. */
export function fmowTrain(size: number, stats: NormStats = FMOW_RGB_STATS): SampleTransform {
  return compose(normalizeWith(stats), randomResizedCrop({ size, scale: [0.2, 1] }), randomHFlip(0.5));
}

/** SatMAE/ExPLoRA fMoW-RGB evaluation transform. */
export function fmowEval(size: number, stats: NormStats = FMOW_RGB_STATS): SampleTransform {
  return compose(normalizeWith(stats), resizeCenterCrop(evalResizeFor(size), size));
}

/** SatMAE Sentinel training transform; `droppedBands` are removed after it (SatMAE order). */
export function sentinelTrain(size: number, droppedBands: readonly number[] = [], stats: NormStats = SENTINEL2_STATS): SampleTransform {
  const t = compose(sentinelNormalizeWith(stats), randomResizedCrop({ size, scale: [0.2, 1] }), randomHFlip(0.5));
  return droppedBands.length ? compose(t, dropBandsWith(droppedBands)) : t;
}

/** SatMAE Sentinel evaluation transform. */
export function sentinelEval(size: number, droppedBands: readonly number[] = [], stats: NormStats = SENTINEL2_STATS): SampleTransform {
  const t = compose(sentinelNormalizeWith(stats), resizeCenterCrop(evalResizeFor(size), size));
  return droppedBands.length ? compose(t, dropBandsWith(droppedBands)) : t;
}

/** VTAB-1k as in NOAH/Consolidator/PYRA: direct bicubic resize to size×size, ImageNet mean/std, train = test. */
export function vtab(size = 224): SampleTransform {
  return compose(resizeTo(size), normalizeWith(IMAGENET_STATS));
}

/** DINOv2 linear-probe evaluation transform. */
export function linearProbeEval(size: number): SampleTransform {
  return compose(resizeCenterCrop(evalResizeFor(size), size), normalizeWith(IMAGENET_STATS));
}
