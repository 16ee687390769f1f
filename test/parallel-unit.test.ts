/**
 * Data-parallel pieces that need no threads: core counting, shard ranges, and — with a worker context installed
 * in-process (rank 1 of 2, collectives never called) — that a shard gets exactly its rows of what one process draws:
 * loader batches (samples and augmentations), drop-path masks, MAE masking plans, iBOT masks.
 */
import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { physicalCoresFromCpuinfo, coreCount, resolveWorkers } from '../lib/parallel/cores';
import { Collective, allocateShared } from '../lib/parallel/collective';
import { setParallelContext, shardRange, withShards, currentShard, shardRowsOf, shardWeight } from '../lib/parallel/context';
import { dropPath, dropout } from '../lib/ops/nn';
import { Rng } from '../lib/rng';
import { randomMasking, shardedPlan } from '../lib/mae/masking';
import { ibotMasks, selectIbotMasks } from '../lib/dino/masking';
import { Loader, disposeBatch } from '../data-loaders/dataset';
import { randomHFlip } from '../data-loaders/augment';
import { syntheticDataset } from './fixtures/parallel-train';

describe('data-parallel: cores and shards', () => {
  it('counts physical cores from /proc/cpuinfo (SMT siblings once, per package)', () => {
    const cpu = (p: number, c: number): string => `processor\t: x\nphysical id\t: ${p}\ncore id\t\t: ${c}\n\n`;
    assert.equal(physicalCoresFromCpuinfo(cpu(0, 0) + cpu(0, 1) + cpu(0, 0) + cpu(0, 1)), 2); // 4 threads, 2 cores
    assert.equal(physicalCoresFromCpuinfo(cpu(0, 0) + cpu(1, 0)), 2); // 2 packages
    assert.equal(physicalCoresFromCpuinfo('processor : 0\nmodel name : x\n'), null);
    const c = coreCount();
    assert.ok(c.count >= 1 && c.count <= c.logical && c.reason.length > 0, JSON.stringify(c));
    assert.equal(resolveWorkers('auto'), c.count);
    assert.equal(resolveWorkers(3), 3);
    assert.throws(() => resolveWorkers(0), /workers: expected 'auto' or an integer ≥ 1, got 0/);
    assert.throws(() => resolveWorkers(1.5 as number), /got 1.5/);
    // VITPEFT_WORKERS: an integer overrides what 'auto' means; 'auto' (runRecipe's default, set by the notebook
    // runner) leaves it to the machine; anything else is an error naming the variable
    const saved = process.env.VITPEFT_WORKERS;
    try {
      process.env.VITPEFT_WORKERS = 'auto';
      assert.equal(resolveWorkers('auto'), c.count);
      process.env.VITPEFT_WORKERS = '5';
      assert.equal(resolveWorkers('auto'), 5);
      process.env.VITPEFT_WORKERS = 'many';
      assert.throws(() => resolveWorkers('auto'), /VITPEFT_WORKERS: expected 'auto' or an integer ≥ 1, got 'many'/);
    } finally {
      if (saved === undefined) delete process.env.VITPEFT_WORKERS;
      else process.env.VITPEFT_WORKERS = saved;
    }
  });

  it('splits rows evenly, first workers take the extra rows', () => {
    assert.deepEqual([0, 1, 2].map((r) => shardRange(10, r, 3)), [[0, 4], [4, 7], [7, 10]]);
    assert.deepEqual([0, 1].map((r) => shardRange(32, r, 2)), [[0, 16], [16, 32]]);
  });

  it('one-rank collectives are the identity', () => {
    const c = new Collective(allocateShared(1, 64), 0);
    assert.deepEqual(Array.from(c.allReduce(Float32Array.from([1, 2, 3]))), [1, 2, 3]);
    assert.deepEqual(c.allGather(Float32Array.from([4])).map((a) => Array.from(a)), [[4]]);
  });
});

