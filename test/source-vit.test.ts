/**
 * Supervised pre-training (lib/train/supervised.ts) and the source-ViT checkpoints of the ToMe/PYRA notebook
 * (lib/train/source-vit.ts): the loop learns a separable toy task, is deterministic and leak-free; checkpoints round
 * trip, refuse other settings naming the field, and the committed assets match their specs.
 */
import { strict as assert } from 'assert';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { RecordDataset, Dataset } from '../data-loaders/dataset';
import { makeImg } from '../data-loaders/image';
import { Rng } from '../lib/rng';
import { vitForward } from '../lib/vit/forward';
import { disposeVit, vitVariables } from '../lib/vit/params';
import { SUPERVISED_RECIPE, trainSupervised, datasetAccuracy, checkRecipe } from '../recipes/supervised';
import {
  SOURCE_VIT_SPECS, SourceVitSpec, sourceVitSpec, sourceVitFile, pretrainSourceVit, saveSourceVit, loadSourceVit,
  sourceVitMismatch, readSourceVitRecord, readSourceVitSidecar, jsonDiff,
} from '../recipes/source-vit';

/** Two classes at 8 px: a bright vs a dark square in the top-left quadrant, on noise. */
function toyDataset(n: number, seed: number, name: string): Dataset {
  const recs = Array.from({ length: n }, (_, i) => ({ label: i % 2 }));
  return new RecordDataset(name, recs, async (r, i) => {
    const rng = Rng.derive(seed, name, i);
    const img = makeImg(8, 8, 3);
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        const on = y < 4 && x < 4;
        for (let c = 0; c < 3; c++) img.data[(y * 8 + x) * 3 + c] = (on ? (r.label === 0 ? 0.9 : 0.1) : 0.5) + 0.1 * rng.uniform(-1, 1);
      }
    }
    return { image: img, label: r.label };
  }, ['tl', 'br']);
}

const MICRO: SourceVitSpec = {
  tag: 'micro',
  preset: 'vit_tiny_patch16_224',
  overrides: { imgSize: 8, patchSize: 4, embedDim: 16, depth: 1, numHeads: 2, numClasses: 2, pool: 'cls', dropPathRate: 0 },
  data: { dataset: 'embedded-natural', seed: 0, size: 8, naturalPerClass: 1 },
  recipe: { ...SUPERVISED_RECIPE, steps: 30, batch: 8, lr: 3e-3, warmupSteps: 3, rrcScale: null, hflip: false, labelSmoothing: 0 },
  seed: 3,
};

