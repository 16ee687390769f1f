/**
 * `npx tsx bench/pyra-profile.ts`: where PYRA's extra training time over ToMe goes — a per-kernel account of one AdamW
 * training step (forward + backward + update, training mode as bench/pyra-speed.ts: the released LoRA with dropout 0.1,
 * drop path 0.1, a 100-class head) of ToMe + LoRA and PYRA at the same schedule, measured in one process as ratios.
 *
 * Protocol: one untimed warm-up step per method, then `BENCH_REPEATS` rounds, each profiling one step of every method
 * (`tf.profile`: kernelTimeMs per kernel as the engine times it, synchronously on wasm), the order alternated every round.
 * Per (method, kernel name) the kernel milliseconds are summed over the step and the median over rounds is kept;
 * "engine/JS" = the step's wall time − the sum of its kernel times (tape bookkeeping, gradient wiring, tidy, the
 * optimizer's JS, and kernels' own JS outside the timed region). Output: JSON lines {kind:'kernel'} per kernel name
 * with both methods' medians and the difference, {kind:'step'} per method, {kind:'host'} at both ends.
 *
 * Env: BENCH_MODEL (vit_base_patch16_224), BENCH_SCHEDULE (low), BENCH_BATCH (4), BENCH_REPEATS (3), BENCH_TOP (25).
 */
import * as tf from '@tensorflow/tfjs';
import { init, backendReport } from '../lib/backend';
import { createVit, disposeVit } from '../lib/vit/params';
import { VitPresetName } from '../lib/vit/config';
import { vitForward } from '../lib/vit/forward';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { Rng } from '../lib/rng';
import { PyraSchedulePreset, PYRA_SCHEDULES } from '../lib/tome/schedule';
import { buildPyraModel, PyraModel } from '../recipes/pyra-presets';
import { hostReport } from './host';

