/**
 * Compression-rate sweeps (lib/tome/sweep.ts): the families contain PYRA's released schedules, every point is feasible
 * under the cap, points run from no merging to the rule's maximum with MACs decreasing, and bad input is refused.
 */
import { strict as assert } from 'assert';
import { scheduleFamily, compressionSweep, PYRA_HIGH_PROFILE_TOKENS } from '../lib/tome/sweep';
import { PYRA_SCHEDULES, tokenCounts } from '../lib/tome/schedule';
import { vitConfig } from '../lib/vit/config';

describe('tome: compression-rate sweeps', () => {
  it("contain PYRA's released schedules: ViT-B low = constant r 16, ViT-B high = pyraHigh T 5, DeiT-B high = pyraHigh T 6", () => {
    const c = scheduleFamily('constant', 12, { numTokens: 197 });
    assert.deepEqual(c.find((p) => p.param === 16)!.schedule, [...PYRA_SCHEDULES.vit_base_patch16_224.low]);
    assert.deepEqual(scheduleFamily('constant', 24, { numTokens: 197, values: [8] })[0].schedule, [...PYRA_SCHEDULES.vit_large_patch16_224.low]);
    assert.deepEqual(scheduleFamily('pyraHigh', 12, { numTokens: 197, values: [5] })[0].schedule, [...PYRA_SCHEDULES.vit_base_patch16_224.high]);
    assert.deepEqual(scheduleFamily('pyraHigh', 12, { numTokens: 198, protectedTokens: 2, values: [6] })[0].schedule, [...PYRA_SCHEDULES.deit_base_distilled_patch16_224.high]);
    assert.deepEqual(scheduleFamily('pyraHigh', 12, { numTokens: 197, values: [5] })[0].tokens, [...PYRA_HIGH_PROFILE_TOKENS]);
    // ViT-L: the rescaled profile lands within 2 tokens of the released list in every block
    const L = scheduleFamily('pyraHigh', 24, { numTokens: 197, values: [5] })[0].tokens;
    const rel = tokenCounts(PYRA_SCHEDULES.vit_large_patch16_224.high, 24, { numTokens: 197 }).tokens;
    assert.ok(L.every((n, i) => Math.abs(n - rel[i]) <= 2), `${L} vs ${rel}`);
  });

  it('every point is cap-feasible, distinct, ordered from no merging to the maximum; MACs fall monotonically', () => {
    const cfg = vitConfig('vit_base_patch16_224');
    for (const rule of ['constant', 'decreasing', 'pyraHigh'] as const) {
      const pts = compressionSweep(cfg, rule);
      assert.ok(pts.length > 40, `${rule}: ${pts.length} points`);
      assert.deepEqual(pts[0].schedule, new Array(12).fill(0), `${rule}: starts unmerged`);
      assert.equal(pts[0].macsRatio, 1);
      assert.equal(new Set(pts.map((p) => p.schedule.join())).size, pts.length, `${rule}: distinct`);
      for (const p of pts) tokenCounts(p.schedule, 12, { numTokens: 197, onCap: 'error' }); // throws if the cap binds
      for (let i = 1; i < pts.length; i++) assert.ok(pts[i].macs <= pts[i - 1].macs, `${rule}: MACs non-increasing at ${i}`);
      const last = pts[pts.length - 1];
      assert.ok(last.tokens[12] <= 5, `${rule}: reaches ${last.tokens[12]} tokens`);
      assert.ok(Math.abs(last.compression - (1 - last.macsRatio)) < 1e-12);
    }
    // the paper's two points on the axis: low ≈ 50 % MACs, high ≈ 29 %
    const low = compressionSweep(cfg, 'constant', { values: [16] })[0];
    const high = compressionSweep(cfg, 'pyraHigh', { values: [5] })[0];
    assert.equal(low.gmacs.toFixed(2), '8.77');
    assert.equal(high.gmacs.toFixed(2), '5.07');
    assert.equal(compressionSweep(cfg, 'pyraHigh', { values: [5], pyra: true })[0].macs - high.macs, 2 * 192 * 768);
  });

  it('DeiT: two protected tokens from the config; bad input', () => {
    const d = compressionSweep(vitConfig('deit_base_distilled_patch16_224'), 'constant', { values: [0, 16, 99] });
    assert.equal(d[0].tokens[0], 198);
    assert.equal(d[d.length - 1].tokens[1], 198 - 98, 'the cap counts cls and dist: ⌊(198 − 2)/2⌋ = 98');
    assert.throws(() => scheduleFamily('pyraHigh', 12, { numTokens: 197, values: [1] }), /final token counts must be integers in \[2, 197\]/);
    assert.throws(() => scheduleFamily('constant', 12, { numTokens: 197, values: [-1] }), /non-negative integers/);
    assert.throws(() => scheduleFamily('linear' as never, 12, { numTokens: 197 }), /rule must be/);
    assert.throws(() => compressionSweep(vitConfig('vit_small_patch14_reg4_dinov2'), 'constant'), /4 register tokens/);
  });
});
