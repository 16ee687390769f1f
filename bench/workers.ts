/**
 * `npm run bench -- --workers=1,2[,…]`: throughput per worker count, against PyTorch in the same run.
 *
 * Configurations (`--configs=`, default `explora,forward`): `explora` = one ExPLoRA training step (ViT-Ti/16@224,
 * D-ExPLoRA-[L]-r64 + head, AdamW) on a global batch of BENCH_BATCH (32) images, split across the workers (each
 * computes its rows, the gradients are all-reduced, every replica applies the update); `forward` = inference of the
 * global batch split the same way; `mem` = ViT-S/16 ExPLoRA with activation recomputation at global batch
 * BENCH_MEM_BATCH (64): each worker's wasm heap. One worker = the in-process path (no thread). Timing per iteration
 * is the wall time between two barriers (so the slowest worker counts); worker start-up (backend + kit, once per run)
 * is reported separately (`startMs`) and not in the rate.
 *
 * PyTorch (bench/peer_torch.py, Debian python3-torch, CPU) runs the same configuration on the whole batch at 1
 * thread and at every thread count up to the machine's logical CPUs; the best is "PyTorch's best thread count".
 * Configurations alternate within each repeat (BENCH_REPEATS, default 3); the summary gives medians over repeats and
 * the load average (`os.loadavg()`) at every measurement, since this machine is shared.
 *
 * Lines: {"kind":"workers-measure", config, workers, imgPerSec, msPerIter, bestMsPerIter, startMs, heapMiB, load1}
 *        {"kind":"peer", …, threads}   {"kind":"workers-summary", …}
 */
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as tf from '@tensorflow/tfjs';
import { createVit, disposeVit } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { Rng } from '../lib/rng';
import { VitPresetName } from '../lib/vit/config';
import { parallelContext, shardRange } from '../lib/parallel/context';
import { startParallel } from '../lib/workers/run';
import type { JobContext } from '../lib/workers/protocol';
import { exploraBench } from './explora-setup';

export type WorkersConfig = 'forward' | 'explora' | 'mem';

export interface StepBenchArgs {
  config: WorkersConfig;
  model: VitPresetName;
  /** Global batch (split over the workers). */
  batch: number;
  warmup: number;
  iters: number;
  rank: number;
  checkpoint: boolean;
}

export interface StepBenchResult {
  walls: number[];
  heapMiB: number | null;
  rows: number;
  /** CPU time of the whole process (every thread) over the timed iterations, ms (rank 0's view). */
  cpuMs: number;
}

function heapMiB(): number | null {
  const be = tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } };
  return be.wasm ? be.wasm.HEAPU8.buffer.byteLength / 2 ** 20 : null;
}

