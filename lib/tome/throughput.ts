/**
 * Measured inference throughput (images / s) of a ViT unmerged, with ToMe, or with PYRA, as JSON records a notebook
 * can plot against accuracy (the "adverse compression" curve of the PYRA paper).
 *
 * Protocol (after PYRA's `engine.py` / ToMe's `benchmark`, scaled to a CPU): eval mode (no drop-path / dropout),
 * random inputs from a seeded stream, `warmup` untimed iterations, then timed iterations until both `iters` and
 * `minSeconds` are reached; each iteration is one synchronous forward in a tidy whose logits (or pooled features) are
 * read back, so asynchronous backends are fully counted. The record states the backend, its threads and the batch.
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys } from '../check';
import { backendReport } from '../backend';
import { Rng } from '../rng';
import { Vit } from '../vit/params';
import { imgHW } from '../vit/config';
import { vitForward, VitHooks } from '../vit/forward';
import { RSchedule, resolveSchedule } from './schedule';
import { Pyra } from './pyra';
import { tomeHooks, pyraHooks } from './hooks';
import { vitMacs } from './flops';

/** What to measure: the plain model, ToMe with a schedule, or PYRA with its parameters. */
export type ThroughputMethod =
  | { mode: 'unmerged' }
  | { mode: 'tome'; schedule: RSchedule }
  | { mode: 'pyra'; pyra: Pyra };

export interface ThroughputOptions {
  /** Images per forward (default 8). */
  batch?: number;
  /** Untimed iterations first (default 2). */
  warmup?: number;
  /** Minimum timed iterations (default 5). */
  iters?: number;
  /** Keep timing until this many seconds have accumulated (default 0). */
  minSeconds?: number;
  /** Seed of the random input batch (default 0). */
  seed?: number;
  /** Hooks to keep (e.g. LoRA's `linear`, unmerged as in PYRA's latency test). */
  base?: VitHooks;
  /** Free-form label copied into the record (default: the mode). */
  label?: string;
}

export interface ThroughputRecord {
  kind: 'throughput';
  label: string;
  mode: ThroughputMethod['mode'];
  /** Per-layer r used (all zeros unmerged). */
  schedule: number[];
  /** Tokens after the last block (from the schedule and the cap). */
  tokensOut: number;
  /** Analytic MACs per image (lib/tome/flops.ts rule; PYRA's 2rD included for 'pyra'). */
  macsPerImage: number;
  imgSize: [number, number];
  backend: string;
  threads: number;
  batch: number;
  warmupIters: number;
  iters: number;
  msPerIter: number;
  imgPerSec: number;
}

const OPT_KEYS = ['batch', 'warmup', 'iters', 'minSeconds', 'seed', 'base', 'label'];

function hooksFor(vit: Vit, method: ThroughputMethod, base: VitHooks): { hooks: VitHooks; schedule: number[] } {
  switch (method.mode) {
    case 'unmerged':
      return { hooks: base, schedule: new Array<number>(vit.config.depth).fill(0) };
    case 'tome':
      return { hooks: tomeHooks(vit.config, { schedule: method.schedule }, base), schedule: resolveSchedule(method.schedule, vit.config.depth) };
    case 'pyra':
      return { hooks: pyraHooks(vit.config, method.pyra, {}, base), schedule: [...method.pyra.schedule] };
    default:
      throw new Error(`measureThroughput: mode must be 'unmerged', 'tome' or 'pyra', got ${String((method as { mode: unknown }).mode)}`);
  }
}

/**
 * Time the eval forward of `vit` with one method.
 * @example measureThroughput(vit, { mode: 'tome', schedule: 16 }, { batch: 8 }).imgPerSec
 */
