/**
 * Loader for the PyTorch-generated beyond-RGB golden fixture (test/fixtures/gen_beyondrgb.py → beyondrgb_golden.json).
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { torchToKit } from '../lib/io/checkpoint';
import { FixtureParam } from './mae-fixture';
import { assertClose } from './util';

export interface ModelCase {
  config: Record<string, number | string>;
  params: Record<string, FixtureParam>;
  images: number[];
  timestamps?: number[];
  labels: number[];
  prenorm: number[];
  pooled: number[];
  logits: number[];
  loss: number;
  grads?: Record<string, number[]>;
}

export interface SegCase {
  config: Record<string, number | string>;
  params: Record<string, FixtureParam>;
  tokens: number[][];
  target: number[];
  logits: number[];
  loss: number;
  grads: Record<string, number[]>;
}

export interface BeyondFixture {
  generator: string;
  group_vit_avg: ModelCase;
  group_vit_cls: ModelCase;
  temporal_vit_avg: ModelCase;
  temporal_vit_cls: ModelCase;
  seg_linear: SegCase;
  seg_patch: SegCase;
  metrics: {
    seg: { K: number; shape: number[]; target: number[]; pred: number[]; confusion: number[]; iou: (number | null)[]; miou: number };
    cls: {
      y_true: number[];
      y_pred: number[];
      macro_f1: number;
      per_class_f1: number[];
      labels: number[];
      macro_recall: number;
      accuracy: number;
    };
  };
}

let cached: BeyondFixture | null = null;

export function loadBeyondFixture(): BeyondFixture {
  if (!cached) cached = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'beyondrgb_golden.json'), 'utf8')) as BeyondFixture;
  return cached;
}

/** Assign fixture parameters (PyTorch layout, fixture key → kit key via `rename`); every kit variable must be set. */
export function assignRenamed(vars: ReadonlyMap<string, tf.Variable>, params: Record<string, FixtureParam>, rename: (k: string) => string = (k) => k): void {
  const want = Object.keys(params).map(rename).sort();
  assert.deepEqual([...vars.keys()].sort(), want, 'kit parameter paths differ from the fixture keys');
  for (const [k, p] of Object.entries(params)) {
    const kk = rename(k);
    const v = vars.get(kk)!;
    tf.tidy(() => {
      const t = torchToKit(kk, tf.tensor(p.values, p.shape));
      assert.deepEqual(t.shape, v.shape, `shape of ${kk}`);
      v.assign(t);
    });
  }
}

/**
 * Gradients of `loss` w.r.t. every variable against the fixture's (torch layout): |Δ| ≤ atol + rtol·|g|.
 */
export function checkGrads(
  vars: ReadonlyMap<string, tf.Variable>,
  loss: () => tf.Scalar,
  want: Record<string, number[]>,
  rename: (k: string) => string = (k) => k,
  atol = 2e-5,
  rtol = 1e-3,
): void {
  const list = [...vars.values()];
  const { grads, value } = tf.variableGrads(loss, list);
  value.dispose();
  try {
    for (const [k, g] of Object.entries(want)) {
      const kk = rename(k);
      const v = vars.get(kk);
      assert.ok(v, `no kit variable for gradient ${k}`);
      const kg = grads[v.name];
      assert.ok(kg, `no gradient for ${kk}`);
      const torchG = tf.tidy(() => {
        const shape = v.shape;
        // kit → torch layout of this key, so the flat order matches the fixture
        const t = kg.rank === 2 && kk.endsWith('.weight') ? kg.transpose([1, 0]) : kg.rank === 4 && kk.endsWith('.weight') ? kg.transpose([3, 2, 0, 1]) : kg.clone();
        assert.ok(shape.length === kg.rank);
        return t.dataSync().slice();
      });
      assertClose(torchG, g, atol, rtol, `grad ${kk}`);
    }
  } finally {
    Object.values(grads).forEach((g) => g.dispose());
  }
}
