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
export * from './ops/fast';
export * from './vit/checkpoint';
