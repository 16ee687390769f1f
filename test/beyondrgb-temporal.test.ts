import { useTmpCache } from './util';
import { strict as assert } from 'assert';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { Recipe, recipe, recipeJson, resolveRecipePaths } from '../recipes/recipe';
import { prepareRecipe } from '../recipes/session';
import { runRecipe, RunResult } from '../recipes/run';
import { temporalInput } from '../recipes/session-satmae';
import {
  TEMPORAL_DEFAULT_PATHS, checkTemporalPaths, temporalClaims, temporalDataRows, temporalFrames, temporalPaperRecipe, temporalResultRows, temporalResults,
  temporalSettings,
} from '../recipes/beyondrgb-temporal';
import { setupClassifierFinetune } from '../recipes/finetune-classifier';
import { satMaeTemporalVitForward, satMaeTemporalVitFromMae, disposeSatMaeTemporalVit } from '../lib/mae/satmae-temporal-vit';
import type { Batch } from '../data-loaders/dataset';

describe('notebook 07 (temporal) recipes: M-ExPLoRA on the SatMAE temporal model, LoRA fine-tuning evaluations', function () {
  this.timeout(600_000);
  const tmp = useTmpCache('vitpeft-nb07-');
  const ci = (): Recipe => temporalSettings('ci').recipe;

  it('every scale gives a valid recipe that round-trips through JSON; the paper scale reads fMoW-temporal CSVs', () => {
    for (const scale of ['ci', 'smoke', 'paper'] as const) {
      const r = temporalSettings(scale).recipe;
      assert.deepEqual(recipe(JSON.parse(recipeJson(r))), r);
      assert.equal(r.model.kind, 'satmae-temporal');
      assert.ok(r.eval.kind === 'finetune' && 'steps' in r.eval.at && r.eval.at.steps[0] === 0);
    }
    const p = resolveRecipePaths(temporalPaperRecipe({ ...TEMPORAL_DEFAULT_PATHS, fmowTrain: 'f/t.csv' }), '/nb');
    assert.deepEqual(p.data.source, { kind: 'fmow-temporal', csv: { train: '/nb/f/t.csv', test: '/nb/data/fmow/val_62classes.csv' } });
    assert.throws(() => checkTemporalPaths(TEMPORAL_DEFAULT_PATHS, tmp()), /scale 'paper' needs fmowTrain = data\/fmow\/train_62classes\.csv/);
    assert.throws(() => recipe({ ...ci(), eval: { ...ci().eval, kind: 'probe' } }), /recipe\.eval/);
  });

  it('the multi-date source gives triplets with timestamps; frames for display', async () => {
    const rows = await temporalDataRows(ci());
    assert.deepEqual(rows.map((r) => r.split), ['train', 'val', 'test']);
    for (const r of rows) {
      assert.equal(r.frames, 3);
      assert.equal(r.classes, 8);
      assert.match(String(r['first sample [year−2002, month−1, hour]']), /^(\[\d+, \d+, \d+\] ){2}\[\d+, \d+, \d+\]$/);
    }
    const n0 = tf.memory().numTensors;
    const im = await temporalFrames(ci(), 2);
    assert.deepEqual(im.shape, [6, 16, 16, 3]);
    im.dispose();
    assert.equal(tf.memory().numTensors, n0);
  });

  it('date-format and frame mismatches are errors naming the data, the sample and the recipe key', async () => {
    const s = await prepareRecipe(ci());
    try {
      if (s.model.kind !== 'satmae-temporal') throw new Error('temporal model expected');
      const m = s.model.model;
      const frames = (): tf.Tensor4D[] => [0, 1, 2].map(() => tf.zeros([2, 16, 16, 3]) as tf.Tensor4D);
      const batch = (ts: unknown[], fr = frames()): Batch => ({ frames: fr, indices: [7, 8], meta: ts.map((t) => ({ timestamps: t })), epoch: 0, step: 0 } as unknown as Batch);
      const ok = [[14, 5, 10], [15, 0, 23], [16, 11, 0]];
      const n0 = tf.memory().numTensors;
      const x = temporalInput(m, batch([ok, ok]), 'd', 'recipe.data.train');
      assert.deepEqual(x.images.shape, [2, 3, 16, 16, 3]);
      x.images.dispose();
      assert.throws(() => temporalInput(m, batch([ok, [[14, 12, 10], ok[1], ok[2]]]), 'd', 'recipe.data.train'), /recipe\.data\.train: d: sample 8, frame 0: timestamp code \[14,12,10\] is not \[year − 2002 ≥ 0, month − 1 in 0–11, hour in 0–23\]/);
      assert.throws(() => temporalInput(m, batch([ok, ok.slice(0, 2)]), 'd', 'at'), /at: d: sample 8 has 2 timestamps; expected 3/);
      assert.throws(() => temporalInput(m, batch([ok, ok], [0, 1].map(() => tf.zeros([2, 16, 16, 3]) as tf.Tensor4D)), 'd', 'at'), /at: d: the samples have 2 frames; the temporal model reads 3/);
      assert.throws(() => temporalInput(m, batch([ok, ok], [0, 1, 2].map(() => tf.zeros([2, 32, 32, 3]) as tf.Tensor4D)), 'd', 'at'), /frames are 32×32×3; the temporal model reads 16×16×3/);
      assert.equal(tf.memory().numTensors, n0, 'nothing leaks on the error paths');
    } finally {
      s.dispose();
    }
    // a single-date source for the temporal model: named before training
    const r = ci();
    const single = { ...r, data: { source: { ...r.data.source, domain: 'sites-ms' as const }, train: { ...r.data.train, transform: { name: 'sentinel-train' as const, size: 16, droppedBands: [] } } }, steps: 1, eval: { kind: 'none' as const } };
    await assert.rejects(runRecipe(single, { root: tmp() }), /recipe\.data\.train: embedded-temporal-sentinel-train: the samples have no frames/);
  });

  it('identity at init: the classifier from the MAE with fresh adapters equals the one without; fine-tuning LoRA starts as the identity', async () => {
    const s = await prepareRecipe(ci());
    try {
      if (s.model.kind !== 'satmae-temporal') throw new Error('temporal model expected');
      const x = tf.randomUniform([2, 3, 16, 16, 3], 0, 1, 'float32', 5) as tf.Tensor5D;
      const ts = [[[14, 5, 10], [15, 0, 23], [16, 11, 0]], [[10, 1, 1], [11, 2, 2], [12, 3, 3]]];
      const a = satMaeTemporalVitFromMae(s.model.model, { numClasses: 62 }, { seed: 0, lora: s.parts.explora!.lora });
      const b = satMaeTemporalVitFromMae(s.model.model, { numClasses: 62 }, { seed: 0, lora: null });
      const gap = (u: tf.Tensor, v: tf.Tensor): number => tf.tidy(() => tf.max(tf.abs(tf.sub(u, v))).dataSync()[0]);
      assert.equal(tf.tidy(() => gap(satMaeTemporalVitForward(a, x, ts).pooled, satMaeTemporalVitForward(b, x, ts).pooled)), 0);
      const ft = setupClassifierFinetune({ params: a.params, forward: (z: tf.Tensor5D, o) => satMaeTemporalVitForward(a, z, ts, o).logits! }, { rank: 4, alpha: 1, labelSmoothing: 0.1, headInitStd: 2e-5 }, { seed: 0 });
      assert.equal(tf.tidy(() => gap(ft.predict(x), satMaeTemporalVitForward(a, x, ts).logits!)), 0);
      assert.equal(ft.selection.summary.trainable, 6 * 2 * 2 * 4 * 96 + 96 * 62 + 62);
      ft.dispose();
      disposeSatMaeTemporalVit(a);
      disposeSatMaeTemporalVit(b);
      x.dispose();
    } finally {
      s.dispose();
    }
  });

  it('a ci run fine-tunes at step 0 and at the end, checks pass; results, rows and claims', async () => {
    const before = tf.memory().numTensors;
    const run = await runRecipe(ci(), { root: tmp() });
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(run.evals.map((e) => e.step), [0, 3]);
    assert.ok(run.evals.every((e) => (e.sitesTest as number) >= 0 && (e.sitesTest as number) <= 1));
    assert.ok(run.checks.every((c) => c.ok), JSON.stringify(run.checks));
    const fake = (seed: number, d: number): RunResult => ({ ...run, recipe: { ...run.recipe, seed }, evals: [{ ...run.evals[0] }, { ...run.evals[1], sitesTest: (run.evals[0].sitesTest as number) + d }] });
    const res = temporalResults([fake(0, 0.05), fake(1, 0.07), fake(2, 0.03)]);
    const rows = temporalResultRows(res, { scale: 'ci' });
    assert.equal(rows.length, 5);
    assert.match(String(rows[3]['Δ (points)']), /^5 \[\S+, \S+\]$/);
    const [c] = temporalClaims(res, { description: 'ci' });
    assert.equal(c.verdict, 'reproduced');
    assert.equal(c.paperValue, null);
  });
});
