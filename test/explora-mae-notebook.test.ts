import { strict as assert } from 'assert';
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { maeNotebookSettings } from '../recipes/explora-mae-notebook';
import { miniLinearProbeTable, miniNotebookClaims, claimsForest, miniClaimsMarkdown } from '../recipes/miniature-notebook';
import { MAE_MINI, MAE_MINI_CI, MAE_MINI_SMOKE } from '../recipes/miniature-presets';
import { MiniRecord } from '../recipes/miniature';

/** A record with `k` of `n` test images right (the first k). */
function rec(method: string, seed: number, step: number, k: number, n = 50): MiniRecord {
  const c = '1'.repeat(k) + '0'.repeat(n - k);
  return {
    kind: 'eval', objective: 'mae', method, recipe: method, seed, step, trainableEncoder: 10, loss: step ? 1 : null, trainCpu: step, trainSteps: step,
    probeVal: k / n, probeTest: k / n, probeBest: 'n1', knn: k / n, ridgeTest: k / n, ridgeVal: k / n, ridgeBest: 'r', probeCorrect: c, knnCorrect: c, ridgeCorrect: c,
    cpu: { extract: 1, probe: 1, knn: 0, ridge: 0 }, seconds: 1,
  };
}

describe('notebook 01 helpers (recipes/explora-mae-notebook.ts, recipes/miniature-notebook.ts)', () => {
  it('scales: smoke = MAE_MINI on the NIR false-colour target with larger sets; ci = 4 steps on the default set; scratch on seed 0 only', () => {
    const smoke = maeNotebookSettings('smoke');
    assert.equal(smoke.config, MAE_MINI_SMOKE);
    assert.deepEqual(MAE_MINI_SMOKE.data.embedded.satelliteRender, { composite: 'nir-false-color', nuisance: 1 });
    assert.deepEqual(MAE_MINI_SMOKE.data.evalImages, { train: 1000, val: 300, test: 1000 });
    assert.deepEqual(MAE_MINI_SMOKE.pretrain, MAE_MINI.pretrain, 'the same extended pre-training as the measured MAE_MINI');
    assert.deepEqual(smoke.config.methods.map((m) => m.name), ['source', 'explora', 'unfreeze', 'scratch']);
    assert.deepEqual(smoke.seedsOf, { scratch: [0] });
    assert.match(smoke.describe, /^smoke: M-ExPLoRA miniature, ViT d96×6, patch 4, 32 px, .*target satellite nir-false-color \(nuisance 1\); 108 steps of batch 64; probe 1000\/300\/1000 images; seeds 0,1,2/);
    assert.match(smoke.outDir, /nb01-explora-mae-smoke$/);
    const ci = maeNotebookSettings('ci', { seeds: [0, 1], scratchSeeds: [1] });
    assert.equal(ci.config, MAE_MINI_CI);
    assert.deepEqual(ci.seedsOf, { scratch: [1] });
    assert.equal(MAE_MINI_CI.pretrain.steps, 4);
    assert.deepEqual(MAE_MINI_CI.data.embedded.satelliteRender, { composite: 'rgb', nuisance: 1 });
  });

  it('claims: written beside the run and for the scoreboard; markdown reads them; forest plot has one row per claim', () => {
    const recs = [0, 1, 2].flatMap((s) => [rec('source', s, 0, 30), rec('explora', s, 4, 32 + s), rec('unfreeze', s, 4, 31 + (s % 2))]);
    recs.push({ ...rec('scratch', 0, 4, 10), recipe: 'scratch' });
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-nb01-'));
    const prev = process.env.VITPEFT_NOTEBOOK_OUT;
    process.env.VITPEFT_NOTEBOOK_OUT = path.join(dir, 'nb');
    try {
      const C = miniNotebookClaims(recs, { notebook: '01-explora-mae', scale: 'ci', describe: 'ci: test', outDir: path.join(dir, 'run') });
      const lines = readFileSync(path.join(dir, 'run', 'claims.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      assert.equal(lines.length, C.claims.length);
      const lp = C.claims.find((c) => c.claim.startsWith('ExPLoRA > source model, frozen (linear probe)'))!;
      assert.deepEqual(lp.ours.perSeed.map((x) => +x.toFixed(6)), [4, 6, 8]);
      assert.equal(lp.verdict, 'reproduced');
      assert.equal(lp.paperValue, null, 'no M-ExPLoRA linear-probe number was recovered');
      const scratch = C.claims.find((c) => c.claim.startsWith('ExPLoRA ≫'))!;
      assert.deepEqual(scratch.seeds, [0]);
      assert.equal(scratch.verdict, 'inconclusive', 'one seed: no interval, no verdict');
      const md = miniClaimsMarkdown(C.claims, 'ci: test');
      assert.match(md, /ExPLoRA > source model, frozen \(linear probe\)\*\*: Δ = 6\.0 \[\S+, \S+\] points over seeds 0,1,2 \(per seed 4\.0, 6\.0, 8\.0\) → \*\*reproduced\*\*/);
      assert.match(md, /ExPLoRA ≫ pre-training from scratch \(by > 10 points\)\*\*: Δ = 44\.0 \(no interval\)/);
      const fig = claimsForest('01-explora-mae', C.claims);
      const ys = (fig.data as Array<{ y: string[] }>).flatMap((d) => d.y);
      assert.equal(new Set(ys).size, C.claims.length);
      const t = miniLinearProbeTable(recs, { paperColumn: 'paper' });
      assert.equal(t.find((r) => r.method === 'explora')!.paper, 77.48);
      assert.equal(t.find((r) => r.method === 'scratch')!['LP per seed'], '20.0');
    } finally {
      if (prev === undefined) delete process.env.VITPEFT_NOTEBOOK_OUT;
      else process.env.VITPEFT_NOTEBOOK_OUT = prev;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