describe('data-parallel: a shard sees its rows of the one-process randomness and data', () => {
  const B = 8;
  before(() => setParallelContext({ rank: 1, size: 2, collective: new Collective(allocateShared(2, 64), 1) }));
  after(() => setParallelContext(null));

  it('Loader.batchAt in a shard region: rows [4, 8) of the batch, same samples and augmentation; none outside', async () => {
    const ds = syntheticDataset(1, 32, 8);
    const opts = { batchSize: B, seed: 5, transform: randomHFlip(0.5), prefetch: 1 };
    setParallelContext(null);
    const full = await new Loader(ds, opts).batchAt(3);
    setParallelContext({ rank: 1, size: 2, collective: new Collective(allocateShared(2, 64), 1) });
    const loader = new Loader(ds, opts);
    const whole = await loader.batchAt(3); // outside a region: the whole batch
    const part = await withShards(async () => {
      const b = await loader.batchAt(3);
      assert.deepEqual(currentShard(), { total: B, start: 4, end: 8 });
      assert.equal(shardWeight(), 0.5);
      return b;
    });
    assert.equal(currentShard(), null);
    try {
      assert.deepEqual(whole.indices, full.indices);
      assert.deepEqual(part.indices, full.indices.slice(4));
      assert.deepEqual(part.shard, { total: B, start: 4, end: 8 });
      assert.deepEqual(Array.from(part.images!.dataSync()), Array.from(full.images!.slice([4], [4]).dataSync()));
      assert.deepEqual(Array.from(part.labels!.dataSync()), Array.from(full.labels!.dataSync()).slice(4));
    } finally {
      [full, whole, part].forEach(disposeBatch);
    }
  });

  it('drop path, MAE masks and iBOT masks are the one-process draws of these rows (crop-major blocks for 2B)', async () => {
    const rng = { fork: (l: string): Rng => Rng.derive(7, 'step', 2, l) }; // fresh streams for each draw
    const x = tf.ones([2 * B, 3, 4]); // 2 crops × B images, crop-major
    setParallelContext(null);
    const fullMask = dropPath(x, 0.5, true, rng.fork('dp')).dataSync();
    const fullPlan = randomMasking(rng.fork('mask'), B, 16, 0.75);
    const fullIbot = ibotMasks(rng.fork('ibot'), 2 * B, 4, 4);
    setParallelContext({ rank: 1, size: 2, collective: new Collective(allocateShared(2, 64), 1) });
    const loader = new Loader(syntheticDataset(1, 32, 8), { batchSize: B, seed: 5, prefetch: 0 });
    await withShards(async () => {
      disposeBatch(await loader.batchAt(0)); // sets the current shard: rows [4, 8) of 8
      const xs = tf.ones([2 * 4, 3, 4]);
      const mine = dropPath(xs, 0.5, true, rng.fork('dp')).dataSync();
      const rows = [4, 5, 6, 7, 12, 13, 14, 15];
      const expect: number[] = [];
      for (const r of rows) expect.push(...Array.from(fullMask.subarray(r * 12, (r + 1) * 12)));
      assert.deepEqual(Array.from(mine), expect);
      const plan = shardedPlan(4, (n) => randomMasking(rng.fork('mask'), n, 16, 0.75));
      assert.deepEqual(Array.from(plan.idsShuffle), Array.from(fullPlan.idsShuffle.subarray(4 * 16, 8 * 16)));
      assert.deepEqual(Array.from(plan.mask), Array.from(fullPlan.mask.subarray(4 * 16, 8 * 16)));
      const sr = shardRowsOf(8, 'iBOT masks')!;
      assert.deepEqual(sr, { total: 16, rows });
      const m = selectIbotMasks(ibotMasks(rng.fork('ibot'), sr.total, 4, 4), sr.rows);
      assert.equal(m.n, 8);
      assert.deepEqual(Array.from(m.mask), rows.flatMap((r) => Array.from(fullIbot.mask.subarray(r * 16, (r + 1) * 16))));
      assert.deepEqual(m.counts, rows.map((r) => fullIbot.counts[r]));
      assert.throws(() => shardRowsOf(6, 'a draw'), /a draw: a batch dimension of 6 rows is not a multiple of this worker's 4 rows/);
      tf.dispose(xs);
    });
    tf.dispose(x);
  });

  it("LoRA dropout (a linear site's [samples·rows, D] input) is the one-process mask of this worker's samples", async () => {
    // notebook 10's PYRA runs (LoRA dropout 0.1) used to draw a mask per worker: the numbers depended on the worker count
    const rng = { fork: (l: string): Rng => Rng.derive(7, 'step', 3, l) };
    const T = 5; // tokens per sample
    const D = 6;
    const x = tf.ones([B * T, D]);
    const x2 = tf.ones([2 * B * T, D]); // 2 crops × B images, crop-major, T rows each
    setParallelContext(null);
    const full = dropout(x, 0.3, true, rng.fork('do'), B).dataSync();
    assert.deepEqual(Array.from(full), Array.from(dropout(x, 0.3, true, rng.fork('do')).dataSync()), 'one process: samples does not change the draw');
    const full2 = dropout(x2, 0.3, true, rng.fork('do2'), 2 * B).dataSync();
    setParallelContext({ rank: 1, size: 2, collective: new Collective(allocateShared(2, 64), 1) });
    const loader = new Loader(syntheticDataset(1, 32, 8), { batchSize: B, seed: 5, prefetch: 0 });
    await withShards(async () => {
      disposeBatch(await loader.batchAt(0)); // rows [4, 8) of 8
      const xs = tf.ones([4 * T, D]);
      const mine = dropout(xs, 0.3, true, rng.fork('do'), 4).dataSync();
      assert.deepEqual(Array.from(mine), Array.from(full.subarray(4 * T * D, 8 * T * D)));
      const xs2 = tf.ones([8 * T, D]);
      const mine2 = dropout(xs2, 0.3, true, rng.fork('do2'), 8).dataSync();
      const expect = [4, 5, 6, 7, 12, 13, 14, 15].flatMap((r) => Array.from(full2.subarray(r * T * D, (r + 1) * T * D)));
      assert.deepEqual(Array.from(mine2), expect);
      // without `samples` a worker cannot place its rows: its own seeded mask (documented), not the one-process one
      const own = dropout(xs, 0.3, true, rng.fork('do')).dataSync();
      assert.notDeepEqual(Array.from(own), Array.from(mine));
      const bad = tf.ones([7, D]);
      assert.throws(() => dropout(bad, 0.3, true, rng.fork('do'), 7), /dropout: a batch dimension of 7 rows is not a multiple of this worker's 4 rows/);
      tf.dispose([xs, xs2, bad]);
    });
    tf.dispose([x, x2]);
  });
});
