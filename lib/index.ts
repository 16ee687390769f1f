/**
 * vitpeft — a TypeScript research kit for parameter-efficient Vision Transformers on TensorFlow.js.
 *
 * Start with `await init()` (backend selection), then build models from presets (`createVit`), run them with
 * `vitForward`, train with `trainLoop` / `trainStep`, save with `saveCheckpoint`. Reporting helpers (tables, charts,
 * progress, run records) are in `vitpeft/report` (lib/report/index.ts).
 */
export * as tf from '@tensorflow/tfjs';
export * from './backend';
export * from './webgpu';
export * from './tensorflow-node';
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
export * from './train/groups';
export * from './train/schedule';
export * from './train/loss';
export * from './train/step';
export * from './io/safetensors';
export * from './io/atomic';
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
// worker threads: data-parallel runs (recipes' runRecipe({workers})), evaluation on workers, the pool itself
export * from './parallel/cores';
export { parallelContext, isLeader, isDataParallel, shardRange } from './parallel/context';
export { runWorkers, startWorkers, liveWorkers, liveSharedBytes, WorkerError, WorkerInterrupt } from './workers/pool';
export type { RunWorkersOptions, WorkerRun } from './workers/pool';
export { runParallel } from './workers/run';
export type { JobContext, WorkerJob, WorkerProgress } from './workers/protocol';
export { featuresOnWorkers, predictOnWorkers, throughputOnWorkers } from './workers/eval';
export * from './mae/patchify';
export * from './mae/masking';
export * from './mae/loss';
export * from './mae/encoder';
export * from './mae/decoder';
export * from './mae/mae';
export * from './mae/recon';
export * from './mae/satmae-group';
export * from './mae/satmae-temporal';
export * from './ops/fast';
export * from './vit/checkpoint';
export * from './dino/head';
export * from './dino/teacher';
export * from './dino/loss';
export * from './dino/masking';
export * from './dino/ema';
export * from './dino/dinov2';
export * from './dino/param-groups';
export * from './io/timm';
export * from './io/zip';
export * from './io/pickle';
export * from './io/dtype';
export * from './io/pth';
export * from './io/npz';
export * from './io/keymaps/common';
export * from './io/keymaps/dinov2';
export * from './io/keymaps/mae';
export * from './io/keymaps/explora';
export * from './io/keymaps/hf';
export * from './io/keymaps/big-vision';
export * from './io/keymaps/timm';
export * from './io/hf-config';
export * from './io/convert';
export * from './io/hub';
export * from './io/pretrained';
export * from './io/peft';
export * from './io/hf-export';
