/**
 * The evaluation of a SatMAE group-channel recipe (multispectral M-ExPLoRA, notebook 06): at each evaluation step the
 * downstream classifier is built from the model as it stands — the encoder copied, the ExPLoRA adapters merged into the
 * copy (`satMaeGroupVitFromMae`, as SatMAE / ExPLoRA fine-tuning loads a checkpoint) — and LoRA-fine-tuned per task
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
import { SatMaeGroup } from '../lib/mae/satmae-group';
import { disposeSatMaeGroupVit, satMaeGroupVitForward, satMaeGroupVitFromMae } from '../lib/mae/satmae-group-vit';
import { Dataset, Loader, disposeBatch } from '../data-loaders/dataset';
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

/** Labelled batch of a loader step, bands checked (the caller owns the tensors). */
async function labelled(loader: Loader, s: number, m: SatMaeGroup, ds: Dataset, at: string): Promise<{ x: tf.Tensor4D; labels: tf.Tensor1D }> {
  const b = await loader.batchAt(s);
  if (!b.labels || !b.images) {
    disposeBatch(b);
    throw new RecipeError(at, `${ds.name}: batch ${s} has unlabelled samples; fine-tuning needs labels`);
  }
  try {
    checkGroupBands(m, b.images, ds.name, at);
  } catch (e) {
    disposeBatch(b);
    throw e;
  }
  return { x: b.images, labels: b.labels };
}

/** Fine-tune one task from the model as it stands; returns `<name>Test` (top-1) and `<name>TrainLoss` (last 5 steps). */
async function finetuneTask(r: Recipe, t: FinetuneTaskSpec, i: number, mae: SatMaeGroup, lora: LoraAdapters | null, src: DataSource): Promise<Record<string, number>> {
  const at = `recipe.eval.tasks[${i}]`;
  const trainDs = await splitSetData(src, t.train, r.seed, `${at}.train`);
  const testDs = await splitSetData(src, t.test, r.seed, `${at}.test`);
  const clf = satMaeGroupVitFromMae(mae, { numClasses: t.numClasses, dropPathRate: t.dropPath, pool: 'avg' }, { seed: r.seed, lora });
  const ft = setupClassifierFinetune({ params: clf.params, forward: (x: tf.Tensor4D, o) => satMaeGroupVitForward(clf, x, o).logits! }, t, { seed: r.seed });
  let opt: Optimizer | null = null;
  try {
    opt = new Optimizer(ADAMW_DEFAULTS, ft.selection.trainable);
    const loader = new Loader(trainDs, { batchSize: t.batch, seed: r.seed, transform: sampleTransform(t.train.transform, `${at}.train.transform`) });
    const losses: number[] = [];
    if (t.steps > 0) {
      await trainLoop({
        params: ft.selection.trainable,
        optimizer: opt,
        steps: t.steps,
        seed: Rng.derive(r.seed, 'finetune', t.name).int(2 ** 31),
        lr: { kind: 'cosine', base: t.lr, min: t.minLr, totalIters: t.steps, warmupIters: t.warmupSteps },
        weightDecay: { kind: 'constant', value: 0 },
        batch: (s) => labelled(loader, s, mae, trainDs, `${at}.train`),
        loss: (b, rng) => ft.loss(b, rng),
        onStep: (info: StepInfo) => {
          losses.push(info.loss);
        },
      });
    }
    const evalLoader = new Loader(testDs, { batchSize: t.evalBatch, shuffle: false, transform: sampleTransform(t.test.transform, `${at}.test.transform`) });
    let correct = 0;
    let seen = 0;
    for (let s = 0; seen < testDs.length; s++) {
      const b = await labelled(evalLoader, s, mae, testDs, `${at}.test`);
      try {
        const hits = tf.tidy(() => tf.sum(tf.equal(tf.argMax(ft.predict(b.x), 1), b.labels)));
        try {
          correct += (await readValues(hits))[0];
        } finally {
          hits.dispose();
        }
        seen += b.labels.shape[0];
      } finally {
        tf.dispose([b.x, b.labels]);
      }
    }
    const tail = losses.slice(-5);
    return { [`${t.name}Test`]: correct / seen, [`${t.name}TrainLoss`]: tail.length ? tail.reduce((a, b) => a + b, 0) / tail.length : NaN };
  } finally {
    opt?.dispose();
    ft.dispose();
    disposeSatMaeGroupVit(clf);
  }
}

/**
 * The evaluator of a recipe with `eval.kind 'finetune'` on a SatMAE group model: `lora()` gives the live ExPLoRA
 * adapters (null without adapters). Task sources are opened once per session.
 */
export function satMaeGroupFinetuneEval(r: Recipe, source: DataSource, mae: SatMaeGroup, lora: () => LoraAdapters | null): (step: number) => Promise<Record<string, number>> {
  const e = r.eval;
  if (e.kind !== 'finetune') throw new Error('satMaeGroupFinetuneEval: the recipe does not evaluate by fine-tuning');
  const sources = e.tasks.map((t) => (t.source ? openSource(t.source) : source));
  return async () => {
    const row: Record<string, number> = {};
    for (let i = 0; i < e.tasks.length; i++) Object.assign(row, await finetuneTask(r, e.tasks[i], i, mae, lora(), sources[i]));
    return row;
  };
}
