/**
 * Backend-agnostic workloads for cross-backend checks (test/webgpu.test.ts): every kit op family on tiny models —
 * ViT + LoRA + ToMe, ViT + LoRA + PYRA, MAE (encoder LoRA, masking, decoder), the DINOv2 objective (DINO / iBOT /
 * KoLeo losses, heads, centering) — forward outputs and the gradients of every trainable variable, plus one AdamW
 * training step (parameters after the step, live tensors before / after).
 *
 * Everything is read back with `await tensor.data()`: the webgpu backend cannot read synchronously in Node. The
 * weights come from seeded JS generators, so every backend starts from the same numbers.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../lib/rng';
import { createVit, disposeVit, vitVariables, Vit } from '../lib/vit/params';
import { vitForward, VitHooks } from '../lib/vit/forward';
import { createLora, disposeLora, loraHooks, loraVariables, qvTarget, LoraAdapters } from '../lib/peft/lora';
import { tomeHooks, pyraHooks } from '../lib/tome/hooks';
import { createPyra, disposePyra, pyraVariables } from '../lib/tome/pyra';
import { createMae, disposeMae, maeForward, maeVariables } from '../lib/mae/mae';
import { randomMasking } from '../lib/mae/masking';
import { createDinoHeads, disposeDinoHeads, dinoHeadVariables } from '../lib/dino/head';
import { dinov2Objective, createDinov2LossState, disposeDinov2LossState, multiCropBatch, dinov2Targets, dinov2StudentLoss } from '../lib/dino/dinov2';
import { ibotMasks } from '../lib/dino/masking';
import { Optimizer, ADAMW_DEFAULTS, SGD_MOMENTUM } from '../lib/train/optim';
import { clipByGlobalNorm } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { trainLoop } from '../lib/train/step';
import { accuracyAsync } from '../lib/train/loss';
import { applyExplora, exploraRecipe } from '../lib/peft/explora';
import { extractFeatures, featureCache, disposeFeatures, FeatureCache } from '../lib/eval/features';
import { linearProbeAsync } from '../lib/eval/linear-probe';
import { knnEvaluateAsync } from '../lib/eval/knn';
import { measureThroughputAsync } from '../lib/tome/throughput';
import { setupExploraMae } from '../recipes/explora-mae';
import { createExploraDino, dExploraConfig, trainExploraDino } from '../recipes/explora-dino';
import type { Loader } from '../data-loaders/dataset';
import { randArray } from './util';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { RecipeInput } from '../recipes/recipe';
import { readSafetensors } from '../lib/io/safetensors';

/** name → values (outputs, losses, gradients, parameters after a step). */
export type CaseResults = Record<string, Float32Array>;

/** Tiny ViT: 32 px, patch 8 (16 patches + CLS), width 24, 3 blocks. */
const TINY = { imgSize: 32, patchSize: 8, embedDim: 24, depth: 3, numHeads: 3, numClasses: 5 } as const;

function images(b: number, seed: number, size = 32): tf.Tensor4D {
  return tf.tensor4d(randArray(b * size * size * 3, seed), [b, size, size, 3]);
}

/** Give every zero-initialised variable random values, so that every gradient path is live (LoRA B, PYRA W_D, ...). */
function perturb(vars: Map<string, tf.Variable>, seed: number, scale = 0.2): void {
  let i = 0;
  for (const v of vars.values()) {
    const vals = randArray(v.size, seed + i++);
    tf.tidy(() => v.assign(tf.add(v, tf.mul(tf.tensor(vals, v.shape), scale))));
  }
}

