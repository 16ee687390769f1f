/**
 * Learnability check of the embedded satellite labels: trains a tiny ViT from scratch (patch 4, D 96, depth 4) on the
 * embedded satellite train split (RGB or 13 bands, 32 px) for a few epochs on CPU and prints val/test accuracy next to
 * the raw-pixel linear probe. Usage: npx tsx bench/embedded-learnability.ts [rgb|ms] [epochs]
 */
import * as tf from '@tensorflow/tfjs';
import { init } from '../lib/backend';
import { createVit, vitVariables } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { loadEmbedded } from '../data-loaders/embedded';
import { Loader, disposeBatch, Dataset } from '../data-loaders/dataset';
import { compose, randomHFlip, randomResizedCrop, normalizeWith, pointwise } from '../data-loaders/augment';
import { IMAGENET_STATS, sentinelNormalize } from '../data-loaders/transforms';

async function main(): Promise<void> {
  await init();
  const variant = (process.argv[2] ?? 'rgb') as 'rgb' | 'ms';
  const epochs = +(process.argv[3] ?? 30);
  const emb = await loadEmbedded();
  const C = variant === 'rgb' ? 3 : 13;
  const norm = variant === 'rgb' ? normalizeWith(IMAGENET_STATS) : pointwise((img) => sentinelNormalize(img));
  const train = new Loader(emb.satellite[variant].train, {
    batchSize: 50,
    seed: 0,
    transform: compose(norm, randomResizedCrop({ size: 32, scale: [0.5, 1] }), randomHFlip()),
  });
  const vit = createVit('vit_tiny_patch16_224', { imgSize: 32, patchSize: 4, inChans: C, embedDim: 96, depth: 4, numHeads: 4, numClasses: 10, pool: 'avg' }, { seed: 0 });
  const params = vitVariables(vit);
  const opt = new Optimizer(ADAMW_DEFAULTS, params);
  const total = epochs * train.stepsPerEpoch;
  const evalOn = async (ds: Dataset): Promise<number> => {
    const l = new Loader(ds, { batchSize: 100, shuffle: false, transform: norm });
    let ok = 0;
    for await (const b of l.epoch(0)) {
      const pred = tf.tidy(() => tf.argMax(vitForward(vit, b.images!).logits!, 1));
      const p = await pred.data();
      const y = await b.labels!.data();
      p.forEach((v, i) => (ok += v === y[i] ? 1 : 0));
      pred.dispose();
      disposeBatch(b);
    }
    return ok / ds.length;
  };
  const t0 = Date.now();
  for (let step = 0; step < total; step++) {
    const b = await train.batchAt(step);
    const lr = 1e-3 * Math.min(1, (step + 1) / 30) * 0.5 * (1 + Math.cos((Math.PI * step) / total));
    const r = trainStep({ params, optimizer: opt, lr, weightDecay: 0.05, loss: () => crossEntropy(vitForward(vit, b.images!, { training: true }).logits as tf.Tensor2D, b.labels!) });
    disposeBatch(b);
    if ((step + 1) % train.stepsPerEpoch === 0 && ((step + 1) / train.stepsPerEpoch) % 5 === 0) {
      console.log(JSON.stringify({ epoch: (step + 1) / train.stepsPerEpoch, loss: +r.loss.toFixed(4), val: await evalOn(emb.satellite[variant].val), s: (Date.now() - t0) / 1000 }));
    }
  }
  console.log(JSON.stringify({ variant, epochs, val: await evalOn(emb.satellite[variant].val), test: await evalOn(emb.satellite[variant].test), seconds: (Date.now() - t0) / 1000 }));
}
main();
