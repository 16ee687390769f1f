/**
 * `planRun(recipe, backend)`: what one optimizer step of a recipe needs — parameter, optimizer-state, gradient and
 * activation memory, and FLOPs — from shapes alone (lib/plan.ts), before anything is allocated; `vitpeft plan` prints
 * it. Choose the micro-batch (gradient accumulation: `batch / microBatch` micro-batches per step) and activation
 * recomputation from it.
 *
 * Counted exactly from shapes: parameters (model, adapters, DINO heads, the DINOv2 teacher's copy), the trainable set
 * (the same counts as the papers', recipes test). Estimated: activations and the update's temporaries, with the
 * coefficients fitted to the wasm backend (lib/plan.ts; within 25 % of measured wasm heap peaks for supervised and MAE
 * steps). The DINOv2 multi-crop step is planned as its crops' forwards (student: global + local crops; teacher: global
 * crops, kept like the student's) and was not measured against a heap peak: read it as an extrapolation.
 */
import { VitConfig, vitConfig } from '../lib/vit/config';
import { vitShapes } from '../lib/peft/shapes';
import type { ShapeLike } from '../lib/peft/lora';
import { countExplora, exploraRecipe, ExploraRecipe } from '../lib/peft/explora';
import { loraConfig, loraPlanCount, planLora, LoraModulePlan, qvTarget } from '../lib/peft/lora';
import { pyraSchedule, RSchedule } from '../lib/tome/schedule';
import { planStep, StepPlan, DecoderShape } from '../lib/plan';
import { checkNumber } from '../lib/check';
import { RecipeError } from './schema';
import { Recipe, RecipeInput, recipe as checkRecipe } from './recipe';
import { pyraParamReport, PyraPresetConfig } from './pyra-presets';
import { toLoraTarget } from './session';

export interface PlanOptions {
  /** Images through the model at a time (default the recipe's batch: no accumulation). */
  microBatch?: number;
  /** Activation recomputation per block (default false). */
  recompute?: boolean;
}

export interface RunPlan {
  recipe: string;
  backend: string;
  model: string;
  batch: number;
  microBatch: number;
  accumulate: number;
  recompute: boolean;
  /** Every parameter (model, adapters, heads, a teacher copy). */
  params: number;
  /** Trainable elements (encoder + adapters + heads). */
  trainable: number;
  /** Trainable elements of the DINO heads (0 without DINOv2). */
  headTrainable: number;
  loraSites: number;
  /** The step (for DINOv2: the global crops' plan, with the local crops' activations added). */
  plan: StepPlan;
  /** Optimizer steps of the run (null when the recipe gives epochs of a dataset of unknown size). */
  steps: number | null;
  /** FLOPs of the whole run (null when `steps` is). */
  runFlops: number | null;
  notes: string[];
}

const size = (s: ShapeLike): number => s.shape.reduce((a: number, b: number) => a * b, 1);
const sumShapes = (m: ReadonlyMap<string, ShapeLike>): number => [...m.values()].reduce((a, s) => a + size(s), 0);
const sites = (plan: readonly LoraModulePlan[]): number => plan.reduce((a, m) => a + Math.max(1, m.slices.length), 0);

function globRe(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
}

/** MAE decoder parameters from its shape (decoder_embed, mask token, blocks, norm, prediction; the sin-cos table is fixed). */
function decoderParams(enc: VitConfig, d: DecoderShape): number {
  const Dd = d.embedDim;
  const Md = Math.round(Dd * (d.mlpRatio ?? 4));
  const block = 2 * Dd + (Dd * 3 * Dd + 3 * Dd) + (Dd * Dd + Dd) + 2 * Dd + (Dd * Md + Md) + (Md * Dd + Dd);
  return enc.embedDim * Dd + Dd + Dd + d.depth * block + 2 * Dd + Dd * enc.patchSize ** 2 * enc.inChans + enc.patchSize ** 2 * enc.inChans;
}

/** DINO head parameters (MLP in → hidden → hidden → bottleneck, weight-normed last layer bottleneck → K). */
function dinoHeadParams(inDim: number, h: { hiddenDim: number; bottleneckDim: number; outDim: number; nlayers: number; mlpBias: boolean }): number {
  const dims = [inDim, ...Array.from({ length: h.nlayers - 1 }, () => h.hiddenDim), h.bottleneckDim];
  let n = 0;
  for (let i = 0; i + 1 < dims.length; i++) n += dims[i] * dims[i + 1] + (h.mlpBias ? dims[i + 1] : 0);
  return n + h.bottleneckDim * h.outDim + h.outDim;
}

