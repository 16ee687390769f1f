import { strict as assert } from 'assert';
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { dinoNotebookSettings, dinoSourceRows, dinoPaperRecipe, dinoFig3, dinoLinearProbeTable, recordRow, dinoFindings, dinoArmRuns } from '../recipes/explora-dino-notebook';
import { miniatureClaims, EvalLine } from '../recipes/miniature-claims';
import { MiniRecord } from '../recipes/miniature';

/** A record with `k` of `n` test images right (the first k). */
function rec(method: string, seed: number, step: number, k: number, n = 50): MiniRecord {
  const c = '1'.repeat(k) + '0'.repeat(n - k);
  return {
    kind: 'eval', objective: 'dino', method, recipe: method, seed, step, trainableEncoder: 10, loss: step ? 1 : null, trainCpu: step, trainSteps: step,
    probeVal: k / n, probeTest: k / n, probeBest: 'n1', knn: k / n, ridgeTest: k / n, ridgeVal: k / n, ridgeBest: 'r', probeCorrect: c, knnCorrect: c, ridgeCorrect: c,
    cpu: { extract: 1, probe: 1, knn: 0, ridge: 0 }, seconds: 1,
  };
}

describe('notebook 03 helpers (recipes/explora-dino-notebook.ts)', () => {
  it('scales: ci = the committed 2-block source, 3 seeds, claims under the runs root; smoke adds [1,L-1,L] and Fig. 3 points', () => {
    const ci = dinoNotebookSettings('ci');
    assert.deepEqual(ci.seeds, [0, 1, 2]);
    assert.match(ci.describe, /^ci: ViT d32×2, patch 8, 32 px; 4 steps of batch 8; probe 100\/50\/50 images; seeds 0,1,2/);
    assert.match(ci.outDir, /nb03-explora-dino-ci$/);
    const rows = Object.fromEntries(dinoSourceRows(ci).map((r) => [r.key, r.value]));
    assert.equal(rows.kind, 'vitpeft-source-dino/1');
    assert.equal(rows.steps, 50);
    const smoke = dinoNotebookSettings('smoke');
    assert.deepEqual(smoke.config.methods.map((m) => m.name), ['source', 'explora', 'unfreeze', 'scratch', 'explora-[1,L-1,L]']);
    assert.deepEqual(smoke.config.evalAt, [32, 64]);
  });
  it('the arms as recipes: ci runs them small (2 steps, 64 images), smoke only shows them, workstation runs the ViT-S arms', () => {
    const ci = dinoArmRuns(dinoNotebookSettings('ci'));
    assert.equal(ci.run, true);
    assert.deepEqual(Object.keys(ci.recipes), ['explora', 'unfreeze', 'scratch']);
    assert.deepEqual([ci.recipes.explora.steps, ci.recipes.explora.epochLength], [2, 8]);
    assert.equal(ci.recipes.explora.data.train.splits[0].subset!.n, 64);
    const smoke = dinoArmRuns(dinoNotebookSettings('smoke'));
    assert.equal(smoke.run, false);
    assert.deepEqual(Object.keys(smoke.recipes), ['explora', 'unfreeze', 'scratch', 'explora-[1,L-1,L]']);
    assert.deepEqual(smoke.recipes['explora-[1,L-1,L]'].adapters, { kind: 'explora', notation: 'D-ExPLoRA-[1,L-1,L]-r8', overrides: {} });
    assert.equal(smoke.recipes.explora.steps, 96);
    const ws = dinoArmRuns(dinoNotebookSettings('workstation'));
    assert.equal(ws.run, true);
    assert.equal(ws.recipes.explora.steps, 600);
  });
  it('a missing source or paper file is an error that names the file and the tool', () => {
    const s = dinoNotebookSettings('smoke');
    const gone = { ...s, config: { ...s.config, source: { checkpoint: '/nonexistent/source-dino.safetensors' } } };
    assert.throws(() => dinoSourceRows(gone), /\/nonexistent\/source-dino\.safetensors is missing: make it with 'npx tsx tools\/make-source-dino\.ts'/);
    assert.throws(() => dinoPaperRecipe({ timmWeights: '/nonexistent/model.safetensors' }), /timm\/vit_large_patch14_dinov2, model\.safetensors\) at \/nonexistent\/model\.safetensors/);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-nb03-'));
    try {
      const w = path.join(dir, 'model.safetensors');
      writeFileSync(w, '');
      assert.throws(() => dinoPaperRecipe({ timmWeights: w }), /fMoW-RGB \(SatMAE CSV layout\): .*train_62classes\.csv is missing/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('Fig. 3: mean over seeds per step with the t interval as dotted lines; LP table with the paper beside ours', () => {
    const recs = [0, 1, 2].flatMap((s) => [rec('source', s, 0, 30), rec('explora', s, 0, 30), rec('explora', s, 4, 32 + s), rec('unfreeze', s, 4, 31)]);
    const fig = dinoFig3(recs);
    const byName = new Map((fig.data as Array<{ name: string; x: number[]; y: number[]; line?: { dash: string } }>).map((d) => [d.name, d]));
    assert.deepEqual(byName.get('explora')!.x, [0, 4]);
    assert.ok(Math.abs(byName.get('explora')!.y[1] - 66) < 1e-9, 'mean of 64, 66, 68 %');
    assert.ok(byName.get('explora 95% lo')!.y[1] < 66 && byName.get('explora 95% hi')!.y[1] > 66);
    assert.equal(byName.get('explora 95% lo')!.line!.dash, 'dot');
    assert.deepEqual(byName.get('unfreeze')!.x, [0, 4], 'step 0 of a method that continues from the source = the source');
    assert.deepEqual(byName.get('unfreeze')!.y, [60, 62]);
    const noScratch = dinoFig3([...recs, ...[0, 1, 2].map((s) => ({ ...rec('scratch', s, 4, 10), recipe: 'scratch' }))]);
    assert.ok(!(noScratch.data as Array<{ name: string }>).some((d) => d.name === 'scratch'), 'scratch starts from a fresh init: one point, no curve');
    assert.deepEqual(byName.get('source')!.y, [60, 60]);
    const t = dinoLinearProbeTable(recs);
    assert.equal(t.find((r) => r.method === 'explora')!['paper LP (ViT-L, fMoW-RGB)'], 77.48);
    assert.equal(t.find((r) => r.method === 'explora')!['LP per seed'], '64.0 66.0 68.0');
    assert.deepEqual(recordRow(recs[2]), { method: 'explora', seed: 0, step: 4, 'LP %': 64, 'kNN %': 64, 'ridge %': 64, 'train CPU s': 4 });
  });

  it('findings: written from the run (means with intervals, each claim with its interval and verdict, Fig. 3 steps, caveats of the scale)', () => {
    const recs = [0, 1, 2].flatMap((s) => [rec('source', s, 0, 30), rec('explora', s, 2, 31 + s), rec('explora', s, 4, 33 + s), rec('unfreeze', s, 4, 31), { ...rec('scratch', s, 4, 10), recipe: 'scratch' }]);
    const { claims } = miniatureClaims(recs as unknown as EvalLine[], { scale: 'test' });
    const md = dinoFindings(recs, claims, dinoNotebookSettings('smoke'));
    assert.match(md, /explora 68\.0 \[\d+\.\d, \d+\.\d\]/, 'ExPLoRA mean LP (33, 34, 35 of 50) with its t interval');
    assert.match(md, /source 60\.0 \[60\.0, 60\.0\]/);
    assert.match(md, /\| ExPLoRA ≫ pre-training from scratch \(by > 10 points\) \| 48\.0 \[.*\| 23\.2 \| \*\*reproduced\*\* \|/);
    assert.match(md, /ExPLoRA's mean LP by pre-training step: source 60\.0 \[60\.0, 60\.0\] at 0, 64\.0 \[.*\] at 2, 68\.0 \[.*\] at 4/);
    assert.match(md, /one dataset for all seeds: .* 50 test images \(one image = 2\.0 points/);
    assert.doesNotMatch(md, /ci scale/);
    assert.match(dinoFindings(recs, claims, dinoNotebookSettings('ci')), /ci scale: mechanics only/);
  });
});
