/**
 * The shape-only step plan (lib/plan.ts) against measured wasm heap peaks (bench/heap-peak.ts: the malloc high-water
 * mark of a training step): within 25 % over the grid the coefficients were fitted on — full / LoRA / ExPLoRA, with and
 * without recomputation, ToMe, accumulation, M-ExPLoRA on an MAE — and on held-out shapes (another resolution, patch,
 * depth, accumulation; the ViT-S held-out cases run in bench/heap-peak.ts). Also: the FLOP rule, the phases, errors that name the field, and
 * `planRun` for the paper recipes.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { measureStepPeak, PEAK_GRID, PEAK_HELDOUT } from '../bench/heap-peak';
import { planStep } from '../lib/plan';
import { vitConfig } from '../lib/vit/config';
import { vitMacs } from '../lib/tome/flops';
import { planRun, planRows } from '../recipes/plan';
import { RECIPES } from '../recipes/presets';
import { main } from '../recipes/cli';

describe('plan: memory and FLOPs of a step from shapes', function () {
  this.timeout(600000);

  const held = PEAK_HELDOUT.filter((c) => c.name.startsWith('Ti/8')); // the others (ViT-S width, 13–26 s each here): bench/heap-peak.ts
  for (const c of [...PEAK_GRID, ...held]) {
    it(`${c.name}: the plan is within 25 % of the measured wasm heap peak`, async function () {
      if (tf.getBackend() !== 'wasm') this.skip();
      const { measured, plan } = await measureStepPeak(c);
      const ratio = plan.peakBytes / measured;
      assert.ok(Math.abs(ratio - 1) <= 0.25, `${c.name}: planned ${(plan.peakBytes / 2 ** 20).toFixed(1)} MiB, measured ${(measured / 2 ** 20).toFixed(1)} MiB (ratio ${ratio.toFixed(3)})`);
    });
  }

  it('FLOPs: 2 × MACs forward; the backward is ≈ 2 forwards for full fine-tuning, ≈ 1 for adapters; recomputation adds one', () => {
    const cfg = vitConfig('vit_base_patch16_224');
    const P = 86_000_000;
    const full = planStep({ encoder: cfg, params: P, trainable: P, batch: 4 });
    assert.equal(full.flops.forward, 2 * vitMacs(cfg).total * 4);
    assert.equal(full.flops.backward, 2 * full.flops.forward);
    const ad = planStep({ encoder: cfg, params: P, trainable: 0, batch: 4, recompute: true });
    assert.equal(ad.flops.backward, ad.flops.forward);
    assert.equal(ad.flops.recompute, ad.flops.forward);
    assert.equal(Math.round((full.flops.forward / 4 / 2) / 1e7) / 100, 17.56); // PYRA's ViT-B 17.56 GMACs per image
  });

  it('the phases: accumulation lowers activations by the micro-batch; full fine-tuning at a small batch peaks in the update', () => {
    const cfg = vitConfig('vit_base_patch16_224');
    const a = planStep({ encoder: cfg, params: 86e6, trainable: 1e6, batch: 64, loraSites: 22 });
    const b = planStep({ encoder: cfg, params: 86e6, trainable: 1e6, batch: 64, accumulate: 8, loraSites: 22 });
    assert.equal(b.microBatch, 8);
    assert.ok(Math.abs(b.bytes.activations * 8 - a.bytes.activations) < 1, 'activations scale with the micro-batch');
    assert.equal(b.bytes.gradients, 2 * a.bytes.gradients, 'the running sum of the gradients');
    const r = planStep({ encoder: cfg, params: 86e6, trainable: 1e6, batch: 64, recompute: true, loraSites: 22 });
    assert.ok(r.bytes.activations < a.bytes.activations / 4);
    const f = planStep({ encoder: cfg, params: 86e6, trainable: 86e6, batch: 1 });
    assert.equal(f.peakPhase, 'update');
    const tome = planStep({ encoder: cfg, params: 86e6, trainable: 1e6, batch: 64, tome: 16 });
    assert.deepEqual(tome.tokens.slice(0, 3), [197, 181, 165]);
  });

  it('bad input names the field', () => {
    const cfg = vitConfig('vit_base_patch16_224');
    assert.throws(() => planStep({ encoder: cfg, params: 10, trainable: 1, batch: 10, accumulate: 3 }), /planStep: batch 10 is not divisible by accumulate 3/);
    assert.throws(() => planStep({ encoder: cfg, params: 10, trainable: 11, batch: 1 }), /planStep: 11 trainable elements but only 10 parameters/);
    assert.throws(() => planStep({ encoder: cfg, params: 10, trainable: 1, batch: 0 }), /planStep: batch: expected an integer > 0, got 0/);
    assert.throws(() => planStep({ encoder: cfg, params: 10, trainable: 1, batch: 1, optimizer: 'lion' as never }), /planStep: optimizer: expected one of 'adamw', 'sgd', got 'lion'/);
    assert.throws(() => planStep({ encoder: cfg, params: 10, trainable: 1, batch: 1, bacth: 2 } as never), /planStep: unknown key 'bacth'/);
  });

  it('planRun: the paper recipes, from shapes (nothing allocated)', () => {
    const before = tf.memory().numTensors;
    const d = planRun(RECIPES.d_explora_l_r64, 'wasm');
    assert.equal(tf.memory().numTensors, before);
    assert.equal(d.trainable, 18_724_864 + d.headTrainable);
    assert.ok(planRows(d).length > 8);
    const l = planRun(RECIPES.finetune_lora_r8, 'wasm');
    assert.ok(l.plan.peakBytes > 0);
    assert.throws(() => planRun(RECIPES.d_explora_l_r64, 'wasm', { microBatch: 48 }), /planRun\.microBatch: the batch 1024 is not a multiple of the micro-batch 48/);
    const acc = planRun(RECIPES.m_explora_l_r64, 'wasm', { microBatch: 32 });
    assert.equal(acc.accumulate, 32);
    assert.ok(acc.notes.some((n) => /at most 4 GiB/.test(n)), 'wasm cannot hold it: said');
  });

  it('vitpeft plan <preset> prints the plan; bad options are usage errors', async () => {
    const lines: string[] = [];
    const errs: string[] = [];
    assert.equal(await main(['plan', 'pyra_vit_b16_low', '--micro-batch', '8', '--recompute'], { out: (x) => lines.push(x), err: (x) => errs.push(x) }), 0);
    assert.match(lines.join('\n'), /batch +32 = 4 × 8, recomputation/);
    assert.match(lines.join('\n'), /peak +\d+\.\d+ GiB \(in the (backward|update)\)/);
    assert.equal(await main(['plan', 'pyra_vit_b16_low', '--micro-batch', '0'], { out: () => {}, err: (x) => errs.push(x) }), 2);
    assert.match(errs.join('\n'), /--micro-batch: expected an integer ≥ 1, got '0'/);
  });
});
