/**
 * `npx tsx bench/pyra-speed.ts`: inference throughput AND training cost of the PYRA paper's methods, measured so they
 * can be compared: LoRA on the unmerged model, ToMe + LoRA and PYRA at PYRA's low / high schedules, and LoRA on the
 * smaller model — all with PYRA's released LoRA (shared qkv A/B, rank 8 / 4) and a new head, as the paper times them.
 *
 * Protocol: the methods run interleaved, one iteration each per round, the order rotated every round (round k starts
 * at method k mod M), for `BENCH_REPEATS` rounds after one untimed warm-up round. Machine load drifts on a shared
 * host; interleaving spreads it over every method, and the ratios are also taken per round (method ÷ unmerged LoRA,
 * PYRA ÷ ToMe of the same round), whose median is robust to a slow round. Inference: one eval forward (LoRA unmerged,
 * proportional attention, logits read back). Training: one AdamW `trainStep` (forward + backward + update, training
 * mode: LoRA dropout, drop path 0.1 as released). Memory: the engine's peak tensor bytes during one extra, untimed
 * training step per method (`tf.profile` peakBytes: activations kept for the backward + gradients + moments), and the
 * trainable parameter count. The wasm heap itself only grows, so it is reported once (its size at the end = the
 * process's peak).
 *
 * JSON lines: {kind:'host'} at the start and the end (load averages), {kind:'sample'} per timed iteration,
 * {kind:'summary'} per (phase, method): median / min / max / IQR of ms, img/s at the median, median per-round ratio to
 * unmerged LoRA (speed-up) and, for PYRA, to ToMe at the same schedule; {kind:'memory'} per method.
 *
 * Env: BENCH_MODEL (vit_base_patch16_224), BENCH_SMALL (vit_small_patch16_224; '' to skip), BENCH_BATCH (4),
 * BENCH_TRAIN_BATCH (4), BENCH_REPEATS (5), BENCH_PHASES (infer,train), BENCH_METHODS (all), BENCH_MEMORY (1; 0 skips the
 * memory step), VITPEFT_BACKEND.
 */
import * as tf from '@tensorflow/tfjs';
import { init, backendReport } from '../lib/backend';
import { createVit, disposeVit, Vit } from '../lib/vit/params';
import { VitPresetName } from '../lib/vit/config';
import { vitForward } from '../lib/vit/forward';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { Rng } from '../lib/rng';
import { PyraSchedulePreset, PYRA_SCHEDULES } from '../lib/tome/schedule';
import { buildPyraModel, PyraModel, PyraPresetConfig } from '../recipes/pyra-presets';
import { hostReport } from './host';

/** Linear-interpolated quantile q ∈ [0, 1] of the values. */
function quantile(v: readonly number[], q: number): number {
  const s = [...v].sort((a, b) => a - b);
  const x = q * (s.length - 1);
  const i = Math.floor(x);
  return i + 1 < s.length ? s[i] + (x - i) * (s[i + 1] - s[i]) : s[i];
}
const median = (v: readonly number[]): number => quantile(v, 0.5);

const env = (k: string, d: string): string => process.env[k] ?? d;
const int = (k: string, d: number): number => {
  const v = Number.parseInt(env(k, String(d)), 10);
  if (!(v > 0)) throw new Error(`${k}: expected a positive integer, got ${process.env[k]}`);
  return v;
};

interface Method {
  name: string;
  vit: Vit;
  model: PyraModel;
}

function makeMethods(big: VitPresetName & PyraSchedulePreset, small: VitPresetName | null, only: string[] | null): { methods: Method[]; vits: Vit[] } {
  const numClasses = 100;
  const vits: Vit[] = [];
  const methods: Method[] = [];
  const lora = { loraInit: 'truncNormal', loraDropout: 0.1, propAttn: true } as const;
  const vb = createVit(big, { numClasses, dropPathRate: 0.1 }, { seed: 0 });
  vits.push(vb);
  const bigRank = big.includes('large') ? 12 : 8;
  const specs: Array<[string, PyraPresetConfig]> = [
    ['lora', { method: 'lora', backbone: big, schedule: null, loraRank: bigRank, ...lora }],
    ['tome-low', { method: 'tome', backbone: big, schedule: 'low', loraRank: bigRank, ...lora }],
    ['pyra-low', { method: 'pyra', backbone: big, schedule: 'low', loraRank: bigRank, ...lora }],
    ['tome-high', { method: 'tome', backbone: big, schedule: 'high', loraRank: bigRank, ...lora }],
    ['pyra-high', { method: 'pyra', backbone: big, schedule: 'high', loraRank: bigRank, ...lora }],
  ];
  for (const [name, p] of specs) if (!only || only.includes(name)) methods.push({ name, vit: vb, model: buildPyraModel(vb, p, { seed: 0 }) });
  if (small && (!only || only.includes('small-lora'))) {
    const vs = createVit(small, { numClasses, dropPathRate: 0.1 }, { seed: 0 });
    vits.push(vs);
    const rank = small.includes('small') ? 4 : 8;
    methods.push({ name: 'small-lora', vit: vs, model: buildPyraModel(vs, { method: 'lora', backbone: small, schedule: null, loraRank: rank, ...lora }, { seed: 0 }) });
  }
  return { methods, vits };
}

