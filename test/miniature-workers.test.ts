/**
 * `runMiniature` on worker threads (recipes/miniature-workers.ts): the records of 2 workers equal the one-thread
 * records bit for bit (every field but the CPU / time ones, per-test-image correctness strings included) and come in
 * the one-thread order; an error names the method and seed and leaves no worker; no tensor leaks on the main thread.
 */
import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { runMiniature, MiniRecord, MaeMiniConfig } from '../recipes/miniature';
import { MAE_MINI_CI, DINO_MINI_CI } from '../recipes/miniature-presets';
import { liveWorkers, liveSharedBytes } from '../lib/workers/pool';

/** A record without its CPU / time fields. */
function numbers(r: MiniRecord): Omit<MiniRecord, 'cpu' | 'seconds' | 'trainCpu'> {
  const { cpu: _c, seconds: _s, trainCpu: _t, ...rest } = r;
  return rest;
}

async function both(run: (workers: number, onRecord: (r: MiniRecord) => void) => Promise<MiniRecord[]>): Promise<void> {
  const live = tf.memory().numTensors;
  const seq: MiniRecord[] = [];
  const one = await run(1, (r) => seq.push(r));
  const streamed: MiniRecord[] = [];
  const two = await run(2, (r) => streamed.push(r));
  assert.equal(tf.memory().numTensors, live, 'tensors leaked on the main thread');
  assert.equal(liveWorkers(), 0);
  assert.equal(liveSharedBytes(), 0);
  assert.ok(one.length >= 4);
  assert.deepEqual(seq.map(numbers), one.map(numbers));
  assert.deepEqual(streamed.map(numbers), two.map(numbers), 'onRecord order = returned order');
  assert.deepEqual(two.map((r) => `${r.seed}/${r.method}/${r.step}`), one.map((r) => `${r.seed}/${r.method}/${r.step}`), 'one-thread order');
  for (let i = 0; i < one.length; i++) assert.deepEqual(numbers(two[i]), numbers(one[i]), `record ${i} (${one[i].method}, seed ${one[i].seed}, step ${one[i].step})`);
}

describe('runMiniature on worker threads', function () {
  this.timeout(900000);

  it('MAE ci: 2 workers = 1 worker, bit for bit, in the one-thread order (scratch on one seed)', async () => {
    const cfg: MaeMiniConfig = { ...MAE_MINI_CI, evalAt: [2] };
    await both((workers, onRecord) => runMiniature(cfg, [0, 1], { workers, onRecord, seedsOf: { scratch: [0] } }));
  });

  it('DINO ci: 2 workers = 1 worker, bit for bit, in the one-thread order', async () => {
    await both((workers, onRecord) => runMiniature(DINO_MINI_CI, [0, 1], { workers, onRecord }));
  });

  it('an error in a job names the method and seed, rejects, and leaves no worker running', async () => {
    const live = tf.memory().numTensors;
    const cfg: MaeMiniConfig = { ...MAE_MINI_CI, methods: [{ name: 'source', kind: 'source' }, { name: 'everything', kind: 'full' }] };
    await assert.rejects(runMiniature(cfg, [0, 1], { workers: 2 }), (e: Error) => {
      assert.match(e.message, /runMiniature\(everything, seed [01]\): runMaeMethod\(everything\): 'full' continued pre-training is implemented for the DINO miniature only/);
      assert.match(e.message, /^\[worker [01] of 2\]/);
      return true;
    });
    assert.equal(liveWorkers(), 0);
    assert.equal(liveSharedBytes(), 0);
    assert.equal(tf.memory().numTensors, live);
  });

  it('a throwing onRecord stops the run with its error; onData asks for one worker', async () => {
    await assert.rejects(
      runMiniature(MAE_MINI_CI, [0], { workers: 2, seedsOf: { scratch: [] }, onRecord: () => { throw new Error('callback broke'); } }),
      /callback broke/,
    );
    assert.equal(liveWorkers(), 0);
    await assert.rejects(runMiniature(MAE_MINI_CI, [0], { workers: 2, onData: () => undefined }), /onData sees the datasets .* \(pass workers: 1\)/);
  });
});
