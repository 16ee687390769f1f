/**
 * Core data pipeline: CSV reader, decoding errors, the Loader (determinism by (seed, step), prefetch invariance,
 * multi-view, frames, masks, no tensor leaks, progress).
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseCsv, column, columns, intCell } from '../data-loaders/csv';
import { loadImage, loadGeoTiff } from '../data-loaders/decode';
import { writeJpeg, writePng, writeGeoTiff, encodeImage } from '../data-loaders/encode';
import { Img, makeImg } from '../data-loaders/image';
import {
  Dataset,
  Loader,
  RecordDataset,
  Sample,
  channelStats,
  disposeBatch,
  normalizeBatch,
  subset,
} from '../data-loaders/dataset';
import { compose, dinoMultiCrop, randomHFlip, randomResizedCrop } from '../data-loaders/augment';
import { Rng } from '../lib/rng';

function ramp(h: number, w: number, c: number, seed = 1): Img {
  const img = makeImg(h, w, c);
  const r = new Rng(seed);
  for (let i = 0; i < img.data.length; i++) img.data[i] = Math.round(r.next() * 255) / 255;
  return img;
}

/** An in-memory dataset whose image i is filled with i/100 (so rows are identifiable after batching). */
function memDataset(n: number, size = 8, opts: { frames?: number; mask?: boolean } = {}): Dataset {
  const recs = Array.from({ length: n }, (_, i) => ({ label: i % 3, meta: { id: i } }));
  return new RecordDataset('mem', recs, async (r, i) => {
    const image = makeImg(size, size, 3);
    image.data.fill(i / 100);
    const s: Omit<Sample, 'index'> = { image, label: r.label, meta: r.meta };
    if (opts.frames) s.frames = [image, ...Array.from({ length: opts.frames - 1 }, () => makeImg(size, size, 3))];
    if (opts.mask) {
      const m = makeImg(size, size, 1);
      m.data.fill(i % 2);
      s.mask = m;
    }
    return s;
  });
}

describe('data: csv', () => {
  it('parses quotes, CRLF, blank lines and names missing columns', () => {
    const t = parseCsv('a,b,c\r\n1,"x,y",3\r\n\r\n2,"he said ""hi""",4\n', 'mem.csv');
    assert.deepEqual(t.header, ['a', 'b', 'c']);
    assert.deepEqual(t.rows, [['1', 'x,y', '3'], ['2', 'he said "hi"', '4']]);
    assert.deepEqual(t.lines, [2, 4]);
    assert.equal(column(t, 'b'), 1);
    assert.throws(() => columns(t, ['a', 'zz', 'yy']), /mem\.csv: missing columns 'zz', 'yy'; columns: 'a', 'b', 'c'/);
  });
  it('reports the line of a ragged row and of a bad integer', () => {
    assert.throws(() => parseCsv('a,b\n1,2\n3\n', 'f.csv'), /f\.csv: line 3: 1 fields, expected 2/);
    const t = parseCsv('a,b\n1,2\nx,3\n', 'g.csv');
    assert.equal(intCell(t, 0, 0), 1);
    assert.throws(() => intCell(t, 1, 0), /g\.csv: line 3, column 'a': expected an integer, got 'x'/);
  });
});

