/**
 * Issue 19 items 3 and 7: decode limits checked from the header before pixels are allocated (pixels per image,
 * decompression bombs, the process-wide memory budget of the decodes in flight), and decoding fidelity (`mode: 'keep'`
 * keeps grey and grey + alpha; 16-bit PNGs keep 16 bits).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import sharp from 'sharp';
import { loadImage, loadGeoTiff } from '../data-loaders/decode';
import { encodeImage } from '../data-loaders/encode';
import { makeImg } from '../data-loaders/image';
import { RecordDataset, Loader, disposeBatch } from '../data-loaders/dataset';
import { setDecodeLimits, decodeLimits, decodeMemoryStats, PILLOW_MAX_PIXELS } from '../data-loaders/limits';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-decode-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/**
 * A valid little-endian TIFF of `width`×`height`×`bands` uint16 zeros, deflate-compressed, one row per strip and every
 * strip pointing at the same compressed row: a few tens of KB that decode to width·height·bands·2 bytes.
 */
function deflateBomb(width: number, height: number, bands: number): Buffer {
  const row = zlib.deflateSync(Buffer.alloc(width * bands * 2));
  const tags: Array<[number, number, number[]]> = [
    [256, 4, [width]], [257, 4, [height]], [258, 3, Array(bands).fill(16)], [259, 3, [8]], [262, 3, [1]],
    [273, 4, []], [277, 3, [bands]], [278, 4, [1]], [279, 4, Array(height).fill(row.length)], [284, 3, [1]],
    [339, 3, Array(bands).fill(1)],
  ];
  const ifdSize = 2 + tags.length * 12 + 4;
  const extra = (t: [number, number, number[]]): number => (t[0] === 273 ? height * 4 : t[2].length * (t[1] === 3 ? 2 : 4));
  let off = 8 + ifdSize;
  const where = new Map<number, number>();
  for (const t of tags) if (extra(t) > 4) (where.set(t[0], off), (off += extra(t)));
  const blob = off;
  tags[5][2] = Array(height).fill(blob);
  const buf = Buffer.alloc(blob + row.length);
  buf.write('II', 0, 'latin1');
  buf.writeUInt16LE(42, 2);
  buf.writeUInt32LE(8, 4);
  buf.writeUInt16LE(tags.length, 8);
  tags.forEach(([code, type, vals], k) => {
    const e = 10 + k * 12;
    buf.writeUInt16LE(code, e);
    buf.writeUInt16LE(type, e + 2);
    buf.writeUInt32LE(vals.length, e + 4);
    const put = (at: number): void => vals.forEach((v, i) => (type === 3 ? buf.writeUInt16LE(v, at + 2 * i) : buf.writeUInt32LE(v, at + 4 * i)));
    if (where.has(code)) {
      buf.writeUInt32LE(where.get(code)!, e + 8);
      put(where.get(code)!);
    } else put(e + 8);
  });
  row.copy(buf, blob);
  return buf;
}

