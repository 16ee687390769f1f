import { useTmpCache } from './util';
import { strict as assert } from 'assert';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { recipe, recipeJson, resolveRecipePaths } from '../recipes/recipe';
import { openSource } from '../recipes/data';
import { runRecipe, RunResult } from '../recipes/run';
import {
  WILDS_TASKS, wildsSettings, wildsSeedRecipe, wildsDataRows, wildsResults, wildsResultRows, wildsClaims, wildsPaperRecipe, writeNotebookClaims, wildsShiftImages,
} from '../recipes/beyondrgb-wilds';
import { ensureEmbeddedPathology } from '../data-loaders/embedded-beyond';
import { readClaims } from '../lib/report/claims';

describe('notebook 08 (WILDS) recipes', function () {
  this.timeout(600_000);
  const tmp = useTmpCache('vitpeft-nb08-');

  it('every scale gives valid recipes that round-trip through JSON; seeds differ only in seed and name', () => {
    for (const scale of ['ci', 'smoke', 'paper'] as const) {
      const s = wildsSettings(scale);
      assert.deepEqual(s.seeds, [0, 1, 2]);
      for (const t of WILDS_TASKS) {
        const r = s.recipes[t];
        assert.deepEqual(recipe(JSON.parse(recipeJson(r))), r);
        assert.equal(r.adapters.kind, 'explora');
        assert.equal(r.objective.kind, 'mae');
        assert.ok(r.eval.kind === 'probe' && 'steps' in r.eval.at && r.eval.at.steps[0] === 0, 'probed at step 0 (the source model)');
        assert.equal(r.eval.kind === 'probe' && r.eval.macroF1 === true, t === 'iwildcam');
        const s1 = wildsSeedRecipe(r, 1);
        assert.deepEqual({ ...s1, seed: r.seed, name: r.name, tags: r.tags }, r);
      }
    }
  });

  it('the paper scale reads the real WILDS formats (paths resolved against the notebook folder)', () => {
    const r = resolveRecipePaths(wildsPaperRecipe('camelyon17', { camelyon17: 'd/c', camelyon17Unlabeled: 'd/u', iwildcam: 'd/i', maeVitLarge: 'w.safetensors' }), '/nb');
    assert.deepEqual(r.data.source, { kind: 'camelyon17', root: '/nb/d/c', unlabeledRoot: '/nb/d/u', pretrainSplits: ['val_unlabeled', 'test_unlabeled'] });
    assert.equal(r.data.train.splits[0].split, 'pretrain');
    assert.deepEqual(resolveRecipePaths(wildsPaperRecipe('iwildcam'), '/nb').data.source, { kind: 'iwildcam', root: '/nb/data/iwildcam_v2.0' });
    assert.throws(() => recipe({ ...r, data: { ...r.data, source: { ...r.data.source, pretrainSplits: ['test'] } } }), /pretrainSplits\[0\]/);
    assert.throws(() => openSource({ kind: 'embedded', domain: 'natural', seed: 0, size: 32, satellitePerClass: 5, naturalPerClass: 5, count: 8 }), /recipe\.data\.source\.count: sizes the 'pathology' and 'camera-traps' domains only/);
  });

  it('the embedded pathology source follows the hospital protocol, as the camelyon17 source on the same files', async () => {
    const ci = wildsSettings('ci').recipes.camelyon17;
    const rows = await wildsDataRows(ci);
    const by = Object.fromEntries(rows.map((r) => [r.split, r]));
    assert.deepEqual(Object.keys(by), ['pretrain', 'train', 'id_val', 'val', 'test']);
    assert.equal(by.pretrain.hospitals, '1, 2');
    assert.equal(by.train.hospitals, '0, 3, 4');
    assert.equal(by.val.hospitals, '1');
    assert.equal(by.test.hospitals, '2');
    assert.equal(by.pretrain.classes, 0, 'unlabelled');
    assert.equal(by.test.images, 20);
    // the same files through the real-format source
    const p = await ensureEmbeddedPathology({ seed: 0, size: 32, labelledPerHospital: 20, unlabeledPerHospital: 20, cacheDir: path.join(tmp(), 'cache') });
    const real = openSource({ kind: 'camelyon17', root: p.root, unlabeledRoot: p.unlabeledRoot, pretrainSplits: ['val_unlabeled', 'test_unlabeled'] });
    assert.equal((await real.split('train', 'x')).length, by.train.images);
    assert.equal((await real.split('pretrain', 'x')).length, by.pretrain.images);
    assert.throws(() => real.split('ood', 'recipe.data.train.splits[0].split'), /recipe\.data\.train\.splits\[0\]\.split: no split 'ood' in camelyon17 data; valid: pretrain, train, id_val, val, test/);
  });

  it('the camera-trap source: train / OOD val / OOD test at disjoint locations', async () => {
    const rows = await wildsDataRows(wildsSettings('ci').recipes.iwildcam);
    const by = Object.fromEntries(rows.map((r) => [r.split, r]));
    assert.deepEqual(Object.keys(by), ['train', 'val', 'test', 'id_val', 'id_test']);
    const locs = (s: string): string[] => String(by[s].locations).split(', ');
    for (const o of ['val', 'test']) assert.ok(!locs(o).some((l) => locs('train').includes(l)), `${o} locations are not training locations`);
    // 15 locations: the first 10 are training locations (ID splits: other frames there), then 2 OOD val, 3 OOD test
    for (const s of ['train', 'id_val', 'id_test']) assert.ok(locs(s).every((l) => +l < 10), `${s}: training locations only`);
    assert.deepEqual(locs('val'), ['10', '11']);
    assert.deepEqual(locs('test'), ['12', '13', '14']);
    const n0 = tf.memory().numTensors;
    const im = await wildsShiftImages(wildsSettings('ci').recipes.iwildcam, 4);
    assert.deepEqual(im.shape, [12, 32, 32, 3]);
    im.dispose();
    assert.equal(tf.memory().numTensors, n0);
  });

  it('a ci run probes at step 0 and at the end, with macro F1 for iWildCam; results, rows and claims', async () => {
    const s = wildsSettings('ci');
    const before = tf.memory().numTensors;
    const run = await runRecipe(wildsSeedRecipe(s.recipes.iwildcam, 0), { root: tmp() });
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(run.evals.map((e) => e.step), [0, 3]);
    for (const e of run.evals) {
      assert.ok((e.probeTestMacroF1 as number) >= 0 && (e.probeTestMacroF1 as number) <= 1);
      assert.ok((e.probeTestMacroF1 as number) <= 1);
    }
    assert.ok(run.checks.every((c) => c.ok), JSON.stringify(run.checks));
    // three seeds from one run's shape: the helpers only read evals and steps
    const fake = (d: number): RunResult => ({ ...run, evals: [{ ...run.evals[0] }, { ...run.evals[1], probeTest: (run.evals[0].probeTest as number) + d, probeTestMacroF1: (run.evals[0].probeTestMacroF1 as number) + d }] });
    const res = wildsResults({ task: 'iwildcam', seeds: [0, 1, 2], runs: [fake(0.1), fake(0.12), fake(0.08)] });
    assert.ok(Math.abs(res[0].explora.test - res[0].source.test - 10) < 1e-9);
    const rows = wildsResultRows('iwildcam', res);
    assert.equal(rows.length, 4);
    assert.match(String(rows[3]['Δ macro F1']), /^10 \[\S+, \S+\]$/);
    const [claim] = wildsClaims('iwildcam', res, s);
    assert.equal(claim.verdict, 'reproduced');
    assert.equal(claim.paperValue, null);
    assert.equal(wildsClaims('iwildcam', res.map((x, i) => ({ ...x, explora: { ...x.explora, macroF1: x.source.macroF1! - 5 - i / 100 } })), s)[0].verdict, 'not reproduced');
    assert.throws(() => wildsResults({ task: 'iwildcam', seeds: [0], runs: [{ ...run, evals: [run.evals[1]] }] }), /lacks the step-0 and final evaluations/);
    const old = process.env.VITPEFT_RUNS_DIR;
    process.env.VITPEFT_RUNS_DIR = tmp();
    try {
      const file = writeNotebookClaims('08-wilds', [claim]);
      writeNotebookClaims('08-wilds', [claim]);
      assert.equal(readClaims(file).length, 1, 'one execution\'s claims, not appended');
    } finally {
      if (old === undefined) delete process.env.VITPEFT_RUNS_DIR;
      else process.env.VITPEFT_RUNS_DIR = old;
    }
  });
});
