/**
 * Image helpers: the PNG encoder checked by decoding with sharp (libvips), tensor → pixels, grids, overlays.
 */
import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import {
  Image, encodePng, crc32, tensorToImage, toRgb, upscale, imageGrid, batchToImages, segmentOverlay, pngBundle, showImageTable, showImageGrid,
} from '../lib/report/image';
import { setDisplaySink, MimeBundle } from '../lib/report/display';
import { noLeak } from './util';

/** Decode with sharp; `channels` is what the file declares (sharp expands grey to 3 bands on raw output). */
async function decode(png: Buffer): Promise<{ data: Uint8Array; width: number; height: number; channels: number }> {
  const meta = await sharp(png).metadata();
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  const channels = meta.channels ?? info.channels;
  const px = channels === info.channels ? new Uint8Array(data) : Uint8Array.from({ length: info.width * info.height * channels }, (_, i) => data[i * info.channels]);
  return { data: px, width: info.width, height: info.height, channels };
}

function pattern(width: number, height: number, channels: 1 | 3 | 4): Image {
  const data = new Uint8Array(width * height * channels);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + 11) % 256;
  return { width, height, channels, data };
}

describe('report/image', () => {
  it('crc32 matches the standard check value', () => {
    assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  });

  for (const channels of [1, 3, 4] as const) {
    it(`encodePng round-trips ${channels}-channel pixels through sharp's decoder`, async () => {
      const img = pattern(13, 7, channels);
      const png = encodePng(img);
      assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      const d = await decode(png);
      assert.equal(d.width, 13);
      assert.equal(d.height, 7);
      assert.equal(d.channels, channels);
      assert.deepEqual([...d.data], [...img.data]);
    });
  }

  it('encodePng rejects inconsistent buffers', () => {
    assert.throws(() => encodePng({ width: 2, height: 2, channels: 3, data: new Uint8Array(11) }), /11 bytes for 2x2x3 \(12\)/);
    assert.throws(() => encodePng({ width: 2, height: 2, channels: 2 as 3, data: new Uint8Array(8) }), /channels must be 1, 3 or 4/);
  });

  it('tensorToImage maps [lo, hi] to 0..255, clips, undoes mean/std, accepts [H,W], [H,W,C], [1,H,W,C]', async () => {
    await noLeak(() => tf.tidy(() => {
      const t = tf.tensor3d([0, 0.5, 1, 2, -1, 0.25], [1, 2, 3]);
      const img = tensorToImage(t);
      assert.deepEqual([img.width, img.height, img.channels], [2, 1, 3]);
      assert.deepEqual([...img.data], [0, 128, 255, 255, 0, 64]);
      const auto = tensorToImage(t, { range: 'auto' }); // -1..2
      assert.deepEqual([...auto.data], [85, 128, 170, 255, 0, 106]);
      const norm = tensorToImage(tf.tensor4d([0, 0, 0], [1, 1, 1, 3]), { mean: [0.5, 0.25, 0], std: [1, 1, 1] });
      assert.deepEqual([...norm.data], [128, 64, 0]);
      const grey = tensorToImage(tf.tensor2d([[0, 1]]));
      assert.deepEqual([grey.channels, ...grey.data], [1, 0, 255]);
      assert.throws(() => tensorToImage(tf.zeros([2, 2, 2, 3])), /batch 1/);
      assert.throws(() => tensorToImage(tf.zeros([2, 2, 2])), /channels must be 1, 3 or 4/);
      assert.throws(() => tensorToImage(t, { mean: [0, 0] }), /mean\/std need 3 values/);
    }));
  });

  it('toRgb, upscale and imageGrid place pixels where expected', () => {
    const grey: Image = { width: 1, height: 1, channels: 1, data: Uint8Array.from([9]) };
    assert.deepEqual([...toRgb(grey).data], [9, 9, 9]);
    const rgba: Image = { width: 1, height: 1, channels: 4, data: Uint8Array.from([0, 0, 0, 0]) };
    assert.deepEqual([...toRgb(rgba).data], [255, 255, 255], 'transparent composites over white');
    const two: Image = { width: 2, height: 1, channels: 1, data: Uint8Array.from([1, 2]) };
    assert.deepEqual([...upscale(two, 2).data], [1, 1, 2, 2, 1, 1, 2, 2]);
    const red: Image = { width: 2, height: 2, channels: 3, data: Uint8Array.from(Array(4).fill([255, 0, 0]).flat()) };
    const blue: Image = { width: 2, height: 2, channels: 3, data: Uint8Array.from(Array(4).fill([0, 0, 255]).flat()) };
    const g = imageGrid([red, blue, red], { cols: 2, pad: 1, background: [0, 255, 0] });
    assert.deepEqual([g.width, g.height], [2 * 2 + 3, 2 * 2 + 3]);
    const px = (x: number, y: number): number[] => [...g.data.subarray((y * g.width + x) * 3, (y * g.width + x) * 3 + 3)];
    assert.deepEqual(px(0, 0), [0, 255, 0]);
    assert.deepEqual(px(1, 1), [255, 0, 0]);
    assert.deepEqual(px(4, 2), [0, 0, 255]);
    assert.deepEqual(px(2, 4), [255, 0, 0]);
    assert.deepEqual(px(5, 5), [0, 255, 0], 'the empty 4th cell is background');
    assert.throws(() => imageGrid([]), /no images/);
  });

  it('batchToImages splits [N,H,W,C] without leaking', async () => {
    await noLeak(() => {
      const b = tf.tidy(() => tf.stack([tf.zeros([2, 2, 3]), tf.ones([2, 2, 3])]));
      const imgs = batchToImages(b);
      assert.equal(imgs.length, 2);
      assert.deepEqual([imgs[0].data[0], imgs[1].data[0]], [0, 255]);
      tf.dispose(b);
    });
  });

  it('segmentOverlay paints each group with its mean colour and draws borders between groups', () => {
    // 4x2 image, 2x1 grid of 2x2 patches... use a 2x2 grid of 2x2 patches: labels [0,0,1,1] (top row, bottom row)
    const data = new Uint8Array(4 * 4 * 3);
    for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) data.set(y < 2 ? [x < 2 ? 100 : 200, 0, 0] : [0, 0, 50], (y * 4 + x) * 3);
    const out = segmentOverlay({ width: 4, height: 4, channels: 3, data }, [0, 0, 1, 1], 2, 2, { border: [1, 2, 3] });
    const px = (x: number, y: number): number[] => [...out.data.subarray((y * 4 + x) * 3, (y * 4 + x) * 3 + 3)];
    assert.deepEqual(px(0, 0), [150, 0, 0], 'top group: mean of 100 and 200');
    assert.deepEqual(px(3, 0), [150, 0, 0]);
    assert.deepEqual(px(0, 1), [1, 2, 3], 'border on the last row of the top group');
    assert.deepEqual(px(0, 3), [0, 0, 50]);
    assert.throws(() => segmentOverlay({ width: 4, height: 4, channels: 3, data }, [0, 1, 2], 2, 2), /3 labels for a 2x2 grid/);
    assert.throws(() => segmentOverlay({ width: 4, height: 4, channels: 3, data }, [0, 0, 0, 0, 0, 0, 0, 0, 0], 3, 3), /not divisible/);
  });

  it('pngBundle upscales small images and emits base64 PNG; showImageTable emits html + a PNG grid', async () => {
    const img = pattern(8, 8, 3);
    const b = pngBundle(img, { caption: 'sample <1>' });
    const d = await decode(Buffer.from(b['image/png'] as string, 'base64'));
    assert.equal(d.width, 128, 'auto scale: 8 px × 16 (the cap) = 128 px');
    assert.match(b['text/html'] as string, /<img src="data:image\/png;base64,[A-Za-z0-9+/=]+"\/><figcaption>sample &lt;1&gt;<\/figcaption>/);
    assert.equal(b['text/plain'], '<image 8x8x3: sample <1>>');
    const shown: MimeBundle[] = [];
    setDisplaySink({ display: (bundle) => shown.push(bundle) });
    try {
      showImageTable([[{ image: img, caption: 'a' }, { image: img }], [{ image: img }]], { header: ['x', 'y'], scale: 2 });
    } finally {
      setDisplaySink(null);
    }
    assert.equal(((shown[0]['text/html'] as string).match(/<img /g) ?? []).length, 3);
    const grid = await decode(Buffer.from(shown[0]['image/png'] as string, 'base64'));
    assert.deepEqual([grid.width, grid.height], [2 * (2 * 8 + 3 * 2), 2 * (2 * 8 + 3 * 2)]);
  });

  it('showImageGrid tiles a batch tensor into one PNG', async () => {
    const shown: MimeBundle[] = [];
    setDisplaySink({ display: (bundle) => shown.push(bundle) });
    const batch = tf.tidy(() => tf.stack([tf.zeros([4, 4, 3]), tf.ones([4, 4, 3]), tf.fill([4, 4, 3], 0.5)]));
    try {
      await noLeak(() => showImageGrid(batch, { cols: 3, pad: 1, scale: 1 }));
    } finally {
      setDisplaySink(null);
      batch.dispose();
    }
    const d = await decode(Buffer.from(shown[0]['image/png'] as string, 'base64'));
    assert.deepEqual([d.width, d.height], [3 * 4 + 4, 4 + 2]);
    const px = (x: number, y: number): number[] => [...d.data.subarray((y * d.width + x) * 3, (y * d.width + x) * 3 + 3)];
    assert.deepEqual([px(1, 1), px(6, 1), px(11, 1)], [[0, 0, 0], [255, 255, 255], [128, 128, 128]]);
  });
});
