/**
 * `npx tsx bench/train-step.ts`: overhead of the one training step's checks on a small ExPLoRA step, JSON lines.
 *
 * Model: M-ExPLoRA-[L]-r8 (decoder r2) on an MAE with a ViT-Ti-width encoder (192 wide, 3 heads, 4 blocks, 64 px,
 * patch 8, 64 tokens) and a 128-wide 2-block decoder; batch BENCH_BATCH (default 8). Variants, interleaved round by
 * round in one process so that machine load hits them alike (the ratio is the number to read):
 * - `reference`: the former step, kept here as the baseline — one tidy with `tf.variableGrads`, global clip, AdamW,
 *   loss and norm read back after the update (no finiteness check before the update, no groups, no metrics);
 * - `trainStep`: the kit's step (non-finite check read back before the update, clip groups, metric plumbing);
 * - `trainStep + metric`: the same with one named metric (the loss again) returned by the loss function;
 * - `accumulate 2`: the same images as 2 micro-batches of BENCH_BATCH/2 (one update).
 * Before timing, the reference and `trainStep` are run 2 steps from the same state and must give bit-identical
 * parameters (the check changes no number). Options (env): BENCH_BATCH, BENCH_ROUNDS (default 5), BENCH_ITERS (steps
 * per variant and round, default 3).
 */
import * as tf from '@tensorflow/tfjs';
import * as os from 'os';
import { init, backendReport } from '../lib/backend';
import { Rng } from '../lib/rng';
import { createMae, disposeMae } from '../lib/mae/mae';
import { setupExploraMae } from '../recipes/explora-mae';
import { exploraRecipe } from '../lib/peft/explora';
import { Optimizer } from '../lib/train/optim';
import { trainStep, clipByGlobalNorm, TrainableSet } from '../lib/train/step';

function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  return v ? Number.parseInt(v, 10) : dflt;
}

/** The former `trainStep` body: update first, loss read afterwards. */
function referenceStep(params: TrainableSet, optimizer: Optimizer, loss: () => tf.Scalar, lr: number, clip: number): number {
  const vars = [...params.values()];
  const pathOf = new Map<string, string>();
  for (const [p, v] of params) pathOf.set(v.name, p);
  const [lossT, normT] = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(loss, vars);
    const byPath = new Map<string, tf.Tensor>();
    for (const [name, g] of Object.entries(grads)) {
      const p = pathOf.get(name);
      if (p !== undefined && g) byPath.set(p, g);
    }
    const c = clipByGlobalNorm(byPath, clip);
    optimizer.apply(c.grads, lr, 0);
    return [value, c.norm];
  });
  const l = lossT.dataSync()[0];
  normT.dataSync();
  tf.dispose([lossT, normT]);
  return l;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  await init();
  const rep = backendReport();
  const host = { cpus: os.cpus().length, load1: os.loadavg()[0] };
  console.log(JSON.stringify({ kind: 'backend', ...rep, host }));
  const batch = envInt('BENCH_BATCH', 8);
  const rounds = envInt('BENCH_ROUNDS', 5);
  const iters = envInt('BENCH_ITERS', 3);
  const mk = () => {
    const mae = createMae('mae_vit_base_patch16', {
      encoder: { imgSize: 64, patchSize: 8, embedDim: 192, depth: 4, numHeads: 3 },
      decoder: { embedDim: 128, depth: 2, numHeads: 4 },
      seed: 0,
    });
    const run = setupExploraMae(mae, exploraRecipe('M-ExPLoRA-[L]-r8', { decoderRank: 2 }), { seed: 0 });
    return { mae, run };
  };
  const a = mk();
  const b = mk();
  const x = tf.randomUniform([batch, 64, 64, 3], -1, 1, 'float32', 1) as tf.Tensor4D;
  const halves = [0, 1].map((i) => x.slice([(i * batch) / 2, 0, 0, 0], [batch / 2, -1, -1, -1]) as tf.Tensor4D);
  let step = 0;
  const lossA = (): tf.Scalar => a.run.loss(x, Rng.derive(0, 'step', step));
  // same numbers: 2 steps each from the same state
  for (let s = 0; s < 2; s++, step++) {
    referenceStep(a.run.trainable, a.run.optimizer, () => a.run.loss(x, Rng.derive(0, 'step', step)), 1e-3, 1);
    trainStep({ params: b.run.trainable, optimizer: b.run.optimizer, lr: 1e-3, clipGradNorm: 1, loss: () => b.run.loss(x, Rng.derive(0, 'step', step)) });
  }
  let same = true;
  for (const [p, v] of a.run.trainable) {
    const w = b.run.trainable.get(p)!.dataSync();
    if (v.dataSync().some((q, i) => q !== w[i])) same = false;
  }
  console.log(JSON.stringify({ kind: 'check', what: 'reference and trainStep give bit-identical parameters after 2 steps', ok: same }));
  if (!same) throw new Error('reference and trainStep differ');
  b.run.dispose();
  disposeMae(b.mae);

  const p = a.run.trainable;
  const o = a.run.optimizer;
  const variants: Record<string, () => void> = {
    reference: () => void referenceStep(p, o, lossA, 1e-3, 1),
    trainStep: () => void trainStep({ params: p, optimizer: o, lr: 1e-3, clipGradNorm: 1, loss: lossA }),
    'trainStep + metric': () => void trainStep({ params: p, optimizer: o, lr: 1e-3, clipGradNorm: 1, loss: () => { const l = lossA(); return { loss: l, metrics: { again: l } }; } }),
    'accumulate 2': () => void trainStep({ params: p, optimizer: o, lr: 1e-3, clipGradNorm: 1, microBatches: 2, loss: (i) => a.run.loss(halves[i], Rng.derive(0, 'step', step, 'micro', i)) }),
  };
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  for (const fn of Object.values(variants)) fn(); // warm-up
  const n0 = tf.memory().numTensors;
  for (let r = 0; r < rounds; r++) {
    for (const [name, fn] of Object.entries(variants)) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < iters; i++, step++) fn();
      times[name].push(Number(process.hrtime.bigint() - t0) / 1e6 / iters);
    }
  }
  if (tf.memory().numTensors !== n0) throw new Error(`leaked ${tf.memory().numTensors - n0} tensors`);
  const ref = median(times.reference);
  for (const [name, ts] of Object.entries(times)) {
    console.log(JSON.stringify({
      kind: 'train-step', model: 'M-ExPLoRA-[L]-r8 on MAE d192x4 p8 64px, decoder d128x2 r2', what: name, batch, trainable: p.size,
      backend: rep.backend, threads: rep.threads, rounds, iters, msPerStepMedian: median(ts), msPerStep: ts, ratioToReference: median(ts) / ref, load1End: os.loadavg()[0],
    }));
  }
  tf.dispose([x, ...halves]);
  a.run.dispose();
  disposeMae(a.mae);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