/** Loss value and gradient of every variable (by path), read asynchronously. */
async function lossAndGrads(prefix: string, out: CaseResults, params: Map<string, tf.Variable>, f: () => { loss: tf.Scalar; extra?: Record<string, tf.Tensor> }): Promise<void> {
  const vars = [...params.values()];
  const keep: Record<string, tf.Tensor> = {};
  const { value, grads } = tf.variableGrads(() => {
    const r = f();
    for (const [k, t] of Object.entries(r.extra ?? {})) keep[k] = tf.keep(t);
    return r.loss;
  }, vars);
  out[`${prefix}.loss`] = (await value.data()) as Float32Array;
  for (const [k, t] of Object.entries(keep)) out[`${prefix}.${k}`] = (await t.data()) as Float32Array;
  let i = 0;
  for (const [path, v] of params) {
    const g = grads[v.name];
    if (!g) throw new Error(`${prefix}: no gradient for ${path}`);
    out[`${prefix}.grad.${path}`] = (await g.data()) as Float32Array;
    i++;
  }
  tf.dispose([value, ...Object.values(grads), ...Object.values(keep)]);
}

function qvLora(vit: Vit, seed: number): LoraAdapters {
  return createLora(vit.params, { rank: 4, targets: [qvTarget()], init: 'truncNormal' }, { seed });
}

/** ViT + LoRA + ToMe (proportional attention, segment scatter): logits and gradients of LoRA, norms, head. */
export async function vitLoraTome(out: CaseResults): Promise<void> {
  const vit = createVit('vit_tiny_patch16_224', { ...TINY, pool: 'avg' }, { seed: 1 });
  const lora = qvLora(vit, 2);
  const hooks: VitHooks = tomeHooks(vit.config, { schedule: 3 }, { linear: loraHooks(lora) });
  const x = images(2, 3);
  const y = tf.tensor1d([1, 3], 'int32');
  const params = new Map<string, tf.Variable>([...loraVariables(lora)]);
  for (const [p, v] of vitVariables(vit)) if (/norm|^head\./.test(p)) params.set(p, v);
  await lossAndGrads('tome', out, params, () => {
    const o = vitForward(vit, x, { hooks });
    return { loss: crossEntropy(o.logits!, y), extra: { logits: o.logits!, sizes: o.state.size! } };
  });
  tf.dispose([x, y]);
  disposeLora(lora);
  disposeVit(vit);
}

/** ViT + LoRA + PYRA (W_D moved off zero so W_r gets a gradient too). */
export async function vitLoraPyra(out: CaseResults): Promise<void> {
  const vit = createVit('vit_tiny_patch16_224', TINY, { seed: 4 });
  const lora = qvLora(vit, 5);
  const pyra = createPyra(vit.config, [3, 3, 2], { seed: 6 });
  perturb(pyraVariables(pyra), 60);
  const hooks = pyraHooks(vit.config, pyra, {}, { linear: loraHooks(lora) });
  const x = images(2, 7);
  const y = tf.tensor1d([0, 4], 'int32');
  const params = new Map<string, tf.Variable>([...loraVariables(lora), ...pyraVariables(pyra)]);
  await lossAndGrads('pyra', out, params, () => {
    const o = vitForward(vit, x, { hooks, training: true, rng: new Rng(8) });
    return { loss: crossEntropy(o.logits!, y), extra: { logits: o.logits! } };
  });
  tf.dispose([x, y]);
  disposePyra(pyra);
  disposeLora(lora);
  disposeVit(vit);
}

/** MAE with encoder LoRA: loss, prediction and gradients of LoRA, the last block and the decoder. */
export async function maeLora(out: CaseResults): Promise<void> {
  const mae = createMae('mae_vit_base_patch16', {
    encoder: { imgSize: 32, patchSize: 8, embedDim: 24, depth: 2, numHeads: 3 },
    decoder: { embedDim: 16, depth: 1, numHeads: 2 },
    seed: 9,
  });
  const lora = createLora(mae.encoder.params, { rank: 4, targets: [qvTarget()], init: 'truncNormal' }, { seed: 10 });
  const x = images(2, 11);
  const plan = randomMasking(new Rng(12), 2, 16, 0.75);
  const params = new Map<string, tf.Variable>([...loraVariables(lora)]);
  for (const [p, v] of maeVariables(mae)) if (v.trainable && (p.startsWith('blocks.1.') || p.startsWith('decoder_'))) params.set(p, v);
  await lossAndGrads('mae', out, params, () => {
    const o = maeForward(mae, x, { plan, hooks: { linear: loraHooks(lora) }, training: true, rng: new Rng(13) });
    return { loss: o.loss, extra: { pred: o.pred, latent: o.latent } };
  });
  x.dispose();
  disposeLora(lora);
  disposeMae(mae);
}

