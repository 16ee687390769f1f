import { strict as assert } from 'assert';
import { dinoAblationCountRows, dinoAblationSpecs, EXPLORA_PCT_DENOMINATOR } from '../recipes/explora-dino-ablation';

describe('D-ExPLoRA ablation counts (paper scale, shape-only)', () => {
  const rows = dinoAblationCountRows();
  const by = (c: string) => rows.find((r) => r.configuration.startsWith(c))!;
  it('matches the paper: [L] 12.7M, [L]-r64 18.7M (18,724,864 = 6.17 % of 303.3M), [1,L-1,L]-r64 43.4M', () => {
    assert.equal(by('unfreeze [L], no LoRA')['ours params'], 12_695_552);
    assert.equal(by('unfreeze [L] + LoRA-r64 Q,V (ExPLoRA)')['ours params'], 18_724_864);
    assert.equal(by('unfreeze [L] + LoRA-r64 Q,V (ExPLoRA)')['ours % of 303.3M'], 6.17);
    assert.equal(by('unfreeze [1,L-1,L]')['ours params'], 43_388_928);
    for (const r of rows.filter((x) => /^\d+(\.\d+)?M$/.test(x['paper params']) && x.notation !== 'all parameters')) {
      assert.equal((r['ours params'] / 1e6).toFixed(1) + 'M', r['paper params'], r.configuration);
    }
  });
  it('closed forms per ViT-L/14 block (D = 1024, 24 blocks): LoRA r on Q,V = 4rD per frozen block; norms 4D per block + 2D', () => {
    const D = 1024;
    const lora = (r: number) => 23 * 4 * r * D;
    const L = by('unfreeze [L], no LoRA')['ours params'];
    assert.equal(by('unfreeze [L] + LoRA-r64 Q,V (ExPLoRA)')['ours params'] - L, lora(64));
    assert.equal(by('unfreeze [L] + LoRA-r8')['ours params'] - L, lora(8));
    assert.equal(by('unfreeze [L] + LoRA-r32')['ours params'] - L, lora(32));
    // frozen norms: the 23 frozen blocks' norm1/norm2 and the final norm (weight + bias) stop training
    assert.equal(by('unfreeze [L] + LoRA-r64 Q,V (ExPLoRA)')['ours params'] - by('unfreeze [L] + LoRA-r64 Q,V, norms frozen')['ours params'], 23 * 4 * D + 2 * D);
    // U = [1] trains the same number as U = [L]; LoRA-only = LoRA on all 24 blocks + norms + cls
    assert.equal(by('unfreeze [1] + LoRA-r64')['ours params'], by('unfreeze [L] + LoRA-r64 Q,V (ExPLoRA)')['ours params']);
    assert.equal(by('LoRA-r64 Q,V only')['ours params'], 24 * 4 * 64 * D + 24 * 4 * D + 2 * D + D);
    // all matrices: Q,K,V (3·2rD) + proj (2rD) + fc1/fc2 at r/4 (16·(D + 4D)·2) per frozen block
    assert.equal(by('unfreeze [L] + LoRA-r64 on all')['ours params'] - L, 23 * (6 * 64 * D + 2 * 64 * D + 16 * (D + 4 * D) * 2));
    assert.equal(by('DINOv2 frozen')['ours params'], 0);
    assert.equal(by('full pre-training')['ours params'], 304_368_640); // the released dinov2_vitl14 (37×37 position grid)
    assert.equal(EXPLORA_PCT_DENOMINATOR, 303_301_632);
  });
  it('every issue-15 ablation row is present, each with a recipe or the full / frozen marker', () => {
    assert.equal(dinoAblationSpecs().length, 11);
    assert.equal(rows.length, 11);
  });
});
