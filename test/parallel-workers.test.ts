/**
 * Worker pools for real (2 worker threads, each with its own wasm backend): collectives, failure behaviour (an error's
 * message and stack, SIGINT, wasm heap exhaustion — no thread or shared buffer left behind in any case), and
 * data-parallel training: bit-identical runs for the same worker count, resume across worker counts, and 2 workers vs
 * one process within fp32 tolerance for supervised, M-ExPLoRA and D-ExPLoRA (centering and Sinkhorn-Knopp) steps.
 *
 * Tolerances (measured on this machine, see LOG.md "workers"): the only difference between N workers and one process
 * is the order of floating-point sums over the batch (the per-sample data, masks and drop-path draws are identical),
 * so losses agree to ~1e-6 relative after a few AdamW steps; the test allows 2e-5 relative on losses and metrics and
 * 2e-5 absolute on parameters (which move by ~1e-2 per step here).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { runWorkers, startWorkers, liveWorkers, liveSharedBytes, WorkerError, WorkerInterrupt } from '../lib/workers/pool';
import { runParallel } from '../lib/workers/run';
import { microTrain, MicroArgs, MicroResult } from './fixtures/parallel-train';

const JOBS = path.join(__dirname, 'fixtures', 'parallel-jobs.ts');
const TRAIN = path.join(__dirname, 'fixtures', 'parallel-train.ts');

function assertClean(): void {
  assert.equal(liveWorkers(), 0, 'worker threads still alive');
  assert.equal(liveSharedBytes(), 0, 'shared memory still held');
}

function close(a: number, b: number, rel: number, what: string): void {
  assert.ok(Math.abs(a - b) <= rel * Math.max(1, Math.abs(a), Math.abs(b)), `${what}: ${a} vs ${b} (rel tol ${rel})`);
}

function closeRuns(one: MicroResult, many: MicroResult, what: string, rel = 2e-5): void {
  assert.equal(one.rows.length, many.rows.length);
  one.rows.forEach((r, i) => {
    const m = many.rows[i];
    assert.equal(r.step, m.step);
    close(r.loss, m.loss, rel, `${what} loss at step ${r.step}`);
    for (const k of Object.keys(r.metrics)) close(r.metrics[k], m.metrics[k], rel, `${what} ${k} at step ${r.step}`);
  });
  for (const k of Object.keys(one.sample)) {
    one.sample[k].forEach((v, j) => assert.ok(Math.abs(v - many.sample[k][j]) <= 2e-5, `${what} ${k}[${j}]: ${v} vs ${many.sample[k][j]}`));
  }
}

describe('worker pools', function () {
  this.timeout(300000);
  afterEach(assertClean);

  it('collectives: rank-order all-reduce and all-gather through chunks smaller than the data', async () => {
    const r = await runWorkers<{ sum: number[]; gathered: number[][]; backend: string; heapGuard: boolean; rank: number }>(
      { module: JOBS, export: 'collectives', args: { n: 3000 } },
      { workers: 2, sharedFloats: 1024 },
    );
    assert.deepEqual(r.map((x) => x.rank), [0, 1]);
    const f = Math.fround;
    const expect = (i: number): number => f(f(0.1 + i * 1e-3) + f(0.2 + i * 1e-3));
    for (const x of r) {
      assert.equal(x.backend, 'wasm');
      assert.deepEqual(x.sum, [0, 1, 2, 3, 2998, 2999].map(expect));
      assert.deepEqual(x.gathered, [[0], [10, 11]]);
    }
  });

  it("a worker's error surfaces with its message and its own stack; the others stop", async () => {
    const t0 = Date.now();
    await assert.rejects(
      runWorkers({ module: JOBS, export: 'failAt', args: { rank: 1, step: 3, message: 'boom' } }, { workers: 2 }),
      (e: unknown) => {
        assert.ok(e instanceof WorkerError);
        assert.equal(e.message, '[worker 1 of 2] boom (at step 3)');
        assert.equal(e.rank, 1);
        assert.equal(e.workerName, 'TypeError');
        assert.match(e.stack!, /^WorkerError \(TypeError\): \[worker 1 of 2\] boom/);
        assert.match(e.stack!, /at failAt \(.*parallel-jobs\.ts:\d+:\d+\)/);
        return true;
      },
    );
    assert.ok(Date.now() - t0 < 120000);
  });

  it('SIGINT stops every worker (they were busy or waiting in a barrier) and rejects with WorkerInterrupt', async () => {
    const keepAlive = (): void => undefined; // mocha's process must survive the signal: a second listener
    process.on('SIGINT', keepAlive);
    try {
      let started = 0;
      const run = startWorkers({ module: JOBS, export: 'forever', args: {} }, { workers: 2, onProgress: (_r, p) => (started = Math.max(started, p.done)) });
      while (started < 3) await new Promise((r) => setTimeout(r, 50));
      assert.equal(liveWorkers(), 2);
      process.kill(process.pid, 'SIGINT');
      await assert.rejects(run.result, (e: unknown) => e instanceof WorkerInterrupt && /interrupted \(SIGINT\): stopped 2 workers/.test(e.message));
      assert.equal(process.listeners('SIGINT').includes(keepAlive), true);
      assert.equal(process.listenerCount('SIGINT'), 1, 'the pool removed its SIGINT handler');
    } finally {
      process.removeListener('SIGINT', keepAlive);
    }
  });

  it('a worker whose wasm heap cannot grow reports the step and how much it asked for', async () => {
    await assert.rejects(runWorkers({ module: JOBS, export: 'exhaustHeap', args: { rank: 1, mib: 512 } }, { workers: 2 }), (e: unknown) => {
      assert.ok(e instanceof WorkerError && e.oom, String(e));
      assert.equal(e.oom!.requested, 512 * 2 ** 20);
      assert.ok(e.oom!.heap >= 3 * 2 ** 30 && e.oom!.heap < 4 * 2 ** 30, `heap ${e.oom!.heap}`);
      assert.match(e.message, /^\[worker 1 of 2\] wasm heap out of memory at step \d+: an allocation of 512\.0 MiB did not fit \(heap \d+\.\d MiB, wasm32 limit 4096 MiB\)/);
      assert.equal(e.oom!.during, e.message.match(/at (step \d+)/)![1]);
      return true;
    });
  });

  it('messages both ways (the evaluation servers use this)', async () => {
    const got: Array<[number, unknown]> = [];
    const run = startWorkers<number>({ module: JOBS, export: 'echo', args: {} }, { workers: 2, onMessage: (r, p) => got.push([r, p]) });
    run.send(0, { x: 2 });
    run.send(1, { x: 3 });
    run.send(0, null);
    run.send(1, null);
    assert.deepEqual(await run.result, [1, 1]);
    assert.deepEqual(got.sort((a, b) => a[0] - b[0]), [[0, { y: 2 }], [1, { y: 6 }]]);
  });
});

describe('data-parallel training on 2 workers', function () {
  this.timeout(600000);
  afterEach(assertClean);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-workers-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const base: MicroArgs = { objective: 'supervised', seed: 11, steps: 4, batch: 8 };
  let full: MicroResult[] = [];

  it('same seed and worker count ⇒ bit-identical metrics and checkpoints, also through a resume', async () => {
    const fullFile = path.join(dir, 'full.safetensors');
    const halfFile = path.join(dir, 'half.safetensors');
    const resumedFile = path.join(dir, 'resumed.safetensors');
    full = await runParallel<MicroResult>({ module: TRAIN, export: 'microTrain', args: { ...base, save: fullFile } }, { workers: 2 });
    assert.equal(full[0].digest, full[1].digest, 'the two replicas differ');
    assert.deepEqual(full.map((r) => r.leaked), [0, 0]);
    await runParallel<MicroResult>({ module: TRAIN, export: 'microTrain', args: { ...base, end: 2, save: halfFile } }, { workers: 2 });
    const resumed = await runParallel<MicroResult>({ module: TRAIN, export: 'microTrain', args: { ...base, start: 2, load: halfFile, save: resumedFile } }, { workers: 2 });
    assert.equal(resumed[0].digest, full[0].digest, 'resumed on 2 workers ≠ uninterrupted on 2 workers');
    assert.deepEqual(resumed[0].rows, full[0].rows.slice(2));
    assert.ok(fs.readFileSync(resumedFile).equals(fs.readFileSync(fullFile)), 'checkpoint files differ');
  });

  it('N workers vs one process: same numbers within fp32 tolerance; a 2-worker checkpoint resumes in one process', async () => {
    const one = await microTrain(base);
    closeRuns(one, full[0], 'supervised');
    assert.notEqual(one.digest, full[0].digest); // not bit-identical (sum order), only close
    const resumedHere = await microTrain({ ...base, start: 2, load: path.join(dir, 'half.safetensors') });
    closeRuns({ ...one, rows: one.rows.slice(2) }, resumedHere, 'resumed in one process');
  });

  it('M-ExPLoRA and D-ExPLoRA (centering, Sinkhorn-Knopp): 2 workers = one process within tolerance', async () => {
    const list: MicroArgs[] = [
      { objective: 'mae', seed: 5, steps: 3, batch: 8 },
      { objective: 'dino', seed: 5, steps: 3, batch: 8, targets: 'centering' },
      { objective: 'dino', seed: 5, steps: 3, batch: 8, targets: 'sinkhorn' },
    ];
    const par = await runParallel<MicroResult[]>({ module: TRAIN, export: 'microTrainMany', args: list }, { workers: 2 });
    list.forEach((a, i) => assert.equal(par[0][i].digest, par[1][i].digest, `${a.objective} replicas differ`));
    for (let i = 0; i < list.length; i++) {
      const one = await microTrain(list[i]);
      closeRuns(one, par[0][i], `${list[i].objective}${list[i].targets ? ` (${list[i].targets})` : ''}`, 1e-4);
    }
  });

  it('an error in the loss of one worker at step 2 fails the run with that message and step', async () => {
    await assert.rejects(
      runParallel({ module: TRAIN, export: 'microTrain', args: { ...base, failAt: 2, failRank: 1 } }, { workers: 2 }),
      (e: unknown) => e instanceof WorkerError && e.message === '[worker 1 of 2] injected failure in the loss at step 2' && /parallel-train\.ts/.test(e.stack!),
    );
  });
});
