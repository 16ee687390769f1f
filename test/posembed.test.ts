import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { sincos2d, bicubicMatrix, cubicWeights, resizeGridEmbed } from '../lib/vit/posembed';
import { assertClose } from './util';

const fx = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'vit_micro.json'), 'utf8')).bicubic as {
  grid: { shape: number[]; data: number[] };
  up7: number[];
  down3: number[];
  rect4x6: number[];
  dino7x3: number[];
};

describe('2-D sin-cos position embedding (MAE)', () => {
  it('matches the formula: [code(col) ‖ code(row)], sines then cosines, CLS row zero', () => {
    const D = 16, G = 3;
    const t = sincos2d(D, G, G, true);
    assert.equal(t.length, (1 + G * G) * D);
    for (let k = 0; k < D; k++) assert.equal(t[k], 0, 'CLS row is zeros');
    const q = D / 4; // frequencies per 1-D half
    for (let tok = 0; tok < G * G; tok++) {
      const row = Math.floor(tok / G), col = tok % G;
      for (let k = 0; k < q; k++) {
        const w = 1 / Math.pow(10000, k / q);
        const base = (1 + tok) * D;
        assert.ok(Math.abs(t[base + k] - Math.sin(col * w)) < 1e-6);
        assert.ok(Math.abs(t[base + q + k] - Math.cos(col * w)) < 1e-6);
        assert.ok(Math.abs(t[base + 2 * q + k] - Math.sin(row * w)) < 1e-6);
        assert.ok(Math.abs(t[base + 3 * q + k] - Math.cos(row * w)) < 1e-6);
      }
    }
  });
  it('refuses a width not divisible by 4', () => {
    assert.throws(() => sincos2d(18, 2, 2), /divisible by 4, got 18/);
  });
});

describe('bicubic resize (PyTorch semantics)', () => {
  it('cubic kernel weights by hand (a = -0.75)', () => {
    // t = 0.5: W(1.5) = a(1.5³ − 5·1.5² + 8·1.5 − 4) = -0.75·(-0.125) = 0.09375; W(0.5) = (a+2)·0.125 − (a+3)·0.25 + 1 = 0.59375
    assertClose(cubicWeights(0.5), [-0.09375, 0.59375, 0.59375, -0.09375], 1e-12);
    assertClose(cubicWeights(0), [0, 1, 0, 0], 1e-12);
    const w = cubicWeights(0.3);
    assert.ok(Math.abs(w.reduce((a, b) => a + b, 0) - 1) < 1e-12, 'partition of unity');
  });
  it('1-D matrix by hand: 2 → 4 with clamped borders', () => {
    // out 0: src = (0.5)·0.5 − 0.5 = −0.25 → i0 = −1, t = 0.75; taps −2,−1,0,1 clamp to 0,0,0,1
    const m = bicubicMatrix(2, 4);
    const [a, b, c, d] = cubicWeights(0.75);
    assertClose([m[0], m[1]], [a + b + c, d], 1e-7);
    // rows sum to 1
    for (let o = 0; o < 4; o++) assert.ok(Math.abs(m[o * 2] + m[o * 2 + 1] - 1) < 1e-6);
  });
  const cases: Array<[string, [number, number], 'size' | 'dinov2-offset', keyof typeof fx]> = [
    ['5x5 → 7x7', [7, 7], 'size', 'up7'],
    ['5x5 → 3x3', [3, 3], 'size', 'down3'],
    ['5x5 → 4x6', [4, 6], 'size', 'rect4x6'],
    ['5x5 → 7x3, DINOv2 scale factor (out + 0.1)/in', [7, 3], 'dinov2-offset', 'dino7x3'],
  ];
  for (const [name, to, mode, key] of cases) {
    it(`equals torch.nn.functional.interpolate: ${name}`, () => {
      const [, Cc, Hh, Ww] = fx.grid.shape;
      const got = tf.tidy(() => {
        // NCHW grid → kit table [1, H·W, C]
        const table = tf.tensor4d(fx.grid.data, [1, Cc, Hh, Ww]).transpose([0, 2, 3, 1]).reshape([1, Hh * Ww, Cc]) as tf.Tensor3D;
        const r = resizeGridEmbed(table, { from: [Hh, Ww], to, mode }); // [1, h·w, C]
        return r.reshape([1, to[0], to[1], Cc]).transpose([0, 3, 1, 2]).dataSync(); // back to NCHW
      });
      assertClose(got, fx[key] as number[], 1e-5, 0, name);
    });
  }
  it('the two conventions differ (so the option matters)', () => {
    const a = bicubicMatrix(37, 16);
    const b = bicubicMatrix(37, 16, (16 + 0.1) / 37);
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
    assert.ok(diff > 1e-3, `max diff ${diff}`);
  });
});