/**
 * Plan a recipe's training step on `backend` (see the file comment).
 * @example planRun(RECIPES.d_explora_l_r64, 'webgpu', { microBatch: 32, recompute: true }).plan.peakBytes
 */
export function planRun(input: RecipeInput | Recipe, backend: string, opts: PlanOptions = {}): RunPlan {
  const r = checkRecipe(input);
  const micro = opts.microBatch ?? r.batch;
  checkNumber('planRun: microBatch', micro, { integer: true, gt: 0 });
  if (r.batch % micro !== 0) throw new RecipeError('planRun.microBatch', `the batch ${r.batch} is not a multiple of the micro-batch ${micro}`);
  const accumulate = r.batch / micro;
  const notes: string[] = [];
  const m = r.model;
  if (m.kind === 'satmae-group' || m.kind === 'satmae-temporal') throw new RecipeError('recipe.model.kind', `planRun: '${m.kind}' models are not planned yet (plan the RGB MAE of the same shape)`);
  const dropHead = r.objective.kind !== 'supervised';
  const overrides: Partial<VitConfig> = m.kind === 'vit' ? { ...m.overrides } : { ...m.encoder, numClasses: 0 };
  if (dropHead) overrides.numClasses = 0;
  const cfg = vitConfig(m.preset, overrides);
  const shapes = vitShapes(cfg);
  let decoder: DecoderShape | null = null;
  let params = sumShapes(shapes);
  if (m.kind === 'mae') {
    const d = { embedDim: 512, depth: 8, numHeads: 16, mlpRatio: 4, ...m.decoder } as DecoderShape;
    decoder = d;
    params += decoderParams(cfg, d);
  }
  const headOf = (): number => [...shapes].filter(([k]) => k.startsWith('head.')).reduce((a, [, s]) => a + size(s), 0);
  let trainable = 0;
  let loraSites = 0;
  let tome: RSchedule | null = null;
  const a = r.adapters;
  switch (a.kind) {
    case 'full':
      trainable = params;
      break;
    case 'frozen':
      trainable = headOf();
      break;
    case 'explora': {
      const rec = exploraRecipe(a.notation, a.overrides as Partial<ExploraRecipe>);
      const c = countExplora(shapes, decoder ? rec : { ...rec, decoderRank: null });
      trainable = c.trainable;
      loraSites = sites(c.lora);
      params += loraPlanCount(c.lora);
      if (decoder) notes.push('MAE decoder: counted frozen except what the ExPLoRA notation trains in the encoder (its LoRA is not counted)');
      break;
    }
    case 'lora': {
      const plan = planLora(shapes, loraConfig({ rank: a.rank, alpha: a.alpha, dropout: a.dropout, init: a.init, targets: a.targets.map(toLoraTarget) }));
      const pats = a.train.map(globRe);
      trainable = loraPlanCount(plan) + [...shapes].filter(([k]) => pats.some((p) => p.test(k))).reduce((x, [, s]) => x + size(s), 0);
      params += loraPlanCount(plan);
      loraSites = sites(plan);
      break;
    }
    case 'finetune-lora': {
      const plan = planLora(shapes, loraConfig({ rank: a.rank, alpha: a.alpha, targets: [qvTarget(undefined, { slices: a.slices })] }));
      trainable = loraPlanCount(plan) + headOf();
      params += loraPlanCount(plan);
      loraSites = sites(plan);
      break;
    }
    case 'pyra': {
      const { kind: _k, trainHead, ...pc } = a;
      const rep = pyraParamReport(pc as PyraPresetConfig, { numClasses: trainHead ? cfg.numClasses : 0 });
      trainable = rep.trainable;
      params += rep.trainable - (trainHead ? headOf() : 0);
      loraSites = 2 * cfg.depth;
      tome = pc.schedule === null ? null : typeof pc.schedule === 'string' ? pyraSchedule(pc.backbone as never, pc.schedule) : pc.schedule;
      break;
    }
  }
  const opt = r.optimizer.kind;
  let headTrainable = 0;
  let plan: StepPlan;
  if (r.objective.kind === 'dinov2') {
    const s = r.objective.settings;
    const head = dinoHeadParams(cfg.embedDim, s.head);
    headTrainable = head * (s.separateIbotHead ? 2 : 1);
    // the teacher: a copy of the student's backbone (+ adapters, merged or not) and heads, not trained
    const student = params;
    params = 2 * (student + headTrainable);
    trainable += headTrainable;
    const gl = planStep({ encoder: { ...cfg, imgSize: s.globalCropSize }, params, trainable, optimizer: opt, batch: 4 * r.batch, accumulate, recompute: opts.recompute, tome, loraSites });
    const loc = planStep({ encoder: { ...cfg, imgSize: s.localCropSize }, params, trainable, optimizer: opt, batch: s.nLocalCrops * r.batch, accumulate, recompute: opts.recompute, tome, loraSites });
    // 4 global images per sample: 2 crops through the student and the teacher
    const bytes = { ...gl.bytes, activations: gl.bytes.activations + loc.bytes.activations, inputs: gl.bytes.inputs / 2 + loc.bytes.inputs };
    const back = bytes.gradients + bytes.activations;
    const fw = (gl.flops.forward + loc.flops.forward) * 1; // teacher forward included in the 4 global images
    const studentFw = gl.flops.forward / 2 + loc.flops.forward;
    const bw = (gl.flops.backward / 2 + loc.flops.backward);
    const re = opts.recompute ? studentFw : 0;
    plan = {
      bytes,
      peakBytes: bytes.params + bytes.optimizer + bytes.inputs + Math.max(back, bytes.update),
      peakPhase: back >= bytes.update ? 'backward' : 'update',
      microBatch: micro,
      flops: { forward: fw, backward: bw, recompute: re, total: fw + bw + re },
      tokens: gl.tokens,
    };
    notes.push(`DINOv2: ${s.nLocalCrops} local crops at ${s.localCropSize} px + 2 global crops at ${s.globalCropSize} px (student and teacher); an extrapolation, not measured`);
  } else {
    const maskRatio = r.objective.kind === 'mae' ? r.objective.maskRatio : undefined;
    plan = planStep({ encoder: cfg, decoder, maskRatio, params, trainable, optimizer: opt, batch: r.batch, accumulate, recompute: opts.recompute, tome, loraSites });
  }
  const steps = r.steps ?? null;
  if (backend === 'wasm' && plan.peakBytes > 4 * 2 ** 30) notes.push(`the wasm backend addresses at most 4 GiB: this step needs ${(plan.peakBytes / 2 ** 30).toFixed(1)} GiB (lower the micro-batch, recompute, or use a GPU backend)`);
  if (backend === 'webgpu') notes.push('webgpu: fitted on wasm; WebGPU pools its buffers, so read the bytes as an order of magnitude (not measured on a GPU)');
  return {
    recipe: r.name, backend, model: m.preset, batch: r.batch, microBatch: micro, accumulate, recompute: !!opts.recompute,
    params, trainable, headTrainable, loraSites, plan, steps, runFlops: steps === null ? null : steps * plan.flops.total, notes,
  };
}

