/**
 * GPU smoke, checks and measurements on whatever backend `init()` picks (or `VITPEFT_BACKEND` forces). Used by the
 * Docker image's smoke command (environment/Dockerfile.gpu) and by the device check (environment/gpu-device-check.sh,
 * where it runs bundled, see tools/gpu-pack.sh). Every number is read with `await t.data()`: webgpu cannot read
 * synchronously in Node. One JSON line per result on stdout.
 *
 *   npx tsx tools/gpu-bench.ts smoke [--require-gpu]   report + tiny ViT/LoRA/ToMe forward, backward, AdamW step
 *   npx tsx tools/gpu-bench.ts probe                   WebGPU adapters Dawn offers here (software ones included)
 *   npx tsx tools/gpu-bench.ts check                   backend cases on wasm, then on webgpu: max difference per case
 *   npx tsx tools/gpu-bench.ts bench [--model M] [--batch B] [--train-batch B] [--iters N]
 *                                                      ViT inference and ExPLoRA (D-[L]-r64 + head, AdamW) step img/s,
 *                                                      peak memory (webgpu: bytes in GPU buffers; wasm: heap)
 *   npx tsx tools/gpu-bench.ts train [--model M] [--batch B] [--accumulate K] [--steps N]
 *                                                      trainLoop (ExPLoRA, accumulation) on the backend: losses, s/step,
 *                                                      peak GPU bytes, live tensors per step, the plan beside them
 * `--require-gpu` exits 2 when the backend computes on no GPU (e.g. TensorFlow registered none).
 */
import * as tf from '@tensorflow/tfjs';
import { init, BackendReport } from '../lib/backend';
import { probeWebgpu } from '../lib/webgpu';
import { createVit, disposeVit, vitVariables } from '../lib/vit/params';
import { VitPresetName } from '../lib/vit/config';
import { vitForward, VitHooks } from '../lib/vit/forward';
import { createLora, disposeLora, loraHooks, loraVariables, qvTarget, loraPlanCount } from '../lib/peft/lora';
import { trainLoop } from '../lib/train/step';
import { planStep } from '../lib/plan';
import { applyExplora } from '../lib/peft/explora';
import { tomeHooks } from '../lib/tome/hooks';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { crossEntropy } from '../lib/train/loss';
import { Rng } from '../lib/rng';
import { runCases, CaseResults, CASES, CaseName } from '../test/backend-cases';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}

function emit(o: Record<string, unknown>): void {
  console.log(JSON.stringify(o));
}

/** The report without the adapter's long limits table (printed once by `probe`). */
function brief(r: BackendReport): Record<string, unknown> {
  return { ...r, adapter: r.adapter ? { ...r.adapter, limits: undefined } : null };
}

/** The wasm binaries next to a bundle (tools/gpu-pack.sh) rather than in node_modules. */
function wasmPaths(): void {
  const dir = process.env.VITPEFT_WASM_DIR;
  if (dir) (require('@tensorflow/tfjs-backend-wasm') as { setWasmPaths(p: string): void }).setWasmPaths(dir.endsWith('/') ? dir : `${dir}/`);
}

/** One training step in one tidy (forward, gradients, AdamW); the loss is read asynchronously. */
async function step(params: Map<string, tf.Variable>, opt: Optimizer, loss: () => tf.Scalar): Promise<number> {
  const vars = [...params.values()];
  const pathOf = new Map([...params].map(([p, v]) => [v.name, p]));
  const l = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(loss, vars);
    opt.apply(new Map(Object.entries(grads).map(([n, g]) => [pathOf.get(n)!, g])), 1e-4, 0.05);
    return value;
  });
  const v = (await l.data())[0];
  l.dispose();
  return v;
}

function images(b: number, size: number, seed: number): tf.Tensor4D {
  const r = new Rng(seed);
  return tf.tensor4d(Float32Array.from({ length: b * size * size * 3 }, () => r.uniform(-1, 1)), [b, size, size, 3]);
}