describe('data: decode', () => {
  let dir: string;
  before(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vitpeft-decode-'));
  });
  after(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('PNG round-trips exactly, JPEG closely; grey PNG becomes RGB', async () => {
    const img = ramp(12, 10, 3);
    await writePng(path.join(dir, 'a.png'), img);
    const back = await loadImage(path.join(dir, 'a.png'));
    assert.deepEqual([back.height, back.width, back.channels], [12, 10, 3]);
    for (let i = 0; i < img.data.length; i++) assert.ok(Math.abs(back.data[i] - img.data[i]) < 1e-6);
    const smooth = makeImg(16, 16, 3);
    for (let i = 0; i < smooth.data.length; i++) smooth.data[i] = 0.3 + 0.002 * (i % 48);
    await writeJpeg(path.join(dir, 'a.jpg'), smooth, 95);
    const j = await loadImage(path.join(dir, 'a.jpg'));
    let err = 0;
    for (let i = 0; i < j.data.length; i++) err = Math.max(err, Math.abs(j.data[i] - smooth.data[i]));
    assert.ok(err < 0.03, `jpeg max err ${err}`);
    const g = makeImg(4, 5, 1);
    g.data.fill(0.4);
    await writePng(path.join(dir, 'g.png'), g);
    const gg = await loadImage(path.join(dir, 'g.png'));
    assert.equal(gg.channels, 3);
    assert.ok(Math.abs(gg.data[2] - 0.4) < 0.003);
  });

  it('13-band GeoTIFF round-trips with georeferencing', async () => {
    const img = makeImg(6, 7, 13);
    for (let i = 0; i < img.data.length; i++) img.data[i] = (i * 37) % 5000;
    await writeGeoTiff(path.join(dir, 'ms.tif'), img, { origin: [-43.5, -22.9], pixelSize: [1e-5, 1e-5] });
    const { img: back, geo } = await loadGeoTiff(path.join(dir, 'ms.tif'), { bands: 13 });
    assert.deepEqual(Array.from(back.data), Array.from(img.data));
    assert.deepEqual(geo?.origin, [-43.5, -22.9]);
    assert.equal(geo?.epsg, 4326);
    assert.ok(Math.abs((geo?.resolution[1] ?? 0) + 1e-5) < 1e-12);
  });

  it('corrupt, truncated, empty, missing files and wrong band counts are errors naming the file', async () => {
    const big = ramp(64, 64, 3, 5);
    const jpg = await encodeImage(big, 'jpeg', 90);
    const png = await encodeImage(big, 'png');
    await fsp.writeFile(path.join(dir, 'trunc.jpg'), jpg.subarray(0, Math.floor(jpg.length * 0.8)));
    await fsp.writeFile(path.join(dir, 'trunc.png'), png.subarray(0, Math.floor(png.length * 0.8)));
    await fsp.writeFile(path.join(dir, 'garbage.jpg'), Buffer.from('definitely not a jpeg'));
    await fsp.writeFile(path.join(dir, 'empty.png'), Buffer.alloc(0));
    for (const f of ['trunc.jpg', 'trunc.png', 'garbage.jpg', 'empty.png']) {
      const p = path.join(dir, f);
      await assert.rejects(loadImage(p), (e: Error) => e.message.includes(p), f);
    }
    await assert.rejects(loadImage(path.join(dir, 'nope.jpg')), /missing image: .*nope\.jpg/);
    const ms = makeImg(8, 8, 13);
    ms.data.fill(1000);
    await writeGeoTiff(path.join(dir, 'ms13.tif'), ms);
    await assert.rejects(loadImage(path.join(dir, 'ms13.tif'), { bands: 10 }), /ms13\.tif: 13 bands, expected 10/);
    const buf = await fsp.readFile(path.join(dir, 'ms13.tif'));
    for (const frac of [0.3, 0.7, 0.95]) {
      await fsp.writeFile(path.join(dir, 'cut.tif'), buf.subarray(0, Math.floor(buf.length * frac)));
      await assert.rejects(loadImage(path.join(dir, 'cut.tif')), /cut\.tif: /);
    }
    await assert.rejects(loadImage(path.join(dir, 'a.png'), { mode: 'keep', bands: 4 }), /a\.png: 3 bands, expected 4/);
  });
});

