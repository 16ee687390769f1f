import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import {
  finetuneNotebookScales, finetuneRuns, checkFinetunePaperFiles, FINETUNE_PAPER_PATHS, finetuneClaims, finetuneTable,
  finetuneCurves, finetuneForest, finetuneFindings, stage1EncoderFile, FinetuneStage1, FinetuneStage2,
  runFinetuneStage1, runFinetuneStage2, FINETUNE_METHODS,
} from '../recipes/explora-finetune-notebook';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EXPLORA_FINETUNE } from '../recipes/finetune';
import { RECIPES } from '../recipes/presets';
import { prepareRecipe } from '../recipes/session';
import type { RunResult } from '../recipes/run';
import { readSafetensors } from '../lib/io/safetensors';
import { assetFile } from '../recipes/model';
import { SOURCE_MAE_ASSET } from '../recipes/source-mae';

/** A finished run with test accuracies `accs` at steps 1..n (fine-tuning) or a probe accuracy. */
function run(name: string, seed: number, accs: number[], o: { probe?: number; steps?: number } = {}): RunResult {
  return {
    dir: `/runs/${name}-s${seed}`, name, recipe: { seed } as RunResult['recipe'], status: 'done',
    steps: accs.map((_, i) => ({ step: i, loss: 2 - i / 10 })),
    evals: o.probe !== undefined ? [{ step: o.steps ?? 0, probeTest: o.probe, probeVal: o.probe, probeBest: 'n1', knn: 0.1 }] : accs.map((a, i) => ({ step: i + 1, testAcc: a })),
    checks: [], summary: { steps: o.steps ?? accs.length, trainable: 100 }, session: null,
  };
}