/** DINOv2 objective (DINO CLS + iBOT patch + KoLeo, centering): student backbone LoRA, heads. */
export async function dinoObjective(out: CaseResults): Promise<void> {
  const student = createVit('vit_tiny_patch16_224', { ...TINY, numClasses: 0, maskToken: true }, { seed: 14 });
  const teacher = createVit('vit_tiny_patch16_224', { ...TINY, numClasses: 0, maskToken: true }, { seed: 15 });
  const lora = qvLora(student, 16);
  const obj = dinov2Objective({ head: { hiddenDim: 16, bottleneckDim: 8, outDim: 12 }, nLocalCrops: 1 });
  const heads = createDinoHeads({ inDim: TINY.embedDim, ...obj.head }, { seed: 17 });
  const tHeads = createDinoHeads({ inDim: TINY.embedDim, ...obj.head }, { seed: 18 });
  const state = createDinov2LossState(obj);
  const B = 2;
  const views = [images(B, 19), images(B, 20), images(B, 21, 16)];
  const masks = ibotMasks(new Rng(22), 2 * B, 4, 4);
  const params = new Map<string, tf.Variable>([...loraVariables(lora), ...dinoHeadVariables(heads)]);
  const targets = tf.tidy(() => {
    const batch = multiCropBatch(views, 1);
    const t = dinov2Targets({ vit: teacher, hooks: {}, heads: tHeads.params }, heads.config, batch, masks, 0.04, obj, state);
    return { cls: t.cls, patch: t.patch };
  });
  await lossAndGrads('dino', out, params, () => {
    const batch = multiCropBatch(views, 1);
    const l = dinov2StudentLoss({ vit: student, hooks: { linear: loraHooks(lora) }, heads: heads.params }, heads.config, batch, masks, targets, obj, { rng: null, training: false });
    return { loss: l.total, extra: { dino: l.dino, ibot: l.ibot, koleo: l.koleo } };
  });
  out['dino.center'] = (await state.clsCenter!.center.data()) as Float32Array;
  tf.dispose([...views, targets.cls, targets.patch]);
  disposeDinov2LossState(state);
  disposeDinoHeads(heads);
  disposeDinoHeads(tHeads);
  disposeLora(lora);
  disposeVit(teacher);
  disposeVit(student);
}

/**
 * Two training steps on ViT + LoRA + ToMe, each one tidy (forward, gradients, clipping, updates) with two optimizers:
 * AdamW on LoRA and the last block, SGD with momentum on the head. Results: the losses, the parameters after the
 * steps, and the live-tensor count before the first and after each step (`step.liveTensors` = [before, 1, 2]).
 * The last block's qkv bias stays frozen: its K slice has an exactly-zero gradient (a per-query constant added to
 * every logit), and AdamW normalises the float noise there to full-size steps on any backend.
 */
