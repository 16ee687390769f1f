/**
 * `npm run bench`: ViT throughput on the active backend, printed as JSON lines; `npm run bench -- --peer` also runs the
 * same configurations in PyTorch (bench/peer_torch.py, Debian python3-torch, 1 thread) in the same run and prints
 * the ratios. Not part of CI.
 *
 * Lines: {"kind":"backend", ...backendReport()}, then per configuration and repeat
 *   {"kind":"measure", config, model, batch, threads, backend, fastOps, iters, msPerIter, imgPerSec, ...}
 *   {"kind":"peer", ...}                       (with --peer)
 *   {"kind":"ratio", config, ours, peer, ratio, cpuRatio, bestRatio} (ours/peer img/s by mean wall time, by process
 *   CPU time, and by the best iteration of each side)
 * and at the end {"kind":"summary", ...} with the median ratio per configuration.
 *
 * Configurations (BENCH_CONFIGS or --configs=a,b; default forward,explora,full):
 *   forward  inference of BENCH_MODEL (default vit_tiny_patch16_224)
 *   explora  ExPLoRA-style step: last block + all norms + CLS + head train, LoRA-rBENCH_RANK (64) on Q,V elsewhere, AdamW
 *   full     full fine-tune step, AdamW
 *   mem      ViT-S/16 ExPLoRA step at batch BENCH_MEM_BATCH (32) with activation recomputation: wasm heap size and
 *            live tensors after 1 and after BENCH_MEM_STEPS (3) steps
 * Options (env): BENCH_BATCH (16), BENCH_ITERS (3), BENCH_WARMUP (1), BENCH_REPEATS (1; ours and peer alternate),
 * BENCH_CHECKPOINT=1 (recompute activations in explora/full too), BENCH_FAST=0 or --plain (plain ops, stock kernels),
 * BENCH_PEER=1 (= --peer), BENCH_PYTHON (/usr/bin/python3), VITPEFT_BACKEND.
 *
 * `--workers=1,2[,…]`: throughput per worker count (data-parallel training step and inference) against PyTorch at 1
 * thread and at its best thread count, in the same run (bench/workers.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { spawnSync } from 'child_process';
import * as path from 'path';
import { init, backendReport } from '../lib/backend';
import { createVit, disposeVit, vitVariables, Vit } from '../lib/vit/params';
import { vitForward, VitHooks } from '../lib/vit/forward';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { Rng } from '../lib/rng';
import { VitPresetName } from '../lib/vit/config';
import { fastPath, setFastOps } from '../lib/ops/fast';
import { exploraBench } from './explora-setup';
import { workersBench } from './workers';

const argv = process.argv.slice(2);
const flag = (name: string): boolean => argv.includes(`--${name}`);
const argVal = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];

function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  return v ? Number.parseInt(v, 10) : dflt;
}

/**
 * Wall and process-CPU milliseconds per iteration (mean), and the best (fastest) iteration's wall time. CPU time and
 * the best iteration are much less sensitive to other load on a shared machine than the mean wall time.
 */
function time(fn: () => void, warmup: number, iters: number): Timing {
  for (let i = 0; i < warmup; i++) fn();
  const walls: number[] = [];
  const c0 = process.cpuUsage();
  for (let i = 0; i < iters; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    walls.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const c = process.cpuUsage(c0);
  return { ms: walls.reduce((a, b) => a + b, 0) / iters, cpuMs: (c.user + c.system) / 1000 / iters, bestMs: Math.min(...walls) };
}

interface Timing {
  ms: number;
  cpuMs: number;
  bestMs: number;
}

function heapMiB(): number | null {
  const be = tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } };
  return be.wasm ? be.wasm.HEAPU8.buffer.byteLength / 2 ** 20 : null;
}

type Config = 'forward' | 'explora' | 'full' | 'mem';
const CONFIGS: readonly Config[] = ['forward', 'explora', 'full', 'mem'];

interface Measure {
  config: Config;
  model: string;
  batch: number;
  msPerIter: number;
  imgPerSec: number;
  cpuMsPerIter: number;
  imgPerCpuSec: number;
  bestMsPerIter: number;
  bestImgPerSec: number;
  [k: string]: unknown;
}

