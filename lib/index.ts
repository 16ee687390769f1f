/**
 * vitpeft — a TypeScript research kit for parameter-efficient Vision Transformers on TensorFlow.js.
 *
 * Start with `await init()` (backend selection), then build models from presets (`createVit`), run them with
 * `vitForward`, train with `trainLoop` / `trainStep`, save with `saveCheckpoint`.
 */
export * as tf from '@tensorflow/tfjs';
export * from './backend';
export * from './rng';
export * from './init';
export * from './tree';
export * from './check';
export * from './vit/config';
export * from './vit/params';
export * from './vit/posembed';
export * from './vit/forward';
export * from './ops/nn';
export * from './train/optim';
export * from './train/schedule';
export * from './train/loss';
export * from './train/step';
export * from './io/safetensors';
export * from './io/checkpoint';
export * from './peft/patterns';
export * from './peft/lora';
export * from './peft/trainable';
export * from './peft/shapes';
export * from './peft/explora';
export * from './tome/schedule';
export * from './tome/matching';
export * from './tome/merge';
export * from './tome/pyra';
export * from './tome/hooks';
export * from './tome/flops';
export * from './tome/throughput';
export * from './tome/vis';
export * from './eval/features';
export * from './eval/linear-probe';
export * from './eval/knn';
export * from './eval/ridge-probe';
export * from './mae/patchify';
export * from './mae/masking';
export * from './mae/loss';
export * from './mae/encoder';
export * from './mae/decoder';
export * from './mae/mae';
export * from './mae/recon';
export * from './mae/satmae-group';
export * from './mae/satmae-temporal';
export * from './report/display';
export * from './report/table';
export * from './report/plot';
export * from './report/image';
export * from './report/progress';
export * from './report/paths';
export * from './report/runs';
export * from './report/notebook';
export * from './report/params';
export * from './report/steps';
export * from './ops/fast';
export * from './vit/checkpoint';
export * from './dino/head';
export * from './dino/teacher';
export * from './dino/loss';
export * from './dino/masking';
export * from './dino/ema';
export * from './dino/dinov2';
export * from './io/timm';
