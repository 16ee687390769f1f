/**
 * The `workstation` scale (recipes/workstation-presets.ts): the ViT-S presets of notebooks 01 / 03 / 04 resolve as
 * recipes, plan (`planRun`, shapes only), count exactly, and name sources the kit's tools make.
 */
import { strict as assert } from 'assert';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {
  DINO_MINI_WORKSTATION, MAE_MINI_WORKSTATION, SOURCE_DINO_WORKSTATION_ASSET, SOURCE_MAE_WORKSTATION_ASSET, WORKSTATION_M_EXPLORA, WORKSTATION_SOURCE_MAE, WORKSTATION_VIT_S,
} from '../recipes/workstation-presets';
import { maeNotebookSettings } from '../recipes/explora-mae-notebook';
import { exploraComparison, exploraCountRows, exploraNotebookScales } from '../recipes/explora-compare';
import { finetuneDataRows, finetuneNotebookScales, finetuneRuns } from '../recipes/explora-finetune-notebook';
import { RunPlan } from '../recipes/plan';
import type { Recipe } from '../recipes/recipe';
import { prepareRecipe } from '../recipes/session';
import { dinoArmRecipes } from '../recipes/explora-dino-arms';
import { dinoNotebookSettings, dinoSourceRows } from '../recipes/explora-dino-notebook';
import { planRun } from '../recipes/plan';
import { recipe } from '../recipes/recipe';
import { sourceDinoTag, SOURCE_DINO_WORKSTATION_SPEC } from '../tools/make-source-dino';
import { makeSourceMae, sourceMaeAssetName, SOURCE_MAE_WORKSTATION_SPEC } from '../tools/make-source-mae';
import { loadSourceMae, readSafetensorsMeta } from '../recipes/miniature';
import { MAE_MINI_SMOKE } from '../recipes/miniature-presets';
import { assetFile } from '../recipes/model';
import { readSafetensors } from '../lib/io/safetensors';
import { disposeMae, maeVariables } from '../lib/mae/mae';

const GiB = 2 ** 30;

