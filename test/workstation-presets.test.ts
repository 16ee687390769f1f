/**
 * The `workstation` scale (recipes/workstation-presets.ts): the ViT-S presets of notebooks 01 / 03 / 04 resolve as
 * recipes, plan (`planRun`, shapes only), count exactly, and name sources the kit's tools make.
 */
import { strict as assert } from 'assert';
import { DINO_MINI_WORKSTATION, MAE_MINI_WORKSTATION, SOURCE_DINO_WORKSTATION_ASSET, WORKSTATION_SOURCE_MAE, WORKSTATION_VIT_S } from '../recipes/workstation-presets';
import { dinoArmRecipes } from '../recipes/explora-dino-arms';
import { dinoNotebookSettings, dinoSourceRows } from '../recipes/explora-dino-notebook';
import { planRun } from '../recipes/plan';
import { recipe } from '../recipes/recipe';
import { sourceDinoTag, SOURCE_DINO_WORKSTATION_SPEC } from '../tools/make-source-dino';

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
});
