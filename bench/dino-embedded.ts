/**
 * `npx tsx bench/dino-embedded.ts`: a short D-ExPLoRA run (DINOv2 objective) on the embedded satellite RGB images,
 * JSON lines per step (loss parts, collapse metrics, seconds) and a summary.
 *
 * Options (env): DINO_STEPS (default 40), DINO_BATCH (default 8), DINO_PRESET ('D_EXPLORA_SMALL' default),
 * DINO_PER_CLASS (embedded satellite images per class, default 20), DINO_CACHE (cache dir, default a temp dir),
 * DINO_TARGETS ('centering' | 'sinkhorn_knopp').
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { init, backendReport } from '../lib/backend';
import { loadEmbedded } from '../data-loaders/embedded';
import { Loader } from '../data-loaders/dataset';
import { createExploraDino, dExploraConfig, exploraDinoViews, trainExploraDino } from '../recipes/explora-dino';
import { CENTERING, SINKHORN_KNOPP } from '../lib/dino/teacher';

function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  return v ? Number.parseInt(v, 10) : dflt;
}

async function main(): Promise<void> {
  await init();
  console.log(JSON.stringify({ kind: 'backend', ...backendReport() }));
  const steps = envInt('DINO_STEPS', 40);
  const batch = envInt('DINO_BATCH', 8);
  const perClass = envInt('DINO_PER_CLASS', 20);
  const cacheDir = process.env.DINO_CACHE ?? fs.mkdtempSync(path.join(os.tmpdir(), 'dino-emb-'));
  const t0 = Date.now();
  const emb = await loadEmbedded({ satellitePerClass: perClass, naturalPerClass: 5, cacheDir });
  console.log(JSON.stringify({ kind: 'data', seconds: (Date.now() - t0) / 1000, train: emb.satellite.rgb.train.length }));
  const cfg = dExploraConfig((process.env.DINO_PRESET ?? 'D_EXPLORA_SMALL') as 'D_EXPLORA_SMALL', {
    objective: { targets: process.env.DINO_TARGETS === 'sinkhorn_knopp' ? SINKHORN_KNOPP : CENTERING },
    train: { batchSize: batch },
  });
  const run = createExploraDino(cfg, { seed: 0 });
  const loader = new Loader(emb.satellite.rgb.train, { batchSize: batch, seed: 0, views: exploraDinoViews(cfg) });
  const n0 = tf.memory().numTensors;
  const ms = await trainExploraDino(run, loader, {
    steps,
    onStep: (m) => console.log(JSON.stringify({ kind: 'step', ...m, gradNorm: undefined, gn: m.gradNorm })),
  });
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const k = Math.max(1, Math.floor(steps / 4));
  console.log(
    JSON.stringify({
      kind: 'summary',
      steps,
      batch,
      dinoFirst: mean(ms.slice(0, k).map((m) => m.dino)),
      dinoLast: mean(ms.slice(-k).map((m) => m.dino)),
      lossFirst: mean(ms.slice(0, k).map((m) => m.loss)),
      lossLast: mean(ms.slice(-k).map((m) => m.loss)),
      secondsPerStep: mean(ms.slice(1).map((m) => m.seconds)),
      leaked: tf.memory().numTensors - n0,
      trainableEncoder: run.explora.selection.summary.trainableEncoder,
    }),
  );
  run.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
