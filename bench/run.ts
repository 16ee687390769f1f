/**
 * `npm run bench`: throughput of ViT-Ti/16@224 on the active backend, printed as JSON lines.
 *
 * Lines: {"kind":"backend", ...backendReport()}, then one line per measurement
 * {"kind":"forward"|"train", model, batch, threads, imgPerSec, msPerIter, iters}. Warm-up iterations are excluded.
 * Options (env): BENCH_BATCH (default 16), BENCH_ITERS (default 3), BENCH_WARMUP (default 1), VITPEFT_BACKEND.
 */
import * as tf from '@tensorflow/tfjs';
import { init, backendReport } from '../lib/backend';
import { createVit, disposeVit, vitVariables } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { Rng } from '../lib/rng';

function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  return v ? Number.parseInt(v, 10) : dflt;
}

function time(fn: () => void, warmup: number, iters: number): number {
  for (let i = 0; i < warmup; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iters; i++) fn();
  return Number(process.hrtime.bigint() - t0) / 1e6 / iters; // ms per iteration
}

async function main(): Promise<void> {
  await init();
  const rep = backendReport();
  console.log(JSON.stringify({ kind: 'backend', ...rep }));
  const batch = envInt('BENCH_BATCH', 16);
  const iters = envInt('BENCH_ITERS', 3);
  const warmup = envInt('BENCH_WARMUP', 1);
  const model = 'vit_tiny_patch16_224';
  const vit = createVit(model, { numClasses: 10 }, { seed: 0 });
  const x = tf.randomUniform([batch, 224, 224, 3], -1, 1, 'float32', 1) as tf.Tensor4D;
  const y = tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 10), 'int32');

  const fwdMs = time(() => tf.tidy(() => vitForward(vit, x).logits!.dataSync()), warmup, iters);
  console.log(JSON.stringify({ kind: 'forward', model, batch, threads: rep.threads, backend: rep.backend, iters, msPerIter: fwdMs, imgPerSec: (1000 * batch) / fwdMs }));

  const params = vitVariables(vit);
  const opt = new Optimizer(ADAMW_DEFAULTS, params);
  let step = 0;
  const trainMs = time(
    () => {
      const rng = Rng.derive(0, 'bench', step++);
      trainStep({ params, optimizer: opt, lr: 1e-4, weightDecay: 0.05, loss: () => crossEntropy(vitForward(vit, x, { training: true, rng }).logits!, y) });
    },
    warmup,
    iters,
  );
  console.log(JSON.stringify({ kind: 'train', model, what: 'full fine-tune, AdamW', batch, threads: rep.threads, backend: rep.backend, iters, msPerIter: trainMs, imgPerSec: (1000 * batch) / trainMs }));
  opt.dispose();
  disposeVit(vit);
  tf.dispose([x, y]);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
