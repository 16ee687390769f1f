/**
 * Reading numbers back from the backend — synchronously where the backend can, asynchronously where it cannot.
 *
 * The wasm, cpu and tensorflow backends read synchronously (`dataSync`). WebGPU in Node cannot (lib/webgpu.ts: tfjs's
 * synchronous read goes through the browser's `OffscreenCanvas`, and WebGPU has no blocking read-back), so code that
 * needs a number there must `await t.data()` — and `tf.tidy` cannot span an `await`.
 *
 * To keep one implementation for both, code that reads is written as a *read plan*: a generator that yields the
 * tensors it needs read and receives their values, e.g.
 *
 *   function* meanPlan(x: tf.Tensor): ReadPlan<number> {
 *     const m = tf.tidy(() => tf.mean(x));
 *     try { const [v] = yield [m]; return v[0]; } finally { m.dispose(); }
 *   }
 *   readSync(meanPlan(x));         // dataSync: wasm / cpu / tensorflow
 *   await readAsync(meanPlan(x));  // await data(): any backend
 *   await readAuto(meanPlan(x));   // whichever the active backend supports (`syncReads()`)
 *
 * Both drivers run the same ops in the same order, so the numbers are the same; a plan must not keep a tidy open across
 * a `yield` (tensors it needs after the read are `tf.keep`-t and disposed in a `finally`). Plans compose with
 * `yield*`. When a driver stops early (a read fails), it closes the plan, so its `finally` blocks free what it kept.
 */
import * as tf from '@tensorflow/tfjs';

/** Values of the tensors a plan asked for, in order (`Float32Array`, `Int32Array` or `Uint8Array`). */
export type ReadValues = ReadonlyArray<tf.TypedArray>;

/** A computation that reads tensor values back: yields the tensors to read, receives their values, returns T. */
export type ReadPlan<T> = Generator<readonly tf.Tensor[], T, ReadValues>;

/** How reads are done: 'auto' (by backend), or forced 'sync' / 'async' (tests, benchmarks). */
export type ReadMode = 'auto' | 'sync' | 'async';

let mode: ReadMode = parseMode(process.env.VITPEFT_READS, 'VITPEFT_READS');

function parseMode(v: string | undefined, what: string): ReadMode {
  if (v === undefined || v === '') return 'auto';
  if (v === 'auto' || v === 'sync' || v === 'async') return v;
  throw new Error(`${what}: expected 'auto', 'sync' or 'async', got ${JSON.stringify(v)}`);
}

/**
 * Force the read path (`'async'`: every auto-choosing function takes its asynchronous path, also on wasm — to test that
 * path against the synchronous one; `'auto'` restores the default). Environment: `VITPEFT_READS`. Returns the mode
 * that was set before.
 */
export function setReadMode(m: ReadMode): ReadMode {
  const prev = mode;
  mode = parseMode(m, 'setReadMode');
  return prev;
}

/** Whether the active backend reads synchronously: not webgpu in Node (no `OffscreenCanvas`), unless forced. */
export function backendReadsSync(backend: string = tf.getBackend()): boolean {
  if (backend !== 'webgpu') return true;
  return typeof (globalThis as { OffscreenCanvas?: unknown }).OffscreenCanvas !== 'undefined';
}

/** Whether auto-choosing code takes its synchronous path now (the read mode, else the active backend). */
export function syncReads(): boolean {
  if (mode === 'sync') return true;
  if (mode === 'async') return false;
  return backendReadsSync();
}

/** Run a plan with `dataSync` reads. */
export function readSync<T>(plan: ReadPlan<T>): T {
  let r = plan.next();
  while (!r.done) {
    let vals: tf.TypedArray[];
    try {
      vals = r.value.map((t) => t.dataSync());
    } catch (e) {
      plan.return(undefined as never); // run the plan's finally blocks (free what it kept)
      throw e;
    }
    r = plan.next(vals);
  }
  return r.value;
}

/** Run a plan with `await t.data()` reads (every backend). */
export async function readAsync<T>(plan: ReadPlan<T>): Promise<T> {
  let r = plan.next();
  while (!r.done) {
    let vals: tf.TypedArray[];
    try {
      vals = await Promise.all(r.value.map((t) => t.data()));
    } catch (e) {
      plan.return(undefined as never);
      throw e;
    }
    r = plan.next(vals);
  }
  return r.value;
}

/** Run a plan synchronously where the backend can (`syncReads()`), else asynchronously. */
export async function readAuto<T>(plan: ReadPlan<T>): Promise<T> {
  return syncReads() ? readSync(plan) : readAsync(plan);
}

/**
 * Values of a tensor on any backend: `dataSync()` where the backend reads synchronously, else `await data()`.
 * Same numbers either way.
 */
export async function readValues(t: tf.Tensor): Promise<tf.TypedArray> {
  return syncReads() ? t.dataSync() : t.data();
}