async function smoke(): Promise<number> {
  const rep = await init({ verbose: true });
  emit({ kind: 'backend', ...brief(rep) });
  const vit = createVit('vit_tiny_patch16_224', { imgSize: 32, patchSize: 8, embedDim: 48, depth: 4, numHeads: 3, numClasses: 5 }, { seed: 0 });
  const lora = createLora(vit.params, { rank: 4, targets: [qvTarget()], init: 'truncNormal' }, { seed: 1 });
  const hooks: VitHooks = tomeHooks(vit.config, { schedule: 2 }, { linear: loraHooks(lora) });
  const params = new Map([...loraVariables(lora)]);
  const opt = new Optimizer(ADAMW_DEFAULTS, params);
  const x = images(4, 32, 2);
  const y = tf.tensor1d([0, 1, 2, 3], 'int32');
  const before = tf.memory().numTensors;
  const t0 = Date.now();
  const losses: number[] = [];
  for (let s = 0; s < 3; s++) losses.push(await step(params, opt, () => crossEntropy(vitForward(vit, x, { hooks, training: true, rng: Rng.derive(0, 'step', s) }).logits!, y)));
  const leaked = tf.memory().numTensors - before;
  const ok = losses.every(Number.isFinite) && leaked === 0;
  emit({ kind: 'smoke', backend: rep.backend, gpu: rep.gpu, losses, leakedTensors: leaked, ms: Date.now() - t0, ok });
  opt.dispose();
  tf.dispose([x, y]);
  disposeLora(lora);
  disposeVit(vit);
  if (!ok) return 1;
  if (process.argv.includes('--require-gpu') && !rep.gpu) {
    console.error(`gpu-bench smoke: the backend (${rep.backend} via ${rep.via}) computes on no GPU: ${rep.tensorflow?.message ?? rep.candidates.map((c) => `${c.candidate}: ${c.reason}`).join('; ')}`);
    return 2;
  }
  return 0;
}

async function probe(): Promise<number> {
  const p = await probeWebgpu({ allowSoftware: true });
  emit({ kind: 'probe', dawn: process.env.VITPEFT_WEBGPU_DAWN ?? null, attempts: p.attempts, chosen: p.chosen });
  return p.chosen ? 0 : 1;
}

function compare(a: CaseResults, b: CaseResults): Record<string, number> {
  const worst: Record<string, number> = {};
  for (const k of Object.keys(b)) {
    if (k.startsWith('time.') || k === 'step.liveTensors' || !a[k]) continue;
    let scale = 0;
    let d = 0;
    for (let i = 0; i < b[k].length; i++) {
      scale = Math.max(scale, Math.abs(b[k][i]));
      d = Math.max(d, Math.abs(a[k][i] - b[k][i]));
    }
    const c = k.split('.')[0];
    worst[c] = Math.max(worst[c] ?? 0, d / Math.max(scale, 1e-12));
  }
  return worst;
}

async function check(): Promise<number> {
  wasmPaths();
  // runRecipe's case reads the embedded images through sharp, which the device pack does not carry
  let sharp = true;
  try {
    require.resolve('sharp');
  } catch {
    sharp = false;
    emit({ kind: 'note', text: "case recipeRuns skipped: 'sharp' (the embedded data's image codec) is not installed here" });
  }
  const names = (Object.keys(CASES) as CaseName[]).filter((n) => sharp || n !== 'recipeRuns');
  await init({ backend: 'wasm' });
  const ref = await runCases(names);
  const rep = await init({ backend: 'webgpu' });
  emit({ kind: 'backend', ...brief(rep) });
  const got = await runCases(names);
  const worst = compare(got, ref);
  const live = Array.from(got['step.liveTensors']);
  const ok = Object.values(worst).every((w) => w <= 1e-4) && live.every((v) => v === live[0]);
  emit({ kind: 'check', against: 'wasm', worstRelative: worst, liveTensors: live, timesMs: Object.fromEntries(Object.entries(got).filter(([k]) => k.startsWith('time.')).map(([k, v]) => [k.slice(5), v[0]])), ok });
  return ok ? 0 : 1;
}

