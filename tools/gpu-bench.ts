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
 * `--require-gpu` exits 2 when the backend computes on no GPU (e.g. TensorFlow registered none).
 */
import * as tf from '@tensorflow/tfjs';
import { init, BackendReport } from '../lib/backend';
import { probeWebgpu } from '../lib/webgpu';
import { createVit, disposeVit } from '../lib/vit/params';
import { VitPresetName } from '../lib/vit/config';
import { vitForward, VitHooks } from '../lib/vit/forward';
import { createLora, disposeLora, loraHooks, loraVariables, qvTarget } from '../lib/peft/lora';
import { applyExplora } from '../lib/peft/explora';
import { tomeHooks } from '../lib/tome/hooks';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { crossEntropy } from '../lib/train/loss';
import { Rng } from '../lib/rng';
import { runCases, CaseResults } from '../test/backend-cases';

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
  await init({ backend: 'wasm' });
  const ref = await runCases();
  const rep = await init({ backend: 'webgpu' });
  emit({ kind: 'backend', ...brief(rep) });
  const got = await runCases();
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

const MODES: Record<string, () => Promise<number>> = { smoke, probe, check, bench };

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
