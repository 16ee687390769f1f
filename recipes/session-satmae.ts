/**
 * The SatMAE models in recipes: their training batches (band-count and date checks that name the data) and their
 * evaluation (multispectral and temporal M-ExPLoRA, notebooks 06 and 07): at each evaluation step the downstream
 * classifier is built from the model as it stands — the encoder copied, the ExPLoRA adapters merged into the copy
 * (`satMaeGroupVitFromMae` / `satMaeTemporalVitFromMae`, as SatMAE / ExPLoRA fine-tuning loads a checkpoint) — and
 * LoRA-fine-tuned per task
 * (ExPLoRA's protocol, recipes/finetune-classifier.ts), then its top-1 is measured on the task's test split. The
 * training run itself is untouched (new variables, own seeded loader and RNG streams), so the evaluation at step 0
 * (the source model: LoRA B = 0) and after the last step share seed, data, head and LoRA initialisation: "ExPLoRA −
 * source" is a paired difference per seed, as notebook 08's probe pairs are.
 *
 * Cost: per task `steps` fine-tuning steps of `batch` + one pass over `test`, at every evaluation step.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../lib/rng';
import { readValues } from '../lib/reads';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { StepInfo, trainLoop } from '../lib/train/step';
import type { LoraAdapters } from '../lib/peft/lora';
import type { VitHooks } from '../lib/vit/forward';
import { SatMaeGroup } from '../lib/mae/satmae-group';
import { SatMaeTemporal } from '../lib/mae/satmae-temporal';
import { disposeSatMaeGroupVit, satMaeGroupVitForward, satMaeGroupVitFromMae } from '../lib/mae/satmae-group-vit';
import { disposeSatMaeTemporalVit, satMaeTemporalVitForward, satMaeTemporalVitFromMae } from '../lib/mae/satmae-temporal-vit';
import { Batch, Dataset, Loader, disposeBatch } from '../data-loaders/dataset';
import type { TemporalBatch } from './explora-mae';
import { RecipeError } from './schema';
import type { FinetuneTaskSpec, Recipe } from './recipe';
import { DataSource, openSource, sampleTransform, splitSetData } from './data';
import { setupClassifierFinetune } from './finetune-classifier';

/**
 * Check that images [B, H, W, C] carry the bands a group model reads (all `bands`, or only the kept ones), naming the
 * data and the recipe key when they do not — before any state changes.
 */
export function checkGroupBands(m: Pick<SatMaeGroup, 'config' | 'layout'>, images: tf.Tensor4D, data: string, at: string): void {
  const C = images.shape[3];
  const all = m.config.bands.length;
  const kept = m.layout.kept.length;
  if (C !== all && C !== kept) {
    throw new RecipeError(
      at,
      `${data} gives ${C}-band images; the SatMAE group model reads ${all} bands (${m.config.bands.join(', ')}) or the ${kept} kept ones (${m.layout.kept.join(', ')}); check the source and the transform's droppedBands`,
    );
  }
}

/** A SatMAE model of a recipe. */
export type SatMaeModel = { kind: 'satmae-group'; model: SatMaeGroup } | { kind: 'satmae-temporal'; model: SatMaeTemporal };

/**
 * A temporal training / fine-tuning input from a loader batch: frames stacked to [B, T, H, W, C] and the per-frame
 * [year − 2002, month − 1, hour] codes of the samples' `meta.timestamps` (fMoW-temporal loader), checked against the
 * model: T frames, every code an integer with year offset ≥ 0, month 0–11, hour 0–23. Errors name the data, the sample
 * and the recipe key. Takes ownership of the batch's tensors.
 */