async function bench(): Promise<number> {
  wasmPaths();
  const rep = await init();
  emit({ kind: 'backend', ...brief(rep) });
  const model = arg('model', 'vit_base_patch16_224') as VitPresetName;
  const batch = Number(arg('batch', '32'));
  const trainBatch = Number(arg('train-batch', '16'));
  const iters = Number(arg('iters', '5'));
  const heap = (): number | null => {
    const be = tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } };
    return be.wasm ? be.wasm.HEAPU8.buffer.byteLength / 2 ** 20 : null;
  };
  let peakGpu = 0;
  const sample = () => {
    const m = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number; numBytesInGPUAllocated?: number; numBytesAllocatedInGPU?: number };
    peakGpu = Math.max(peakGpu, m.numBytesAllocatedInGPU ?? m.numBytesInGPUAllocated ?? m.numBytesInGPU ?? 0);
  };
  const vit = createVit(model, { numClasses: 10 }, { seed: 0 });
  const size = vit.config.imgSize as number;
  // inference
  const x = images(batch, size, 1);
  const fwd = async () => {
    const o = tf.tidy(() => vitForward(vit, x).logits!);
    sample();
    await o.data();
    o.dispose();
  };
  let t0 = Date.now();
  await fwd(); // warm-up: shader / kernel compilation
  const warmMs = Date.now() - t0;
  t0 = Date.now();
  for (let i = 0; i < iters; i++) await fwd();
  const ms = (Date.now() - t0) / iters;
  emit({ kind: 'bench', config: 'forward', model, batch, backend: rep.backend, gpu: rep.gpu, warmupMs: warmMs, msPerIter: ms, imgPerSec: (1000 * batch) / ms, peakGpuMiB: peakGpu / 2 ** 20 || null, wasmHeapMiB: heap() });
  x.dispose();
  // ExPLoRA step
  peakGpu = 0;
  const setup = applyExplora({ encoder: vit.params }, 'D-ExPLoRA-[L]-r64', { seed: 0 });
  const params = new Map(setup.selection.trainable);
  for (const [k, v] of Object.entries(vit.params.head!) as Array<[string, tf.Variable]>) {
    v.trainable = true;
    params.set(`head.${k}`, v);
  }
  const hooks: VitHooks = setup.lora ? { linear: loraHooks(setup.lora) } : {};
  const opt = new Optimizer(ADAMW_DEFAULTS, params);
  const xt = images(trainBatch, size, 2);
  const yt = tf.tensor1d(Array.from({ length: trainBatch }, (_, i) => i % 10), 'int32');
  const loss = (s: number) => () => {
    const l = crossEntropy(vitForward(vit, xt, { hooks, training: true, rng: Rng.derive(0, 'step', s) }).logits!, yt);
    sample();
    return l;
  };
  t0 = Date.now();
  await step(params, opt, loss(0));
  const warmTrain = Date.now() - t0;
  const trainIters = Math.max(1, Math.ceil(iters / 2));
  t0 = Date.now();
  let last = 0;
  for (let s = 1; s <= trainIters; s++) last = await step(params, opt, loss(s));
  const tms = (Date.now() - t0) / trainIters;
  emit({ kind: 'bench', config: 'explora', model, batch: trainBatch, backend: rep.backend, gpu: rep.gpu, warmupMs: warmTrain, msPerIter: tms, imgPerSec: (1000 * trainBatch) / tms, loss: last, peakGpuMiB: peakGpu / 2 ** 20 || null, wasmHeapMiB: heap(), trainableParams: [...params.values()].reduce((a, v) => a + v.size, 0) });
  opt.dispose();
  tf.dispose([xt, yt]);
  setup.dispose();
  disposeVit(vit);
  return 0;
}

/**
 * The kit's own training path on the active backend: `trainLoop` (which takes the awaited-read step on webgpu) with
 * D-ExPLoRA-[L]-r64 + head, AdamW, `--accumulate` micro-batches per step, `--steps` steps; reports the losses, step
 * time, img/s, peak GPU bytes, live tensors per step, and the shape-only plan of the same step (lib/plan.ts) beside it.
 */
