/**
 * `npx tsx bench/dino-setup.ts`: allocate the paper configuration D_EXPLORA_L_R64 (ViT-L/14, zero weights) and report
 * the setup time, tfjs memory and the trainable summary (18,724,864 encoder parameters). No training step.
 */
import * as tf from '@tensorflow/tfjs';
import { init } from '../lib/backend';
import { createExploraDino } from '../recipes/explora-dino';
import { formatTrainSummary } from '../lib/peft/trainable';
(async () => {
  await init();
  const t0 = Date.now();
  const run = createExploraDino('D_EXPLORA_L_R64', { skipInit: true });
  console.log(JSON.stringify({ setupSeconds: (Date.now() - t0) / 1000, bytes: tf.memory().numBytes, tensors: tf.memory().numTensors, trainable: run.trainable.size, teacherOwn: run.teacherOwn.size, rss: process.memoryUsage().rss }));
  console.log(formatTrainSummary(run.explora.selection.summary));
  run.dispose();
  console.log(JSON.stringify({ afterDispose: tf.memory().numBytes }));
})();
