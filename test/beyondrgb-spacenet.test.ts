/**
 * Notebook 09 (SpaceNet-v1 building segmentation) on the recipes layer: the segmentation evaluation
 * (recipes/session-seg.ts), the building sources (recipes/data-seg.ts) and the notebook's recipes and helpers
 * (recipes/beyondrgb-spacenet.ts).
 */
import { useTmpCache } from './util';
import { strict as assert } from 'assert';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { init } from '../lib/backend';
import { recipe, recipeJson, resolveRecipePaths, Recipe, SegmentationEval, SplitSet } from '../recipes/recipe';
import { openSource } from '../recipes/data';
import { spacenetSplitOf } from '../recipes/data-seg';
import { prepareRecipe } from '../recipes/session';
import { runRecipe, resumeRun } from '../recipes/run';
import { MaskBatch, checkMaskBatch, decodeSegPreview, encodeSegPreview, maskBatches, scoreSegmentation } from '../recipes/session-seg';
import {
  spacenetSettings, spacenetSeedRecipe, spacenetPaperRecipe, spacenetDataRows, spacenetResults, spacenetResultRows, spacenetClaims, spacenetMaskFigure,
  spacenetIouFigure, spacenetPaperRows, spacenetPaperFiles, SPACENET_DEFAULT_PATHS, SpacenetSeedResult,
} from '../recipes/beyondrgb-spacenet';
import { ensureEmbeddedBuildings } from '../data-loaders/embedded-beyond';
import { RecordDataset } from '../data-loaders/dataset';
import { makeImg } from '../data-loaders/image';

/** Batches of given masks (and dummy images) for scoring. */
async function* batchesOf(masks: number[][][]): AsyncGenerator<MaskBatch> {
  for (const m of masks) {
    const B = m.length;
    const HW = m[0].length;
    const H = 2;
    const W = HW / 2;
    yield { images: tf.zeros([B, H, W, 3]) as tf.Tensor4D, masks: tf.tensor4d(m.flat(), [B, H, W, 1]), indices: [] };
  }
}

/** Logits [B, H, W, 2] that predict class ids `ids` (row-major). */
function logitsFor(ids: number[], B: number, H: number, W: number): tf.Tensor4D {
  return tf.tidy(() => tf.oneHot(tf.tensor1d(ids, 'int32'), 2).reshape([B, H, W, 2]).toFloat() as tf.Tensor4D);
}