describe('supervised pre-training and source-ViT checkpoints', function () {
  this.timeout(60000);
  const train = toyDataset(32, 1, 'toy-train');
  const val = toyDataset(16, 2, 'toy-val');
  let tmp = '';
  before(() => (tmp = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-source-'))));
  after(() => tmp && rmSync(tmp, { recursive: true, force: true }));

  it('learns a separable toy task, deterministically and without leaking tensors', async () => {
    const n0 = tf.memory().numTensors;
    const a = await pretrainSourceVit(MICRO, { datasets: { train, val }, evalEvery: 10 });
    const b = await pretrainSourceVit(MICRO, { datasets: { train, val } });
    try {
      assert.deepEqual(a.result.evals.map((e) => e.step), [10, 20, 30]);
      assert.equal(a.result.evals[2].accuracy, 1, `val accuracy ${JSON.stringify(a.result.evals)}`);
      assert.ok(a.result.losses[29] < a.result.losses[0] / 2, `loss ${a.result.losses[0]} → ${a.result.losses[29]}`);
      assert.deepEqual(a.result.losses, b.result.losses, 'same seed → same losses');
      // the step's named metric: top-1 on each training batch, in [0, 1], higher at the end than at the start
      assert.equal(a.result.trainAccuracy.length, 30);
      assert.ok(a.result.trainAccuracy.every((x) => x >= 0 && x <= 1));
      assert.ok(a.result.trainAccuracy.slice(-5).reduce((x, y) => x + y) > a.result.trainAccuracy.slice(0, 5).reduce((x, y) => x + y), `train accuracy ${a.result.trainAccuracy}`);
      assert.equal(a.result.skipped, 0);
      const wa = vitVariables(a.vit).get('blocks.0.attn.qkv.weight')!.dataSync();
      const wb = vitVariables(b.vit).get('blocks.0.attn.qkv.weight')!.dataSync();
      assert.deepEqual(Array.from(wa), Array.from(wb), 'same seed → same weights');
    } finally {
      disposeVit(a.vit);
      disposeVit(b.vit);
    }
    assert.equal(tf.memory().numTensors, n0, 'no tensor left behind');
  });

  it('checkpoints round-trip with their spec; other settings are refused naming the field', async () => {
    const { vit, result } = await pretrainSourceVit({ ...MICRO, recipe: { ...MICRO.recipe, steps: 5 } }, { datasets: { train, val } });
    const spec5 = { ...MICRO, recipe: { ...MICRO.recipe, steps: 5 } };
    const file = path.join(tmp, sourceVitFile(spec5));
    try {
      const rec = saveSourceVit(file, vit, spec5, result, 'test');
      assert.equal(rec.result.valAccuracy, result.evals[result.evals.length - 1].accuracy);
      assert.equal(readSourceVitRecord(file).spec.recipe.steps, 5);
      const side = readSourceVitSidecar(file)!;
      assert.equal(side.losses.length, 5);
      assert.equal(side.note, 'test');
      assert.equal(sourceVitMismatch(file, spec5), null);
      assert.match(sourceVitMismatch(file, MICRO)!, /recipe\.steps: 5 ≠ 30/);
      assert.match(sourceVitMismatch(path.join(tmp, 'nope.safetensors'), spec5)!, /does not exist/);
      assert.throws(() => loadSourceVit(file, { ...spec5, seed: 4 }), /seed: 3 ≠ 4/);
      const x = tf.randomUniform([2, 8, 8, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
      const same = loadSourceVit(file, spec5, { keepHead: true });
      const fresh = loadSourceVit(file, spec5, { overrides: { numClasses: 3 }, seed: 9 });
      try {
        const gap = tf.tidy(() => tf.max(tf.abs(tf.sub(vitForward(vit, x).logits!, vitForward(same.vit, x).logits!))).dataSync()[0]);
        assert.equal(gap, 0, 'reloaded model = saved model');
        const cls = tf.tidy(() => tf.max(tf.abs(tf.sub(vitForward(vit, x).cls, vitForward(fresh.vit, x).cls))).dataSync()[0]);
        assert.equal(cls, 0, 'backbone loaded under a new head');
        assert.deepEqual(fresh.vit.params.head!.weight.shape, [16, 3]);
        assert.equal(await datasetAccuracy(same.vit, val, { transform: (s) => s }), await datasetAccuracy(vit, val, { transform: (s) => s }));
      } finally {
        x.dispose();
        disposeVit(same.vit);
        disposeVit(fresh.vit);
      }
    } finally {
      disposeVit(vit);
    }
  });

  it('specs are checked (unknown keys, data/model size, recipe)', () => {
    assert.throws(() => sourceVitSpec({ ...MICRO, lr: 1 } as never), /unknown key 'lr'/);
    assert.throws(() => sourceVitSpec({ ...MICRO, data: { ...MICRO.data, size: 16 } }), /imgSize 8 ≠ data size 16/);
    assert.throws(() => checkRecipe({ ...SUPERVISED_RECIPE, warmupSteps: 5000 }), /warmupSteps/);
    assert.deepEqual(jsonDiff({ a: 1, b: [1, 2] }, { a: 1, b: [1, 3] }), ['b.1: 2 ≠ 3']);
    for (const name of Object.keys(SOURCE_VIT_SPECS) as Array<keyof typeof SOURCE_VIT_SPECS>) sourceVitSpec(name);
  });

  it('the committed notebook assets match their specs (config, seed, recipe) and record their metrics', function () {
    const dir = path.join(__dirname, '..', 'notebooks', 'assets');
    const present = (Object.keys(SOURCE_VIT_SPECS) as Array<keyof typeof SOURCE_VIT_SPECS>).filter((n) => existsSync(path.join(dir, sourceVitFile(SOURCE_VIT_SPECS[n]))));
    if (!present.length) this.skip();
    for (const name of present) {
      const file = path.join(dir, sourceVitFile(SOURCE_VIT_SPECS[name]));
      assert.equal(sourceVitMismatch(file, name), null);
      const side = JSON.parse(readFileSync(file.replace(/\.safetensors$/, '.json'), 'utf8'));
      assert.equal(side.losses.length, SOURCE_VIT_SPECS[name].recipe.steps);
      assert.ok(side.result.valAccuracy > 0.1, `${name}: above chance on the natural val split (${side.result.valAccuracy})`);
    }
  });
});
