/**
 * Throughput records (unmerged / ToMe / PYRA) and the merge visualisation (micro ViT, tiny images).
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { createVit, disposeVit, Vit } from '../lib/vit/params';
import { createPyra, disposePyra, Pyra } from '../lib/tome/pyra';
import { measureThroughput, compareThroughput, sweepTome } from '../lib/tome/throughput';
import { mergeGroups, mergeVisualization, toPng, visualizeMerges } from '../lib/tome/vis';
import { vitMacs } from '../lib/tome/flops';
import { noLeak, randArray } from './util';

const MICRO = { imgSize: 32, patchSize: 4, embedDim: 32, depth: 4, numHeads: 2, numClasses: 5 } as const;

describe('tome: throughput records', () => {
  let vit: Vit;
  let pyra: Pyra;
  before(() => {
    vit = createVit('vit_tiny_patch16_224', MICRO, { seed: 3 });
    pyra = createPyra(vit.config, [8, 8, 8, 8], { seed: 4 });
  });
  after(() => {
    disposeVit(vit);
    disposePyra(pyra);
  });

  it('measures unmerged / ToMe / PYRA as JSON records with batch, threads, backend and MACs', async () => {
    const recs = await noLeak(() => compareThroughput(vit, { schedule: [8, 8, 8, 8], pyra }, { batch: 2, warmup: 1, iters: 2 }));
    assert.deepEqual(recs.map((r) => r.mode), ['unmerged', 'tome', 'pyra']);
    assert.deepEqual(recs.map((r) => r.tokensOut), [65, 33, 33]);
    for (const r of recs) {
      assert.equal(r.kind, 'throughput');
      assert.equal(r.batch, 2);
      assert.equal(r.backend, tf.getBackend());
      assert.ok(r.threads >= 1);
      assert.ok(r.iters >= 2 && r.warmupIters === 1);
      assert.ok(r.imgPerSec > 0 && Number.isFinite(r.imgPerSec));
      assert.ok(Math.abs(r.imgPerSec - (1000 * r.batch) / r.msPerIter) < 1e-9);
      assert.deepEqual(JSON.parse(JSON.stringify(r)), r);
    }
    assert.equal(recs[0].speedup, 1);
    assert.equal(recs[0].macsPerImage, vitMacs(vit.config).total);
    assert.equal(recs[1].macsPerImage, vitMacs(vit.config, { schedule: [8, 8, 8, 8] }).total);
    assert.equal(recs[2].macsPerImage - recs[1].macsPerImage, 2 * 32 * 32, 'PYRA adds 2rD per block');
  });

  it('sweeps constant r; honours minSeconds; rejects bad options', () => {
    const sweep = sweepTome(vit, [0, 4, 16], { batch: 1, warmup: 0, iters: 1 });
    assert.deepEqual(sweep.map((r) => r.label), ['r=0', 'r=4', 'r=16']);
    assert.deepEqual(sweep.map((r) => r.tokensOut), [65, 49, 9]); // r=4: 65 − 4·4; r=16: 65 → 49 → 33 → 17 → 9 (cap 8 last)
    const t = measureThroughput(vit, { mode: 'tome', schedule: 2 }, { batch: 1, warmup: 0, iters: 1, minSeconds: 0.05 });
    assert.ok(t.iters >= 1 && t.iters * t.msPerIter >= 50);
    assert.throws(() => measureThroughput(vit, { mode: 'unmerged' }, { batch: 0 }), /batch must be a positive integer/);
    assert.throws(() => measureThroughput(vit, { mode: 'unmerged' }, { btch: 2 } as never), /unknown key 'btch'/);
    assert.throws(() => measureThroughput(vit, { mode: 'fast' } as never), /mode must be 'unmerged', 'tome' or 'pyra'/);
  });
});

describe('tome: merge visualisation', () => {
  it('paints groups with their mean colour and outlines (hand-made 2×2-patch example)', () => {
    // 8×8 image, 4-px patches (2×2 grid). Tokens: cls, top row (patches 0, 1), bottom row (patches 2, 3).
    const source = tf.tensor2d(
      [
        [1, 0, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 0, 0, 1, 1],
      ],
      [3, 5],
    );
    assert.deepEqual(Array.from(mergeGroups(source)), [1, 1, 2, 2]);
    const px = new Float32Array(8 * 8 * 3);
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        const o = (y * 8 + x) * 3;
        px[o] = y < 4 ? (x < 4 ? 0.2 : 0.6) : 0; // top half red: mean 0.4
        px[o + 1] = y < 4 ? 0 : 0.8; // bottom half green 0.8
        px[o + 2] = 0.5;
      }
    }
    const image = tf.tensor3d(px, [8, 8, 3]);
    const vis = mergeVisualization(image, source, { patchSize: 4, outline: [1, 0, 0] });
    assert.deepEqual([vis.width, vis.height, vis.channels, vis.data.length], [8, 8, 3, 192]);
    const at = (y: number, x: number): number[] => Array.from(vis.data.slice((y * 8 + x) * 3, (y * 8 + x) * 3 + 3));
    assert.deepEqual(at(1, 1), [Math.floor(0.4 * 255), 0, Math.floor(0.5 * 255)], 'interior of the top group: its mean colour');
    assert.deepEqual(at(2, 6), [Math.floor(0.4 * 255), 0, Math.floor(0.5 * 255)]);
    assert.deepEqual(at(5, 3), [0, Math.floor(0.8 * 255), Math.floor(0.5 * 255)], 'interior of the bottom group');
    assert.deepEqual(at(0, 0), [255, 0, 0], 'image border is an outline');
    assert.deepEqual(at(3, 3), [255, 0, 0], 'row 3 borders the other group');
    assert.deepEqual(at(4, 3), [255, 0, 0]);
    const flat = mergeVisualization(image, source, { patchSize: 4, outline: 'none' });
    assert.deepEqual(Array.from(flat.data.slice(0, 3)), [Math.floor(0.4 * 255), 0, Math.floor(0.5 * 255)]);
    const norm = mergeVisualization(tf.mul(image, 2).sub(1), source, { patchSize: 4, outline: 'none', range: [-1, 1] });
    assert.deepEqual(Array.from(norm.data.slice(0, 3)), Array.from(flat.data.slice(0, 3)));
    assert.throws(() => mergeVisualization(image, source, { patchSize: 3 }), /not a whole number of 3-pixel patches/);
    assert.throws(() => mergeVisualization(image, source, { patchSize: 2 }), /covers 4 patches but the image has 4×4 = 16/);
    assert.throws(() => mergeVisualization(image, source, { patchSize: 4, colour: 1 } as never), /unknown key 'colour'/);
    tf.dispose([source, image]);
  });

  it('encodes PNG bytes that decode back to the same pixels', async () => {
    const data = new Uint8Array(4 * 2 * 3).map((_, i) => (i * 37) % 256);
    const png = await toPng({ width: 4, height: 2, channels: 3, data });
    assert.deepEqual(Array.from(png.slice(0, 8)), [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const sharp = require('sharp');
    const raw: Buffer = await sharp(Buffer.from(png)).raw().toBuffer();
    assert.deepEqual(Array.from(raw), Array.from(data));
  });

  it('visualizeMerges runs a tracked forward (ToMe or PYRA) and paints every image', async () => {
    const vit = createVit('vit_tiny_patch16_224', MICRO, { seed: 3 });
    const pyra = createPyra(vit.config, [16, 8, 8, 0], { seed: 1 });
    try {
      const images = tf.tensor4d(randArray(2 * 32 * 32 * 3, 4), [2, 32, 32, 3]);
      const out = await noLeak(() => visualizeMerges(vit, images, { schedule: [16, 8, 8, 0] }, { range: [-1, 1] }));
      assert.equal(out.length, 2);
      for (const v of out) assert.deepEqual([v.width, v.height, v.data.length], [32, 32, 32 * 32 * 3]);
      const viaPyra = visualizeMerges(vit, images, { pyra }, { range: [-1, 1] });
      assert.deepEqual(Array.from(viaPyra[1].data), Array.from(out[1].data), 'PYRA at init merges like ToMe');
      assert.throws(() => visualizeMerges(vit, images, { schedule: 0 }), /merged nothing/);
      images.dispose();
    } finally {
      disposeVit(vit);
      disposePyra(pyra);
    }
  });
});