/** One worker's (or the in-process) part of a configuration: `iters` timed iterations between barriers. */
export async function stepBench(a: StepBenchArgs, ctx?: JobContext): Promise<StepBenchResult> {
  const pc = parallelContext();
  const size = pc?.size ?? 1;
  const rank = pc?.rank ?? 0;
  const [s, e] = shardRange(a.batch, rank, size);
  const n = e - s;
  const vit = createVit(a.model, { numClasses: 10 }, { seed: 0 });
  const x = tf.randomUniform([n, 224, 224, 3], -1, 1, 'float32', 1 + rank) as tf.Tensor4D;
  const y = tf.tensor1d(Array.from({ length: n }, (_, i) => (s + i) % 10), 'int32');
  const ex = a.config === 'forward' ? null : exploraBench(vit, a.rank);
  const opt = ex ? new Optimizer(ADAMW_DEFAULTS, ex.trainable) : null;
  const barrier = (): void => pc?.collective.barrier();
  let step = 0;
  const fn = (): void => {
    if (!ex || !opt) {
      tf.tidy(() => vitForward(vit, x).logits!.dataSync());
      return;
    }
    const rng = Rng.derive(0, 'bench', step++);
    trainStep({
      params: ex.trainable,
      optimizer: opt,
      lr: 1e-4,
      weightDecay: 0.05,
      loss: () => crossEntropy(vitForward(vit, x, { training: true, rng, hooks: ex.hooks, checkpoint: a.checkpoint ? { trainable: ex.trainable } : null }).logits!, y),
    });
  };
  const walls: number[] = [];
  let cpu0: NodeJS.CpuUsage | null = null;
  let cpuMs = 0;
  try {
    for (let i = 0; i < a.warmup + a.iters; i++) {
      barrier();
      if (i === a.warmup) cpu0 = process.cpuUsage(); // process-wide: all worker threads together
      const t0 = process.hrtime.bigint();
      fn();
      barrier();
      if (i >= a.warmup) walls.push(Number(process.hrtime.bigint() - t0) / 1e6);
      ctx?.progress({ done: i + 1, total: a.warmup + a.iters, items: n });
    }
    if (cpu0) {
      const d = process.cpuUsage(cpu0);
      cpuMs = (d.user + d.system) / 1000;
    }
    return { walls, heapMiB: heapMiB(), rows: n, cpuMs };
  } finally {
    opt?.dispose();
    ex?.dispose();
    disposeVit(vit);
    tf.dispose([x, y]);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function peer(config: WorkersConfig, model: string, batch: number, warmup: number, iters: number, threads: number, rank: number): Record<string, unknown> | null {
  const py = process.env.BENCH_PYTHON ?? '/usr/bin/python3';
  const cfg = config === 'mem' ? 'explora' : config;
  const args = [path.join(__dirname, 'peer_torch.py'), '--model', model, '--config', cfg, '--batch', String(batch), '--iters', String(iters), '--warmup', String(warmup), '--threads', String(threads)];
  if (cfg === 'explora') args.push('--rank', String(rank));
  const t = String(threads);
  const r = spawnSync(py, args, { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: t, MKL_NUM_THREADS: t } });
  if (r.status !== 0) {
    console.log(JSON.stringify({ kind: 'peer-error', config, threads, status: r.status, stderr: (r.stderr ?? '').slice(-2000) }));
    return null;
  }
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
}

/** The `--workers` benchmark (see the file comment). */
export async function workersBench(argv: string[]): Promise<void> {
  const val = (name: string): string | undefined => argv.find((x) => x.startsWith(`--${name}=`))?.split('=')[1];
  const envInt = (k: string, d: number): number => (process.env[k] ? Number.parseInt(process.env[k]!, 10) : d);
  const counts = (val('workers') ?? '1,2').split(',').map((w) => Number(w));
  if (counts.some((w) => !Number.isInteger(w) || w < 1)) throw new Error(`--workers: expected a list of integers ≥ 1, got '${val('workers')}'`);
  const configs = (val('configs') ?? 'explora,forward').split(',') as WorkersConfig[];
  for (const c of configs) if (!['forward', 'explora', 'mem'].includes(c)) throw new Error(`--configs: unknown '${c}' (forward, explora, mem)`);
  const withPeer = !argv.includes('--no-peer');
  const repeats = envInt('BENCH_REPEATS', 3);
  const iters = envInt('BENCH_ITERS', 3);
  const warmup = envInt('BENCH_WARMUP', 1);
  const rank = envInt('BENCH_RANK', 64);
  const threadsList = Array.from({ length: Math.max(1, Math.min(envInt('BENCH_PEER_MAX_THREADS', os.cpus().length), os.cpus().length)) }, (_, i) => i + 1);
  const ours = new Map<string, number[]>();
  const peers = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  const key = (c: string, w: number | string): string => `${c}@${w}`;
  const push = (m: Map<string, number[]>, k: string, v: number): void => void m.set(k, [...(m.get(k) ?? []), v]);
  const loads: number[] = [];
  for (let r = 0; r < repeats; r++) {
    for (const config of configs) {
      const model: VitPresetName = config === 'mem' ? ((process.env.BENCH_MEM_MODEL ?? 'vit_small_patch16_224') as VitPresetName) : ((process.env.BENCH_MODEL ?? 'vit_tiny_patch16_224') as VitPresetName);
      const batch = config === 'mem' ? envInt('BENCH_MEM_BATCH', 64) : envInt('BENCH_BATCH', 32);
      const checkpoint = config === 'mem' || process.env.BENCH_CHECKPOINT === '1';
      const args: StepBenchArgs = { config, model, batch, warmup: config === 'mem' ? 0 : warmup, iters: config === 'mem' ? 1 : iters, rank, checkpoint };
      for (const w of counts) {
        const load1 = os.loadavg()[0];
        loads.push(load1);
        let res: StepBenchResult[];
        let startMs: number[] = [];
        if (w === 1) res = [await stepBench(args)];
        else {
          const run = startParallel<StepBenchResult>({ module: __filename, export: 'stepBench', args }, { workers: w });
          res = await run.result;
          startMs = run.startMs;
        }
        const walls = res[0].walls;
        const ms = walls.reduce((p, q) => p + q, 0) / walls.length;
        const line = {
          kind: 'workers-measure', repeat: r, config, model, batch, workers: w, checkpoint,
          msPerIter: ms, imgPerSec: (1000 * batch) / ms, bestMsPerIter: Math.min(...walls), bestImgPerSec: (1000 * batch) / Math.min(...walls),
          heapMiB: res.map((x) => x.heapMiB), rowsPerWorker: res.map((x) => x.rows), startMs, load1,
          // CPU-ms per image of all threads together: the work (kernels + collectives + waiting overhead) the split
          // costs; with w free cores the ideal rate is w × the 1-worker rate at equal CPU-ms per image
          cpuMsPerImage: res[0].cpuMs / (walls.length * batch), cpuUtil: res[0].cpuMs / walls.reduce((p, q) => p + q, 0),
        };
        console.log(JSON.stringify(line));
        push(ours, key(config, w), line.imgPerSec);
        push(cpu, key(config, w), line.cpuMsPerImage);
      }
      if (withPeer && config !== 'mem') {
        let best = 0;
        for (const t of threadsList) {
          const p = peer(config, model, batch, warmup, iters, t, rank);
          if (!p) continue;
          console.log(JSON.stringify({ ...p, repeat: r, threads: t, load1: os.loadavg()[0] }));
          push(peers, key(config, t), p.imgPerSec as number);
          best = Math.max(best, p.imgPerSec as number);
        }
        if (best > 0) push(peers, key(config, 'best'), best);
      }
    }
  }
  const summary: Record<string, unknown> = {};
  for (const config of configs) {
    const base = ours.get(key(config, 1));
    const per: Record<string, unknown> = {};
    for (const w of counts) {
      const o = ours.get(key(config, w)) ?? [];
      const p1 = peers.get(key(config, 1)) ?? [];
      const pb = peers.get(key(config, 'best')) ?? [];
      per[`workers=${w}`] = {
        imgPerSec: o.length ? median(o) : null,
        cpuMsPerImage: cpu.get(key(config, w))?.length ? median(cpu.get(key(config, w))!) : null,
        speedupVs1: base && o.length ? median(o.map((x, i) => x / base[i])) : null,
        ratioToTorch1Thread: o.length && p1.length ? median(o.map((x, i) => x / p1[Math.min(i, p1.length - 1)])) : null,
        ratioToTorchBest: o.length && pb.length ? median(o.map((x, i) => x / pb[Math.min(i, pb.length - 1)])) : null,
      };
    }
    const threads: Record<string, number | null> = {};
    for (const t of threadsList) {
      const p = peers.get(key(config, t));
      threads[`torch${t}`] = p?.length ? median(p) : null;
    }
    summary[config] = { ...per, torchImgPerSec: threads };
  }
  console.log(JSON.stringify({ kind: 'workers-summary', repeats, host: { cpus: os.cpus().length, model: os.cpus()[0]?.model }, load1: { min: Math.min(...loads), median: median(loads), max: Math.max(...loads) }, summary }));
}