export function temporalInput(m: SatMaeTemporal, b: Batch, data: string, at: string): TemporalBatch {
  const T = m.config.frames;
  const fail = (why: string): never => {
    disposeBatch(b);
    throw new RecipeError(at, `${data}: ${why}`);
  };
  if (!b.frames) fail(`the samples have no frames; the temporal model reads fMoW-temporal samples of ${T} dates (source domain 'sites-temporal', or fMoW-temporal CSVs) with the 'fmow-temporal' transform`);
  if (b.frames!.length !== T) fail(`the samples have ${b.frames!.length} frames; the temporal model reads ${T}`);
  const ts: number[][][] = [];
  b.meta.forEach((meta, r) => {
    const codes = (meta as { timestamps?: unknown } | undefined)?.timestamps;
    const idx = b.indices[r];
    if (!Array.isArray(codes) || codes.length !== T) fail(`sample ${idx} has ${Array.isArray(codes) ? codes.length : 'no'} timestamps; expected ${T} [year − 2002, month − 1, hour] codes (the CSV's timestamp column)`);
    (codes as unknown[]).forEach((c, k) => {
      const ok = Array.isArray(c) && c.length === 3 && c.every((v) => Number.isInteger(v)) && c[0] >= 0 && c[1] >= 0 && c[1] <= 11 && c[2] >= 0 && c[2] <= 23;
      if (!ok) fail(`sample ${idx}, frame ${k}: timestamp code ${JSON.stringify(c)} is not [year − 2002 ≥ 0, month − 1 in 0–11, hour in 0–23]`);
    });
    ts.push(codes as number[][]);
  });
  const images = tf.stack(b.frames!, 1) as tf.Tensor5D; // T × [B, H, W, C] → [B, T, H, W, C]
  const [, , H, W, C] = images.shape;
  const cfg = m.config;
  const [h, w] = typeof cfg.imgSize === 'number' ? [cfg.imgSize, cfg.imgSize] : cfg.imgSize;
  if (C !== cfg.inChans || H !== h || W !== w) {
    images.dispose();
    fail(`frames are ${H}×${W}×${C}; the temporal model reads ${h}×${w}×${cfg.inChans} (check the transform's size)`);
  }
  tf.dispose([...b.frames!, ...(b.images ? [b.images] : []), ...(b.labels ? [b.labels] : [])]);
  return { images, timestamps: ts };
}

/** The model input of a loader batch (group: the band-checked images; temporal: `temporalInput`). Owns the batch. */
export function satMaeInput(m: SatMaeModel, b: Batch, data: string, at: string): tf.Tensor4D | TemporalBatch {
  if (m.kind === 'satmae-temporal') return temporalInput(m.model, { ...b, labels: undefined }, data, at);
  if (!b.images) {
    disposeBatch(b);
    throw new RecipeError(at, `${data}: batch has no images`);
  }
  try {
    checkGroupBands(m.model, b.images, data, at);
  } catch (e) {
    disposeBatch(b);
    throw e;
  }
  return b.images;
}

/** Labelled input of a loader step (the caller owns the tensors). */
async function labelled(loader: Loader, s: number, m: SatMaeModel, ds: Dataset, at: string): Promise<{ x: tf.Tensor4D | TemporalBatch; labels: tf.Tensor1D }> {
  const b = await loader.batchAt(s);
  if (!b.labels) {
    disposeBatch(b);
    throw new RecipeError(at, `${ds.name}: batch ${s} has unlabelled samples; fine-tuning needs labels`);
  }
  const labels = b.labels;
  return { x: satMaeInput(m, { ...b, labels: undefined }, ds.name, at), labels };
}

/** The downstream classifier of the model as it stands (adapters merged), with its forward and disposer. */
function classifier(m: SatMaeModel, t: FinetuneTaskSpec, seed: number, lora: LoraAdapters | null) {
  const o = { numClasses: t.numClasses, dropPathRate: t.dropPath, pool: 'avg' as const };
  if (m.kind === 'satmae-group') {
    const clf = satMaeGroupVitFromMae(m.model, o, { seed, lora });
    return { params: clf.params, forward: (x: tf.Tensor4D | TemporalBatch, f: { training?: boolean; rng?: Rng | null; hooks?: VitHooks }) => satMaeGroupVitForward(clf, x as tf.Tensor4D, f).logits!, dispose: () => disposeSatMaeGroupVit(clf) };
  }
  const clf = satMaeTemporalVitFromMae(m.model, o, { seed, lora });
  return {
    params: clf.params,
    forward: (x: tf.Tensor4D | TemporalBatch, f: { training?: boolean; rng?: Rng | null; hooks?: VitHooks }) => {
      const b = x as TemporalBatch;
      return satMaeTemporalVitForward(clf, b.images, b.timestamps, f).logits!;
    },
    dispose: () => disposeSatMaeTemporalVit(clf),
  };
}