describe('workstation scale presets (ViT-S, recipes/workstation-presets.ts)', () => {
  it('notebook 03: the settings, the source the tool makes (same model, same file), every arm resolves and plans with exact counts', () => {
    const s = dinoNotebookSettings('workstation');
    assert.equal(s.config, DINO_MINI_WORKSTATION);
    assert.match(s.describe, /^workstation: ViT d384×12, patch 8, 64 px; 600 steps of batch 64; probe 1000\/300\/1000 images/);
    assert.equal(`source-dino-${sourceDinoTag(SOURCE_DINO_WORKSTATION_SPEC)}`, SOURCE_DINO_WORKSTATION_ASSET);
    assert.deepEqual(SOURCE_DINO_WORKSTATION_SPEC.model, DINO_MINI_WORKSTATION.model, 'loadSourceDino accepts only the recorded model');
    assert.throws(() => dinoSourceRows(s), /make it with 'npx tsx tools\/make-source-dino\.ts --spec workstation'/);
    const arms = dinoArmRecipes(DINO_MINI_WORKSTATION, 0);
    assert.deepEqual(Object.keys(arms), ['explora', 'unfreeze', 'scratch', 'explora-[1,L-1,L]']);
    // ViT-S block with LayerScale: 12D² + 15D; LoRA r24 on Q,V: 2·2·24·D per block; other blocks' LNs 4D; final LN 2D; CLS D
    const D = 384;
    const block = 12 * D * D + 15 * D;
    const want = { explora: block + 11 * (4 * 24 * D + 4 * D) + 3 * D, unfreeze: block + 11 * 4 * D + 3 * D, 'explora-[1,L-1,L]': 3 * block + 9 * (4 * 24 * D + 4 * D) + 3 * D };
    assert.equal(want.explora, 2_198_784);
    for (const [name, n] of Object.entries(want)) {
      const p = planRun(arms[name], 'webgpu');
      assert.equal(p.trainable - p.headTrainable, n, name);
      assert.equal(p.steps, 600);
      assert.ok(p.plan.peakBytes < 24 * GiB, `${name}: ${(p.plan.peakBytes / GiB).toFixed(2)} GiB (one 24-GB GPU)`);
    }
    const e = planRun(arms.explora, 'webgpu');
    const sc = planRun(arms.scratch, 'webgpu');
    const half = planRun(arms.explora, 'webgpu', { microBatch: 32 });
    assert.ok(half.plan.peakBytes < e.plan.peakBytes);
    console.log(`      planned (webgpu, batch 64): D-ExPLoRA step ${(e.plan.peakBytes / GiB).toFixed(2)} GiB, ${(e.plan.flops.total / 1e12).toFixed(2)} TFLOP; micro-batch 32 ${(half.plan.peakBytes / GiB).toFixed(2)} GiB; scratch ${(sc.plan.peakBytes / GiB).toFixed(2)} GiB, ${(sc.plan.flops.total / 1e12).toFixed(2)} TFLOP; run ${(e.runFlops! / 1e15).toFixed(2)} PFLOP`);
  });

  it('notebooks 01 / 04: the ViT-S source MAE recipe and the M-ExPLoRA miniature share the model and plan', () => {
    const src = recipe(WORKSTATION_SOURCE_MAE);
    assert.equal(src.model.kind, 'mae');
    assert.deepEqual(src.model.kind === 'mae' && src.model.encoder, { ...WORKSTATION_VIT_S });
    assert.deepEqual(MAE_MINI_WORKSTATION.model.encoder, { ...WORKSTATION_VIT_S });
    assert.deepEqual(src.model.kind === 'mae' && src.model.decoder, MAE_MINI_WORKSTATION.model.decoder);
    const p = planRun(src, 'webgpu');
    assert.equal(p.steps, 6000);
    assert.ok(p.plan.peakBytes < 16 * GiB);
    // everything trains: the ViT-S/8 encoder (12 blocks of 12D² + 13D, patch 3·8·8·D + D, CLS D, final LN 2D; the sin-cos table is fixed) + the decoder
    const D = 384;
    assert.ok(p.trainable > 12 * (12 * D * D + 13 * D) + 3 * 64 * D + 4 * D, `${p.trainable}`);
    console.log(`      planned (webgpu): source MAE step (batch 128) ${(p.plan.peakBytes / GiB).toFixed(2)} GiB, ${(p.plan.flops.total / 1e12).toFixed(2)} TFLOP, run ${(p.runFlops! / 1e15).toFixed(2)} PFLOP`);
  });

  it('tools/make-source-mae.ts --spec workstation: the asset MAE_MINI_WORKSTATION names, recording its model; a 2-step file loads back through the miniature loader', async function () {
    this.timeout(600_000);
    const spec = SOURCE_MAE_WORKSTATION_SPEC;
    // the spec is WORKSTATION_SOURCE_MAE's, and its file is the one the miniature (and notebooks 01 / 04) load
    assert.equal(sourceMaeAssetName(spec), 'source-mae-d384x12-p8-64px-6000s-seed0');
    assert.equal(assetFile(sourceMaeAssetName(spec)), MAE_MINI_WORKSTATION.source.checkpoint);
    const src = recipe(WORKSTATION_SOURCE_MAE);
    assert.deepEqual(spec.train, {
      steps: 6000, batch: 128, lr: src.lr, minLr: 0, warmupSteps: 600, weightDecay: 0.05, seed: 0,
      augment: 'maePretrain(64, IMAGENET_STATS)', data: 'embedded natural train (500 per class at 64 px, 10 shape classes; labels unused)',
    });
    const { decoderRank: _, ...m } = { ...MAE_MINI_WORKSTATION.model, decoderRank: 0 };
    assert.deepEqual(spec.model, m, 'loadSourceMae accepts only the recorded model');
    assert.deepEqual(spec.data, { seed: 0, size: 64, satellitePerClass: 500, naturalPerClass: 500 });
    // 2 steps of batch 4 on a small embedded set (the model and file format are the workstation's), into a temp folder
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ws-source-mae-'));
    try {
      const out = path.join(dir, `${sourceMaeAssetName(spec)}.safetensors`);
      const small = { ...spec, data: { ...spec.data, satellitePerClass: 10, naturalPerClass: 10 } };
      const before = tf.memory().numTensors;
      const made = await makeSourceMae({ spec: small, knnImages: 8, steps: 2, batch: 4, lr: spec.train.lr, seed: 0, out, logEvery: 1, note: 'test' });
      assert.equal(tf.memory().numTensors, before, 'no tensor leaks');
      assert.equal(made.file, out);
      const meta = readSafetensorsMeta(out);
      assert.equal(meta.kind, 'vitpeft-source-mae/1');
      assert.equal(meta.steps, 2);
      assert.deepEqual(meta.model, spec.model);
      assert.equal((meta.lossCurve as number[]).length, 2);
      assert.ok((meta.lossCurve as number[]).every(Number.isFinite));
      const side = JSON.parse(readFileSync(made.sidecar, 'utf8'));
      assert.equal(side.file, path.basename(out));
      assert.match(side.sha256, /^[0-9a-f]{64}$/);
      assert.deepEqual(side.model, spec.model);
      // the miniature's loader: model check, every tensor's name and shape, values as written
      const mae = loadSourceMae({ ...MAE_MINI_WORKSTATION, source: { checkpoint: out } });
      try {
        const vars = maeVariables(mae);
        const file = readSafetensors(out).tensors;
        assert.equal(file.size, vars.size, 'every tensor of the file is a model variable');
        assert.equal(vars.get('blocks.11.attn.qkv.weight')!.size, 3 * 384 * 384);
        for (const [k, v] of vars) {
          const t = file.get(k);
          assert.ok(t, `${k} in the file`);
          const abs = (a: ArrayLike<number>): number => Array.from(a).reduce((x, y) => x + Math.abs(y), 0);
          const want = abs(t.data as Float32Array);
          assert.ok(Math.abs(abs(v.dataSync() as Float32Array) - want) <= 1e-6 * want + 1e-9, `${k}: the loaded values are the file's`);
        }
      } finally {
        disposeMae(mae);
      }
      assert.throws(() => loadSourceMae({ ...MAE_MINI_SMOKE, source: { checkpoint: out } }), /records model .*"embedDim":384.*the config asks for .*"embedDim":96/);
      // the recipes that load it at workstation scale accept the file (every name and shape checked by loadWeights):
      // notebook 01's walkthrough = notebook 04's stage 1, and stage 2's fine-tuning of the source encoder (small data)
      const tiny = (r: Recipe): Recipe => recipe({ ...r, batch: 4, data: { ...r.data, source: { ...r.data.source, satellitePerClass: 10, naturalPerClass: 10 } as Recipe['data']['source'] } });
      const st1 = tiny({ ...WORKSTATION_M_EXPLORA, weights: { kind: 'checkpoint', path: out, head: 'keep', stripPrefixes: [], ignore: null, allowMissing: null } });
      const ft = finetuneRuns(finetuneNotebookScales().workstation, 0, '-');
      const at = (r: Recipe): Recipe => tiny({ ...r, weights: { ...(r.weights as Extract<Recipe['weights'], { kind: 'checkpoint' }>), path: out } });
      const n0 = tf.memory().numTensors;
      for (const r of [st1, at(ft.sourceLora), at(ft.sourceFull)]) {
        const session = await prepareRecipe(r);
        try {
          assert.equal(session.origin.file, out, r.name);
          assert.deepEqual(session.origin.missing.filter((k) => !/^(fc_norm|head)\./.test(k)), [], `${r.name}: only the new head / fc_norm are missing`);
        } finally {
          session.dispose();
        }
      }
      assert.equal(tf.memory().numTensors, n0, 'sessions disposed');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.ok(!existsSync(MAE_MINI_WORKSTATION.source.checkpoint) || readSafetensorsMeta(MAE_MINI_WORKSTATION.source.checkpoint).steps === 6000);
  });

  /** One plan as a log line: peak memory and FLOPs of a step, FLOPs of the run (`steps`: when the recipe gives epochs). */
  const line = (name: string, p: RunPlan, steps = p.steps): string =>
    `${name}: ${(p.plan.peakBytes / GiB).toFixed(2)} GiB, ${(p.plan.flops.total / 1e12).toFixed(3)} TFLOP/step × ${steps} steps = ${((p.plan.flops.total * (steps ?? 0)) / 1e15).toFixed(3)} PFLOP`;

  it('notebook 01 at workstation: stops naming the missing ViT-S source and its command; else the comparison is MAE_MINI_WORKSTATION and the walkthrough WORKSTATION_M_EXPLORA, planned', () => {
    const missing = () => false;
    assert.throws(() => maeNotebookSettings('workstation', { exists: missing }), (e: Error) =>
      e.message.includes(`notebooks/assets/${SOURCE_MAE_WORKSTATION_ASSET}.safetensors is missing`) && e.message.includes("make it with 'npx tsx tools/make-source-mae.ts --spec workstation'"));
    assert.equal(maeNotebookSettings('smoke', { exists: missing }).config.source.checkpoint.endsWith('source-mae-d96x6-p4-32px-1200s-seed0.safetensors'), true, 'ci / smoke never ask');
    const s = maeNotebookSettings('workstation', { exists: () => true });
    assert.equal(s.config, MAE_MINI_WORKSTATION);
    assert.match(s.describe, /^workstation: M-ExPLoRA miniature, ViT d384×12, patch 8, 64 px, source MAE 6,000 steps on the natural domain; target satellite nir-false-color \(nuisance 1\); 600 steps of batch 64; probe 1000\/300\/1000 images; seeds 0,1,2/);
    assert.match(s.outDir, /nb01-explora-mae-workstation$/);
    // the walkthrough: the same model, file, steps, batch, blr, warm-up and decoder rank as the comparison, as a recipe
    const HP = exploraNotebookScales().workstation;
    assert.equal(HP.explora, WORKSTATION_M_EXPLORA);
    assert.equal(HP.sourceFallbackSteps, 0, 'no d96 fallback source at workstation');
    const r = recipe(WORKSTATION_M_EXPLORA);
    assert.deepEqual(r.weights, { kind: 'asset', name: SOURCE_MAE_WORKSTATION_ASSET, head: 'keep' });
    assert.deepEqual(r.model.kind === 'mae' && r.model.encoder, { ...WORKSTATION_VIT_S });
    assert.deepEqual(r.model.kind === 'mae' && r.model.decoder, MAE_MINI_WORKSTATION.model.decoder);
    assert.deepEqual([r.steps, r.batch, r.lr, r.schedule.warmup], [600, 64, { base: 8e-3, scale: 'linear-256' }, { steps: 60 }]);
    assert.deepEqual(r.adapters, { kind: 'explora', notation: 'M-ExPLoRA-[L]-r24', overrides: { decoderRank: 4 } });
    assert.deepEqual(r.eval.kind === 'probe' && r.eval.at, { steps: [0, 150, 300, 600] });
    const c = exploraComparison(r, { prefix: 'ws', scratch: HP.scratch });
    const D = 384;
    const counts = exploraCountRows(c); // throws unless ours = the formula
    assert.equal(counts.rows[0]['trainable (ours)'], 12 * D * D + 13 * D + 11 * (4 * 24 * D + 4 * D) + 3 * D);
    assert.equal(counts.rows[0]['trainable (ours)'], 2_198_016);
    const plans = { explora: planRun(c.explora, 'webgpu'), unfreeze: planRun(c.unfreeze, 'webgpu'), scratch: planRun(c.scratch, 'webgpu'), source: planRun(c.source, 'webgpu') };
    for (const [k, p] of Object.entries(plans)) {
      assert.equal(p.steps, k === 'source' ? 0 : 600, k);
      assert.ok(p.plan.peakBytes < 8 * GiB, `${k}: ${(p.plan.peakBytes / GiB).toFixed(2)} GiB`);
    }
    assert.ok(plans.explora.plan.flops.total < plans.scratch.plan.flops.total, 'ExPLoRA back-propagates through fewer weights than scratch');
    console.log(`      planned (webgpu, batch 64, 600 steps) — ${line('M-ExPLoRA-[L]-r24', plans.explora)}; ${line('unfreeze [L]', plans.unfreeze)}; ${line('scratch', plans.scratch)}`);
  });

  it('notebook 04 at workstation: stage 1 = WORKSTATION_M_EXPLORA, stage 2 the paper protocol on the ViT-S encoders at 64 px, exact counts, planned; stops naming the missing source', async () => {
    const S = finetuneNotebookScales().workstation;
    const D = 384;
    assert.equal(S.explora!.weights.kind === 'asset' && S.explora!.weights.name, SOURCE_MAE_WORKSTATION_ASSET);
    assert.deepEqual(S.explora!.eval.kind === 'probe' && S.explora!.eval.at, { steps: [] }, 'probed once, at its end');
    assert.deepEqual({ ...S.explora!, name: '', eval: null }, { ...recipe(WORKSTATION_M_EXPLORA), name: '', eval: null });
    assert.equal(S.sourceProbe.steps, 0);
    assert.deepEqual(S.sourceProbe.adapters, { kind: 'frozen' });
    const ft = S.finetune;
    assert.equal(ft.model.kind === 'vit' && ft.model.overrides.embedDim, D);
    assert.equal(ft.model.kind === 'vit' && ft.model.overrides.imgSize, 64);
    assert.equal(ft.weights.kind === 'checkpoint' && ft.weights.path, MAE_MINI_WORKSTATION.source.checkpoint);
    assert.deepEqual(ft.data.source, { kind: 'embedded', domain: 'satellite-rgb', seed: 0, size: 64, satellitePerClass: 500, naturalPerClass: 100 });
    assert.deepEqual([ft.epochs, ft.batch, ft.lr, ft.schedule.warmup], [30, 64, { base: 0.08, scale: 'linear-256' }, { epochs: 3 }]);
    assert.deepEqual(S.seeds, [0, 1, 2]);
    assert.equal(S.fullSeeds, undefined, 'full fine-tuning on every seed');
    const runs = finetuneRuns(S, 0, '/x/encoder-step600.safetensors');
    assert.equal(runs.exploraLora.weights.kind === 'checkpoint' && runs.exploraLora.weights.path, '/x/encoder-step600.safetensors');
    const steps = 30 * Math.floor(3000 / 64);
    const p = { lora: planRun(runs.exploraLora, 'webgpu'), full: planRun(runs.sourceFull, 'webgpu'), stage1: planRun(S.explora!, 'webgpu'), probe: planRun(S.sourceProbe, 'webgpu') };
    // LoRA r8 on the Q and V slices of 12 blocks (2·8·(D + D) each) + the new head (10 classes); full: every weight but the sin-cos table
    assert.equal(p.lora.trainable, 12 * 2 * 8 * 2 * D + (10 * D + 10));
    assert.equal(p.lora.trainable, 151_306);
    assert.ok(p.full.trainable > 12 * (12 * D * D + 13 * D), `${p.full.trainable}`);
    assert.equal(p.stage1.steps, 600);
    for (const [k, x] of Object.entries(p)) assert.ok(x.plan.peakBytes < 8 * GiB, `${k}: ${(x.plan.peakBytes / GiB).toFixed(2)} GiB`);
    console.log(`      planned (webgpu) — ${line('stage 1 M-ExPLoRA-[L]-r24 (batch 64)', p.stage1)}; ${line('stage 2 LoRA-r8 (batch 64)', p.lora, steps)}; ${line('full fine-tuning (batch 64)', p.full, steps)}; trainable LoRA-r8 ${p.lora.trainable}, full ${p.full.trainable}`);
    // the notebook stops at its data cell when the source is missing, naming the file and the command
    if (!existsSync(MAE_MINI_WORKSTATION.source.checkpoint)) {
      await assert.rejects(finetuneDataRows(S), /source-mae-d384x12-p8-64px-6000s-seed0\.safetensors is missing: make it with 'npx tsx tools\/make-source-mae\.ts --spec workstation'/);
    }
  });
});
