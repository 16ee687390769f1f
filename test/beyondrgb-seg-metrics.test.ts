/**
 * Segmentation heads (PyTorch golden: LayerNorm per layer, Linear, bilinear F.interpolate / per-patch unpatchify,
 * pixel CE and gradients), IoU from a confusion matrix and WILDS macro F1 (numpy references in the fixture), shape
 * errors, features from the backbones.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { assertClose, noLeak, randArray } from './util';
import { loadBeyondFixture, assignRenamed, checkGrads } from './beyondrgb-fixture';
import { createSegHead, segHeadForward, segHeadVariables, segCrossEntropy, disposeSegHead, bilinearMatrix, upsampleBilinear, segHeadParamCount } from '../lib/seg/head';
import { vitSegTokens, groupSegTokens } from '../lib/seg/features';
import { classificationMetrics, macroF1, confusionMatrix, iouFromConfusion, SegmentationMeter } from '../lib/eval/metrics';
import { createVit, disposeVit } from '../lib/vit/params';
import { createSatMaeGroupVit, disposeSatMaeGroupVit } from '../lib/mae/satmae-group-vit';

const rename = (k: string): string => (k.startsWith('norms.') ? `decode_head.${k}` : k.replace(/^head\./, 'decode_head.proj.'));

describe('segmentation heads (lib/seg)', () => {
  for (const name of ['seg_linear', 'seg_patch'] as const) {
    it(`${name.slice(4)} head matches PyTorch: logits [B, H, W, K] on a non-square grid, pixel CE, gradients`, async () => {
      const f = loadBeyondFixture()[name];
      const c = f.config as Record<string, number>;
      const head = createSegHead({ mode: f.config.mode as 'linear' | 'patch', embedDim: c.D, layers: c.layers, numClasses: c.K, patchSize: c.p });
      const vars = segHeadVariables(head);
      assignRenamed(vars, f.params, rename);
      const gh = c.H / c.p;
      const gw = c.W / c.p;
      const toks = f.tokens.map((t) => tf.tensor3d(t, [c.B, gh * gw, c.D]));
      const masks = tf.tensor4d(f.target, [c.B, c.H, c.W, 1]);
      await noLeak(() =>
        tf.tidy(() => {
          const logits = segHeadForward(head, toks, [gh, gw]);
          assert.deepEqual(logits.shape, [c.B, c.H, c.W, c.K]);
          assertClose(logits.dataSync(), f.logits, 1e-5, 1e-4, 'logits');
          assertClose([segCrossEntropy(logits, masks).dataSync()[0]], [f.loss], 1e-5, 1e-5, 'loss');
        }),
      );
      await noLeak(() => checkGrads(vars, () => segCrossEntropy(segHeadForward(head, toks, [gh, gw]), masks), f.grads, rename));
      tf.dispose([...toks, masks]);
      disposeSegHead(head);
    });
  }

  it('bilinear matrix = PyTorch align_corners=False (rows sum to 1; identity at equal size; 2 → 4 known weights)', () => {
    assert.deepEqual(Array.from(bilinearMatrix(2, 4)), [1, 0, 0.75, 0.25, 0.25, 0.75, 0, 1]);
    const m = bilinearMatrix(3, 3);
    assert.deepEqual(Array.from(m), [1, 0, 0, 0, 1, 0, 0, 0, 1]);
    const big = bilinearMatrix(7, 16);
    for (let o = 0; o < 16; o++) assertClose([big.slice(o * 7, o * 7 + 7).reduce((a, b) => a + b, 0)], [1], 1e-6);
    tf.tidy(() => {
      const x = tf.tensor4d(randArray(2 * 3 * 5 * 2, 2), [2, 3, 5, 2]);
      assert.equal(upsampleBilinear(x, [3, 5]), x);
    });
  });

  it('shape errors name both shapes: masks vs logits, tokens vs grid, layer count', () => {
    const head = createSegHead({ embedDim: 8, patchSize: 4, layers: 1 });
    assert.equal(segHeadParamCount(head), 2 * 8 + 8 * 2 + 2);
    tf.tidy(() => {
      const t = tf.zeros([2, 12, 8]) as tf.Tensor3D;
      const logits = segHeadForward(head, [t], [3, 4]);
      assert.deepEqual(logits.shape, [2, 12, 16, 2]);
      assert.throws(() => segCrossEntropy(logits, tf.zeros([2, 16, 12, 1])), /masks: shape \[2,16,12,1\] does not match the logits \[2,12,16,2\]; expected \[2, 12, 16, 1\]/);
      assert.throws(() => segCrossEntropy(logits, tf.zeros([2, 12, 16, 3])), /does not match the logits/);
      assert.throws(() => segHeadForward(head, [t], [4, 4]), /tokens\[0\] is \[2,12,8\], expected \[2, 4·4 = 16, 8\]/);
      assert.throws(() => segHeadForward(head, [t, t], [3, 4]), /takes 1 token layer\(s\), got 2/);
      assert.throws(() => segHeadForward(head, [tf.zeros([2, 13, 8]) as tf.Tensor3D], [3, 4]), /CLS removed/);
    });
    assert.throws(() => createSegHead({ embedDim: 8, patchSize: 4, numClasses: 1 }), /numClasses: expected ≥ 2/);
    disposeSegHead(head);
  });

  it('pixel CE ignores ignoreIndex pixels', () => {
    tf.tidy(() => {
      const logits = tf.tensor4d(randArray(1 * 2 * 2 * 2, 4), [1, 2, 2, 2]);
      const m = tf.tensor4d([0, 1, 255, 255], [1, 2, 2, 1]);
      const only = segCrossEntropy(logits.slice([0, 0, 0, 0], [1, 1, 2, 2]) as tf.Tensor4D, tf.tensor4d([0, 1], [1, 1, 2, 1]));
      assertClose(segCrossEntropy(logits, m, { ignoreIndex: 255 }).dataSync(), only.dataSync(), 1e-6);
    });
  });

  it('features: ViT last-n patch tokens (CLS removed) and group-model per-cell tokens feed the head', async () => {
    const vit = createVit('vit_tiny_patch16_224', { imgSize: 16, patchSize: 4, depth: 3, embedDim: 24, numHeads: 2 });
    const g = createSatMaeGroupVit('satmae_group_vit_base_patch8', { embedDim: 32, depth: 2, numHeads: 2, channelEmbedDim: 8, imgSize: 16, patchSize: 4, numClasses: 0 });
    await noLeak(() =>
      tf.tidy(() => {
        const v = vitSegTokens(vit, tf.zeros([2, 16, 16, 3]) as tf.Tensor4D, { layers: 2 });
        assert.deepEqual(v.grid, [4, 4]);
        assert.deepEqual(v.tokens.map((t) => t.shape), [[2, 16, 24], [2, 16, 24]]);
        const s = groupSegTokens(g, tf.tensor4d(randArray(2 * 16 * 16 * 13, 1), [2, 16, 16, 13]), { layers: 1 });
        assert.deepEqual(s.grid, [4, 4]);
        assert.deepEqual(s.tokens[0].shape, [2, 16, 32]);
        const head = createSegHead({ embedDim: 32, patchSize: 4 });
        assert.deepEqual(segHeadForward(head, s.tokens, s.grid).shape, [2, 16, 16, 2]);
        disposeSegHead(head);
      }),
    );
    disposeVit(vit);
    disposeSatMaeGroupVit(g);
  });
});

describe('metrics (lib/eval/metrics)', () => {
  it('IoU per class / mIoU (nanmean) / confusion match the numpy reference; SegmentationMeter accumulates batches', () => {
    const f = loadBeyondFixture().metrics.seg;
    const conf = confusionMatrix(f.target, f.pred, f.K);
    assert.deepEqual(Array.from(conf), f.confusion);
    const r = iouFromConfusion(conf, f.K);
    r.iou.forEach((v, i) => (f.iou[i] === null ? assert.ok(Number.isNaN(v)) : assertClose([v], [f.iou[i] as number], 1e-12)));
    assertClose([r.miou], [f.miou], 1e-12);
    const [B, H, W] = f.shape;
    const meter = new SegmentationMeter(f.K);
    tf.tidy(() => {
      for (let b = 0; b < B; b++) {
        const n = H * W;
        const t = tf.tensor4d(f.target.slice(b * n, (b + 1) * n), [1, H, W, 1]);
        const onehot = tf.oneHot(tf.tensor1d(f.pred.slice(b * n, (b + 1) * n), 'int32'), f.K).reshape([1, H, W, f.K]);
        meter.update(onehot, t); // logits → arg-max
      }
    });
    assert.deepEqual(Array.from(meter.confusion), f.confusion);
    assert.throws(() => meter.update(tf.zeros([1, H, W, f.K]), tf.zeros([1, W, H, 1])), /masks \[1,7,5,1\] do not match the predictions \[1,5,7,4\]/);
    assert.throws(() => confusionMatrix([0, 5], [0, 1], 4), /truth\[1\] = 5 is outside the 4 classes/);
  });

  it("WILDS macro F1: classes present in y_true only (a predicted-only class is ignored, a never-predicted class scores 0)", () => {
    const f = loadBeyondFixture().metrics.cls;
    const m = classificationMetrics(f.y_true, f.y_pred);
    assert.deepEqual(m.labels, f.labels);
    assertClose(m.perClassF1, f.per_class_f1, 1e-12);
    assertClose([m.macroF1, m.macroRecall, m.accuracy], [f.macro_f1, f.macro_recall, f.accuracy], 1e-12);
    assert.equal(macroF1([0, 0, 1], [0, 0, 1]), 1);
    // counting the predicted-only class 7 (sklearn without labels=unique(y_true)) would give a lower score
    assert.ok(m.macroF1 > (m.perClassF1.reduce((a, b) => a + b, 0) + 0) / (m.labels.length + 1));
    assert.throws(() => classificationMetrics([0, 1], [0]), /2 labels but 1 predictions/);
    assert.throws(() => classificationMetrics([0, 1.5], [0, 1]), /yTrue\[1\] = 1.5 is not a class index/);
  });
});