const disposeInput = (x: tf.Tensor4D | TemporalBatch): void => {
  if (x instanceof tf.Tensor) x.dispose();
  else x.images.dispose();
};

/** Fine-tune one task from the model as it stands; returns `<name>Test` (top-1) and `<name>TrainLoss` (last 5 steps). */
async function finetuneTask(r: Recipe, t: FinetuneTaskSpec, i: number, m: SatMaeModel, lora: LoraAdapters | null, src: DataSource): Promise<Record<string, number>> {
  const at = `recipe.eval.tasks[${i}]`;
  const trainDs = await splitSetData(src, t.train, r.seed, `${at}.train`);
  const testDs = await splitSetData(src, t.test, r.seed, `${at}.test`);
  const clf = classifier(m, t, r.seed, lora);
  let ft: ReturnType<typeof setupClassifierFinetune<tf.Tensor4D | TemporalBatch>> | null = null;
  let opt: Optimizer | null = null;
  try {
    ft = setupClassifierFinetune(clf, t, { seed: r.seed });
    const f = ft;
    opt = new Optimizer(ADAMW_DEFAULTS, f.selection.trainable);
    const loader = new Loader(trainDs, { batchSize: t.batch, seed: r.seed, transform: sampleTransform(t.train.transform, `${at}.train.transform`) });
    const losses: number[] = [];
    if (t.steps > 0) {
      await trainLoop({
        params: f.selection.trainable,
        optimizer: opt,
        steps: t.steps,
        seed: Rng.derive(r.seed, 'finetune', t.name).int(2 ** 31),
        lr: { kind: 'cosine', base: t.lr, min: t.minLr, totalIters: t.steps, warmupIters: t.warmupSteps },
        weightDecay: { kind: 'constant', value: 0 },
        batch: (s) => labelled(loader, s, m, trainDs, `${at}.train`),
        loss: (b, rng) => f.loss(b, rng),
        onStep: (info: StepInfo) => {
          losses.push(info.loss);
        },
      });
    }
    const evalLoader = new Loader(testDs, { batchSize: t.evalBatch, shuffle: false, transform: sampleTransform(t.test.transform, `${at}.test.transform`) });
    let correct = 0;
    let seen = 0;
    for (let s = 0; seen < testDs.length; s++) {
      const b = await labelled(evalLoader, s, m, testDs, `${at}.test`);
      try {
        const hits = tf.tidy(() => tf.sum(tf.equal(tf.argMax(f.predict(b.x), 1), b.labels)));
        try {
          correct += (await readValues(hits))[0];
        } finally {
          hits.dispose();
        }
        seen += b.labels.shape[0];
      } finally {
        disposeInput(b.x);
        b.labels.dispose();
      }
    }
    const tail = losses.slice(-5);
    return { [`${t.name}Test`]: correct / seen, [`${t.name}TrainLoss`]: tail.length ? tail.reduce((a, b) => a + b, 0) / tail.length : NaN };
  } finally {
    opt?.dispose();
    ft?.dispose();
    clf.dispose();
  }
}

/**
 * The evaluator of a recipe with `eval.kind 'finetune'` on a SatMAE group or temporal model: `lora()` gives the live
 * ExPLoRA adapters (null without adapters). Task sources are opened once per session.
 */
export function satMaeFinetuneEval(r: Recipe, source: DataSource, m: SatMaeModel, lora: () => LoraAdapters | null): (step: number) => Promise<Record<string, number>> {
  const e = r.eval;
  if (e.kind !== 'finetune') throw new Error('satMaeFinetuneEval: the recipe does not evaluate by fine-tuning');
  const sources = e.tasks.map((t) => (t.source ? openSource(t.source) : source));
  return async () => {
    const row: Record<string, number> = {};
    for (let i = 0; i < e.tasks.length; i++) Object.assign(row, await finetuneTask(r, e.tasks[i], i, m, lora(), sources[i]));
    return row;
  };
}
