/**
 * `npx tsx bench/recompute-mem.ts`: memory held by one training step with and without activation recomputation, for
 * the configurations recomputation now composes with: ExPLoRA (D-[L]-r64) + ToMe, ExPLoRA + PYRA (PYRA's "low"
 * schedule [16×11, 10]), and an MAE step (encoder + decoder, mask 0.75, LoRA r64 on the encoder's Q/V, last block
 * unfrozen). Each (configuration, recompute) runs in its own process, because the wasm heap only grows: its size
 * after the steps is that process's peak.
 *
 * JSON lines: {kind: 'recompute-mem', config, model, batch, checkpoint, wasmHeapMiB, enginePeakMiB, modelMiB, msPerStep}
 * (engine peak = the largest tf.memory().numBytes during a step, from tf.profile; model = bytes live before the step).
 *
 * Options (env): BENCH_MODEL (default vit_small_patch16_224), BENCH_BATCH (16), BENCH_STEPS (2),
 * BENCH_CONFIGS (tome,pyra,mae).
 */
import * as tf from '@tensorflow/tfjs';
import { spawnSync } from 'child_process';
import { init } from '../lib/backend';
import { createVit, disposeVit, Vit } from '../lib/vit/params';
import { VitPresetName } from '../lib/vit/config';
import { vitForward, VitHooks } from '../lib/vit/forward';
import { tomeHooks, pyraHooks } from '../lib/tome/hooks';
import { createPyra, pyraVariables, disposePyra } from '../lib/tome/pyra';
import { pyraSchedule } from '../lib/tome/schedule';
import { createMae, disposeMae, maeForward } from '../lib/mae/mae';
import { applyExplora } from '../lib/peft/explora';
import { loraHooks } from '../lib/peft/lora';
import { crossEntropy } from '../lib/train/loss';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { Rng } from '../lib/rng';
import { exploraBench } from './explora-setup';

type Config = 'tome' | 'pyra' | 'mae';

function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  return v ? Number.parseInt(v, 10) : dflt;
}

function heapMiB(): number | null {
  const be = tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } };
  return be.wasm ? be.wasm.HEAPU8.buffer.byteLength / 2 ** 20 : null;
}

function images(b: number, size: number, seed: number): tf.Tensor4D {
  const r = new Rng(seed);
  return tf.tensor4d(Float32Array.from({ length: b * size * size * 3 }, () => r.normal(0, 1)), [b, size, size, 3]);
}

/** One process: build the configuration, run the steps, print the record. */
async function one(config: Config, checkpoint: boolean, model: VitPresetName, batch: number, steps: number): Promise<void> {
  await init({ backend: (process.env.VITPEFT_BACKEND as 'wasm') ?? undefined });
  let params: Map<string, tf.Variable>;
  let loss: (s: number) => tf.Scalar;
  let cleanup: () => void;
  const ck = (p: Map<string, tf.Variable>) => (checkpoint ? { trainable: p } : null);
  if (config === 'mae') {
    // ViT-S/16: the MAE ViT-B/16 layout at width 384, 6 heads (MAE released no ViT-S); else the model's MAE preset
    const mae =
      model === 'vit_small_patch16_224'
        ? createMae('mae_vit_base_patch16', { encoder: { embedDim: 384, numHeads: 6 }, seed: 0 })
        : createMae(model.replace(/^vit_/, 'mae_vit_').replace(/_224$/, '') as VitPresetName, { seed: 0 });
    const setup = applyExplora({ encoder: mae.encoder.params, decoder: mae.decoder }, 'M-ExPLoRA-[L]-r64', { seed: 0 });
    params = new Map(setup.selection.trainable);
    const hooks: VitHooks = setup.lora ? { linear: loraHooks(setup.lora) } : {};
    const x = images(batch, 224, 1);
    loss = (s) => maeForward(mae, x, { rng: Rng.derive(0, 'step', s), training: true, hooks, checkpoint: ck(params) }).loss;
    cleanup = () => {
      x.dispose();
      setup.dispose();
      disposeMae(mae);
    };
  } else {
    const vit: Vit = createVit(model, { numClasses: 10 }, { seed: 0 });
    const ex = exploraBench(vit, 64);
    params = new Map(ex.trainable);
    let hooks: VitHooks;
    let pyraDispose = () => {};
    const schedule = pyraSchedule('vit_base_patch16_224', 'low'); // 12 blocks, 197 tokens: also fits ViT-S/16
    if (config === 'tome') {
      hooks = tomeHooks(vit.config, { schedule }, ex.hooks);
    } else {
      const pyra = createPyra(vit.config, schedule, { seed: 0 });
      for (const [p, v] of pyraVariables(pyra)) params.set(p, v);
      hooks = pyraHooks(vit.config, pyra, {}, ex.hooks);
      pyraDispose = () => disposePyra(pyra);
    }
    const x = images(batch, 224, 1);
    const y = tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 10), 'int32');
    loss = (s) => crossEntropy(vitForward(vit, x, { hooks, training: true, rng: Rng.derive(0, 'step', s), checkpoint: ck(params) }).logits!, y);
    cleanup = () => {
      tf.dispose([x, y]);
      pyraDispose();
      ex.dispose();
      disposeVit(vit);
    };
  }
  const opt = new Optimizer(ADAMW_DEFAULTS, params);
  const modelBytes = tf.memory().numBytes;
  let peak = 0;
  let ms = 0;
  for (let s = 0; s < steps; s++) {
    const t0 = Date.now();
    const info = await tf.profile(() => {
      trainStep({ params, optimizer: opt, lr: 1e-4, weightDecay: 0.05, loss: () => loss(s) });
    });
    if (s > 0 || steps === 1) ms += Date.now() - t0;
    peak = Math.max(peak, info.peakBytes);
  }
  const rec = {
    kind: 'recompute-mem', config, model, batch, checkpoint,
    wasmHeapMiB: heapMiB(), enginePeakMiB: +(peak / 2 ** 20).toFixed(1), modelMiB: +(modelBytes / 2 ** 20).toFixed(1),
    msPerStep: Math.round(ms / Math.max(1, steps - 1)), trainableParams: [...params.values()].reduce((a, v) => a + v.size, 0),
  };
  console.log(JSON.stringify(rec));
  opt.dispose();
  cleanup();
}

async function main(): Promise<void> {
  const model = (process.env.BENCH_MODEL ?? 'vit_small_patch16_224') as VitPresetName;
  const batch = envInt('BENCH_BATCH', 16);
  const steps = envInt('BENCH_STEPS', 2);
  const oneArg = process.argv.find((a) => a.startsWith('--one='));
  if (oneArg) {
    const [config, ckpt] = oneArg.slice(6).split(':');
    await one(config as Config, ckpt === '1', model, batch, steps);
    return;
  }
  const configs = (process.env.BENCH_CONFIGS ?? 'tome,pyra,mae').split(',') as Config[];
  for (const c of configs) {
    for (const ckpt of ['0', '1']) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', __filename, `--one=${c}:${ckpt}`], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
      const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith('{"kind":"recompute-mem"'));
      console.log(line ?? JSON.stringify({ kind: 'recompute-mem', config: c, checkpoint: ckpt === '1', error: `exit ${r.status}` }));
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