describe('notebook 09 (SpaceNet-v1 segmentation) recipes', function () {
  this.timeout(600_000);
  before(async () => {
    await init();
  });
  const tmp = useTmpCache('vitpeft-nb09-');

  it('every scale gives a valid recipe that round-trips through JSON; seeds differ only in seed and name', () => {
    for (const scale of ['ci', 'smoke', 'paper'] as const) {
      const s = spacenetSettings(scale);
      assert.deepEqual(s.seeds, [0, 1, 2]);
      const r = s.recipe;
      assert.deepEqual(recipe(JSON.parse(recipeJson(r))), r);
      assert.equal(r.adapters.kind, 'explora');
      assert.equal(r.data.train.splits[0].split, 'pretrain', 'pre-training reads the unlabelled split');
      assert.ok(r.eval.kind === 'segmentation' && 'steps' in r.eval.at && r.eval.at.steps[0] === 0, 'evaluated at step 0 (the source encoder)');
      const s1 = spacenetSeedRecipe(r, 1);
      assert.deepEqual({ ...s1, seed: r.seed, name: r.name, tags: r.tags }, r);
    }
    // the LoRA protocol: the same recipe but the segmentation evaluation (head + a new LoRA in the encoder)
    for (const scale of ['ci', 'smoke'] as const) {
      const f = spacenetSettings(scale).recipe;
      const l = spacenetSettings(scale, SPACENET_DEFAULT_PATHS, 'lora');
      assert.deepEqual(recipe(JSON.parse(recipeJson(l.recipe))), l.recipe);
      const fe = f.eval as SegmentationEval;
      const le = l.recipe.eval as SegmentationEval;
      assert.equal(fe.encoder, 'frozen');
      assert.equal(le.encoder, 'lora');
      assert.deepEqual({ ...l.recipe, eval: fe, description: f.description }, f, 'only the evaluation differs');
      assert.deepEqual([le.steps, le.batch], scale === 'smoke' ? [150, 16] : [10, 8]);
      assert.deepEqual({ ...le, encoder: 'frozen', steps: fe.steps, batch: fe.batch }, fe);
      assert.match(l.description, /LoRA-r4 encoder/);
    }
    assert.equal(spacenetSettings('smoke').description.includes('frozen encoder + patch head (600 steps)'), true);
    // schema errors name the key
    const r = spacenetSettings('ci').recipe;
    assert.throws(() => recipe({ ...r, eval: { ...r.eval, numClasses: 1 } }), /recipe\.eval\.numClasses: expected an integer ≥ 2/);
    assert.throws(() => recipe({ ...r, eval: { ...r.eval, encoder: 'lora', steps: 0 } }), /recipe\.eval\.steps: encoder 'lora' trains LoRA/);
    assert.throws(() => recipe({ ...r, eval: { ...r.eval, head: { mode: 'upernet' } } }), /recipe\.eval\.head\.mode/);
    assert.throws(() => openSource({ kind: 'embedded', domain: 'natural', seed: 0, size: 32, satellitePerClass: 5, naturalPerClass: 5, product: '3band' }), /recipe\.data\.source\.product: selects the image product of the 'buildings' domain only/);
  });

  it('the paper scale reads the real SpaceNet-v1 layout (paths resolved against the notebook folder)', () => {
    const r = resolveRecipePaths(spacenetPaperRecipe({ spacenet: 'd/sn', maeVitLarge: 'w.safetensors' }), '/nb');
    assert.deepEqual(r.data.source, { kind: 'spacenet1', root: '/nb/d/sn', product: '3band', valFraction: 0.1, testFraction: 0.28 });
    assert.equal(r.weights.kind === 'checkpoint' && r.weights.path, '/nb/w.safetensors');
    assert.ok(r.eval.kind === 'segmentation' && r.eval.encoder === 'lora');
    assert.deepEqual(spacenetPaperFiles(SPACENET_DEFAULT_PATHS), ['data/spacenet/SN1_buildings/train/3band', 'data/spacenet/SN1_buildings/train/geojson', 'assets/mae_visualize_vit_large.safetensors']);
  });

  it('a spacenet1 source splits chips by a hash of the image id; pretrain = the train chips without masks', async () => {
    const p = await ensureEmbeddedBuildings({ chips: 40 });
    const src = openSource({ kind: 'spacenet1', root: p.root, product: '3band', valFraction: 0.2, testFraction: 0.3 });
    const sets = Object.fromEntries(await Promise.all(['pretrain', 'train', 'val', 'test'].map(async (k) => [k, await src.split(k, k)] as const)));
    assert.equal(sets.train.length + sets.val.length + sets.test.length, 40);
    for (const k of ['train', 'val', 'test'] as const) {
      for (let i = 0; i < sets[k].length; i++) assert.equal(spacenetSplitOf((sets[k].info(i).meta as { imageId: number }).imageId, 0.2, 0.3), k);
    }
    assert.equal(sets.pretrain.length, sets.train.length);
    const s0 = await sets.pretrain.get(0);
    const t0 = await sets.train.get(0);
    assert.equal(s0.mask, undefined);
    assert.ok(t0.mask && t0.mask.height === 32);
    assert.deepEqual(s0.image!.data, t0.image!.data);
    // 8-bit RGB GeoTIFF samples (raw 0…255) reach the transforms in [0, 1]
    assert.ok(t0.image!.data.every((v) => v >= 0 && v <= 1) && t0.image!.data.some((v) => v > 0.05));
    assert.throws(() => src.split('unlabeled', 'recipe.data.train.splits[0].split'), /recipe\.data\.train\.splits\[0\]\.split: no split 'unlabeled' in spacenet1 data; valid: pretrain, train, val, test/);
    // the rule: ≈ the fractions over many ids
    const n = { train: 0, val: 0, test: 0 };
    for (let id = 1; id <= 6940; id++) n[spacenetSplitOf(id, 0.1, 0.28)]++;
    assert.ok(Math.abs(n.test / 6940 - 0.28) < 0.02 && Math.abs(n.val / 6940 - 0.1) < 0.02, JSON.stringify(n));
  });

  it('IoU over a split is one confusion matrix over every pixel (hand-computed), not a mean of per-image IoUs', async () => {
    // two batches of 2×2-pixel images (H 2, W 2): truth and prediction per image, row-major
    const truth = [
      [[1, 1, 0, 0], [0, 0, 0, 0]],
      [[1, 0, 0, 0]],
    ];
    const preds = [
      [1, 0, 0, 0, 1, 0, 0, 0],
      [1, 1, 1, 0],
    ];
    // building (class 1): TP 1 + 0 + 1 = 2; FP 0 + 1 + 2 = 3; FN 1 + 0 + 0 = 1 → IoU 2 / 6.
    // background: TP 2 + 3 + 1 = 6; FP 1; FN 3 → 6 / 10. pixel accuracy 8 / 12. (Per-image mean of building IoU:
    // (1/2 + 0 + 1/3) / 3 = 0.278, not 1/3.)
    let k = 0;
    const before = tf.memory().numTensors;
    const sc = await scoreSegmentation(batchesOf(truth), (x) => logitsFor(preds[k++], x.shape[0], 2, 2), 2, 2);
    assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
    assert.ok(Math.abs(sc.iou[1] - 2 / 6) < 1e-12, `building IoU ${sc.iou[1]}`);
    assert.ok(Math.abs(sc.iou[0] - 6 / 10) < 1e-12);
    assert.ok(Math.abs(sc.miou - (2 / 6 + 6 / 10) / 2) < 1e-12);
    assert.ok(Math.abs(sc.accuracy - 8 / 12) < 1e-12);
    assert.equal(sc.pixels, 12);
    // the preview: the first 2 images' predicted ids
    assert.equal(sc.preview, '2x2x2:10001000');
    assert.deepEqual([...decodeSegPreview(sc.preview).ids], [1, 0, 0, 0, 1, 0, 0, 0]);
    assert.equal(encodeSegPreview([Uint8Array.of(3, 0, 1, 2)], [2, 2]), '1x2x2:3012');
    assert.throws(() => decodeSegPreview('2x2x2:100'), /3 pixels for 2×2×2/);
  });

  it('bad masks: errors name the recipe key, the file and the field, and leave no tensors', async () => {
    const img = makeImg(8, 8, 3);
    const ds = new RecordDataset(
      'chips',
      [
        { path: '/data/chip1.tif', meta: {} },
        { path: '/data/chip7.tif', meta: {} },
      ],
      async (r) => {
        const mask = makeImg(r.path.endsWith('chip7.tif') ? 4 : 8, 8, 1);
        return { image: img, mask, path: r.path };
      },
    );
    const before = tf.memory().numTensors;
    const set: SplitSet = { splits: [{ split: 'train', subset: null }], transform: { name: 'normalize', stats: 'imagenet' } };
    await assert.rejects(
      (async () => {
        for await (const b of maskBatches(ds, set, 2, 'recipe.eval.train', 2)) tf.dispose([b.images, b.masks]);
      })(),
      (e: Error) => /^recipe\.eval\.train: /.test(e.message) && /chip7\.tif/.test(e.message) && /mask/.test(e.message),
    );
    assert.equal(tf.memory().numTensors, before);
    const images = tf.zeros([2, 8, 8, 3]) as tf.Tensor4D;
    const wrong = tf.zeros([2, 8, 4, 1]) as tf.Tensor4D;
    const values = tf.tensor4d([...new Array(64).fill(0), ...new Array(63).fill(0), 255], [2, 8, 8, 1]);
    try {
      assert.throws(() => checkMaskBatch({ images, masks: wrong, indices: [0, 1] }, ds, 'recipe.eval.test', 2), /recipe\.eval\.test: chips sample 0 \(\/data\/chip1\.tif\): field 'mask' is \[2,8,4,1\] for images \[2,8,8,3\]; expected \[2, 8, 8, 1\]/);
      assert.throws(() => checkMaskBatch({ images, masks: values, indices: [0, 1] }, ds, 'recipe.eval.test', 2), /recipe\.eval\.test: chips sample 1 \(\/data\/chip7\.tif\): field 'mask' holds 255 at pixel \(7, 7\); expected class ids 0…1/);
      assert.throws(() => checkMaskBatch({ images, indices: [1, 0] }, ds, 'recipe.eval.train', 2), /chip7\.tif\): no field 'mask'/);
    } finally {
      tf.dispose([images, wrong, values]);
    }
  });

  it('a ci run evaluates at step 0 and the end; a stopped run resumes to the same numbers; no tensors leak', async () => {
    const s = spacenetSettings('ci');
    const root = path.join(tmp(), 'runs');
    const r0 = spacenetSeedRecipe(s.recipe, 0);
    const before = tf.memory().numTensors;
    const full = await runRecipe(r0, { root });
    assert.equal(full.status, 'done');
    assert.deepEqual(full.evals.map((e) => e.step), [0, 3]);
    assert.ok(full.checks.every((c) => c.ok), JSON.stringify(full.checks));
    for (const e of full.evals) {
      assert.ok(typeof e.segMIoU === 'number' && e.segMIoU > 0 && e.segMIoU <= 1);
      assert.ok(typeof e.segPixelAcc === 'number' && e.segPixelAcc > 0.5);
      assert.equal(e.segTrainImages, 24);
      assert.match(String(e.segPreview), /^4x32x32:[01]{4096}$/);
    }
    const stopped = await runRecipe(r0, { root, until: 2 });
    assert.equal(stopped.status, 'stopped');
    const resumed = await resumeRun(stopped.dir);
    assert.equal(resumed.status, 'done');
    const strip = (e: Record<string, unknown>): Record<string, unknown> => {
      const { seconds: _s, ...rest } = e;
      return rest;
    };
    assert.deepEqual(resumed.evals.map(strip), full.evals.map(strip));
    assert.equal(tf.memory().numTensors, before);
    // the notebook helpers on the run
    const res = spacenetResults([full]);
    assert.equal(res[0].source.acc, 100 * (full.evals[0].segPixelAcc as number));
    const fig = await spacenetMaskFigure(full);
    assert.equal(fig.n, 4);
    assert.deepEqual(fig.images.shape, [16, 32, 32, 3]);
    fig.images.dispose();
    assert.equal(tf.memory().numTensors, before);
    const rows = await spacenetDataRows(s.recipe);
    assert.deepEqual(rows.map((x) => [x.split, x.chips, x.masks]), [['pretrain', 24, 'no (unlabelled)'], ['train', 24, 'yes'], ['val', 8, 'yes'], ['test', 8, 'yes']]);
  });

  it("encoder 'lora' trains LoRA with the head on a merged copy, deterministically, and frees it", async () => {
    const base = spacenetSettings('ci').recipe;
    const e = base.eval as SegmentationEval;
    const r: Recipe = recipe({ ...base, steps: 0, adapters: { kind: 'frozen' }, eval: { ...e, encoder: 'lora', loraRank: 2, steps: 4, previewImages: 0 } });
    const s = await prepareRecipe(r);
    try {
      const before = tf.memory().numTensors;
      const a = await s.evaluate(0);
      const b = await s.evaluate(0);
      assert.equal(tf.memory().numTensors, before);
      assert.ok(a && typeof a.segHeadLoss === 'number' && Number.isFinite(a.segHeadLoss));
      assert.equal(a!.segIoU, b!.segIoU);
      assert.equal(a!.segHeadLoss, b!.segHeadLoss);
    } finally {
      s.dispose();
    }
  });

  it('results, rows, the paper table, the chart and the claim from per-seed values (verdict only with an interval)', () => {
    const mk = (seed: number, src: number, ex: number): SpacenetSeedResult => ({ seed, source: { iou: src, miou: 50, acc: 90 }, explora: { iou: ex, miou: 55, acc: 91 }, finalLoss: 0.5 });
    const res = [mk(0, 20, 25), mk(1, 21, 26.5), mk(2, 22, 26)];
    const rows = spacenetResultRows(res);
    assert.equal(rows.length, 4);
    assert.equal(rows[1]['Δ IoU (points)'], 5.5);
    assert.match(String(rows[3]['Δ IoU (points)']), /^4\.8 \[/);
    const [c] = spacenetClaims(res, { description: 'test' });
    assert.equal(c.paperValue, null);
    assert.equal(c.verdict, 'reproduced');
    const flat = spacenetClaims([mk(0, 20, 20), mk(1, 20, 20), mk(2, 20, 20)], { description: 'test' })[0];
    assert.equal(flat.verdict, 'inconclusive', 'a zero-width interval gives no verdict');
    const fig = spacenetIouFigure(res);
    assert.equal(fig.data.length, 4);
    const p = spacenetPaperRows(res, { description: 'test' });
    assert.equal(p[1]['ours: building IoU %'], 25.8);
    assert.match(String(p[0]['paper: building IoU']), /unknown/);
  });
});
