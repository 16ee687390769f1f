/**
 * Loader for the PyTorch-generated MAE golden fixture (test/fixtures/gen_mae.py → mae_golden.json).
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { torchToKit } from '../lib/io/checkpoint';
import { Rng } from '../lib/rng';

export interface FixtureParam {
  shape: number[];
  values: number[];
}

export interface FixtureCase {
  config: Record<string, number | boolean | number[][]>;
  params: Record<string, FixtureParam>;
  images: number[];
  noise?: number[];
  timestamps?: number[];
  ids_shuffle: number[];
  ids_restore: number[];
  mask: number[];
  patches?: number[];
  target?: number[];
  latent: number[];
  pred: number[];
  loss: number;
  loss_raw?: number;
  loss_satmae?: number;
}

export interface Fixture {
  generator: string;
  rgb: FixtureCase;
  group_independent: FixtureCase;
  group_spatial: FixtureCase;
  temporal_independent: FixtureCase;
  temporal_same_mask: FixtureCase;
}

let cached: Fixture | null = null;

export function loadFixture(): Fixture {
  if (!cached) {
    cached = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'mae_golden.json'), 'utf8')) as Fixture;
  }
  return cached;
}

/** Assign every fixture parameter (PyTorch layout) to the kit variable of the same path; all keys must match. */
export function assignFixtureParams(vars: ReadonlyMap<string, tf.Variable>, params: Record<string, FixtureParam>): void {
  const want = Object.keys(params).sort();
  const have = [...vars.keys()].sort();
  assert.deepEqual(have, want, 'kit parameter paths differ from the fixture (PyTorch) keys');
  for (const [k, p] of Object.entries(params)) {
    const v = vars.get(k)!;
    tf.tidy(() => {
      const kit = torchToKit(k, tf.tensor(p.values, p.shape));
      assert.deepEqual(kit.shape, v.shape, `shape of ${k}`);
      v.assign(kit);
    });
  }
}

/**
 * Structured synthetic images in [-2, 2]: a random colour per image plus one linear ramp of random orientation shared by
 * the three channels. Each masked patch is predictable from the visible ones (orientation and colour are global).
 */
export function rampImages(n: number, size: number, seed: number): tf.Tensor4D {
  const rng = new Rng(seed);
  const out = new Float32Array(n * size * size * 3);
  for (let b = 0; b < n; b++) {
    const th = rng.uniform(0, 2 * Math.PI);
    const col = [rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-1, 1)];
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const u = (Math.cos(th) * x + Math.sin(th) * y) / size;
        for (let c = 0; c < 3; c++) out[((b * size + y) * size + x) * 3 + c] = col[c] + 0.5 * u;
      }
  }
  return tf.tensor4d(out, [n, size, size, 3]);
}
