import { useTmpCache } from './util';
import { strict as assert } from 'assert';
import { readFileSync, writeFileSync } from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { Recipe, recipe, recipeJson, resolveRecipePaths } from '../recipes/recipe';
import { buildModel, disposeModel } from '../recipes/model';
import { prepareRecipe } from '../recipes/session';
import { resumeRun, runRecipe, RunResult } from '../recipes/run';
import { setupExploraSatMaeGroup } from '../recipes/explora-mae';
import { exploraRecipe } from '../lib/peft/explora';
import {
  MULTISPECTRAL_DEFAULT_PATHS, checkMultispectralPaths, multispectralClaims, multispectralPaperRecipe, multispectralResultRows, multispectralResults,
  multispectralSettings,
} from '../recipes/beyondrgb-multispectral';
import { setupClassifierFinetune } from '../recipes/finetune-classifier';
import { satMaeGroupVitForward, satMaeGroupVitFromMae, disposeSatMaeGroupVit } from '../lib/mae/satmae-group-vit';
import { readMetrics } from '../lib/report/runs';

type FtEval = Extract<Recipe['eval'], { kind: 'finetune' }>;

describe('notebook 06 (multispectral) recipes: M-ExPLoRA on the SatMAE group model, LoRA fine-tuning evaluations', function () {
  this.timeout(600_000);
  const tmp = useTmpCache('vitpeft-nb06-');
  const ci = (): Recipe => multispectralSettings('ci').recipe;

  it('every scale gives a valid recipe that round-trips through JSON and fine-tunes at step 0 and at the end', () => {
    for (const scale of ['ci', 'smoke', 'paper'] as const) {
      const s = multispectralSettings(scale);
      assert.deepEqual(s.seeds, [0, 1, 2]);
      const r = s.recipe;
      assert.deepEqual(recipe(JSON.parse(recipeJson(r))), r);
      assert.equal(r.model.kind, 'satmae-group');
      assert.equal(r.adapters.kind, 'explora');
      const e = r.eval as FtEval;
      assert.equal(e.kind, 'finetune');
      assert.deepEqual(e.at, { steps: [0] });
      assert.deepEqual(e.tasks.map((t) => [t.name, t.numClasses]), [['sites', 62], ['eurosat', 10]]);
    }
    // task sources resolve against the notebook folder like the recipe's own
    const p = resolveRecipePaths(multispectralPaperRecipe({ ...MULTISPECTRAL_DEFAULT_PATHS, eurosat: 'e', eurosatTrain: 'e/t.txt' }), '/nb');
    const eu = (p.eval as FtEval).tasks[1].source!;
    assert.ok(eu.kind === 'eurosat' && eu.root === '/nb/e' && eu.splits.train === '/nb/e/t.txt', JSON.stringify(eu));
    assert.throws(() => checkMultispectralPaths(MULTISPECTRAL_DEFAULT_PATHS, tmp()), /scale 'paper' needs fmowSentinelTrain = data\/fmow-sentinel\/train\.csv, .*maeVitLarge = assets\/mae_visualize_vit_large\.safetensors/);
  });

  it("schema: 'finetune' needs a satmae-group model and distinct task names; the warm-up fits the fine-tuning", () => {
    const r = ci();
    const e = r.eval as FtEval;
    assert.throws(() => recipe({ ...r, eval: { ...e, tasks: [e.tasks[0], { ...e.tasks[1], name: 'sites' }] } }), /recipe\.eval\.tasks: task name 'sites' is used twice/);
    assert.throws(() => recipe({ ...r, eval: { ...e, tasks: [{ ...e.tasks[0], warmupSteps: 9 }] } }), /recipe\.eval\.tasks\[0\]\.warmupSteps: warm-up of 9 steps is longer than the fine-tuning \(3 steps\)/);
    assert.throws(() => recipe({ ...r, eval: { ...e, tasks: [{ ...e.tasks[0], name: 'Sites x' }] } }), /recipe\.eval\.tasks\[0\]\.name/);
    const mae = { ...r, model: { kind: 'mae', preset: 'mae_vit_base_patch16', encoder: {}, decoder: {} }, adapters: { kind: 'full' } };
    assert.throws(() => recipe(mae), /recipe\.eval\.kind: 'finetune' evaluates the downstream classifier of a 'satmae-group' or 'satmae-temporal' model, got model\.kind 'mae'/);
  });

  it('the paper recipe trains exactly 29,697,664 parameters (M-[1,L]-r32: the paper\'s 29.7M)', () => {
    const r = multispectralPaperRecipe();
    const m = buildModel(r); // weights from a checkpoint: not initialised (skipInit)
    try {
      assert.equal(m.kind, 'satmae-group');
      if (m.kind !== 'satmae-group' || r.adapters.kind !== 'explora') return;
      const run = setupExploraSatMaeGroup(m.model, exploraRecipe(r.adapters.notation, r.adapters.overrides));
      assert.equal(run.explora.selection.summary.trainable, 29_697_664);
      run.dispose();
    } finally {
      disposeModel(m);
    }
  });

  it('identity at init: the classifier from the MAE with its fresh ExPLoRA adapters equals the one without; the fine-tuning LoRA starts as the identity', async () => {
    const s = await prepareRecipe(ci());
    const n0 = tf.memory().numTensors;
    try {
      if (s.model.kind !== 'satmae-group') throw new Error('group model expected');
      const mae = s.model.model;
      const x = tf.randomUniform([4, 32, 32, 13], 0, 1, 'float32', 3) as tf.Tensor4D;
      const a = satMaeGroupVitFromMae(mae, { numClasses: 10 }, { seed: 0, lora: s.parts.explora!.lora });
      const b = satMaeGroupVitFromMae(mae, { numClasses: 10 }, { seed: 0, lora: null });
      const gap = (u: tf.Tensor, v: tf.Tensor): number => tf.tidy(() => tf.max(tf.abs(tf.sub(u, v))).dataSync()[0]);
      assert.equal(tf.tidy(() => gap(satMaeGroupVitForward(a, x).pooled, satMaeGroupVitForward(b, x).pooled)), 0);
      const ft = setupClassifierFinetune({ params: a.params, forward: (z: tf.Tensor4D, o) => satMaeGroupVitForward(a, z, o).logits! }, { rank: 4, alpha: 1, labelSmoothing: 0.1, headInitStd: 2e-5 }, { seed: 0 });
      assert.equal(tf.tidy(() => gap(ft.predict(x), satMaeGroupVitForward(a, x).logits!)), 0);
      // what trains: LoRA on Q,V of the 6 blocks (r4, D 96) + the head; fc_norm and the group tables frozen
      assert.equal(ft.selection.summary.trainable, 6 * 2 * 2 * 4 * 96 + 96 * 10 + 10);
      for (const k of ['fc_norm.weight', 'pos_embed', 'channel_embed', 'channel_cls_embed', 'patch_embed.0.proj.weight']) assert.ok(!ft.selection.trainable.has(k), k);
      ft.dispose();
      disposeSatMaeGroupVit(a);
      disposeSatMaeGroupVit(b);
      x.dispose();
      assert.equal(tf.memory().numTensors, n0);
    } finally {
      s.dispose();
    }
  });

  it('band-count mismatches are errors naming the data and the recipe key, before training', async () => {
    const r = ci();
    const twelve = { ...r, data: { ...r.data, train: { ...r.data.train, transform: { name: 'sentinel-train' as const, size: 32, droppedBands: [0] } } } };
    await assert.rejects(runRecipe(twelve, { root: tmp() }), /recipe\.data\.train: embedded-temporal-sentinel-train gives 12-band images; the SatMAE group model reads 13 bands \(B1, .*\) or the 10 kept ones/);
    const e = r.eval as FtEval;
    const badTask = { ...r, steps: 0, eval: { ...e, tasks: [{ ...e.tasks[0], test: { ...e.tasks[0].test, transform: { name: 'sentinel-eval' as const, size: 32, droppedBands: [0, 1] } } }] } };
    await assert.rejects(runRecipe(badTask, { root: tmp() }), /recipe\.eval\.tasks\[0\]\.test: embedded-temporal-sentinel-test gives 11-band images/);
  });

  it('a ci run fine-tunes at step 0 and at the end; a stopped run folder resumes to the same metrics; results, rows and claims', async () => {
    const before = tf.memory().numTensors;
    const full = await runRecipe(ci(), { root: tmp() });
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(full.evals.map((e) => e.step), [0, 3]);
    for (const e of full.evals) for (const k of ['sitesTest', 'eurosatTest']) assert.ok((e[k] as number) >= 0 && (e[k] as number) <= 1, `${k} = ${e[k]}`);
    assert.ok(full.checks.every((c) => c.ok), JSON.stringify(full.checks));
    assert.ok(full.checks.some((c) => /frozen parameters changed/.test(c.check)));
    const part = await runRecipe(ci(), { root: tmp(), until: 2 });
    assert.equal(part.status, 'stopped');
    const m = path.join(part.dir, 'metrics.jsonl');
    writeFileSync(m, `${readFileSync(m, 'utf8')}{"step": 2, "loss": 9`); // a torn line must not matter
    const done = await resumeRun(part.dir);
    assert.equal(done.status, 'done');
    const strip = (rows: Array<Record<string, unknown>>): unknown[] => rows.map(({ seconds: _s, time: _t, ...rest }) => rest);
    assert.deepEqual(strip(readMetrics(done.dir) as Array<Record<string, unknown>>), strip(readMetrics(full.dir) as Array<Record<string, unknown>>));
    // three seeds from one run's shape (the helpers read evals and steps only)
    const fake = (seed: number, d: number): RunResult => ({
      ...full,
      recipe: { ...full.recipe, seed },
      evals: [{ ...full.evals[0] }, { ...full.evals[1], sitesTest: (full.evals[0].sitesTest as number) + d, eurosatTest: (full.evals[0].eurosatTest as number) - d }],
    });
    const res = multispectralResults([fake(0, 0.1), fake(1, 0.12), fake(2, 0.08)]);
    assert.deepEqual(res.map((x) => x.seed), [0, 1, 2]);
    assert.ok(Math.abs(res[0].explora.sites - res[0].source.sites - 10) < 1e-9);
    const rows = multispectralResultRows(res, { scale: 'ci' });
    assert.equal(rows.length, 5);
    assert.match(String(rows[3]['Δ sites (points)']), /^10 \[\S+, \S+\]$/);
    assert.equal(rows[4]['M-ExPLoRA → fine-tune: sites top-1 %'], '60.15 (29.7M)');
    const [sites, eurosat] = multispectralClaims(res, { description: 'ci' });
    assert.equal(sites.verdict, 'reproduced');
    assert.equal(eurosat.verdict, 'not reproduced');
    assert.equal(sites.paperValue, null);
    assert.throws(() => multispectralResults([{ ...full, evals: [full.evals[1]] }]), /lacks the step-0 and final evaluations/);
  });
});