function images(batch: number): { x: tf.Tensor4D; y: tf.Tensor1D } {
  const x = tf.randomUniform([batch, 224, 224, 3], -1, 1, 'float32', 1) as tf.Tensor4D;
  const y = tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 10), 'int32');
  return { x, y };
}

function trainBench(
  vit: Vit, params: Map<string, tf.Variable>, hooks: VitHooks, batch: number, warmup: number, iters: number, checkpoint: boolean,
  onStep?: (i: number) => void,
): Timing {
  const { x, y } = images(batch);
  const opt = new Optimizer(ADAMW_DEFAULTS, params);
  let step = 0;
  try {
    return time(
      () => {
        const rng = Rng.derive(0, 'bench', step);
        trainStep({
          params,
          optimizer: opt,
          lr: 1e-4,
          weightDecay: 0.05,
          loss: () =>
            crossEntropy(vitForward(vit, x, { training: true, rng, hooks, checkpoint: checkpoint ? { trainable: params } : null }).logits!, y),
        });
        onStep?.(step++);
      },
      warmup,
      iters,
    );
  } finally {
    opt.dispose();
    tf.dispose([x, y]);
  }
}

function rates(t: Timing, batch: number) {
  return {
    msPerIter: t.ms, imgPerSec: (1000 * batch) / t.ms, cpuMsPerIter: t.cpuMs, imgPerCpuSec: (1000 * batch) / t.cpuMs,
    bestMsPerIter: t.bestMs, bestImgPerSec: (1000 * batch) / t.bestMs,
  };
}

function measure(config: Config, model: VitPresetName, batch: number, warmup: number, iters: number): Measure {
  const ckpt = process.env.BENCH_CHECKPOINT === '1';
  const rank = envInt('BENCH_RANK', 64);
  if (config === 'forward') {
    const vit = createVit(model, { numClasses: 10 }, { seed: 0 });
    const { x, y } = images(batch);
    const t = time(() => tf.tidy(() => vitForward(vit, x).logits!.dataSync()), warmup, iters);
    disposeVit(vit);
    tf.dispose([x, y]);
    return { config, model, batch, ...rates(t, batch) };
  }
  if (config === 'full') {
    const vit = createVit(model, { numClasses: 10 }, { seed: 0 });
    const t = trainBench(vit, vitVariables(vit), {}, batch, warmup, iters, ckpt);
    disposeVit(vit);
    return { config, model, batch, checkpoint: ckpt, ...rates(t, batch) };
  }
  // explora / mem
  const vit = createVit(model, { numClasses: 10 }, { seed: 0 });
  const ex = exploraBench(vit, rank);
  const useCkpt = config === 'mem' ? true : ckpt;
  const tensors: number[] = [];
  let trainableParams = 0;
  for (const v of ex.trainable.values()) trainableParams += v.size;
  const t = trainBench(vit, ex.trainable, ex.hooks, batch, warmup, iters, useCkpt, () => tensors.push(tf.memory().numTensors));
  ex.dispose();
  disposeVit(vit);
  return {
    config, model, batch, rank, checkpoint: useCkpt, ...rates(t, batch),
    liveTensorsAfterStep1: tensors[0], liveTensorsAfterLastStep: tensors[tensors.length - 1], steps: tensors.length,
    wasmHeapMiB: heapMiB(), trainableParams,
  };
}