export async function trainSteps(out: CaseResults): Promise<void> {
  const vit = createVit('vit_tiny_patch16_224', TINY, { seed: 23 });
  const lora = qvLora(vit, 24);
  const hooks: VitHooks = tomeHooks(vit.config, { schedule: 2 }, { linear: loraHooks(lora) });
  const adamw = new Map<string, tf.Variable>([...loraVariables(lora)]);
  const sgd = new Map<string, tf.Variable>();
  for (const [p, v] of vitVariables(vit)) {
    if (p.startsWith('head.')) sgd.set(p, v);
    else if (p.startsWith('blocks.2.') && p !== 'blocks.2.attn.qkv.bias') adamw.set(p, v);
  }
  const params = new Map([...adamw, ...sgd]);
  const opts = [new Optimizer(ADAMW_DEFAULTS, adamw), new Optimizer(SGD_MOMENTUM, sgd)];
  const x = images(2, 25);
  const y = tf.tensor1d([2, 3], 'int32');
  const vars = [...params.values()];
  const pathOf = new Map([...params].map(([p, v]) => [v.name, p]));
  const live = [tf.memory().numTensors];
  const losses: number[] = [];
  for (let s = 0; s < 2; s++) {
    const lossT = tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => crossEntropy(vitForward(vit, x, { hooks, training: true, rng: Rng.derive(0, 'step', s) }).logits!, y), vars);
      const byPath = new Map<string, tf.Tensor>();
      for (const [name, g] of Object.entries(grads)) byPath.set(pathOf.get(name)!, g);
      const clipped = clipByGlobalNorm(byPath, 1).grads;
      for (const o of opts) o.apply(new Map([...clipped].filter(([p]) => o.params.has(p))), 1e-2, 0.05);
      return value;
    });
    losses.push((await lossT.data())[0]);
    lossT.dispose();
    live.push(tf.memory().numTensors);
  }
  out['step.loss'] = Float32Array.from(losses);
  out['step.liveTensors'] = Float32Array.from(live);
  for (const [p, v] of params) out[`step.param.${p}`] = (await v.data()) as Float32Array;
  opts.forEach((o) => o.dispose());
  tf.dispose([x, y]);
  disposeLora(lora);
  disposeVit(vit);
}

/** All values of a variable map, read asynchronously, under `prefix.` (the K third of exempted qkv biases dropped). */
async function readVars(out: CaseResults, prefix: string, vars: ReadonlyMap<string, tf.Variable>, kBiasExempt: (path: string) => boolean = () => false): Promise<void> {
  for (const [p, v] of vars) {
    let vals = (await v.data()) as Float32Array;
    if (kBiasExempt(p)) {
      // Q | K | V: the K slice's gradient is exactly zero in exact arithmetic (softmax is shift-invariant per query),
      // and AdamW turns the float noise there into full-size steps on any backend — compared apart (see the test)
      const D = vals.length / 3;
      out[`${prefix}.kbias.${p}`] = vals.slice(D, 2 * D);
      vals = Float32Array.from([...vals.slice(0, D), ...vals.slice(2 * D)]);
    }
    out[`${prefix}.param.${p}`] = vals;
  }
}

const isUnfrozenQkvBias = (last: number) => (p: string): boolean => new RegExp(`^(student\\.backbone\\.|teacher\\.backbone\\.)?blocks\\.${last}\\.attn\\.qkv\\.bias$`).test(p);

/**
 * `trainLoop` (it picks the synchronous step on wasm, the asynchronous one on webgpu): three steps of LoRA (Q/V + head)
 * with accumulation 2, clipping and a named metric, then three steps of ExPLoRA `D-ExPLoRA-[L]-r2` (last block
 * unfrozen, LoRA elsewhere, norms, CLS) on the same tiny ViT. Results: losses, metrics, gradient norms, parameters and
 * moments after the steps, live tensors before and after each step (`loop.<name>.liveTensors`).
 */