async function train(): Promise<number> {
  wasmPaths();
  const rep = await init();
  emit({ kind: 'backend', ...brief(rep) });
  const model = arg('model', 'vit_base_patch16_224') as VitPresetName;
  const batch = Number(arg('batch', '16'));
  const accumulate = Number(arg('accumulate', '2'));
  const steps = Number(arg('steps', '3'));
  const micro = batch / accumulate;
  if (!Number.isInteger(micro)) throw new Error(`gpu-bench train: --batch ${batch} is not a multiple of --accumulate ${accumulate}`);
  let peakGpu = 0;
  const sample = () => {
    const m = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number; numBytesInGPUAllocated?: number; numBytesAllocatedInGPU?: number };
    peakGpu = Math.max(peakGpu, m.numBytesAllocatedInGPU ?? m.numBytesInGPUAllocated ?? m.numBytesInGPU ?? 0);
  };
  const vit = createVit(model, { numClasses: 10 }, { seed: 0 });
  const all = [...vitVariables(vit).values()].reduce((a, v) => a + v.size, 0);
  const setup = applyExplora({ encoder: vit.params }, 'D-ExPLoRA-[L]-r64', { seed: 0 });
  const params = new Map(setup.selection.trainable);
  for (const [k, v] of Object.entries(vit.params.head!) as Array<[string, tf.Variable]>) {
    v.trainable = true;
    params.set(`head.${k}`, v);
  }
  const hooks: VitHooks = setup.lora ? { linear: loraHooks(setup.lora) } : {};
  const opt = new Optimizer(ADAMW_DEFAULTS, params);
  const size = vit.config.imgSize as number;
  const live: number[] = [tf.memory().numTensors];
  const times: number[] = [];
  const infos = await trainLoop({
    params, optimizer: opt, steps, seed: 0, accumulate, lr: { kind: 'constant', value: 1e-4 }, weightDecay: { kind: 'constant', value: 0.05 }, clipGradNorm: 1,
    batch: (step, i) => ({ x: images(micro, size, 100 * step + i), y: tf.tensor1d(Array.from({ length: micro }, (_, j) => (j + i) % 10), 'int32') }),
    loss: (b, rng) => {
      const l = crossEntropy(vitForward(vit, b.x, { hooks, training: true, rng }).logits!, b.y);
      sample();
      return l;
    },
    onStep: (info) => {
      live.push(tf.memory().numTensors);
      times.push(info.seconds);
    },
  });
  const lora = setup.lora ? [...setup.lora.modules.values()].reduce((a, m) => a + Math.max(1, m.slices.length), 0) : 0;
  const plan = planStep({ encoder: vit.config, params: all + (setup.lora ? loraPlanCount([...setup.lora.modules.values()]) : 0), trainable: [...params.values()].map((v) => v.size), batch, accumulate, loraSites: lora });
  const after = times.slice(1);
  const sec = after.length ? after.reduce((a, b) => a + b, 0) / after.length : times[0];
  emit({
    kind: 'train', model, backend: rep.backend, gpu: rep.gpu, batch, accumulate, steps, losses: infos.map((i) => i.loss), gradNorms: infos.map((i) => i.gradNorm),
    firstStepSeconds: times[0], secondsPerStep: sec, imgPerSec: batch / sec, peakGpuMiB: peakGpu / 2 ** 20 || null,
    liveTensorsPerStep: live, leakFree: live.every((n) => n === live[0]),
    plannedPeakMiB: plan.peakBytes / 2 ** 20, plannedPhase: plan.peakPhase, plannedTflopsPerStep: plan.flops.total / 1e12,
  });
  opt.dispose();
  setup.dispose();
  disposeVit(vit);
  return infos.every((i) => Number.isFinite(i.loss)) && live.every((n) => n === live[0]) ? 0 : 1;
}

const MODES: Record<string, () => Promise<number>> = { smoke, probe, check, bench, train };

const mode = process.argv[2] ?? 'smoke';
if (!MODES[mode]) {
  console.error(`gpu-bench: unknown mode '${mode}'; valid: ${Object.keys(MODES).join(', ')}`);
  process.exit(2);
}
MODES[mode]().then(
  (rc) => process.exit(rc),
  (e) => {
    console.error(e instanceof Error ? e.stack ?? e.message : String(e));
    process.exit(1);
  },
);
