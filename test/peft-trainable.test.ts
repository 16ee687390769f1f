import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { createVit, disposeVit, Vit, ParamFactory } from '../lib/vit/params';
import { flattenTree, disposeTree } from '../lib/tree';
import { createLora, qvTarget, loraVariables, disposeLora } from '../lib/peft/lora';
import {
  selectTrainable, classifyParams, FREEZE_REST, formatTrainSummary, trainSummaryFrame, trainSummaryRecords, defaultIsEncoder, TrainSpec,
} from '../lib/peft/trainable';

const MICRO = { imgSize: 16, patchSize: 8, embedDim: 32, depth: 3, numHeads: 2, numClasses: 5 } as const;

describe('peft/trainable', () => {
  let vit: Vit;
  before(() => {
    vit = createVit('vit_tiny_patch16_224', MICRO, { seed: 1 });
  });
  after(() => disposeVit(vit));

  it('first matching rule wins; exact per-group counts; flags set; fixed source order', () => {
    const lora = createLora(vit.params, { rank: 2, targets: [qvTarget([0, 1])] });
    const spec: TrainSpec = [
      { match: 'lora_*', train: true, group: 'lora' },
      { match: 'blocks.2.*', train: true, group: 'last block' },
      { match: ['norm1.*', 'norm2.*', 'norm.*'], train: true, group: 'norms' },
      { match: 'blocks.*', train: false, group: 'other blocks' },
      { match: /^head\./, train: true, group: 'head' },
      FREEZE_REST,
    ];
    const sel = selectTrainable([vit.params, lora.params], spec);
    const D = 32;
    const block = 12 * D * D + 13 * D;
    const rows = Object.fromEntries(sel.summary.rows.map((r) => [r.group, r]));
    assert.equal(rows['lora'].params, 2 * 2 * 2 * D * 2);
    assert.equal(rows['last block'].params, block);
    assert.equal(rows['norms'].params, 2 * 4 * D + 2 * D); // blocks 0-1 norm1/norm2 + final norm (block 2's are in 'last block')
    assert.equal(rows['other blocks'].params, 2 * (block - 4 * D));
    assert.equal(rows['head'].params, D * 5 + 5);
    assert.equal(rows['head'].encoderParams, 0);
    assert.equal(rows['frozen (rest)'].params, D * 64 * 3 + D + D + 5 * D); // patch embed (w + b), cls, pos (1+4 tokens)
    assert.equal(sel.summary.total, [...sel.trainable.values(), ...sel.frozen.values()].reduce((s, v) => s + v.size, 0));
    const encoderTotal = vit.params ? flattenTree(vit.params) : new Map();
    const expectEnc = [...encoderTotal].filter(([k]) => !k.startsWith('head.')).reduce((s, [, v]) => s + v.size, 0);
    assert.equal(sel.summary.encoderTotal, expectEnc);
    assert.equal(sel.summary.trainableEncoder, rows['lora'].params + rows['last block'].params + rows['norms'].params);
    assert.equal(sel.summary.trainable, sel.summary.trainableEncoder + rows['head'].params);
    assert.ok(Math.abs(sel.summary.pctEncoder - (100 * sel.summary.trainableEncoder) / expectEnc) < 1e-9);
    // flags and order
    const all = new Map([...flattenTree(vit.params), ...loraVariables(lora)]);
    for (const [k, v] of all) assert.equal(v.trainable, sel.trainable.has(k), k);
    assert.deepEqual([...sel.trainable.keys()], [...all.keys()].filter((k) => sel.trainable.has(k)));
    assert.equal(sel.trainable.size + sel.frozen.size, all.size);
    assert.ok(sel.trainable.has('blocks.2.attn.qkv.weight') && !sel.trainable.has('blocks.1.attn.qkv.weight'));
    // re-resolving with another spec resets the flags
    const sel2 = selectTrainable([vit.params, lora.params], [{ match: 'head.*', train: true }, FREEZE_REST]);
    assert.deepEqual([...sel2.trainable.keys()], ['head.weight', 'head.bias']);
    assert.equal(flattenTree(vit.params).get('blocks.2.attn.qkv.weight')!.trainable, false);
    // text and DataFrame
    const text = formatTrainSummary(sel.summary);
    assert.match(text, /^group\s+train\s+tensors\s+params\s+% encoder/);
    assert.match(text, /last block\s+yes\s+12\s+12,704/);
    assert.match(text, new RegExp(`trainable \\(encoder\\): ${sel.summary.trainableEncoder.toLocaleString('en-US')} = `));
    const recs = trainSummaryRecords(sel.summary);
    assert.equal(recs[recs.length - 1].params, sel.summary.trainable);
    const df = trainSummaryFrame(sel.summary);
    assert.deepEqual(df.shape, [sel.summary.rows.length + 1, 6]);
    assert.deepEqual(df.columns, ['group', 'train', 'tensors', 'params', 'encoderParams', 'pctEncoder']);
    selectTrainable(vit.params, [{ match: '*', train: true }]); // restore
    disposeLora(lora);
  });

  it('every parameter is classified exactly once: unmatched params, empty rules and duplicate paths are errors', () => {
    assert.throws(
      () => selectTrainable(vit.params, [{ match: 'blocks.*', train: true }]),
      /TrainSpec: 8 parameter\(s\) matched no rule: cls_token, pos_embed, patch_embed\.proj\.weight.*FREEZE_REST/,
    );
    assert.throws(
      () => selectTrainable(vit.params, [{ match: 'lora_*', train: true, group: 'lora' }, FREEZE_REST]),
      /rule #0 \('lora', patterns \["lora_\*"\]\) matches no parameter; mark it optional/,
    );
    selectTrainable(vit.params, [{ match: 'lora_*', train: true, optional: true }, FREEZE_REST]);
    assert.throws(() => selectTrainable([vit.params, vit.params], [FREEZE_REST]), /parameter 'cls_token' appears in two of the given trees/);
    assert.throws(() => selectTrainable(vit.params, [{ match: '*', train: 'yes' as never }]), /'train' must be true or false/);
    assert.throws(() => selectTrainable(vit.params, [{ match: '*', train: true, grop: 'x' } as never]), /unknown key 'grop'/);
    assert.throws(() => selectTrainable(vit.params, []), /non-empty list of rules/);
    const shapes = new Map([['a.weight', { shape: [2, 2] }]]);
    assert.throws(() => selectTrainable(shapes, [FREEZE_REST]), /'a\.weight' is not a tf\.Variable \(use classifyParams/);
    selectTrainable(vit.params, [{ match: '*', train: true }]);
  });

  it('shape-only classification, exclude lists, encoder membership and a custom denominator', () => {
    const shapes = new Map([
      ['blocks.0.attn.qkv.weight', { shape: [4, 12] }],
      ['blocks.0.norm1.weight', { shape: [4] }],
      ['head.weight', { shape: [4, 3] }],
      ['decoder_blocks.0.norm1.weight', { shape: [2] }],
      ['dino_head.mlp.0.weight', { shape: [4, 8] }],
    ]);
    const { summary, ruleOf } = classifyParams(
      shapes,
      [{ match: /norm/, exclude: ['decoder_blocks.*'], train: true, group: 'enc norms' }, { match: '*', train: true, group: 'rest' }],
      { encoderTotal: 100 },
    );
    assert.equal(ruleOf.get('decoder_blocks.0.norm1.weight'), 1);
    assert.equal(summary.rows[0].params, 4);
    assert.equal(summary.trainable, 48 + 4 + 12 + 2 + 32);
    assert.equal(summary.trainableEncoder, 48 + 4);
    assert.equal(summary.pctEncoder, 52);
    assert.ok(defaultIsEncoder('blocks.3.attn.qkv.lora_A.q.weight'));
    assert.ok(!defaultIsEncoder('decoder_blocks.3.attn.qkv.lora_A.q.weight'));
    assert.ok(!defaultIsEncoder('ibot_head.last_layer.weight'));
    assert.ok(defaultIsEncoder('fc_norm.weight'));
  });

  it('frozen flags are a second guard: tfjs computes no gradient for a frozen variable', () => {
    const f = new ParamFactory('t', 0);
    const tree = { a: { weight: f.make('a.weight', [2, 2], { kind: 'ones' }) }, b: { weight: f.make('b.weight', [2, 2], { kind: 'ones' }) } };
    const sel = selectTrainable(tree, [{ match: 'a.*', train: true }, FREEZE_REST]);
    const g = tf.variableGrads(() => tf.sum(tf.add(tree.a.weight, tree.b.weight)) as tf.Scalar, [tree.a.weight, tree.b.weight]);
    assert.ok(g.grads[tree.a.weight.name]);
    assert.ok(!g.grads[tree.b.weight.name], 'a frozen variable got a gradient');
    assert.equal(sel.frozen.get('b.weight')!.trainable, false);
    tf.dispose([g.value, ...Object.values(g.grads)]);
    disposeTree(tree);
  });
});