function peer(config: Config, model: VitPresetName, batch: number, warmup: number, iters: number): Record<string, unknown> | null {
  const py = process.env.BENCH_PYTHON ?? '/usr/bin/python3';
  const script = path.join(__dirname, 'peer_torch.py');
  const cfg = config === 'mem' ? 'explora' : config;
  const args = [script, '--model', model, '--config', cfg, '--batch', String(batch), '--iters', String(iters), '--warmup', String(warmup), '--threads', '1'];
  if (config !== 'forward' && config !== 'full') args.push('--rank', String(envInt('BENCH_RANK', 64)));
  const r = spawnSync(py, args, { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1' } });
  if (r.status !== 0) {
    console.log(JSON.stringify({ kind: 'peer-error', config, status: r.status, stderr: (r.stderr ?? '').slice(-2000) }));
    return null;
  }
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as Record<string, unknown>;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function main(): Promise<void> {
  await init();
  if (argVal('workers') !== undefined) {
    // worker-count scaling against PyTorch (bench/workers.ts)
    console.log(JSON.stringify({ kind: 'backend', ...backendReport(), fastOps: fastPath() }));
    await workersBench(argv);
    return;
  }
  if (flag('plain') || process.env.BENCH_FAST === '0') setFastOps(false);
  const rep = backendReport();
  console.log(JSON.stringify({ kind: 'backend', ...rep, fastOps: fastPath() }));
  const configs = (argVal('configs') ?? process.env.BENCH_CONFIGS ?? 'forward,explora,full').split(',').map((c) => c.trim()) as Config[];
  for (const c of configs) if (!CONFIGS.includes(c)) throw new Error(`bench: unknown configuration '${c}'; valid: ${CONFIGS.join(', ')}`);
  const withPeer = flag('peer') || process.env.BENCH_PEER === '1';
  const batch = envInt('BENCH_BATCH', 16);
  const iters = envInt('BENCH_ITERS', 3);
  const warmup = envInt('BENCH_WARMUP', 1);
  const repeats = envInt('BENCH_REPEATS', 1);
  const model = (process.env.BENCH_MODEL ?? 'vit_tiny_patch16_224') as VitPresetName;
  const ratios = new Map<Config, number[]>();
  const ours = new Map<Config, number[]>();
  const peers = new Map<Config, number[]>();
  const cpuRatios = new Map<Config, number[]>();
  const bestRatios = new Map<Config, number[]>();
  for (let r = 0; r < repeats; r++) {
    for (const c of configs) {
      const m = c === 'mem' ? ((process.env.BENCH_MEM_MODEL ?? 'vit_small_patch16_224') as VitPresetName) : model;
      const b = c === 'mem' ? envInt('BENCH_MEM_BATCH', 32) : batch;
      const it = c === 'mem' ? envInt('BENCH_MEM_STEPS', 3) - 1 : iters;
      const res = measure(c, m, b, c === 'mem' ? 1 : warmup, it);
      console.log(JSON.stringify({ kind: 'measure', repeat: r, ...res, threads: rep.threads, backend: rep.backend, fastOps: fastPath().path }));
      ours.set(c, [...(ours.get(c) ?? []), res.imgPerSec]);
      if (withPeer) {
        const p = peer(c, m, b, c === 'mem' ? 1 : warmup, Math.max(1, it));
        if (p) {
          console.log(JSON.stringify({ ...p, repeat: r }));
          const ratio = res.imgPerSec / (p.imgPerSec as number);
          const cpuRatio = res.imgPerCpuSec / (p.imgPerCpuSec as number);
          const bestRatio = res.bestImgPerSec / (p.bestImgPerSec as number);
          console.log(JSON.stringify({ kind: 'ratio', repeat: r, config: c, model: m, batch: b, ours: res.imgPerSec, peer: p.imgPerSec, ratio, cpuRatio, bestRatio }));
          bestRatios.set(c, [...(bestRatios.get(c) ?? []), bestRatio]);
          ratios.set(c, [...(ratios.get(c) ?? []), ratio]);
          cpuRatios.set(c, [...(cpuRatios.get(c) ?? []), cpuRatio]);
          peers.set(c, [...(peers.get(c) ?? []), p.imgPerSec as number]);
        }
      }
    }
  }
  const summary: Record<string, unknown> = {};
  for (const c of configs) {
    const o = ours.get(c) ?? [];
    summary[c] = {
      oursImgPerSec: o.length ? median(o) : null,
      peerImgPerSec: peers.get(c)?.length ? median(peers.get(c)!) : null,
      ratioMedian: ratios.get(c)?.length ? median(ratios.get(c)!) : null,
      ratioMin: ratios.get(c)?.length ? Math.min(...ratios.get(c)!) : null,
      ratioMax: ratios.get(c)?.length ? Math.max(...ratios.get(c)!) : null,
      cpuRatioMedian: cpuRatios.get(c)?.length ? median(cpuRatios.get(c)!) : null,
      bestRatioMedian: bestRatios.get(c)?.length ? median(bestRatios.get(c)!) : null,
    };
  }
  console.log(JSON.stringify({ kind: 'summary', model, batch, repeats, summary }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
