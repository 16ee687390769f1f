/**
 * Transforms and augmentations: golden values against Pillow (resampling) and torch (Gaussian blur), torchvision
 * semantics (RandomResizedCrop parameters, CenterCrop offsets, ColorJitter ranges), SentinelNormalize, band dropping,
 * reproducibility by seed, shape/range guarantees, DINOv2 multi-crop counts and effective blur probabilities.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { Rng } from '../lib/rng';
import { Img, makeImg } from '../data-loaders/image';
import {
  SENTINEL2_STATS,
  axisWeights,
  centerCrop,
  dropBands,
  flipH,
  maskBands,
  normalize,
  pyRound,
  resizeShorter,
  resizedCrop,
  sentinelNormalize,
} from '../data-loaders/transforms';
import {
  adjustContrast,
  adjustHue,
  adjustSaturation,
  colorJitter,
  dinoMultiCrop,
  gaussianBlurImg,
  multiCropBlurProbs,
  randomResizedCrop,
  randomHFlip,
  compose,
  rrcParams,
  spectralJitter,
  toGrayscale,
} from '../data-loaders/augment';
import { Sample } from '../data-loaders/dataset';
import { evalResizeFor, sentinelEval, sentinelTrain, vtab } from '../data-loaders/presets';
import { assertClose } from './util';

const fixture = (name: string): any => JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', name), 'utf8'));

function randImg(h: number, w: number, c: number, seed = 1): Img {
  const img = makeImg(h, w, c);
  const r = new Rng(seed);
  for (let i = 0; i < img.data.length; i++) img.data[i] = r.next();
  return img;
}
const sample = (image: Img): Sample => ({ index: 0, image });
const sameData = (a: Img, b: Img): boolean => a.data.length === b.data.length && a.data.every((v, i) => v === b.data[i]);

describe('data: transforms (geometric, normalisation)', () => {
  it('pyRound is Python round (half to even)', () => {
    assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, 2.5001].map(pyRound), [0, 2, 2, 0, -2, 2, 3]);
  });

  it('resizedCrop equals Pillow mode F resize (bicubic/bilinear, up/down, fractional box)', () => {
    const fx = fixture('pil-resample.json');
    const img = makeImg(fx.H, fx.W, 1, Float32Array.from(fx.input));
    for (const c of fx.cases) {
      const box = c.box ?? { top: 0, left: 0, height: fx.H, width: fx.W };
      const out = resizedCrop(img, box, c.outH, c.outW, c.interp);
      assertClose(out.data, c.values, 2e-6, 0, c.name);
    }
  });

  it('resampling weights sum to one and identity resize is exact, on multi-channel images', () => {
    const w = axisWeights(50, 3.3, 40.1, 7, 'bicubic');
    for (let o = 0; o < 7; o++) {
      let s = 0;
      for (let k = 0; k < w.count[o]; k++) s += w.weights[o * w.kmax + k];
      assert.ok(Math.abs(s - 1) < 1e-12);
    }
    const img = randImg(5, 6, 13);
    assertClose(resizedCrop(img, { top: 0, left: 0, height: 5, width: 6 }, 5, 6).data, img.data, 1e-6);
    const ones = makeImg(9, 9, 4);
    ones.data.fill(2.5);
    assertClose(resizedCrop(ones, { top: 1, left: 2, height: 5, width: 6 }, 13, 3).data, new Float32Array(13 * 3 * 4).fill(2.5), 1e-5);
  });

  it('centerCrop uses round((H−h)/2) and zero-pads small images; resizeShorter keeps the aspect (int)', () => {
    const img = makeImg(5, 7, 1, Float32Array.from({ length: 35 }, (_, i) => i));
    assert.deepEqual(Array.from(centerCrop(img, 2, 3).data), [16, 17, 18, 23, 24, 25]); // top round(1.5)=2, left 2
    const pad = centerCrop(img, 7, 7);
    assert.equal(pad.data[0], 0);
    assert.equal(pad.data[1 * 7 + 0], 0); // top pad 1 row
    assert.equal(pad.data[1 * 7 + 0 + 7], 7); // row 2 = source row 1
    const r = resizeShorter(randImg(30, 45, 3), 20);
    assert.deepEqual([r.height, r.width], [20, 30]);
    assert.equal(evalResizeFor(96), 109);
    assert.equal(evalResizeFor(224), 256);
  });

  it('flipH mirrors, normalize and SentinelNormalize follow the reference formulas', () => {
    const img = makeImg(1, 3, 2, Float32Array.from([1, 2, 3, 4, 5, 6]));
    assert.deepEqual(Array.from(flipH(img).data), [5, 6, 3, 4, 1, 2]);
    assertClose(normalize(img, { mean: [1, 2], std: [2, 4] }).data, [0, 0, 1, 0.5, 2, 1], 1e-7);
    const ms = makeImg(1, 2, 13);
    for (let c = 0; c < 13; c++) {
      ms.data[c] = SENTINEL2_STATS.mean[c]; // → floor(127.5)/255
      ms.data[13 + c] = SENTINEL2_STATS.mean[c] + 3 * SENTINEL2_STATS.std[c]; // clipped to 255/255
    }
    const sn = sentinelNormalize(ms);
    for (let c = 0; c < 13; c++) {
      assert.ok(Math.abs(sn.data[c] - 127 / 255) < 1e-7, `band ${c}: ${sn.data[c]}`);
      assert.equal(sn.data[13 + c], 1);
    }
    const un = sentinelNormalize(ms, SENTINEL2_STATS, false);
    assert.ok(Math.abs(un.data[0] - 0.5) < 1e-6);
  });

  it('dropBands 0, 9, 10 keeps 10 bands in order; maskBands writes means; bad bands are errors', () => {
    const ms = makeImg(1, 1, 13, Float32Array.from({ length: 13 }, (_, i) => i));
    assert.deepEqual(Array.from(dropBands(ms, [0, 9, 10]).data), [1, 2, 3, 4, 5, 6, 7, 8, 11, 12]);
    assert.deepEqual(Array.from(maskBands(ms, [2], SENTINEL2_STATS.mean).data.slice(0, 4)), [0, 1, Math.fround(SENTINEL2_STATS.mean[2]), 3]);
    assert.throws(() => dropBands(makeImg(1, 1, 3), [0, 9]), /band 9 out of range for a 3-band image/);
    assert.throws(() => normalize(ms, { mean: [0, 0, 0], std: [1, 1, 1] }), /statistics for 3 channels, image has 13/);
  });
});

describe('data: augmentations', () => {
  it('rrcParams: boxes inside the image with area in scale·HW and ratio in range (or the central fallback)', () => {
    const rng = new Rng(3);
    for (let t = 0; t < 300; t++) {
      const H = 20 + rng.int(40);
      const W = 20 + rng.int(40);
      const b = rrcParams(H, W, [0.08, 1], [3 / 4, 4 / 3], rng);
      assert.ok(b.top >= 0 && b.left >= 0 && b.top + b.height <= H && b.left + b.width <= W);
      const area = (b.height * b.width) / (H * W);
      assert.ok(area > 0.05 && area <= 1.0001, `area ${area}`);
      const ar = b.width / b.height;
      assert.ok(ar > 0.6 && ar < 1.7, `ratio ${ar}`);
    }
    // impossible scale → torchvision's fallback: the whole (ratio-clamped) image, centred
    const b = rrcParams(10, 40, [2, 3], [3 / 4, 4 / 3], new Rng(1));
    assert.deepEqual(b, { top: 0, left: Math.floor((40 - pyRound(10 * 4 / 3)) / 2), height: 10, width: pyRound(10 * 4 / 3) });
  });

  it('the same rng gives the same augmentation; outputs keep sizes and [0,1] range', () => {
    const img = randImg(24, 30, 3);
    const t = randomResizedCrop({ size: [10, 12], scale: [0.2, 1] });
    const j = colorJitter({ brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1 });
    const a = j(t(sample(img), Rng.derive(5, 'x')), Rng.derive(5, 'y'));
    const b = j(t(sample(img), Rng.derive(5, 'x')), Rng.derive(5, 'y'));
    assert.deepEqual(a.image.data, b.image.data);
    assert.deepEqual([a.image.height, a.image.width, a.image.channels], [10, 12, 3]);
    const c = j(t(sample(img), Rng.derive(6, 'x')), Rng.derive(6, 'y'));
    assert.notDeepEqual(a.image.data, c.image.data);
    for (const v of a.image.data) assert.ok(v >= 0 && v <= 1);
  });

  it('colour ops: hue 0 / saturation 1 / contrast 1 are identities, hue 1/3 maps red to green, grayscale is luma', () => {
    const img = randImg(4, 5, 3, 9);
    assertClose(adjustHue(img, 0).data, img.data, 1e-6);
    assertClose(adjustHue(adjustHue(img, 0.2), -0.2).data, img.data, 1e-5);
    assertClose(adjustSaturation(img, 1).data, img.data, 1e-7);
    assertClose(adjustContrast(img, 1).data, img.data, 1e-7);
    const red = makeImg(1, 1, 3, Float32Array.from([1, 0, 0]));
    assertClose(adjustHue(red, 1 / 3).data, [0, 1, 0], 1e-6);
    const g = toGrayscale(makeImg(1, 1, 3, Float32Array.from([0.2, 0.4, 0.6])));
    const luma = 0.2989 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6;
    assertClose(g.data, [luma, luma, luma], 1e-6);
    assert.throws(() => colorJitter({ brightness: 0.4 })(sample(randImg(4, 4, 13)), new Rng(1)), /needs a 3-channel RGB image, got 4×4×13; use spectralJitter/);
  });

  it('Gaussian blur equals torch (linspace kernel, reflect padding)', () => {
    const fx = fixture('torch-blur.json');
    const img = makeImg(fx.H, fx.W, fx.C, Float32Array.from(fx.input));
    for (const c of fx.cases) assertClose(gaussianBlurImg(img, c.sigma, c.k).data, c.values, 1e-6, 0, `k${c.k} σ${c.sigma}`);
  });

  it('spectralJitter works on 13 bands and keeps band ratios when contrast = 0', () => {
    const img = randImg(6, 6, 13);
    for (let i = 0; i < img.data.length; i++) img.data[i] = 500 + 3000 * img.data[i];
    const out = spectralJitter({ brightness: 0.3 })(sample(img), new Rng(4)).image;
    const r0 = out.data[7] / out.data[3];
    assert.ok(Math.abs(r0 - img.data[7] / img.data[3]) < 1e-4);
    assert.notEqual(out.data[0], img.data[0]);
  });

  it('DINOv2 multi-crop: counts, sizes, effective blur probabilities (0 / 0.9 / 0.5), multispectral variant', () => {
    assert.deepEqual(multiCropBlurProbs('effective'), [0, 0.9, 0.5]);
    assert.deepEqual(multiCropBlurProbs('intended'), [1, 0.1, 0.5]);
    const img = randImg(40, 40, 3);
    const mc = dinoMultiCrop({ globalSize: 16, localSize: 8, nLocal: 8, normalize: null });
    const views = mc(sample(img), new Rng(1));
    assert.equal(views.length, 10);
    assert.deepEqual(views.map((v) => v.image.height), [16, 16, 8, 8, 8, 8, 8, 8, 8, 8]);
    const again = mc(sample(img), new Rng(1));
    views.forEach((v, k) => assert.deepEqual(v.image.data, again[k].image.data, `view ${k}`));
    // blur decisions, measured: a view is blurred iff it differs from the same geometry without blur
    const ms = randImg(20, 20, 13);
    const geom = compose(randomResizedCrop({ size: 16, scale: [0.32, 1] }), randomHFlip(0.5));
    const counts = { effective: [0, 0], intended: [0, 0] };
    const N = 300;
    for (const mode of ['effective', 'intended'] as const) {
      const mcMs = dinoMultiCrop({ globalSize: 16, localSize: 8, nLocal: 0, normalize: null, rgb: false, blurMode: mode });
      for (let t = 0; t < N; t++) {
        const [g1, g2] = mcMs(sample(ms), new Rng(1000 + t));
        assert.equal(g1.image.channels, 13);
        const r = new Rng(1000 + t);
        const r1 = r.fork('global1');
        const r2 = r.fork('global2');
        if (!sameData(g1.image, geom(sample(ms), r1).image)) counts[mode][0]++;
        if (!sameData(g2.image, geom(sample(ms), r2).image)) counts[mode][1]++;
      }
    }
    assert.equal(counts.effective[0], 0, 'effective: global crop 1 never blurred');
    assert.ok(Math.abs(counts.effective[1] / N - 0.9) < 0.06, `effective: global 2 blurred ${counts.effective[1]}/${N}`);
    // σ near 0.1 gives a kernel of ≈[0, …, 1, …, 0] (exp(−50) side taps): such a blur is invisible in float32
    assert.ok(counts.intended[0] >= 0.97 * N, `intended: global crop 1 always blurred (${counts.intended[0]}/${N})`);
    assert.ok(Math.abs(counts.intended[1] / N - 0.1) < 0.06, `intended: global 2 blurred ${counts.intended[1]}/${N}`);
  });

  it('presets: vtab resizes directly and normalises; Sentinel train/eval give [0,1] 10-band crops', () => {
    const v = vtab(8)(sample(randImg(20, 30, 3)), new Rng(1)).image;
    assert.deepEqual([v.height, v.width, v.channels], [8, 8, 3]);
    const ms = randImg(20, 20, 13);
    for (let i = 0; i < ms.data.length; i++) ms.data[i] *= 4000;
    const tr = sentinelTrain(12, [0, 9, 10])(sample(ms), new Rng(2)).image;
    const ev = sentinelEval(12, [0, 9, 10])(sample(ms), new Rng(2)).image;
    for (const x of [tr, ev]) {
      assert.deepEqual([x.height, x.width, x.channels], [12, 12, 10]);
      // bicubic may ring slightly outside [0, 1], as torch's bicubic on tensors does
      for (const val of x.data) assert.ok(val >= -0.25 && val <= 1.25, `value ${val}`);
    }
  });
});