describe('decode limits (issue 19.3)', () => {
  let saved = decodeLimits();
  beforeEach(() => (saved = decodeLimits()));
  afterEach(() => setDecodeLimits(saved));

  it(`defaults: Pillow's pixel limit (${PILLOW_MAX_PIXELS.toLocaleString('en')}), 1000× expansion, 4 GiB in flight`, () => {
    assert.deepEqual(decodeLimits(), { maxPixels: 178_956_970, maxExpansion: 1000, memoryBudget: 4 * 2 ** 30 });
    assert.throws(() => setDecodeLimits({ maxPixels: '1e6' as never }), /maxPixels must be a number > 0 \(Infinity allowed\), got "1e6"/);
    assert.throws(() => setDecodeLimits({ maxPixel: 1 } as never), /unknown key 'maxPixel'/);
  });

  it('a 4000²×13 deflate GeoTIFF bomb is refused from its header, by default, before any pixel is decoded', async () => {
    const file = path.join(tmp, 'bomb.tif');
    fs.writeFileSync(file, deflateBomb(4000, 4000, 13));
    const kb = Math.round(fs.statSync(file).size / 1024);
    assert.ok(kb < 200, `bomb is ${kb} KB`);
    decodeMemoryStats(true);
    await assert.rejects(loadImage(file), /bomb\.tif: a [\d,]+-byte file declares 4000×4000×13 samples \(396\.7 MiB decoded, \d+× its size\): refused as a decompression bomb/);
    await assert.rejects(loadGeoTiff(file, { maxExpansion: Infinity, maxPixels: 1e6 }), /bomb\.tif: 4000×4000 = 16,000,000 pixels is over the limit of 1,000,000 \(maxPixels/);
    setDecodeLimits({ maxExpansion: Infinity, memoryBudget: 2 ** 30 });
    await assert.rejects(loadImage(file), /bomb\.tif: decoding 4000×4000×13 needs ≈ 1\.16 GiB, more than the decode memory budget of 1\.00 GiB/);
    assert.equal(decodeMemoryStats().highWater, 0, 'refused from the header: no decode ever started');
  });

  it('a PNG over maxPixels is refused from its header (process limit and per-call option)', async () => {
    const file = path.join(tmp, 'big.png');
    fs.writeFileSync(file, await sharp({ create: { width: 3000, height: 2000, channels: 3, background: '#808080' } }).png().toBuffer());
    await assert.rejects(loadImage(file, { maxPixels: 5e6 }), /big\.png: 2000×3000 = 6,000,000 pixels is over the limit of 5,000,000/);
    setDecodeLimits({ maxPixels: 1e6 });
    await assert.rejects(loadImage(file), /big\.png: 2000×3000 = 6,000,000 pixels is over the limit of 1,000,000/);
    const img = await loadImage(file, { maxPixels: 1e7 });
    assert.equal(img.width * img.height, 6e6);
  });

  it('the decodes in flight stay within the memory budget (8 concurrent decodes of 6 MB images, budget for 2)', async () => {
    const files: string[] = [];
    for (let i = 0; i < 8; i++) {
      const f = path.join(tmp, `mid-${i}.png`);
      fs.writeFileSync(f, await sharp({ create: { width: 600, height: 500, channels: 3, background: { r: 10 * i, g: 0, b: 0 } } }).png().toBuffer());
      files.push(f);
    }
    const one = 600 * 500 * 3 * 5; // uint8 output + float32 image
    setDecodeLimits({ memoryBudget: 2 * one + 64 * 1024 });
    decodeMemoryStats(true);
    const ds = new RecordDataset('mid', files.map((p, i) => ({ path: p, label: i })), async (r) => ({ image: await loadImage(r.path!), label: r.label }));
    const loader = new Loader(ds, { batchSize: 8, shuffle: false, concurrency: 8, prefetch: 0 });
    const b = await loader.batchAt(0);
    const red = Array.from(b.images!.slice([0, 0, 0, 0], [8, 1, 1, 1]).dataSync()).map((v) => Math.round(v * 255));
    disposeBatch(b);
    assert.deepEqual(red, [0, 10, 20, 30, 40, 50, 60, 70], 'every image decoded, in order');
    const s = decodeMemoryStats();
    assert.equal(s.inUse, 0);
    assert.ok(s.highWater > one && s.highWater <= 2 * one + 64 * 1024, `high-water ${s.highWater} for a budget of ${2 * one + 64 * 1024}`);
    setDecodeLimits({ memoryBudget: one / 2 });
    await assert.rejects(loadImage(files[0]), /mid-0\.png: decoding 500×600×3 needs ≈ 4\.3 MiB, more than the decode memory budget of 2\.1 MiB/);
  });

  it('a file larger than the memory budget is refused before it is read', async () => {
    const file = path.join(tmp, 'huge.tif');
    fs.writeFileSync(file, Buffer.alloc(3 * 2 ** 20));
    setDecodeLimits({ memoryBudget: 2 ** 20 });
    await assert.rejects(loadImage(file), /huge\.tif: 3,145,728-byte image is larger than the decode memory budget of 1,048,576 bytes/);
  });
});

describe('decoding fidelity (issue 19.7)', () => {
  const u16png = async (vals: number[], w: number, h: number, c: 1 | 3 | 4): Promise<Buffer> =>
    sharp(new Uint16Array(vals), { raw: { width: w, height: h, channels: c } }).toColourspace(c === 1 ? 'grey16' : 'rgb16').png().toBuffer();

  it("mode 'keep' keeps a grey PNG at 1 channel and grey + alpha at 2 (values exact)", async () => {
    const grey = path.join(tmp, 'grey.png');
    fs.writeFileSync(grey, await sharp(Buffer.from([0, 128, 255, 64]), { raw: { width: 2, height: 2, channels: 1 } }).toColourspace('b-w').png().toBuffer());
    const g = await loadImage(grey, { mode: 'keep' });
    assert.equal(g.channels, 1);
    assert.deepEqual(Array.from(g.data, (v) => Math.round(v * 255)), [0, 128, 255, 64]);
    assert.equal((await loadImage(grey)).channels, 3, "'rgb' still expands grey (PIL convert('RGB'))");
    const ga = path.join(tmp, 'grey-alpha.png');
    fs.writeFileSync(ga, await sharp(Buffer.from([0, 255, 100, 128, 200, 0, 50, 60]), { raw: { width: 2, height: 2, channels: 2 } }).toColourspace('b-w').png().toBuffer());
    const a = await loadImage(ga, { mode: 'keep' });
    assert.equal(a.channels, 2);
    assert.deepEqual(Array.from(a.data, (v) => Math.round(v * 255)), [0, 255, 100, 128, 200, 0, 50, 60]);
    const rgba = await loadImage(ga, { mode: 'keep', bands: 2 });
    assert.equal(rgba.channels, 2);
  });

  it('16-bit PNGs keep their 16 bits (grey in keep mode, RGB in rgb mode), scaled by 1/65535', async () => {
    const g16 = path.join(tmp, 'g16.png');
    fs.writeFileSync(g16, await u16png([0, 1000, 65535, 30001], 2, 2, 1));
    const g = await loadImage(g16, { mode: 'keep' });
    assert.equal(g.channels, 1);
    assert.deepEqual(Array.from(g.data, (v) => Math.round(v * 65535)), [0, 1000, 65535, 30001]);
    const rgb16 = path.join(tmp, 'rgb16.png');
    const vals = [0, 1000, 65535, 30001, 1, 2, 3, 4, 5, 257, 258, 259];
    fs.writeFileSync(rgb16, await u16png(vals, 2, 2, 3));
    const c = await loadImage(rgb16);
    assert.equal(c.channels, 3);
    assert.deepEqual(Array.from(c.data, (v) => Math.round(v * 65535)), vals, 'no 8-bit quantisation');
    const raw = await loadImage(rgb16, { scale: 1 });
    assert.deepEqual(Array.from(raw.data), vals);
    const rgba16 = path.join(tmp, 'rgba16.png');
    fs.writeFileSync(rgba16, await u16png([...vals, 7, 8, 9, 10], 2, 2, 4));
    const k = await loadImage(rgba16, { mode: 'keep', scale: 1 });
    assert.equal(k.channels, 4);
    assert.deepEqual(Array.from(k.data), [0, 1000, 65535, 30001, 1, 2, 3, 4, 5, 257, 258, 259, 7, 8, 9, 10]);
  });

  it('encodeImage writes a 1-channel image as a grey PNG (not three copies)', async () => {
    const img = makeImg(2, 2, 1, Float32Array.from([0, 0.5, 1, 0.25]));
    const meta = await sharp(await encodeImage(img, 'png')).metadata();
    assert.equal(meta.channels, 1);
  });
});