export async function trainLoopRuns(out: CaseResults): Promise<void> {
  for (const kind of ['lora', 'explora'] as const) {
    const vit = createVit('vit_tiny_patch16_224', { ...TINY, maskToken: false }, { seed: 31 });
    let params: Map<string, tf.Variable>;
    let hooks: VitHooks;
    let dispose: () => void;
    if (kind === 'lora') {
      const lora = qvLora(vit, 32);
      params = new Map([...loraVariables(lora), ['head.weight', vit.params.head!.weight], ['head.bias', vit.params.head!.bias!]]);
      hooks = { linear: loraHooks(lora) };
      dispose = () => disposeLora(lora);
    } else {
      const ex = applyExplora({ encoder: vit.params }, 'D-ExPLoRA-[L]-r2', { seed: 33 });
      params = new Map(ex.selection.trainable);
      hooks = ex.lora ? { linear: loraHooks(ex.lora) } : {};
      dispose = () => ex.dispose();
    }
    perturb(new Map([...params].filter(([p]) => /lora_B/.test(p))), 34, 0.05); // LoRA B off zero: every path live
    const optimizer = new Optimizer(ADAMW_DEFAULTS, params);
    const live = [tf.memory().numTensors];
    const infos = await trainLoop({
      params, optimizer, steps: 3, seed: 0, accumulate: kind === 'lora' ? 2 : 1, clipGradNorm: 1, weightDecay: { kind: 'constant', value: 0.05 },
      lr: { kind: 'cosine', base: 1e-2, min: 0, warmupIters: 1, totalIters: 3 },
      batch: (s, m) => ({ x: images(2, 40 + 10 * s + m), y: tf.tensor1d([(s + m) % 5, (s + 2 * m + 1) % 5], 'int32') }),
      loss: (b, rng) => {
        const logits = vitForward(vit, b.x, { hooks, training: true, rng }).logits!;
        return { loss: crossEntropy(logits, b.y), metrics: { maxLogit: tf.max(logits) as tf.Scalar } };
      },
      onStep: () => void live.push(tf.memory().numTensors),
    });
    const pre = `loop.${kind}`;
    out[`${pre}.loss`] = Float32Array.from(infos.map((i) => i.loss));
    out[`${pre}.gradNorm`] = Float32Array.from(infos.map((i) => i.gradNorm));
    out[`${pre}.metric.maxLogit`] = Float32Array.from(infos.map((i) => i.metrics!.maxLogit));
    out[`${pre}.liveTensors`] = Float32Array.from(live);
    await readVars(out, pre, params, isUnfrozenQkvBias(TINY.depth - 1));
    await readVars(out, `${pre}.optim`, new Map([...optimizer.stateTensors()].filter(([p]) => !/qkv\.bias$/.test(p))) as Map<string, tf.Variable>);
    optimizer.dispose();
    dispose();
    disposeVit(vit);
  }
}

/** D-ExPLoRA micro config: DINOv2 layout at 16 px (patch 4), width 16, 2 blocks, one local crop. */
const DINO_MICRO = dExploraConfig('D_EXPLORA_L_R64', {
  model: 'vit_small_patch14_dinov2',
  modelOverrides: { imgSize: 16, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2, posEmbedGrid: null },
  recipe: 'D-ExPLoRA-[L]-r2',
  objective: { head: { hiddenDim: 16, bottleneckDim: 8, outDim: 32 }, nLocalCrops: 1, globalCropSize: 16, localCropSize: 8, teacherTemp: { warmupEpochs: 1 } },
  train: { batchSize: 2, epochs: 4, itersPerEpoch: 1, warmupEpochs: 1, freezeLastLayerEpochs: 1, dropPathRate: 0.1 },
});

/**
 * D-ExPLoRA: two `trainExploraDino` iterations (step on wasm, stepAsync on webgpu) — DINO + iBOT + KoLeo, centering,
 * frozen last layer, teacher EMA. Results: every metric, student / teacher / heads / centers after the steps, the
 * Adam moments, live tensors per step.
 */