describe('notebook 04 helpers (recipes/explora-finetune-notebook.ts)', () => {
  const scales = finetuneNotebookScales();

  it("stage 2 keeps the paper's protocol (LoRA r8 α 1 on Q,V, head σ 2e-5, drop-path 0.2, label smoothing 0.1, wd 0, AdamW, cosine to 1e-6); only length, batch and lr are scaled", () => {
    for (const k of ['ci', 'smoke'] as const) {
      const runs = finetuneRuns(scales[k], 1, '/x/encoder-step9.safetensors');
      const ft = runs.sourceLora;
      assert.deepEqual(ft.adapters, { kind: 'finetune-lora', rank: 8, alpha: 1, slices: ['q', 'v'], headInitStd: EXPLORA_FINETUNE.headInitStd });
      assert.deepEqual(ft.objective, { kind: 'supervised', labelSmoothing: 0.1 });
      const m = ft.model as { overrides: Record<string, unknown> };
      assert.equal(m.overrides.dropPathRate, 0.2);
      assert.equal(m.overrides.pool, 'avg');
      assert.equal(ft.weightDecay, 0);
      assert.equal(ft.schedule.kind === 'cosine' && ft.schedule.minLr, 1e-6);
      assert.deepEqual(ft.optimizer, { kind: 'adamw', betas: [0.9, 0.999], eps: 1e-8, layerDecay: 1, patchEmbedLrMult: 1 });
      assert.equal(ft.seed, 1);
      // the three runs differ only in name, weights, adapters (full) and the full run's lr / weight decay
      assert.equal(runs.exploraLora.weights.kind === 'checkpoint' && runs.exploraLora.weights.path, '/x/encoder-step9.safetensors');
      assert.deepEqual({ ...runs.exploraLora, name: '', weights: null }, { ...ft, name: '', weights: null });
      assert.equal(runs.sourceFull.adapters.kind, 'full');
      assert.deepEqual({ ...runs.sourceFull, name: '', adapters: null, lr: null, weightDecay: null }, { ...ft, name: '', adapters: null, lr: null, weightDecay: null });
    }
    assert.equal(scales.smoke.explora!.adapters.kind === 'explora' && scales.smoke.explora!.adapters.notation, 'M-ExPLoRA-[L]-r8');
    assert.deepEqual(scales.smoke.seeds, [0, 1, 2]);
  });

  it("paper scale: RECIPES.finetune_lora_r8 unchanged but for the weights (released ExPLoRA encoder / DINOv2 through timm) and the fMoW CSV paths", () => {
    const p = scales.paper;
    const runs = finetuneRuns(p, 0, FINETUNE_PAPER_PATHS.exploraEncoder);
    const preset = RECIPES.finetune_lora_r8;
    const strip = (r: typeof preset) => ({ ...r, name: '', weights: null, data: { ...r.data, source: null } });
    assert.deepEqual(strip(runs.exploraLora), strip(preset));
    assert.deepEqual(strip(runs.sourceLora), strip(preset));
    assert.deepEqual(runs.exploraLora.weights, { ...preset.weights, path: FINETUNE_PAPER_PATHS.exploraEncoder });
    assert.deepEqual(runs.sourceLora.weights, { kind: 'timm', path: FINETUNE_PAPER_PATHS.dinov2, head: 'reinit' });
    assert.deepEqual(runs.sourceLora.data.source, { kind: 'fmow-rgb', csv: { train: FINETUNE_PAPER_PATHS.fmowTrain, val: FINETUNE_PAPER_PATHS.fmowVal } });
    assert.equal(p.explora, null);
    assert.equal(p.exploraEncoder, FINETUNE_PAPER_PATHS.exploraEncoder);
  });

  it('paper scale stops naming every missing weight / CSV file, and passes when all exist', () => {
    assert.throws(() => checkFinetunePaperFiles(FINETUNE_PAPER_PATHS, (f) => f.endsWith('.csv')), (e: Error) =>
      e.message.includes(FINETUNE_PAPER_PATHS.exploraEncoder) && e.message.includes(FINETUNE_PAPER_PATHS.dinov2) && !e.message.includes('fmowTrain'));
    assert.throws(() => checkFinetunePaperFiles(FINETUNE_PAPER_PATHS, () => false), /fmowTrain: .*fmowVal: /);
    checkFinetunePaperFiles(FINETUNE_PAPER_PATHS, () => true);
  });

  it("stage 2 on the source: the asset's encoder tensors are loaded exactly, its decoder and final norm skipped, head and fc_norm new", async () => {
    const r = finetuneRuns(scales.ci, 0, 'unused').sourceLora;
    (await prepareRecipe(r)).dispose(); // first build: the kit's one-time caches (sin-cos tables, data) stay alive
    const live = tf.memory().numTensors;
    const s = await prepareRecipe(r);
    try {
      const file = readSafetensors(assetFile(SOURCE_MAE_ASSET));
      const want = file.tensors.get('blocks.3.attn.qkv.weight')!;
      const got = s.encoder!.params.blocks[3].attn.qkv.weight; // kit layout [in, out] = the file's [out, in] transposed
      const gap = tf.tidy(() => tf.max(tf.abs(tf.sub(got, tf.transpose(tf.tensor(want.data as Float32Array, want.shape))))).dataSync()[0]);
      assert.equal(gap, 0);
      assert.ok(s.origin.missing.every((k) => /^(fc_norm|head)\./.test(k)), s.origin.missing.join(', '));
      assert.equal(s.encoder!.params.norm, undefined, 'no final norm with pool avg (timm deletes it)');
      assert.equal(s.summary.trainable, 2 * 2 * 8 * 96 * 6 + 96 * 10 + 10, 'LoRA r8 on Q,V of 6 blocks + the head');
      assert.ok(tf.tidy(() => tf.max(tf.abs(s.encoder!.params.head!.weight)).dataSync()[0]) < 1e-4, 'a new head (σ 2e-5)');
    } finally {
      s.dispose();
    }
    assert.equal(tf.memory().numTensors, live);
  });

  it('table, claims (paired over seeds, verdict by the interval), curves and forest from run results', () => {
    const S = { ...scales.smoke, seeds: [0, 1, 2], fullSeeds: [0, 1, 2] };
    const st1: FinetuneStage1 = {
      explora: [run('nb04-explora', 0, [], { probe: 0.64, steps: 108 })], exploraProbe: [run('nb04-explora', 0, [], { probe: 0.64, steps: 108 })],
      sourceProbe: run('nb04-source-probe', 0, [], { probe: 0.63 }), encoders: {},
    };
    assert.equal(stage1EncoderFile(st1.explora[0]), '/runs/nb04-explora-s0/checkpoints/encoder-step108.safetensors');
    const st2: FinetuneStage2 = {
      exploraLora: [0.5, 0.52, 0.55].map((a, s) => run('e', s, [0.3, a])),
      sourceLora: [0.45, 0.46, 0.5].map((a, s) => run('s', s, [0.3, a])),
      sourceFull: [0.5, 0.52, 0.55].map((a, s) => run('f', s, [0.6, a])),
    };
    const claims = finetuneClaims(S, st2, 'test');
    assert.deepEqual(claims.map((c) => c.ours.perSeed.map((x) => +x.toFixed(6))), [[5, 6, 5], [0, 0, 0], [-5, -6, -5]]);
    assert.deepEqual(claims.map((c) => c.verdict), ['reproduced', 'inconclusive', 'not reproduced']);
    assert.deepEqual(claims.map((c) => c.paperValue), [1.2, 1.5, 0.3]);
    const table = finetuneTable(st1, st2, { nTest: 200, nProbeTest: 200 });
    assert.deepEqual(table.map((r) => r['paper top-1']), [77.78, 78.08, 79.28, 69, 77.48]);
    assert.equal(table[2]['ours top-1 (final, mean)'], 52.3);
    assert.equal(table[0]['best epoch (mean)'], 60, 'the paper logs the best epoch: full fine-tuning peaked at its first evaluation');
    assert.match(String(table[3]['95 % interval']), /Wilson, 200 test images/);
    const curves = finetuneCurves(st1, st2);
    const y = curves.accuracy.data[0].y as number[];
    assert.equal(y[0], 30);
    assert.ok(Math.abs(y[1] - 157 / 3) < 1e-9, String(y));
    assert.equal(finetuneForest(claims).data.length, 2);
    assert.match(finetuneFindings(claims, table, 'test'), /ExPLoRA \+ LoRA-r8 > source \+ LoRA-r8.*\*\*reproduced\*\*/);
    // full fine-tuning on fewer seeds (ci: 0 and 1; smoke: every seed): its claims pair over those seeds only
    assert.deepEqual(scales.ci.fullSeeds, [0, 1]);
    assert.equal(scales.smoke.fullSeeds, undefined);
    const S2 = { ...S, fullSeeds: [0, 2] };
    const st2b: FinetuneStage2 = { ...st2, sourceFull: [st2.sourceFull[0], st2.sourceFull[2]] };
    const c2 = finetuneClaims(S2, st2b, 'test');
    assert.deepEqual(c2.map((c) => c.seeds), [[0, 1, 2], [0, 2], [0, 2]]);
    assert.deepEqual(c2[2].ours.perSeed.map((x) => +x.toFixed(6)), [-5, -5]);
    assert.throws(() => finetuneClaims(S2, st2, 'test'), /3 full fine-tuning runs for fullSeeds 0,2/);
    assert.throws(() => finetuneClaims({ ...S, fullSeeds: [5] }, st2b, 'test'), /fullSeeds \[5\]: must be a non-empty subset of seeds \[0,1,2\]/);
    assert.match(String(finetuneTable(st1, st2b, { nTest: 200, nProbeTest: 200 })[0]['95 % interval']), /\(t, 2 seeds\)/);
  });
  it('stage 2 side by side (2 lanes, one worker thread a run) gives every run the numbers of one lane, in seed order', async function () {
    this.timeout(300_000);
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-nb04-'));
    try {
      const S = { ...scales.ci, seeds: [0, 1], fullSeeds: [1] };
      const st1 = await runFinetuneStage1(S, { root, workers: 1 });
      const one = await runFinetuneStage2(S, st1, { root, lanes: 1 });
      const live = tf.memory().numTensors;
      const two = await runFinetuneStage2(S, st1, { root, lanes: 2 });
      assert.equal(tf.memory().numTensors, live, 'no tensor left in the main thread');
      const nums = (r: RunResult) => ({ seed: r.recipe.seed, name: r.name, loss: r.steps.map((x) => x.loss), acc: r.evals.map((e) => e.testAcc) });
      for (const m of FINETUNE_METHODS) {
        assert.equal(two[m].length, m === 'sourceFull' ? 1 : 2);
        assert.deepEqual(two[m].map(nums), one[m].map(nums), `${m}: the same runs, losses and accuracies`);
      }
      assert.deepEqual(two.sourceFull.map((r) => r.recipe.seed), [1]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
