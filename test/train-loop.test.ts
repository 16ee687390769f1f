import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createVit, disposeVit, vitVariables, Vit } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainLoop, trainStep, StepInfo } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { saveCheckpoint, loadCheckpoint } from '../lib/io/checkpoint';
import { Rng } from '../lib/rng';

const CFG = { imgSize: 16, patchSize: 8, depth: 2, embedDim: 16, numHeads: 2, numClasses: 3, dropPathRate: 0.1 } as const;

/** Deterministic synthetic batch of a step: images whose label is the brightest quadrant. */
function batchAt(step: number): { x: tf.Tensor4D; y: tf.Tensor1D } {
  const rng = Rng.derive(123, 'data', step);
  const B = 4;
  const x = new Float32Array(B * 16 * 16 * 3);
  const y = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    y[b] = rng.int(3);
    for (let i = 0; i < 16 * 16 * 3; i++) x[b * 768 + i] = rng.normal(0, 0.5);
    for (let r = 0; r < 8; r++) for (let c = 0; c < 8; c++) x[b * 768 + ((r + (y[b] === 1 ? 8 : 0)) * 16 + c + (y[b] === 2 ? 8 : 0)) * 3] += 1.5;
  }
  return { x: tf.tensor4d(x, [B, 16, 16, 3]), y: tf.tensor1d(y, 'int32') };
}

function lossOf(vit: Vit) {
  return (b: { x: tf.Tensor4D; y: tf.Tensor1D }, rng: Rng): tf.Scalar =>
    crossEntropy(vitForward(vit, b.x, { training: true, rng }).logits!, b.y, 0.1);
}

async function run(vit: Vit, opt: Optimizer, params: Map<string, tf.Variable>, from: number, to: number): Promise<StepInfo[]> {
  return trainLoop({
    params, optimizer: opt, steps: 20, startStep: from, endStep: to, seed: 7,
    batch: batchAt, loss: lossOf(vit),
    lr: { kind: 'cosine', base: 3e-3, min: 1e-5, warmupIters: 3, totalIters: 20 },
    weightDecay: { kind: 'constant', value: 0.05 },
    clipGradNorm: 1.0,
  });
}

describe('training core', () => {
  it('leaks no tensor over 20 steps, and the loss goes down', async function () {
    this.timeout(120000);
    const vit = createVit('vit_tiny_patch16_224', CFG, { seed: 1 });
    const params = vitVariables(vit);
    const opt = new Optimizer(ADAMW_DEFAULTS, params);
    const counts: number[] = [];
    const infos = await trainLoop({
      params, optimizer: opt, steps: 20, seed: 7, batch: batchAt, loss: lossOf(vit),
      lr: { kind: 'constant', value: 3e-3 },
      onStep: () => {
        counts.push(tf.memory().numTensors);
      },
    });
    assert.equal(new Set(counts).size, 1, `live tensors per step: ${counts.join(',')}`);
    const first = infos.slice(0, 5).reduce((a, i) => a + i.loss, 0) / 5;
    const last = infos.slice(-5).reduce((a, i) => a + i.loss, 0) / 5;
    assert.ok(last < first, `loss did not fall: ${first} → ${last}`);
    opt.dispose();
    disposeVit(vit);
  });

  it('only the variables in the trainable set move; a frozen variable in the set is an error', () => {
    const vit = createVit('vit_tiny_patch16_224', CFG, { seed: 1 });
    const all = vitVariables(vit);
    const trainable = new Map([...all].filter(([k]) => k.startsWith('blocks.1.') || k.startsWith('head.')));
    const before = new Map([...all].map(([k, v]) => [k, v.dataSync().slice()]));
    const opt = new Optimizer(ADAMW_DEFAULTS, trainable);
    const b = batchAt(0);
    trainStep({ params: trainable, optimizer: opt, lr: 1e-2, weightDecay: 0.1, loss: () => lossOf(vit)(b, new Rng(1)) });
    for (const [k, v] of all) {
      const moved = v.dataSync().some((x, i) => x !== before.get(k)![i]);
      assert.equal(moved, trainable.has(k), `${k} moved=${moved}`);
    }
    all.get('blocks.1.norm1.weight')!.trainable = false;
    assert.throws(() => trainStep({ params: trainable, optimizer: opt, lr: 1e-2, loss: () => lossOf(vit)(b, new Rng(1)) }), /'blocks.1.norm1.weight' is in the trainable set but its variable has trainable = false/);
    tf.dispose([b.x, b.y]);
    opt.dispose();
    disposeVit(vit);
  });

  it('same seed ⇒ same numbers; resuming from a checkpoint continues exactly', async function () {
    this.timeout(120000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-resume-'));
    const mk = (): { vit: Vit; params: Map<string, tf.Variable>; opt: Optimizer } => {
      const vit = createVit('vit_tiny_patch16_224', CFG, { seed: 1 });
      const params = vitVariables(vit);
      return { vit, params, opt: new Optimizer(ADAMW_DEFAULTS, params) };
    };
    // uninterrupted: steps 0..9
    const a = mk();
    const full = await run(a.vit, a.opt, a.params, 0, 10);
    // same seed again
    const b = mk();
    const again = await run(b.vit, b.opt, b.params, 0, 10);
    assert.deepEqual(again.map((i) => i.loss), full.map((i) => i.loss));
    // interrupted at 5: save, build a fresh model (different init), load, continue
    const c = mk();
    await run(c.vit, c.opt, c.params, 0, 5);
    const file = path.join(dir, 'ckpt.safetensors');
    saveCheckpoint(file, { params: c.params, optimizer: c.opt, meta: { seed: 7 } });
    const d = { vit: createVit('vit_tiny_patch16_224', CFG, { seed: 99 }) } as { vit: Vit; params: Map<string, tf.Variable>; opt: Optimizer };
    d.params = vitVariables(d.vit);
    d.opt = new Optimizer(ADAMW_DEFAULTS, d.params);
    const rep = loadCheckpoint(file, { params: d.params, optimizer: d.opt });
    assert.equal(d.opt.step, 5);
    assert.equal(rep.meta.seed, 7);
    const resumed = await run(d.vit, d.opt, d.params, 5, 10);
    assert.deepEqual(resumed.map((i) => i.loss), full.slice(5).map((i) => i.loss));
    for (const [k, v] of a.params) assert.deepEqual(d.params.get(k)!.dataSync(), v.dataSync(), `${k} differs after resume`);
    for (const x of [a, b, c, d]) {
      x.opt.dispose();
      disposeVit(x.vit);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
