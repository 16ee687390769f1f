/**
 * Notebook 03's D-ExPLoRA arms as recipes (recipes/explora-dino-arms.ts): exact trainable counts per arm (counted by
 * hand from the ci model's shapes), a run folder per arm through `runRecipe`, and a stopped arm resumed bit for bit.
 */
import { strict as assert } from 'assert';
import { existsSync, readFileSync } from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { init } from '../lib/backend';
import { readSafetensors } from '../lib/io/safetensors';
import { dinoArmRecipe, dinoArmRecipes } from '../recipes/explora-dino-arms';
import { DINO_MINI, DINO_MINI_CI } from '../recipes/miniature-presets';
import { DinoMiniConfig, MiniMethod } from '../recipes/miniature';
import { prepareRecipe } from '../recipes/session';
import { runRecipe, resumeRun } from '../recipes/run';
import { planRun } from '../recipes/plan';
import { useTmpCache } from './util';

/** The ci miniature with every arm the notebook compares, 2 steps of batch 8 on 64 images, a tiny probe. */
const CI: DinoMiniConfig = {
  ...DINO_MINI_CI,
  data: { ...DINO_MINI_CI.data, pretrainImages: 64, evalImages: { train: 40, val: 20, test: 20 } },
  pretrain: { ...DINO_MINI_CI.pretrain, steps: 2 },
  methods: [
    { name: 'source', kind: 'source' },
    { name: 'explora', kind: 'recipe', unfrozen: ['L'], rank: 4 },
    { name: 'unfreeze', kind: 'recipe', unfrozen: ['L'], rank: null },
    { name: 'explora-[1,L-1,L]', kind: 'recipe', unfrozen: [1, 'L-1', 'L'], rank: 4 },
    { name: 'scratch', kind: 'scratch' },
  ],
};
const PROBE = { nLastBlocks: [1], avgpool: [false], lrs: [1e-2], batchSize: 20, epochs: 1, itersPerEpoch: 2, momentum: 0.9, weightDecay: 0, initStd: 0.01 };

describe('notebook 03 arms as recipes (recipes/explora-dino-arms.ts)', function () {
  this.timeout(300_000);
  const tmp = useTmpCache('vitpeft-nb03-arms-');
  before(async () => {
    await init();
  });

  it('every trained arm is a recipe; the source is not one; a non-default satellite rendering is refused by name', () => {
    const rs = dinoArmRecipes(CI, 1, { probe: PROBE });
    assert.deepEqual(Object.keys(rs), ['explora', 'unfreeze', 'explora-[1,L-1,L]', 'scratch']);
    assert.equal(rs.explora.adapters.kind === 'explora' && rs.explora.adapters.notation, 'D-ExPLoRA-[L]-r4');
    assert.equal(rs.unfreeze.adapters.kind === 'explora' && rs.unfreeze.adapters.notation, 'D-ExPLoRA-[L]');
    assert.deepEqual([rs.explora.seed, rs.explora.steps, rs.explora.epochLength, rs.explora.batch], [1, 2, 8, 8]);
    assert.equal(rs.scratch.weights.kind, 'init');
    assert.equal(rs.explora.weights.kind === 'checkpoint' && rs.explora.weights.path, DINO_MINI_CI.source.checkpoint);
    assert.throws(() => dinoArmRecipe(CI, CI.methods[0], 0), /the frozen source is the step-0 evaluation/);
    const nir = { ...CI, data: { ...CI.data, embedded: { ...CI.data.embedded, satelliteRender: { composite: 'nir-false-color' } } } };
    assert.throws(() => dinoArmRecipe(nir, CI.methods[1], 0), /satelliteRender \{"composite":"nir-false-color"\} is not expressible/);
    // the smoke arms resolve and plan too (d64×4, 96 steps of 32 on the 600 training images: 18 per epoch)
    const smoke = dinoArmRecipes(DINO_MINI, 0);
    assert.deepEqual([smoke.explora.steps, smoke.explora.epochLength], [96, 18]);
    assert.equal(planRun(smoke.scratch, 'wasm').trainable - planRun(smoke.scratch, 'wasm').headTrainable, 214_144);
  });

  it('exact trainable encoder counts per arm (ci model: D 32, 2 blocks, patch 8, 32 px, LayerScale)', async () => {
    // block: qkv 3D²+3D, proj D²+D, fc1 4D²+4D, fc2 4D²+D, 2 LNs 4D, 2 LayerScales 2D = 12D² + 15D
    const D = 32;
    const block = 12 * D * D + 15 * D;
    const lora = (r: number): number => 2 * (r * D + D * r); // Q and V of one block
    const normsCls = (frozenBlocks: number): number => frozenBlocks * 4 * D + 2 * D + D; // their LNs, final LN, CLS
    const embed = 3 * 8 * 8 * D + D + 17 * D + D + D; // patch conv + bias, pos (16 + CLS), CLS, mask token
    const want: Record<string, number> = {
      explora: block + lora(4) + normsCls(1),
      unfreeze: block + normsCls(1),
      'explora-[1,L-1,L]': 2 * block + normsCls(0), // depth 2: blocks 1, L-1 = 1, L — both, no LoRA left
      scratch: 2 * block + 2 * D + embed,
    };
    for (const [name, r] of Object.entries(dinoArmRecipes(CI, 0, { probe: PROBE }))) {
      const s = await prepareRecipe(r);
      try {
        assert.equal(s.summary.trainableEncoder, want[name], name);
      } finally {
        s.dispose();
      }
    }
  });

  it('each arm leaves a run folder (recipe, metrics, step-0 and final evaluations); a stopped arm resumes bit for bit', async () => {
    const live = tf.memory().numTensors;
    const root = path.join(tmp(), 'runs');
    const rs = dinoArmRecipes(CI, 0, { probe: PROBE, checkpointEvery: 1 });
    for (const name of ['unfreeze', 'scratch']) {
      const run = await runRecipe(rs[name], { root });
      assert.equal(run.status, 'done');
      for (const f of ['recipe.json', 'run.json', 'metrics.jsonl', 'environment.json']) assert.ok(existsSync(path.join(run.dir, f)), `${name}: ${f}`);
      assert.deepEqual(run.evals.map((e) => e.step), [0, 2], name);
      assert.deepEqual(JSON.parse(readFileSync(path.join(run.dir, 'recipe.json'), 'utf8')).tags, { notebook: '03-explora-dino', arm: name });
    }
    const method: MiniMethod = CI.methods[1];
    const r = dinoArmRecipe(CI, method, 0, { probe: PROBE, checkpointEvery: 1 });
    const full = await runRecipe(r, { root });
    const part = await runRecipe(r, { root, until: 1 });
    assert.equal(part.status, 'stopped');
    const done = await resumeRun(part.dir);
    assert.equal(done.status, 'done');
    const strip = (rows: readonly Record<string, unknown>[]): unknown[] => rows.map(({ time: _t, seconds: _s, ...x }) => x);
    assert.deepEqual(strip(done.steps as never), strip(full.steps as never));
    const a = readSafetensors(path.join(full.dir, 'checkpoints', 'state.safetensors'));
    const b = readSafetensors(path.join(done.dir, 'checkpoints', 'state.safetensors'));
    assert.deepEqual([...b.tensors.keys()].sort(), [...a.tensors.keys()].sort());
    for (const [k, v] of a.tensors) assert.deepEqual(Array.from(b.tensors.get(k)!.data as Float32Array), Array.from(v.data as Float32Array), k);
    assert.equal(tf.memory().numTensors, live);
  });
});
