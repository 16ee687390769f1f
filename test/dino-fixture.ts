/**
 * Loader for the PyTorch-generated DINOv2-objective golden fixture (test/fixtures/gen_dino.py → dino_golden.json).
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { torchToKit } from '../lib/io/checkpoint';
import { DinoHeadsParams } from '../lib/dino/head';
import { flattenTree } from '../lib/tree';

export interface Rec {
  shape: number[];
  values: number[];
}

/* eslint-disable @typescript-eslint/no-explicit-any */
export type DinoFixture = any;

let cached: DinoFixture | null = null;

export function dinoFixture(): DinoFixture {
  if (!cached) cached = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'dino_golden.json'), 'utf8'));
  return cached;
}

export function t2(r: Rec): tf.Tensor2D {
  return tf.tensor2d(r.values, r.shape as [number, number]);
}

export function t3(r: Rec): tf.Tensor3D {
  return tf.tensor3d(r.values, r.shape as [number, number, number]);
}

/** Assign PyTorch-layout fixture parameters (keys `dino_head.*`) into a heads tree (kit layout via torchToKit). */
export function loadHeadParams(heads: DinoHeadsParams, params: Record<string, Rec>): void {
  const vars = flattenTree(heads);
  const keys = Object.keys(params);
  if (keys.length !== vars.size) throw new Error(`fixture has ${keys.length} head tensors, the tree ${vars.size}: ${keys.join(', ')} vs ${[...vars.keys()].join(', ')}`);
  for (const k of keys) {
    const v = vars.get(k);
    if (!v) throw new Error(`fixture key ${k} not in the head tree (${[...vars.keys()].join(', ')})`);
    tf.tidy(() => v.assign(torchToKit(k, tf.tensor(params[k].values, params[k].shape))));
  }
}
