/**
 * The data-parallel context of a worker thread (null on the main thread and in-process runs).
 *
 * Every worker of a pool runs the same program on its shard of the data (SPMD, like one process per GPU under DDP);
 * the kit's pieces consult this context so that a recipe runs unchanged on N workers:
 * - `trainStep` (lib/train/step.ts) sums loss, metrics and gradients over the workers before clipping, weighted by each
 *   worker's share of the batch, so every replica applies the same update to the same parameters;
 * - a `Loader` asked for a batch inside a shard region (`withShards`) returns this worker's rows of it (rows
 *   [start, end) of the global batch, the same samples and augmentations the global batch has there), and records the
 *   shard (`currentShard`);
 * - random draws that cover a batch (drop path, MAE masks, iBOT masks) are drawn for the global batch and sliced
 *   (`shardRowsOf`), so worker w sees exactly the randomness rows [start, end) of the one-process run see;
 * - batch statistics (DINO centering, Sinkhorn-Knopp) are reduced with `allReduce`;
 * - feature extraction gathers its shards (`allGather`).
 * So N workers compute what one process computes on the global batch, up to the order of floating-point sums (and
 * KoLeo, which stays per worker as in DINOv2 under DDP).
 */
import { Collective } from './collective';

/** What a worker knows about the pool it belongs to. */
export interface ParallelContext {
  rank: number;
  size: number;
  collective: Collective;
}

let ctx: ParallelContext | null = null;

/** Install the context (the worker runtime does this once, before the job runs). */
export function setParallelContext(c: ParallelContext | null): void {
  ctx = c;
}

/** The context of this thread: null on the main thread / in-process. */
export function parallelContext(): ParallelContext | null {
  return ctx;
}

/** True in a worker of a pool with more than one worker. */
export function isDataParallel(): boolean {
  return ctx !== null && ctx.size > 1;
}

/** Rank 0 (or the main thread): the replica that writes files and logs. */
export function isLeader(): boolean {
  return ctx === null || ctx.rank === 0;
}

/** This worker's rows of a global batch. */
export interface Shard {
  /** Rows in the global batch. */
  total: number;
  start: number;
  end: number;
}

let regionDepth = 0;
let current: Shard | null = null;

/**
 * Run `fn` in a shard region: loaders asked for batches inside it return this worker's rows (no effect on the main
 * thread or with one worker). Regions nest; the current shard is cleared when the outermost one ends.
 */
export async function withShards<T>(fn: () => Promise<T>): Promise<T> {
  regionDepth++;
  try {
    return await fn();
  } finally {
    regionDepth--;
    if (regionDepth === 0) current = null;
  }
}

/** Whether a loader should shard now (a worker of a pool of > 1, inside a shard region). */
export function shardingActive(): boolean {
  return isDataParallel() && regionDepth > 0;
}

/** Rows [start, end) of worker `rank` when `total` rows are split over `size` workers (first ones get the extra rows). */
export function shardRange(total: number, rank: number, size: number): [number, number] {
  return Collective.segment(total, size, rank);
}

/**
 * The rows of a global batch of `total` that this worker takes (a loader calls this when `shardingActive()`), recorded
 * as the current shard. A batch smaller than the worker count is an error naming both.
 */
export function takeShard(total: number, what = 'batch'): Shard {
  if (!ctx) throw new Error('takeShard: not in a worker');
  if (total < ctx.size) throw new Error(`${what} of ${total} rows cannot be split over ${ctx.size} workers (each needs at least one row); use fewer workers or a larger batch`);
  const [start, end] = shardRange(total, ctx.rank, ctx.size);
  current = { total, start, end };
  return current;
}

/** The shard of the batch this worker is working on (set by the last sharded batch in the current region). */
export function currentShard(): Shard | null {
  return shardingActive() ? current : null;
}

/**
 * Global row indices of a local batch dimension of `local` rows under the current shard, or null when not sharded.
 * `local` = k × the shard's rows is read as k crop-major blocks (the layout of DINO's concatenated crops:
 * [crop 0 rows, crop 1 rows, …]), i.e. rows j·total + [start, end) for j < k. A size that is not a multiple is an
 * error (the draw could not be matched with the one-process run).
 */
export function shardRowsOf(local: number, what: string): { total: number; rows: number[] } | null {
  const s = currentShard();
  if (!s) return null;
  const n = s.end - s.start;
  if (local % n !== 0) throw new Error(`${what}: a batch dimension of ${local} rows is not a multiple of this worker's ${n} rows of the global batch (${s.total}); cannot draw shard-consistent randomness`);
  const k = local / n;
  const rows: number[] = [];
  for (let j = 0; j < k; j++) for (let i = s.start; i < s.end; i++) rows.push(j * s.total + i);
  return { total: k * s.total, rows };
}

/** This worker's share of the current batch (1 on the main thread; rows/total in a shard; 1/size otherwise). */
export function shardWeight(): number {
  if (!isDataParallel()) return 1;
  const s = current && regionDepth > 0 ? current : null;
  return s ? (s.end - s.start) / s.total : 1 / ctx!.size;
}

/**
 * Sum of `values` over the workers when this worker holds a shard of the current batch (`currentShard()`); the values
 * themselves otherwise. For batch statistics (DINO centering, Sinkhorn-Knopp): every worker must call it at the same
 * point with the same length.
 */
export function sumOverShards(values: Float32Array): Float32Array {
  if (!currentShard()) return values;
  return ctx!.collective.allReduce(values);
}