const GiB = (b: number): string => `${(b / 2 ** 30).toFixed(2)} GiB`;

/** The plan as table rows (what `vitpeft plan` prints and environment/GPU.md shows). */
export function planRows(p: RunPlan): Array<{ item: string; value: string }> {
  const b = p.plan.bytes;
  const rows = [
    { item: 'recipe', value: `${p.recipe} (${p.model}) on ${p.backend}` },
    { item: 'batch', value: `${p.batch} = ${p.accumulate} × ${p.microBatch}${p.recompute ? ', recomputation' : ''}` },
    { item: 'parameters / trainable', value: `${p.params.toLocaleString('en')} / ${p.trainable.toLocaleString('en')}` },
    { item: 'parameters', value: GiB(b.params) },
    { item: 'optimizer state', value: GiB(b.optimizer) },
    { item: 'gradients', value: GiB(b.gradients) },
    { item: 'activations (one micro-batch)', value: GiB(b.activations) },
    { item: 'update temporaries', value: GiB(b.update) },
    { item: 'inputs', value: GiB(b.inputs) },
    { item: 'peak', value: `${GiB(p.plan.peakBytes)} (in the ${p.plan.peakPhase})` },
    { item: 'FLOPs per step', value: `${(p.plan.flops.total / 1e12).toFixed(2)} T (forward ${(p.plan.flops.forward / 1e12).toFixed(2)} T)` },
  ];
  if (p.runFlops !== null) rows.push({ item: `FLOPs of the run (${p.steps} steps)`, value: `${(p.runFlops / 1e15).toFixed(1)} P` });
  for (const n of p.notes) rows.push({ item: 'note', value: n });
  return rows;
}