describe('data: Loader', () => {
  it('batchAt(step) depends only on (seed, step): fresh loader, other prefetch/concurrency, resumed mid-run', async () => {
    const ds = memDataset(23);
    const t = compose(randomResizedCrop({ size: 6, scale: [0.3, 1] }), randomHFlip());
    const a = new Loader(ds, { batchSize: 5, seed: 7, transform: t });
    const b = new Loader(ds, { batchSize: 5, seed: 7, transform: t, prefetch: 0, concurrency: 1 });
    assert.equal(a.stepsPerEpoch, 4);
    const seqA: number[][] = [];
    for (let s = 0; s < 10; s++) {
      const ba = await a.batchAt(s);
      seqA.push(Array.from(await ba.images!.data()));
      assert.deepEqual(Array.from(await ba.labels!.data()), ba.indices.map((i) => i % 3));
      disposeBatch(ba);
    }
    for (const s of [9, 3, 6]) {
      const bb = await b.batchAt(s);
      assert.deepEqual(Array.from(await bb.images!.data()), seqA[s], `step ${s}`);
      disposeBatch(bb);
    }
    const c = new Loader(ds, { batchSize: 5, seed: 8, transform: t });
    const bc = await c.batchAt(0);
    assert.notDeepEqual(Array.from(await bc.images!.data()), seqA[0]);
    disposeBatch(bc);
  });

  it('each epoch is a permutation (dropLast drops the tail), order changes across epochs, eval order is identity', async () => {
    const ds = memDataset(23);
    const l = new Loader(ds, { batchSize: 5, seed: 1 });
    const e0 = [0, 1, 2, 3].flatMap((k) => l.indicesAt(k));
    const e1 = [4, 5, 6, 7].flatMap((k) => l.indicesAt(k));
    assert.equal(new Set(e0).size, 20);
    assert.notDeepEqual(e0, e1);
    const ev = new Loader(ds, { batchSize: 5, shuffle: false });
    assert.equal(ev.stepsPerEpoch, 5);
    assert.deepEqual(ev.indicesAt(4), [20, 21, 22]);
    const last = await ev.batchAt(4);
    assert.deepEqual(last.images!.shape, [3, 8, 8, 3]);
    const d = await last.images!.data();
    assert.ok(Math.abs(d[0] - 0.2) < 1e-6 && Math.abs(d[d.length - 1] - 0.22) < 1e-6);
    disposeBatch(last);
  });

  it('leaves no tensors behind across batches (with a tensor batchTransform) and reports progress', async () => {
    const ds = memDataset(12);
    const seen: number[] = [];
    const l = new Loader(ds, {
      batchSize: 4,
      seed: 3,
      batchTransform: normalizeBatch({ mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] }),
      onProgress: (p) => seen.push(p.done),
    });
    const b0 = await l.batchAt(0);
    disposeBatch(b0);
    const before = tf.memory().numTensors;
    for await (const b of l.epoch(1)) {
      const v = (await b.images!.data())[0];
      assert.ok(Math.abs(v - (b.indices[0] / 100 - 0.5) / 0.25) < 1e-5);
      disposeBatch(b);
    }
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(seen, [1, 1, 2, 3]);
  });

  it('multi-view batches: DINOv2 multi-crop gives 2 global + n local views of the right sizes', async () => {
    const ds = memDataset(6, 16);
    const l = new Loader(ds, {
      batchSize: 3,
      seed: 2,
      views: dinoMultiCrop({ globalSize: 12, localSize: 6, nLocal: 4 }),
    });
    const b = await l.batchAt(0);
    assert.equal(b.images, undefined);
    assert.equal(b.views!.length, 6);
    assert.deepEqual(b.views!.map((v) => v.shape), [
      [3, 12, 12, 3],
      [3, 12, 12, 3],
      [3, 6, 6, 3],
      [3, 6, 6, 3],
      [3, 6, 6, 3],
      [3, 6, 6, 3],
    ]);
    disposeBatch(b);
  });

  it('temporal frames and masks are stacked; shape mismatches name the samples', async () => {
    const l = new Loader(memDataset(4, 8, { frames: 3, mask: true }), { batchSize: 2, shuffle: false });
    const b = await l.batchAt(1);
    assert.equal(b.frames!.length, 3);
    assert.equal(b.images, b.frames![0]);
    assert.deepEqual(b.masks!.shape, [2, 8, 8, 1]);
    assert.deepEqual(Array.from(await b.masks!.data()).slice(0, 1), [0]);
    disposeBatch(b);
    const ragged = new RecordDataset('ragged', [{}, {}], async (_r, i) => ({ image: makeImg(4 + i, 4, 3) }));
    const before = tf.memory().numTensors;
    await assert.rejects(new Loader(ragged, { batchSize: 2, shuffle: false }).batchAt(0), /ragged view 0: sample 1 is 5×4×3 but sample 0 is 4×4×3/);
    assert.equal(tf.memory().numTensors, before);
  });

  it('a failing sample fails its batch with the sample error (never zeros); bad options are rejected', async () => {
    const bad = new RecordDataset('bad', [{ path: 'ok' }, { path: '/nowhere/x.png' }], async (r) => {
      if (r.path !== 'ok') return { image: await loadImage(r.path!) };
      return { image: makeImg(2, 2, 3) };
    });
    await assert.rejects(new Loader(bad, { batchSize: 2, shuffle: false }).batchAt(0), /missing image: \/nowhere\/x\.png/);
    assert.throws(() => new Loader(bad, { batchSize: 2, shuffle: false, shufle: true } as never), /unknown key 'shufle'/);
    assert.throws(() => new Loader(bad, { batchSize: 3 }), /make no full batch of 3/);
    assert.throws(() => new RecordDataset('none', [], async () => ({ image: makeImg(1, 1, 1) }), undefined, 'split.txt'), /none: empty split, no samples in split\.txt/);
  });

  it('subset re-indexes, channelStats computes per-channel mean/std', async () => {
    const ds = memDataset(10);
    const sub = subset(ds, [2, 5]);
    assert.equal(sub.length, 2);
    assert.ok(Math.abs((await sub.get(1)).image.data[0] - 0.05) < 1e-7);
    const st = await channelStats(sub);
    assert.ok(Math.abs(st.mean[0] - 0.035) < 1e-7);
    assert.ok(Math.abs(st.std[1] - 0.015) < 1e-7);
  });
});
