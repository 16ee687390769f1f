/**
 * `npx tsx bench/mae.ts`: MAE throughput on the active backend, JSON lines (as bench/run.ts).
 *
 * Model: an MAE with the given encoder preset (default ViT-Ti/16 width, MAE sin-cos) and the standard 512-d 8-block
 * decoder at 224 px, mask ratio 0.75. Measures: forward + loss, a full training step (AdamW), and an ExPLoRA
 * M-[L]-r64 step (LoRA r64 Q,V on the other blocks, decoder r8). Weights are zeros (`skipInit`): timing only.
 * Options (env): BENCH_BATCH (default 4), BENCH_ITERS (default 2), BENCH_WARMUP (default 1),
 * BENCH_ENCODER ('tiny' | 'small' | 'base', default 'tiny').
 */
import * as tf from '@tensorflow/tfjs';
import { init, backendReport } from '../lib/backend';
import { Rng } from '../lib/rng';
import { createMae, maeForward, maeVariables, disposeMae } from '../lib/mae/mae';
import { setupExploraMae } from '../recipes/explora-mae';
import { Optimizer, ADAMW_MAE } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';

function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  return v ? Number.parseInt(v, 10) : dflt;
}

function time(fn: () => void, warmup: number, iters: number): number {
  for (let i = 0; i < warmup; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iters; i++) fn();
  return Number(process.hrtime.bigint() - t0) / 1e6 / iters;
}

const WIDTHS = { tiny: [192, 3], small: [384, 6], base: [768, 12] } as const;

async function main(): Promise<void> {
  await init();
  const rep = backendReport();
  console.log(JSON.stringify({ kind: 'backend', ...rep }));
  const batch = envInt('BENCH_BATCH', 4);
  const iters = envInt('BENCH_ITERS', 2);
  const warmup = envInt('BENCH_WARMUP', 1);
  const enc = (process.env.BENCH_ENCODER ?? 'tiny') as keyof typeof WIDTHS;
  const [D, h] = WIDTHS[enc];
  const model = `mae_vit_${enc}_patch16_dec512d8b`;
  const mae = createMae('mae_vit_base_patch16', { encoder: { embedDim: D, numHeads: h }, skipInit: true });
  const x = tf.randomUniform([batch, 224, 224, 3], -1, 1, 'float32', 1) as tf.Tensor4D;
  const line = (kind: string, what: string, ms: number): void =>
    console.log(JSON.stringify({ kind, model, what, batch, backend: rep.backend, threads: rep.threads, iters, msPerIter: ms, imgPerSec: (1000 * batch) / ms }));
  let step = 0;
  line('forward', 'encoder (49 visible tokens) + decoder + norm-pix loss', time(() => tf.tidy(() => maeForward(mae, x, { rng: Rng.derive(0, step++) }).loss.dataSync()), warmup, iters));

  const params = new Map([...maeVariables(mae)].filter(([, v]) => v.trainable));
  const opt = new Optimizer(ADAMW_MAE, params);
  line('train', 'full MAE pre-training step, AdamW', time(() => trainStep({ params, optimizer: opt, lr: 1e-4, loss: () => maeForward(mae, x, { rng: Rng.derive(1, step++), training: true }).loss }), warmup, iters));
  opt.dispose();

  const run = setupExploraMae(mae, 'M-ExPLoRA-[L]-r64');
  line('train', `ExPLoRA M-[L]-r64 step (${run.trainable.size} trainable tensors)`, time(() => trainStep({ params: run.trainable, optimizer: run.optimizer, lr: 1e-4, loss: () => run.loss(x, Rng.derive(2, step++)) }), warmup, iters));
  run.dispose();
  disposeMae(mae);
  x.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