async function main(): Promise<void> {
  await init();
  const big = env('BENCH_MODEL', 'vit_base_patch16_224') as VitPresetName & PyraSchedulePreset;
  if (!(big in PYRA_SCHEDULES)) throw new Error(`BENCH_MODEL: no PYRA schedule for ${big}; valid: ${Object.keys(PYRA_SCHEDULES).join(', ')}`);
  const small = (env('BENCH_SMALL', 'vit_small_patch16_224') || null) as VitPresetName | null;
  const batch = int('BENCH_BATCH', 4);
  const trainBatch = int('BENCH_TRAIN_BATCH', 4);
  const repeats = int('BENCH_REPEATS', 5);
  const phases = env('BENCH_PHASES', 'infer,train').split(',');
  const only = process.env.BENCH_METHODS ? process.env.BENCH_METHODS.split(',') : null;
  const be = backendReport();
  console.log(JSON.stringify({ kind: 'host', at: 'start', ...hostReport(), backend: be.backend, threads: be.threads, simd: be.simd, fastOps: be.fastOps }));
  const { methods, vits } = makeMethods(big, small, only);
  const rng = Rng.derive(0, 'bench-pyra-speed');
  const images = (n: number, size: number): tf.Tensor4D => {
    const v = new Float32Array(n * size * size * 3);
    for (let i = 0; i < v.length; i++) v[i] = rng.uniform(-1, 1);
    return tf.tensor4d(v, [n, size, size, 3]);
  };
  const side = 224;
  const xInfer = images(batch, side);
  const xTrain = images(trainBatch, side);
  const yTrain = tf.tensor1d(Array.from({ length: trainBatch }, (_, i) => i % 100), 'float32');
  const opts = new Map(methods.map((m) => [m.name, new Optimizer(ADAMW_DEFAULTS, m.model.trainable)]));
  const stepRng = Rng.derive(0, 'bench-pyra-speed-step');
  const infer = (m: Method): void => {
    tf.tidy(() => {
      vitForward(m.vit, xInfer, { hooks: m.model.hooks, training: false }).logits!.dataSync();
    });
  };
  const train = (m: Method): void => {
    const r = trainStep({
      params: m.model.trainable,
      optimizer: opts.get(m.name)!,
      lr: 1e-3,
      weightDecay: 1e-4,
      loss: () => ({ loss: crossEntropy(vitForward(m.vit, xTrain, { hooks: m.model.hooks, training: true, rng: stepRng }).logits!, yTrain) }),
    });
    if (!Number.isFinite(r.loss)) throw new Error(`bench: ${m.name} gave a non-finite loss`);
  };
  try {
    for (const phase of phases) {
      if (phase !== 'infer' && phase !== 'train') throw new Error(`BENCH_PHASES: expected 'infer' and/or 'train', got '${phase}'`);
      const run = phase === 'infer' ? infer : train;
      const imgs = phase === 'infer' ? batch : trainBatch;
      for (const m of methods) run(m); // warm-up round (kernels, XNNPACK caches, optimizer moments)
      const ms = new Map<string, number[]>(methods.map((m) => [m.name, []]));
      for (let k = 0; k < repeats; k++) {
        for (let j = 0; j < methods.length; j++) {
          const m = methods[(k + j) % methods.length];
          const t0 = process.hrtime.bigint();
          run(m);
          const t = Number(process.hrtime.bigint() - t0) / 1e6;
          ms.get(m.name)!.push(t);
          console.log(JSON.stringify({ kind: 'sample', phase, method: m.name, round: k, position: j, ms: +t.toFixed(1) }));
        }
      }
      const base = ms.get('lora');
      for (const m of methods) {
        const v = ms.get(m.name)!;
        const med = median(v);
        const perRound = (ref: number[] | undefined): number | null => (ref ? +median(v.map((x, i) => ref[i] / x)).toFixed(3) : null);
        const tomeRef = m.name.startsWith('pyra-') ? ms.get(m.name.replace('pyra-', 'tome-')) : undefined;
        console.log(JSON.stringify({
          kind: 'summary', phase, model: m.model.preset.backbone, method: m.name, schedule: m.model.schedule, batch: imgs, repeats,
          msMedian: +med.toFixed(1), msMin: +Math.min(...v).toFixed(1), msMax: +Math.max(...v).toFixed(1),
          msIqr: [+quantile(v, 0.25).toFixed(1), +quantile(v, 0.75).toFixed(1)], imgPerSec: +((1000 * imgs) / med).toFixed(3),
          speedupVsLora: perRound(base), pyraOverTomeTime: tomeRef ? +median(v.map((x, i) => x / tomeRef[i])).toFixed(3) : null,
        }));
      }
    }
    for (const m of process.env.BENCH_MEMORY === '0' ? [] : methods) {
      const info = await tf.profile(() => train(m));
      let trainable = 0;
      for (const v of m.model.trainable.values()) trainable += v.size;
      console.log(JSON.stringify({ kind: 'memory', model: m.model.preset.backbone, method: m.name, batch: trainBatch, enginePeakMiB: +(info.peakBytes / 2 ** 20).toFixed(1), trainable }));
    }
  } finally {
    for (const o of opts.values()) o.dispose();
    for (const m of methods) m.model.dispose();
    for (const v of vits) disposeVit(v);
    tf.dispose([xInfer, xTrain, yTrain]);
  }
  const mem = (tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm;
  console.log(JSON.stringify({ kind: 'host', at: 'end', ...hostReport(), wasmHeapMiB: mem ? +(mem.HEAPU8.length / 2 ** 20).toFixed(0) : null }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