export async function dinoTrain(out: CaseResults): Promise<void> {
  const run = createExploraDino(DINO_MICRO, { seed: 3 });
  const views = (seed: number): tf.Tensor4D[] => [images(2, seed, 16), images(2, seed + 1, 16), images(2, seed + 2, 8)];
  const loader = { batchAt: async (k: number) => ({ views: views(50 + 10 * k) }) } as unknown as Loader;
  const live = [tf.memory().numTensors];
  const ms = await trainExploraDino(run, loader, { steps: 2, onStep: () => void live.push(tf.memory().numTensors) });
  for (const k of ['loss', 'dino', 'ibot', 'koleo', 'targetEntropy', 'targetMarginalEntropy', 'featureStd'] as const) out[`dinoTrain.metric.${k}`] = Float32Array.from(ms.map((m) => m[k]));
  out['dinoTrain.gradNorm.backbone'] = Float32Array.from(ms.map((m) => m.gradNorm.backbone));
  out['dinoTrain.liveTensors'] = Float32Array.from(live);
  const vars = run.variables({ optimizer: true });
  await readVars(out, 'dinoTrain', new Map([...vars].filter(([p]) => !/^optim\..*qkv\.bias$/.test(p))), isUnfrozenQkvBias(1));
  run.dispose();
}

/** M-ExPLoRA `[L]-r4` (decoder LoRA r2) on a micro MAE: two `trainLoop` steps with accumulation 2. */
export async function maeTrain(out: CaseResults): Promise<void> {
  const mae = createMae('mae_vit_base_patch16', { encoder: { imgSize: 16, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2 }, decoder: { embedDim: 8, depth: 1, numHeads: 2 }, seed: 2 });
  const run = setupExploraMae(mae, exploraRecipe('M-ExPLoRA-[L]-r4', { decoderRank: 2 }), { seed: 1, train: { effectiveBatch: 4, accumIter: 2, blr: 0.05 } });
  perturb(new Map([...run.trainable].filter(([p]) => /lora_B/.test(p))), 35, 0.05);
  const x = images(4, 36, 16);
  const live = [tf.memory().numTensors];
  const infos = await trainLoop({
    params: run.trainable, optimizer: run.optimizer, steps: 2, seed: 0, lr: run.schedule(1), weightDecay: run.weightDecay, accumulate: run.accumulate,
    batch: (_s, micro) => x.slice([micro * run.microBatch, 0, 0, 0], [run.microBatch, -1, -1, -1]) as tf.Tensor4D,
    loss: (b, rng) => run.loss(b, rng),
    onStep: () => void live.push(tf.memory().numTensors),
  });
  out['maeTrain.loss'] = Float32Array.from(infos.map((i) => i.loss));
  out['maeTrain.gradNorm'] = Float32Array.from(infos.map((i) => i.gradNorm));
  out['maeTrain.liveTensors'] = Float32Array.from(live);
  await readVars(out, 'maeTrain', run.trainable, isUnfrozenQkvBias(1));
  x.dispose();
  run.dispose();
  disposeMae(mae);
}

/**
 * The eval helpers through their awaited variants (what runs on webgpu): features of a tiny ViT (`extractFeatures`),
 * a linear-probe grid and kNN on separable synthetic features, top-1 accuracy, a throughput record (tokens out).
 */