const env = (k: string, d: string): string => process.env[k] ?? d;
const median = (v: readonly number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
  await init();
  const big = env('BENCH_MODEL', 'vit_base_patch16_224') as VitPresetName & PyraSchedulePreset;
  if (!(big in PYRA_SCHEDULES)) throw new Error(`BENCH_MODEL: no PYRA schedule for ${big}; valid: ${Object.keys(PYRA_SCHEDULES).join(', ')}`);
  const schedule = env('BENCH_SCHEDULE', 'low') as 'low' | 'high';
  const batch = Number(env('BENCH_BATCH', '4'));
  const repeats = Number(env('BENCH_REPEATS', '3'));
  const top = Number(env('BENCH_TOP', '25'));
  const be = backendReport();
  console.log(JSON.stringify({ kind: 'host', at: 'start', ...hostReport(), backend: be.backend, threads: be.threads, simd: be.simd, fastOps: be.fastOps }));
  const vit = createVit(big, { numClasses: 100, dropPathRate: 0.1 }, { seed: 0 });
  const rank = big.includes('large') ? 12 : big.includes('small') ? 4 : 8;
  const lora = { loraInit: 'truncNormal', loraDropout: 0.1, propAttn: true, loraRank: rank, backbone: big, schedule } as const;
  const methods: Array<{ name: string; model: PyraModel }> = [
    { name: `tome-${schedule}`, model: buildPyraModel(vit, { method: 'tome', ...lora }, { seed: 0 }) },
    { name: `pyra-${schedule}`, model: buildPyraModel(vit, { method: 'pyra', ...lora }, { seed: 0 }) },
  ];
  const rng = Rng.derive(0, 'bench-pyra-profile');
  const v = new Float32Array(batch * 224 * 224 * 3);
  for (let i = 0; i < v.length; i++) v[i] = rng.uniform(-1, 1);
  const x = tf.tensor4d(v, [batch, 224, 224, 3]);
  const y = tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 100), 'float32');
  const opts = new Map(methods.map((m) => [m.name, new Optimizer(ADAMW_DEFAULTS, m.model.trainable)]));
  const train = (m: (typeof methods)[number], seed: number): void => {
    const stepRng = Rng.derive(seed, 'bench-pyra-profile-step'); // the same dropout / drop-path draws for both methods
    const r = trainStep({
      params: m.model.trainable,
      optimizer: opts.get(m.name)!,
      lr: 1e-3,
      weightDecay: 1e-4,
      loss: () => ({ loss: crossEntropy(vitForward(vit, x, { hooks: m.model.hooks, training: true, rng: stepRng }).logits!, y) }),
    });
    if (!Number.isFinite(r.loss)) throw new Error(`bench: ${m.name} gave a non-finite loss`);
  };
  // per method: per kernel name, the summed ms of each round; the step's wall ms per round
  const perKernel = new Map<string, Map<string, number[]>>(methods.map((m) => [m.name, new Map()]));
  const counts = new Map<string, Map<string, number>>(methods.map((m) => [m.name, new Map()]));
  const wall = new Map<string, number[]>(methods.map((m) => [m.name, []]));
  const kernelSum = new Map<string, number[]>(methods.map((m) => [m.name, []]));
  try {
    for (const m of methods) train(m, 0); // warm-up: kernels, XNNPACK caches, optimizer moments
    for (let k = 0; k < repeats; k++) {
      const order = k % 2 ? [...methods].reverse() : methods;
      for (const m of order) {
        const t0 = process.hrtime.bigint();
        const info = await tf.profile(() => train(m, k + 1));
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        const sums = new Map<string, number>();
        const n = new Map<string, number>();
        let total = 0;
        for (const kr of info.kernels) {
          const t = typeof kr.kernelTimeMs === 'number' ? kr.kernelTimeMs : 0;
          sums.set(kr.name, (sums.get(kr.name) ?? 0) + t);
          n.set(kr.name, (n.get(kr.name) ?? 0) + 1);
          total += t;
        }
        for (const [name, t] of sums) {
          const arr = perKernel.get(m.name)!.get(name) ?? [];
          arr.push(t);
          perKernel.get(m.name)!.set(name, arr);
        }
        counts.set(m.name, n);
        wall.get(m.name)!.push(ms);
        kernelSum.get(m.name)!.push(total);
        console.error(`round ${k} ${m.name}: step ${ms.toFixed(0)} ms, kernels ${total.toFixed(0)} ms, ${info.kernels.length} kernel calls`);
      }
    }
    const [a, b] = methods.map((m) => m.name);
    const names = new Set([...perKernel.get(a)!.keys(), ...perKernel.get(b)!.keys()]);
    const rows = [...names].map((name) => {
      const ta = median(perKernel.get(a)!.get(name) ?? [0]);
      const tb = median(perKernel.get(b)!.get(name) ?? [0]);
      return { kind: 'kernel', kernel: name, [a]: +ta.toFixed(1), [b]: +tb.toFixed(1), diffMs: +(tb - ta).toFixed(1), calls: [counts.get(a)!.get(name) ?? 0, counts.get(b)!.get(name) ?? 0] };
    });
    rows.sort((p, q) => Math.abs(q.diffMs) - Math.abs(p.diffMs));
    for (const r of rows.slice(0, top)) console.log(JSON.stringify(r));
    for (const m of methods) {
      const w = median(wall.get(m.name)!);
      const ks = median(kernelSum.get(m.name)!);
      const calls = [...counts.get(m.name)!.values()].reduce((s, c) => s + c, 0);
      console.log(JSON.stringify({ kind: 'step', model: big, method: m.name, batch, repeats, stepMsMedian: +w.toFixed(0), kernelMsMedian: +ks.toFixed(0), engineJsMs: +(w - ks).toFixed(0), kernelCalls: calls, wallMs: wall.get(m.name)!.map((t) => +t.toFixed(0)) }));
    }
    const ratio = median(wall.get(b)!.map((t, i) => t / wall.get(a)![i]));
    console.log(JSON.stringify({ kind: 'ratio', [`${b}/${a}`]: +ratio.toFixed(3), kernels: +(median(kernelSum.get(b)!) / median(kernelSum.get(a)!)).toFixed(3) }));
  } finally {
    for (const o of opts.values()) o.dispose();
    for (const m of methods) m.model.dispose();
    disposeVit(vit);
    tf.dispose([x, y]);
  }
  console.log(JSON.stringify({ kind: 'host', at: 'end', ...hostReport() }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
