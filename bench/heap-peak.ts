/**
 * Measured memory of one training step on the wasm backend, for checking the shape-only plan (lib/plan.ts):
 * `measureStepPeak` tracks the bytes the wasm module has `malloc`-ed and not `free`-d (its heap high-water mark,
 * which the heap size itself only shows for the first run of a process: the heap never shrinks) over a step of a
 * configuration built from the same description the plan takes.
 *
 * `npx tsx bench/heap-peak.ts`: JSON lines {kind: 'heap-peak', case, measuredMiB, plannedMiB, ratio, parts} over the grid
 * the coefficients were fitted on (`PEAK_GRID`), or the held-out one (BENCH_HELDOUT=1, `PEAK_HELDOUT`).
 */
import * as tf from '@tensorflow/tfjs';
import { createVit, disposeVit, vitVariables } from '../lib/vit/params';
import { VitConfig } from '../lib/vit/config';
import { vitForward, VitHooks } from '../lib/vit/forward';
import { tomeHooks } from '../lib/tome/hooks';
import { RSchedule } from '../lib/tome/schedule';
import { createMae, disposeMae, maeForward, maeVariables } from '../lib/mae/mae';
import { applyExplora } from '../lib/peft/explora';
import { createLora, loraHooks, loraVariables, qvTarget, disposeLora, LoraAdapters } from '../lib/peft/lora';
import { crossEntropy } from '../lib/train/loss';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { Rng } from '../lib/rng';
import { init } from '../lib/backend';
import { planStep, StepPlan } from '../lib/plan';

/** One measured configuration: a ViT (or MAE) + a trainable set + batch + options, as the plan describes it. */
export interface PeakCase {
  name: string;
  model: 'vit' | 'mae';
  /** encoder config overrides on vit_tiny_patch16_224 (MAE: the encoder) */
  vit: Partial<VitConfig>;
  /** MAE decoder (width, depth, heads) */
  decoder?: { embedDim: number; depth: number; numHeads: number };
  trainable: 'full' | 'lora' | 'explora';
  batch: number;
  accumulate?: number;
  recompute?: boolean;
  /** ToMe schedule (ViT only) */
  tome?: RSchedule;
  maskRatio?: number;
}

interface WasmModule {
  _malloc(n: number): number;
  _free(p: number): void;
}

/** Track live malloc-ed bytes of the wasm module: returns a reader of the high-water mark and a reset. */
function trackHeap(): { live: () => number; peak: () => number; reset: () => void; stop: () => void } {
  const be = tf.backend() as unknown as { wasm?: WasmModule };
  if (!be.wasm) throw new Error('measureStepPeak: needs the wasm backend');
  const w = be.wasm;
  w._free(w._malloc(16)); // emscripten's lazy wrappers replace themselves on the first call
  const om = w._malloc;
  const of = w._free;
  const sizes = new Map<number, number>();
  let live = 0;
  let hw = 0;
  w._malloc = (n: number) => {
    const p = om(n);
    sizes.set(p, n);
    live += n;
    if (live > hw) hw = live;
    return p;
  };
  w._free = (p: number) => {
    const n = sizes.get(p);
    if (n !== undefined) {
      live -= n;
      sizes.delete(p);
    }
    return of(p);
  };
  return {
    live: () => live,
    peak: () => hw,
    reset: () => void (hw = live),
    stop: () => {
      w._malloc = om;
      w._free = of;
    },
  };
}

function images(b: number, size: number, seed: number): tf.Tensor4D {
  const r = new Rng(seed);
  return tf.tensor4d(Float32Array.from({ length: b * size * size * 3 }, () => r.normal(0, 1)), [b, size, size, 3]);
}

/**
 * Build the case, run two steps, return the bytes malloc-ed at the high-water mark of the second step (everything
 * live then: parameters, optimizer state, inputs, activations, gradients) and the plan of the same step.
 */