export async function evalHelpers(out: CaseResults): Promise<void> {
  const vit = createVit('vit_tiny_patch16_224', { ...TINY }, { seed: 37 });
  const before = tf.memory().numTensors;
  const batches = [0, 1].map((i) => ({ images: images(4, 60 + i), labels: tf.tensor1d([0, 1, 2, i], 'int32') }));
  const f = await extractFeatures(vit, batches, { nLast: 2 });
  out['eval.features.cls'] = (await f.cls.data()) as Float32Array;
  out['eval.features.patchMean'] = (await f.patchMean.data()) as Float32Array;
  const logits = tf.tidy(() => vitForward(vit, images(6, 62)).logits!);
  const labels = tf.tensor1d([0, 1, 2, 3, 4, 0], 'int32');
  out['eval.accuracy'] = Float32Array.of(await accuracyAsync(logits, labels));
  tf.dispose([logits, labels]);
  const rng = new Rng(38);
  const synth = (n: number): FeatureCache => {
    const labels = Int32Array.from({ length: n }, (_, i) => i % 3);
    const cls = Float32Array.from({ length: n * 2 * 8 }, (_, j) => rng.normal(0, 1) + (Math.floor(j / 8) % 2 === 1 && j % 8 === labels[Math.floor(j / 16)] ? 3 : 0));
    return featureCache(cls, Float32Array.from({ length: n * 8 }, () => rng.normal(0, 1)), labels, 2, 8);
  };
  const tr = synth(30);
  const va = synth(12);
  const probe = await linearProbeAsync(tr, va, { nLastBlocks: [1, 2], avgpool: [false, true], lrs: [0.01, 0.1], batchSize: 8, epochs: 2, seed: 1 });
  out['eval.probe.losses'] = Float32Array.from(probe.losses);
  out['eval.probe.valAcc'] = Float32Array.from(probe.results.map((r) => r.valAcc));
  out['eval.probe.testAcc'] = Float32Array.of(await probe.accuracyAsync(tr));
  probe.dispose();
  const knn = await knnEvaluateAsync(tr, va, { k: [1, 5] });
  out['eval.knn.top1'] = Float32Array.from(knn.map((r) => r.top1));
  out['eval.knn.predictions'] = Float32Array.from(knn.flatMap((r) => Array.from(r.predictions)));
  const t = await measureThroughputAsync(vit, { mode: 'tome', schedule: 2 }, { batch: 2, warmup: 0, iters: 1 });
  out['eval.throughput.tokensOut'] = Float32Array.of(t.tokensOut);
  [f, tr, va].forEach(disposeFeatures);
  out['eval.liveTensorsLeft'] = Float32Array.of(tf.memory().numTensors - before);
  disposeVit(vit);
}

/**
 * `runRecipe` (what the CLI runs) on the active backend: a tiny supervised LoRA recipe (4 steps, accuracy evaluations,
 * a state checkpoint every 2 steps, the run checks) and a tiny M-ExPLoRA recipe with a linear-probe + kNN evaluation.
 * On webgpu every read in the run (steps, evaluations, checks, checkpoints) must take its awaited path by itself.
 */