export function measureThroughput(vit: Vit, method: ThroughputMethod, opts: ThroughputOptions = {}): ThroughputRecord {
  checkKeys('measureThroughput options', opts, OPT_KEYS);
  const batch = opts.batch ?? 8;
  const warmup = opts.warmup ?? 2;
  const minIters = opts.iters ?? 5;
  const minSeconds = opts.minSeconds ?? 0;
  if (!Number.isInteger(batch) || batch <= 0) throw new Error(`measureThroughput: batch must be a positive integer, got ${batch}`);
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error(`measureThroughput: warmup must be an integer ≥ 0, got ${warmup}`);
  if (!Number.isInteger(minIters) || minIters <= 0) throw new Error(`measureThroughput: iters must be a positive integer, got ${minIters}`);
  const { hooks, schedule } = hooksFor(vit, method, opts.base ?? {});
  const [H, W] = imgHW(vit.config);
  const C = vit.config.inChans;
  const rng = Rng.derive(opts.seed ?? 0, 'throughput');
  const values = new Float32Array(batch * H * W * C);
  for (let i = 0; i < values.length; i++) values[i] = rng.uniform(-1, 1);
  const images = tf.tensor4d(values, [batch, H, W, C]);
  let tokensOut = 0;
  const once = (): void => {
    tf.tidy(() => {
      const out = vitForward(vit, images, { hooks, training: false });
      (out.logits ?? out.pooled).dataSync();
      tokensOut = out.prenorm.shape[1];
    });
  };
  try {
    for (let i = 0; i < warmup; i++) once();
    let iters = 0;
    let elapsed = 0;
    while (iters < minIters || elapsed < minSeconds * 1000) {
      const t0 = process.hrtime.bigint();
      once();
      elapsed += Number(process.hrtime.bigint() - t0) / 1e6;
      iters += 1;
    }
    const rep = backendReport();
    const msPerIter = elapsed / iters;
    return {
      kind: 'throughput',
      label: opts.label ?? method.mode,
      mode: method.mode,
      schedule,
      tokensOut,
      macsPerImage: vitMacs(vit.config, { schedule, pyra: method.mode === 'pyra' }).total,
      imgSize: [H, W],
      backend: rep.backend,
      threads: rep.threads,
      batch,
      warmupIters: warmup,
      iters,
      msPerIter,
      imgPerSec: (1000 * batch) / msPerIter,
    };
  } finally {
    images.dispose();
  }
}

/**
 * Unmerged / ToMe / PYRA side by side (PYRA only when given), with speed-ups relative to unmerged.
 * @returns records in that order, each with `speedup` = imgPerSec / unmerged imgPerSec
 */
export function compareThroughput(
  vit: Vit,
  methods: { schedule: RSchedule; pyra?: Pyra },
  opts: Omit<ThroughputOptions, 'label'> = {},
): Array<ThroughputRecord & { speedup: number }> {
  const recs: ThroughputRecord[] = [measureThroughput(vit, { mode: 'unmerged' }, opts), measureThroughput(vit, { mode: 'tome', schedule: methods.schedule }, opts)];
  if (methods.pyra) recs.push(measureThroughput(vit, { mode: 'pyra', pyra: methods.pyra }, opts));
  const ref = recs[0].imgPerSec;
  return recs.map((r) => ({ ...r, speedup: r.imgPerSec / ref }));
}

/**
 * ToMe throughput for a list of constant r values (plus r = 0), e.g. to draw accuracy vs throughput curves.
 * @example sweepTome(vit, [0, 4, 8, 16]).map(r => [r.schedule[0], r.imgPerSec])
 */
export function sweepTome(vit: Vit, rValues: readonly number[], opts: Omit<ThroughputOptions, 'label'> = {}): ThroughputRecord[] {
  return rValues.map((r) =>
    r === 0
      ? measureThroughput(vit, { mode: 'unmerged' }, { ...opts, label: 'r=0' })
      : measureThroughput(vit, { mode: 'tome', schedule: r }, { ...opts, label: `r=${r}` }),
  );
}

/**
 * Throughput of a model built from a preset (`buildPyraModel`): PYRA, ToMe+LoRA or uncompressed LoRA, with its LoRA
 * branch unmerged (as PYRA's latency test runs it). The label is the preset's method and schedule.
 */
export function measureModelThroughput(
  vit: Vit,
  model: { preset: { method: 'pyra' | 'tome' | 'lora' }; schedule: readonly number[]; pyra: Pyra | null; hooks: VitHooks },
  opts: Omit<ThroughputOptions, 'base'> = {},
): ThroughputRecord {
  const base: VitHooks = model.hooks.linear ? { linear: model.hooks.linear } : {};
  const label = opts.label ?? `${model.preset.method} [${model.schedule.join(',')}]`;
  if (model.preset.method === 'pyra') {
    if (!model.pyra) throw new Error('measureModelThroughput: a PYRA model without PYRA parameters');
    return measureThroughput(vit, { mode: 'pyra', pyra: model.pyra }, { ...opts, base, label });
  }
  if (model.preset.method === 'tome') return measureThroughput(vit, { mode: 'tome', schedule: [...model.schedule] }, { ...opts, base, label });
  return measureThroughput(vit, { mode: 'unmerged' }, { ...opts, base, label });
}
