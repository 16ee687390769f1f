/**
 * Child process of test/webgpu.test.ts: start the webgpu backend (forced, so a software adapter such as Mesa's
 * llvmpipe is accepted), run the backend cases and write {report, results, syncRead} as JSON to the path in argv[2].
 * A separate process keeps Dawn out of the mocha process (its tensors cannot move back to wasm synchronously, and a
 * native crash fails one test instead of the run).
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'fs';
import { init } from '../lib/backend';
import { runCases } from './backend-cases';

async function main(): Promise<void> {
  const outFile = process.argv[2];
  if (!outFile) throw new Error('usage: webgpu-child.ts <out.json>');
  const report = await init({ backend: 'webgpu' });
  // a synchronous read of a GPU result must fail with the kit's message, not "OffscreenCanvas is not defined"
  // (large enough to run on the GPU: tfjs hands ops on small CPU-resident inputs to its CPU kernels)
  let syncRead = '';
  const t = tf.tidy(() => tf.matMul(tf.ones([64, 64]), tf.ones([64, 64])));
  try {
    t.dataSync();
    syncRead = 'no error';
  } catch (e) {
    syncRead = e instanceof Error ? e.message : String(e);
  }
  t.dispose();
  const results = await runCases();
  const json = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, Array.from(v)]));
  fs.writeFileSync(outFile, JSON.stringify({ report, results: json, syncRead }));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e instanceof Error ? e.stack ?? e.message : String(e));
    process.exit(1);
  },
);
