/**
 * Pillow-exact 8-bit resizing (data-loaders/resample8.ts) against Pillow 9.4 'RGB' and 'L' resizes
 * (test/fixtures/make_resample8_fixture.py): bicubic and bilinear, down / up / fractional box / shorter-side, every
 * output byte equal. Also checks that sharp decodes the fixture's PNG and JPEG to Pillow's bytes, and records how far
 * the float path is from the 8-bit one (why the option exists).
 */
import * as fs from 'fs';
import * as path from 'path';
import { strict as assert } from 'assert';
import {
  resize8Bytes, resizedCrop8, resizeShorter8, toBytes, fromBytes, resizedCrop, loadImage, preprocess8, timmEvalPreprocess,
  resizeCenterCrop8, resizeTo8, IMAGENET_STATS, centerCrop, normalize, Sample,
} from '../data-loaders/index';
import { Rng } from '../lib/index';

const FX = path.join(__dirname, 'fixtures');
const g = JSON.parse(fs.readFileSync(path.join(FX, 'pil-resample8.json'), 'utf8')) as {
  H: number; W: number; rgb: number[]; l: number[]; jpeg_decoded: number[];
  cases: Array<{ name: string; outW: number; outH: number; interp: 'bicubic' | 'bilinear'; box: { left: number; top: number; width: number; height: number } | null; rgb8: number[]; l8: number[]; float: number[] }>;
};

describe('data: Pillow-exact 8-bit resize', () => {
  for (const c of g.cases) {
    it(`${c.name}: RGB and L bytes equal Pillow's`, () => {
      const box = c.box ?? undefined;
      assert.deepEqual(Array.from(resize8Bytes(Uint8Array.from(g.rgb), g.H, g.W, 3, c.outH, c.outW, c.interp, box)), c.rgb8);
      assert.deepEqual(Array.from(resize8Bytes(Uint8Array.from(g.l), g.H, g.W, 1, c.outH, c.outW, c.interp, box)), c.l8);
    });
  }

  it('the float path (Pillow mode F) is not the 8-bit path: whole-level differences at edges', () => {
    let worst = 0;
    for (const c of g.cases) {
      const img = fromBytes(Uint8Array.from(g.rgb), g.H, g.W, 3);
      const f = resizedCrop(img, c.box ?? { top: 0, left: 0, height: g.H, width: g.W }, c.outH, c.outW, c.interp);
      const e = resizedCrop8(img, c.box ?? { top: 0, left: 0, height: g.H, width: g.W }, c.outH, c.outW, c.interp);
      for (let i = 0; i < f.data.length; i++) {
        assert.ok(Math.abs(f.data[i] * 255 - c.float[i]) < 1e-3, `${c.name}: float path vs Pillow F`);
        assert.equal(Math.round(e.data[i] * 255), c.rgb8[i]);
        worst = Math.max(worst, Math.abs(Math.min(255, Math.max(0, Math.round(f.data[i] * 255))) - c.rgb8[i]));
      }
    }
    assert.ok(worst >= 5, `expected the float path to miss Pillow's bytes by several levels somewhere, got ${worst}`);
  });

  it('sharp decodes the PNG and the JPEG to the bytes Pillow decodes', async () => {
    assert.deepEqual(Array.from(toBytes(await loadImage(path.join(FX, 'pil-resample8.png')))), g.rgb);
    assert.deepEqual(Array.from(toBytes(await loadImage(path.join(FX, 'pil-resample8.jpg')))), g.jpeg_decoded);
  });

  it('shorter-side resize, eval transforms and refusals', () => {
    const img = fromBytes(Uint8Array.from(g.rgb), g.H, g.W, 3);
    const c = g.cases.find((x) => x.name === 'short_side_20_bicubic')!;
    const r = resizeShorter8(img, 20);
    assert.deepEqual([r.height, r.width], [c.outH, c.outW]);
    assert.deepEqual(Array.from(toBytes(r)), c.rgb8);
    const p = preprocess8(img, { resize: 20, crop: 16, interp: 'bicubic', stats: IMAGENET_STATS });
    const want = normalize(centerCrop(r, 16), IMAGENET_STATS);
    assert.deepEqual(Array.from(p.data), Array.from(want.data));
    const s = resizeCenterCrop8(20, 16)({ image: img, label: 0 } as Sample, new Rng(0));
    assert.deepEqual(Array.from(s.image.data), Array.from(centerCrop(r, 16).data));
    // resizeTo8 (VTAB-1k's direct 224² resize) as a SampleTransform: Pillow's bytes at [outH, outW], masks nearest.
    const d = g.cases.find((x) => x.name === 'down_bicubic')!;
    const mask = fromBytes(Uint8Array.from(g.l), g.H, g.W, 1);
    const t = resizeTo8([d.outH, d.outW])({ image: img, mask, label: 0 } as Sample, new Rng(0));
    assert.deepEqual(Array.from(toBytes(t.image)), d.rgb8);
    assert.deepEqual([t.mask!.height, t.mask!.width], [d.outH, d.outW]);
    assert.deepEqual(timmEvalPreprocess({ input_size: [3, 224, 224], crop_pct: 0.875, interpolation: 'bicubic', mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] }).resize, 256);
    assert.throws(() => resize8(normalize(img, IMAGENET_STATS)), /is not an 8-bit level k\/255/);
  });
});

function resize8(img: ReturnType<typeof fromBytes>): unknown {
  return resizedCrop8(img, { top: 0, left: 0, height: img.height, width: img.width }, 5, 5);
}
