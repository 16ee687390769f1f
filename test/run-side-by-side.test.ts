/**
 * `runRecipesSideBySide` / `runRecipeInWorkers`: independent recipes at once, one worker thread each.
 *
 * What must hold: a recipe on one worker thread computes exactly what it computes in the main thread (every loss,
 * metric and evaluation bit for bit: the same loop on one rank, no cross-worker sum); results come back in the given
 * order whatever the start order and finishing order; a bad start order and a failing run name the problem; no worker
 * thread or tensor outlives the runs.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { init } from '../lib/backend';
import { liveWorkers } from '../lib/workers/pool';
import { runRecipe, RunResult } from '../recipes/run';
import { runRecipesSideBySide } from '../recipes/run-side-by-side';
import { Recipe, recipe } from '../recipes/recipe';

const EMB = { kind: 'embedded', domain: 'satellite-rgb', seed: 3, size: 16, satellitePerClass: 5, naturalPerClass: 5 } as const;

function tinyLora(name: string, seed: number, lr: number): Recipe {
  return recipe({
    name,
    seed,
    model: { kind: 'vit', preset: 'vit_tiny_patch16_224', overrides: { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2, numClasses: 10, dropPathRate: 0.1 } },
    adapters: { kind: 'lora', rank: 4, alpha: 1, dropout: 0, init: 'kaiming', targets: [{ sites: ['attn.qkv'], exclude: [], layers: null, kind: 'qkv', slices: ['q', 'v'], rank: null, alpha: null, scaling: null, dropout: null, init: null }], train: ['head.*'] },
    objective: { kind: 'supervised', labelSmoothing: 0.1 },
    data: { source: EMB, train: { splits: [{ split: 'train', subset: null }], transform: { name: 'supervised', size: 16, rrcScale: [0.5, 1], hflip: true, stats: 'imagenet' } } },
    batch: 8,
    steps: 5,
    lr,
    schedule: { kind: 'cosine', warmup: { steps: 2 }, minLr: 0, warmupStart: 0 },
    eval: { kind: 'accuracy', test: { splits: [{ split: 'test', subset: null }], transform: { name: 'normalize', stats: 'imagenet' } }, at: { every: 5 }, batch: 4 },
  });
}

/** Every logged number of a run, without wall-clock fields. */
function numbers(r: RunResult): unknown {
  const strip = (row: Record<string, unknown>) => Object.fromEntries(Object.entries(row).filter(([k]) => !/time|seconds|perSec|Rate/i.test(k)));
  return { steps: r.steps.map(strip), evals: r.evals.map(strip), checks: r.checks.map((c) => [c.check, c.value, c.ok]) };
}

describe('runRecipesSideBySide (independent recipes, one worker thread each)', function () {
  this.timeout(180_000);
  let root: string;
  before(async () => {
    await init();
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-side-'));
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('gives every run the numbers it gets alone in the main thread, in the given order', async () => {
    const rs = [tinyLora('side-a', 1, 1e-2), tinyLora('side-b', 2, 3e-2), tinyLora('side-c', 3, 5e-3)];
    const alone: RunResult[] = [];
    for (const r of rs) alone.push(await runRecipe(r, { root, workers: 1 }));
    const before = tf.memory().numTensors;
    const finished: number[] = [];
    const side = await runRecipesSideBySide(rs, { root, lanes: 2, startOrder: [2, 0, 1], onRun: (i) => void finished.push(i) });
    assert.equal(tf.memory().numTensors, before, 'no tensor left in the main thread');
    assert.equal(liveWorkers(), 0, 'every worker thread stopped');
    assert.deepEqual([...finished].sort(), [0, 1, 2]);
    assert.deepEqual(side.map((r) => r.name), ['side-a', 'side-b', 'side-c']);
    for (let i = 0; i < rs.length; i++) {
      assert.notEqual(side[i].dir, alone[i].dir, 'a run folder of its own');
      assert.ok(side[i].steps.length === 5 && side[i].evals.length >= 1, `run ${i} logged its steps and evaluation`);
      assert.deepEqual(numbers(side[i]), numbers(alone[i]), `run ${i}: identical numbers`);
    }
  });

  it('rejects a start order that is not a permutation, before anything runs', async () => {
    const rs = [tinyLora('side-x', 1, 1e-2), tinyLora('side-y', 2, 1e-2)];
    const n = fs.readdirSync(root).length;
    await assert.rejects(runRecipesSideBySide(rs, { root, lanes: 2, startOrder: [0, 0] }), /startOrder must be a permutation of 0\.\.1, got \[0,0\]/);
    assert.equal(fs.readdirSync(root).length, n, 'no run folder made');
  });

  it('names the failing run and records it failed; the other lane finishes', async () => {
    const bad = recipe({ ...tinyLora('side-bad', 4, 1e-2), weights: { kind: 'checkpoint', path: path.join(root, 'missing.safetensors'), head: 'keep', stripPrefixes: [], ignore: null, allowMissing: null } } as Recipe);
    const good = tinyLora('side-good', 5, 1e-2);
    await assert.rejects(runRecipesSideBySide([good, bad], { root, lanes: 2 }), /run 1 \(side-bad, seed 4\) failed: .*missing\.safetensors/);
    assert.equal(liveWorkers(), 0, 'every worker thread stopped');
    const dirs = fs.readdirSync(root);
    const goodDir = dirs.find((d) => d.startsWith('side-good-'));
    assert.ok(goodDir, 'the good run has its folder');
    assert.equal(JSON.parse(fs.readFileSync(path.join(root, goodDir!, 'run.json'), 'utf8')).status, 'done');
    const badDir = dirs.find((d) => d.startsWith('side-bad-'));
    assert.ok(badDir, 'the failed run has its folder');
    assert.equal(JSON.parse(fs.readFileSync(path.join(root, badDir!, 'run.json'), 'utf8')).status, 'failed');
  });
});