export async function measureStepPeak(c: PeakCase): Promise<{ measured: number; plan: StepPlan }> {
  const heap = trackHeap();
  try {
    const before = heap.live();
    let params: Map<string, tf.Variable>;
    let loss: (s: number, micro: number) => tf.Scalar;
    let cleanup: () => void;
    let plan: StepPlan;
    let sites = 0;
    const k = c.accumulate ?? 1;
    const micro = c.batch / k;
    const ck = (p: Map<string, tf.Variable>) => (c.recompute ? { trainable: p } : null);
    if (c.model === 'mae') {
      const mae = createMae('mae_vit_base_patch16', { encoder: { ...c.vit }, decoder: c.decoder, seed: 0 });
      const all = maeVariables(mae);
      let hooks: VitHooks = {};
      let dispose = () => {};
      if (c.trainable === 'full') {
        params = all;
      } else {
        const setup = applyExplora({ encoder: mae.encoder.params, decoder: mae.decoder }, 'M-ExPLoRA-[L]-r8', { seed: 0 });
        params = new Map(setup.selection.trainable);
        hooks = setup.lora ? { linear: loraHooks(setup.lora) } : {};
        sites = loraSiteCount(setup.lora);
        dispose = () => setup.dispose();
      }
      const x = images(micro, mae.encoder.config.imgSize as number, 1);
      loss = (s, i) => maeForward(mae, x, { rng: Rng.derive(0, 'step', s, 'micro', i), training: true, hooks, checkpoint: ck(params), maskRatio: c.maskRatio }).loss;
      plan = planStep({
        encoder: mae.encoder.config, decoder: mae.config.decoder, maskRatio: c.maskRatio ?? mae.config.maskRatio,
        params: sizesOf(all, hooksVars(params, all)), trainable: sizesOf(params), optimizer: 'adamw', batch: c.batch, accumulate: k, recompute: !!c.recompute,
        loraSites: sites,
      });
      cleanup = () => {
        x.dispose();
        dispose();
        disposeMae(mae);
      };
    } else {
      const vit = createVit('vit_tiny_patch16_224', { numClasses: 10, ...c.vit }, { seed: 0 });
      const all = vitVariables(vit);
      let hooks: VitHooks = {};
      let dispose = () => {};
      if (c.trainable === 'full') {
        params = all;
      } else if (c.trainable === 'lora') {
        const l = createLora(vit.params, { rank: 8, targets: [qvTarget()] }, { seed: 1 });
        params = new Map([...loraVariables(l), ['head.weight', vit.params.head!.weight], ['head.bias', vit.params.head!.bias!]]);
        hooks = { linear: loraHooks(l) };
        sites = loraSiteCount(l);
        dispose = () => disposeLora(l);
      } else {
        const setup = applyExplora({ encoder: vit.params }, 'D-ExPLoRA-[L]-r8', { seed: 0 });
        params = new Map(setup.selection.trainable);
        params.set('head.weight', vit.params.head!.weight);
        params.set('head.bias', vit.params.head!.bias!);
        hooks = setup.lora ? { linear: loraHooks(setup.lora) } : {};
        sites = loraSiteCount(setup.lora);
        dispose = () => setup.dispose();
      }
      for (const v of params.values()) v.trainable = true;
      if (c.tome !== undefined) hooks = tomeHooks(vit.config, { schedule: c.tome }, hooks);
      const x = images(micro, vit.config.imgSize as number, 1);
      const y = tf.tensor1d(Array.from({ length: micro }, (_, i) => i % 10), 'int32');
      loss = (s, i) => crossEntropy(vitForward(vit, x, { hooks, training: true, rng: Rng.derive(0, 'step', s, 'micro', i), checkpoint: ck(params) }).logits!, y);
      plan = planStep({
        encoder: vit.config, params: sizesOf(all, hooksVars(params, all)), trainable: sizesOf(params), optimizer: 'adamw',
        batch: c.batch, accumulate: k, recompute: !!c.recompute, tome: c.tome, loraSites: sites,
      });
      cleanup = () => {
        tf.dispose([x, y]);
        dispose();
        disposeVit(vit);
      };
    }
    const opt = new Optimizer(ADAMW_DEFAULTS, params);
    const step = (s: number) => trainStep({ params, optimizer: opt, lr: 1e-4, weightDecay: 0.05, microBatches: k, loss: (i) => loss(s, i) });
    step(0); // optimizer state allocated, kernels warmed
    heap.reset();
    step(1);
    // the plan counts what a step holds on top of nothing: parameters, state, inputs and the step's transients
    const measured = heap.peak() - before;
    opt.dispose();
    cleanup();
    return { measured, plan };
  } finally {
    heap.stop();
  }
}

/** LoRA-adapted linear outputs (a fused qkv with Q and V slices counts 2). */
function loraSiteCount(l: LoraAdapters | null | undefined): number {
  return l ? [...l.modules.values()].reduce((a, m) => a + Math.max(1, m.slices.length), 0) : 0;
}

/** Element counts of a set of variables (the adapters of `trainable` not in `all` are added to the model's). */
function sizesOf(vars: ReadonlyMap<string, tf.Variable>, extra?: ReadonlyMap<string, tf.Variable>): number[] {
  return [...vars.values(), ...(extra ? extra.values() : [])].map((v) => v.size);
}

