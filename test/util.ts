/**
 * Test helpers: closeness checks with useful messages, leak checks, backend switching.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { mkdtempSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';

/** Max |a − b| over two arrays (same length required). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, `length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Assert |a − b| ≤ atol + rtol·|b| elementwise. */
export function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, atol = 1e-5, rtol = 0, what = 'values'): void {
  assert.equal(a.length, b.length, `${what}: length ${a.length} vs ${b.length}`);
  for (let i = 0; i < a.length; i++) {
    const tol = atol + rtol * Math.abs(b[i]);
    if (!(Math.abs(a[i] - b[i]) <= tol)) {
      assert.fail(`${what}[${i}]: ${a[i]} vs ${b[i]} (|Δ| = ${Math.abs(a[i] - b[i])} > ${tol})`);
    }
  }
}

/** Run `fn` and assert that it leaves the number of live tensors unchanged. */
export async function noLeak<T>(fn: () => T | Promise<T>): Promise<T> {
  const before = tf.memory().numTensors;
  const r = await fn();
  assert.equal(tf.memory().numTensors, before, `tensor leak: ${tf.memory().numTensors - before} tensors left behind`);
  return r;
}

/** Run `fn` on backend `name`, then switch back. */
export async function onBackend<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
  const prev = tf.getBackend();
  await tf.setBackend(name);
  try {
    return await fn();
  } finally {
    await tf.setBackend(prev);
  }
}

/** Deterministic pseudo-random floats in [-1, 1) (no tfjs RNG involved). */
export function randArray(n: number, seed = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = (s / 4294967296) * 2 - 1;
  }
  return out;
}

/**
 * A temporary folder for the enclosing mocha suite, with `VITPEFT_CACHE_DIR` pointed into it (embedded datasets are
 * rendered there, not in the user's cache) and restored, and the folder removed, after the suite. Call inside
 * `describe`; the returned function gives the folder once the suite's `before` hooks have run.
 */
export function useTmpCache(prefix: string): () => string {
  let tmp = '';
  let prevCache: string | undefined;
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), prefix));
    prevCache = process.env.VITPEFT_CACHE_DIR;
    process.env.VITPEFT_CACHE_DIR = path.join(tmp, 'cache');
  });
  after(() => {
    if (prevCache === undefined) delete process.env.VITPEFT_CACHE_DIR;
    else process.env.VITPEFT_CACHE_DIR = prevCache;
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });
  return () => tmp;
}
