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
import { randArray } from './util';

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

export const CASES = { vitLoraTome, vitLoraPyra, maeLora, dinoObjective, trainSteps } as const;
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