export async function recipeRuns(out: CaseResults): Promise<void> {
  // loaded here, not at the top: the recipes reach the image codecs (sharp), which the device pack does not carry
  const { runRecipe } = await import('../recipes/run');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-cases-'));
  const prevCache = process.env.VITPEFT_CACHE_DIR;
  process.env.VITPEFT_CACHE_DIR = path.join(tmp, 'cache');
  const EMB = { kind: 'embedded', domain: 'satellite-rgb', seed: 3, size: 16, satellitePerClass: 5, naturalPerClass: 5 } as const;
  const norm = { name: 'normalize', stats: 'imagenet' } as const;
  const split = (s: string) => ({ splits: [{ split: s, subset: null }], transform: norm });
  const runs: Array<[string, RecipeInput]> = [
    ['recipe.lora', {
      name: 'cases-lora',
      seed: 1,
      model: { kind: 'vit', preset: 'vit_tiny_patch16_224', overrides: { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2, numClasses: 10 } },
      adapters: { kind: 'lora', rank: 4, alpha: 1, dropout: 0, init: 'kaiming', targets: [{ sites: ['attn.qkv'], exclude: [], layers: null, kind: 'qkv', slices: ['q', 'v'], rank: null, alpha: null, scaling: null, dropout: null, init: null }], train: ['head.*'] },
      objective: { kind: 'supervised', labelSmoothing: 0.1 },
      data: { source: EMB, train: { splits: [{ split: 'train', subset: null }], transform: { name: 'supervised', size: 16, rrcScale: [0.5, 1], hflip: true, stats: 'imagenet' } } },
      batch: 8,
      steps: 4,
      lr: 1e-2,
      schedule: { kind: 'cosine', warmup: { steps: 1 }, minLr: 0, warmupStart: 0 },
      eval: { kind: 'accuracy', test: split('test'), at: { every: 2 }, batch: 5 },
      checkpointEvery: 2,
    }],
    ['recipe.mae', {
      name: 'cases-mae',
      seed: 7,
      model: { kind: 'mae', preset: 'mae_vit_base_patch16', encoder: { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2 }, decoder: { embedDim: 16, depth: 1, numHeads: 2 } },
      adapters: { kind: 'explora', notation: 'M-ExPLoRA-[L]-r4', overrides: { decoderRank: 2 } },
      objective: { kind: 'mae', maskRatio: 0.75, normPixLoss: true },
      data: { source: EMB, train: { splits: [{ split: 'train', subset: null }], transform: { name: 'mae-pretrain', size: 16, stats: 'imagenet' } } },
      batch: 8,
      steps: 2,
      optimizer: { kind: 'adamw', betas: [0.9, 0.95], eps: 1e-8, layerDecay: 1, patchEmbedLrMult: 1 },
      lr: 2e-3,
      schedule: { kind: 'cosine', warmup: { steps: 1 }, minLr: 0, warmupStart: 0 },
      eval: {
        kind: 'probe', train: split('train'), val: split('val'), test: split('test'), at: { steps: [2] }, featureBatch: 10,
        probe: { nLastBlocks: [1, 2], avgpool: [false, true], lrs: [0.1], batchSize: 10, epochs: 2, itersPerEpoch: 3, momentum: 0.9, weightDecay: 0, initStd: 0.01 },
        knn: { k: 5, temperature: 0.07 },
        saveEncoder: false,
      },
    }],
  ];
  try {
    for (const [prefix, r] of runs) {
      const before = tf.memory().numTensors;
      const res = await runRecipe(r, { root: path.join(tmp, 'runs') });
      out[`${prefix}.loss`] = Float32Array.from(res.steps.map((s) => s.loss));
      out[`${prefix}.gradNorm`] = Float32Array.from(res.steps.map((s) => s.gradNorm));
      for (const k of ['testAcc', 'probeVal', 'probeTest', 'knn'] as const) {
        const v = res.evals.map((e) => e[k]).filter((x): x is number => typeof x === 'number');
        if (v.length) out[`${prefix}.eval.${k}`] = Float32Array.from(v);
      }
      out[`${prefix}.checksOk`] = Float32Array.from(res.checks.map((c) => (c.ok ? 1 : 0)));
      out[`${prefix}.done`] = Float32Array.of(res.status === 'done' ? 1 : 0);
      const state = path.join(res.dir, 'checkpoints', 'state.safetensors');
      if (fs.existsSync(state)) {
        // the resumable state (trainable parameters + AdamW moments), every tensor in key order
        const ts = readSafetensors(state).tensors;
        out[`${prefix}.state`] = Float32Array.from([...ts.keys()].sort().flatMap((k) => Array.from(ts.get(k)!.data as Float32Array)));
      }
      out[`${prefix}.liveTensorsLeft`] = Float32Array.of(tf.memory().numTensors - before);
    }
  } finally {
    if (prevCache === undefined) delete process.env.VITPEFT_CACHE_DIR;
    else process.env.VITPEFT_CACHE_DIR = prevCache;
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export const CASES = { vitLoraTome, vitLoraPyra, maeLora, dinoObjective, trainSteps, trainLoopRuns, dinoTrain, maeTrain, evalHelpers, recipeRuns } as const;
export type CaseName = keyof typeof CASES;

/** Run the cases on the active backend; also returns each case's wall time (ms) as `time.<case>`. */
export async function runCases(names: readonly CaseName[] = Object.keys(CASES) as CaseName[]): Promise<CaseResults> {
  const out: CaseResults = {};
  for (const n of names) {
    const t0 = Date.now();
    await CASES[n](out);
    out[`time.${n}`] = Float32Array.of(Date.now() - t0);
  }
  return out;
}