function hooksVars(trainable: ReadonlyMap<string, tf.Variable>, all: ReadonlyMap<string, tf.Variable>): Map<string, tf.Variable> {
  const model = new Set(all.values());
  return new Map([...trainable].filter(([, v]) => !model.has(v)));
}

/** The grid test/plan.test.ts checks (small enough for CI on 2 shared cores). */
export const PEAK_GRID: PeakCase[] = [
  { name: 'full', model: 'vit', vit: { imgSize: 96, depth: 4 }, trainable: 'full', batch: 8 },
  { name: 'full+recompute', model: 'vit', vit: { imgSize: 96, depth: 4 }, trainable: 'full', batch: 8, recompute: true },
  { name: 'lora', model: 'vit', vit: { imgSize: 96, depth: 4 }, trainable: 'lora', batch: 8 },
  { name: 'explora', model: 'vit', vit: { imgSize: 96, depth: 4 }, trainable: 'explora', batch: 8 },
  { name: 'explora+recompute', model: 'vit', vit: { imgSize: 96, depth: 4 }, trainable: 'explora', batch: 8, recompute: true },
  { name: 'explora+recompute b32', model: 'vit', vit: { imgSize: 96, depth: 4 }, trainable: 'explora', batch: 32, recompute: true },
  { name: 'explora+tome', model: 'vit', vit: { imgSize: 96, depth: 4 }, trainable: 'explora', batch: 8, tome: 8 },
  { name: 'explora+tome+recompute b32', model: 'vit', vit: { imgSize: 96, depth: 4 }, trainable: 'explora', batch: 32, tome: 8, recompute: true },
  { name: 'explora accumulate 2', model: 'vit', vit: { imgSize: 96, depth: 4 }, trainable: 'explora', batch: 16, accumulate: 2 },
  { name: 'mae m-explora', model: 'mae', vit: { imgSize: 96, embedDim: 192, depth: 4, numHeads: 3 }, decoder: { embedDim: 128, depth: 2, numHeads: 4 }, trainable: 'explora', batch: 8 },
  { name: 'mae m-explora+recompute b32', model: 'mae', vit: { imgSize: 96, embedDim: 192, depth: 4, numHeads: 3 }, decoder: { embedDim: 128, depth: 2, numHeads: 4 }, trainable: 'explora', batch: 32, recompute: true },
];

/** Held out from the fit: another width, depth, head count, resolution and schedule (BENCH_HELDOUT=1). */
export const PEAK_HELDOUT: PeakCase[] = [
  { name: 'S/16@128 d6 explora', model: 'vit', vit: { imgSize: 128, embedDim: 384, numHeads: 6, depth: 6 }, trainable: 'explora', batch: 8 },
  { name: 'S/16@128 d6 lora+recompute b16', model: 'vit', vit: { imgSize: 128, embedDim: 384, numHeads: 6, depth: 6 }, trainable: 'lora', batch: 16, recompute: true },
  { name: 'S/16@128 d6 full', model: 'vit', vit: { imgSize: 128, embedDim: 384, numHeads: 6, depth: 6 }, trainable: 'full', batch: 8 },
  { name: 'S/16@128 d6 explora+tome r6', model: 'vit', vit: { imgSize: 128, embedDim: 384, numHeads: 6, depth: 6 }, trainable: 'explora', batch: 8, tome: 6 },
  { name: 'Ti/8@64 d3 explora acc4', model: 'vit', vit: { imgSize: 64, patchSize: 8, depth: 3 }, trainable: 'explora', batch: 16, accumulate: 4 },
  { name: 'MAE S/16@128 lora-dec256', model: 'mae', vit: { imgSize: 128, embedDim: 384, depth: 4, numHeads: 6 }, decoder: { embedDim: 256, depth: 2, numHeads: 8 }, trainable: 'explora', batch: 8 },
];

async function main(): Promise<void> {
  await init({ backend: 'wasm' });
  const cases = process.env.BENCH_HELDOUT ? PEAK_HELDOUT : PEAK_GRID;
  for (const c of cases) {
    const { measured, plan } = await measureStepPeak(c);
    const M = (b: number) => +(b / 2 ** 20).toFixed(2);
    console.log(JSON.stringify({ kind: 'heap-peak', case: c.name, measuredMiB: M(measured), plannedMiB: M(plan.peakBytes), ratio: +(plan.peakBytes / measured).toFixed(3), phase: plan.peakPhase, parts: Object.fromEntries(Object.entries(plan.bytes).map(([k, v]) => [k, M(v)])) }));
  }
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
