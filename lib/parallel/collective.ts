/**
 * Collectives between worker threads over SharedArrayBuffers: a barrier, an all-reduce (sum) and an all-gather, all
 * synchronous (`Atomics.wait`, allowed in worker threads), so they can run inside a training step's `tf.tidy`.
 *
 * Layout (allocated once per pool by `allocateShared`, shared by every worker):
 * - control: Int32Array [abort flag, arrivals, generation, aborting rank + 1];
 * - data: Float32Array of `size` slots of `capacity` floats (one per rank) + two result halves of `capacity` floats.
 *
 * All-reduce = reduce-scatter + gather through shared memory: every rank writes its chunk into its slot; barrier; rank
 * r sums segment r of the chunk over the slots **in rank order 0, 1, …, size − 1** (float32 rounding after every add)
 * into the result half of this chunk; barrier; every rank copies the whole result. Each element is summed in the same
 * order on every run, so results are bit-identical for a given worker count, and each rank reads O(chunk) floats
 * (not size × chunk). Results alternate between two halves so that a fast rank writing the next chunk's result can
 * never overwrite one a slow rank is still copying. Arrays longer than `capacity` go through in chunks.
 *
 * Abort: any party (the main thread on an error or an interrupt, or a failing worker) sets the abort flag and wakes
 * the waiters; a rank waiting in a barrier then throws `ParallelAbort` instead of waiting forever. Waits also wake
 * every 200 ms to re-check the flag.
 */

/** Thrown in a worker whose barrier was aborted (another rank failed, or the run was interrupted). */
export class ParallelAbort extends Error {
  constructor(readonly byRank: number | null) {
    super(byRank === null ? 'parallel run aborted (interrupted, or stopped by the main thread)' : `parallel run aborted: worker ${byRank} failed`);
    this.name = 'ParallelAbort';
  }
}

const ABORT = 0;
const COUNT = 1;
const GEN = 2;
const ABORT_RANK = 3;
const CONTROL_INTS = 8;

/** The shared memory of one pool (what is posted to every worker). */
export interface SharedBuffers {
  control: SharedArrayBuffer;
  data: SharedArrayBuffer;
  size: number;
  capacity: number;
}

/** Bytes of shared memory a pool of `size` workers with `capacity` floats per slot allocates. */
export function sharedBytes(size: number, capacity: number): number {
  return CONTROL_INTS * 4 + (size + 2) * capacity * 4;
}

/** Allocate the shared memory for `size` ranks with `capacity` floats per slot (main thread). */
export function allocateShared(size: number, capacity: number): SharedBuffers {
  if (!(Number.isInteger(size) && size >= 1)) throw new Error(`allocateShared: size must be an integer ≥ 1, got ${size}`);
  if (!(Number.isInteger(capacity) && capacity >= 64)) throw new Error(`allocateShared: capacity must be an integer ≥ 64 floats, got ${capacity}`);
  return { control: new SharedArrayBuffer(CONTROL_INTS * 4), data: new SharedArrayBuffer((size + 2) * capacity * 4), size, capacity };
}

/** Set the abort flag of a pool's shared memory and wake every waiter (main thread or worker). */
export function abortShared(s: SharedBuffers, byRank: number | null): void {
  const ctl = new Int32Array(s.control);
  if (Atomics.compareExchange(ctl, ABORT, 0, 1) === 0) Atomics.store(ctl, ABORT_RANK, byRank === null ? 0 : byRank + 1);
  Atomics.add(ctl, GEN, 1);
  Atomics.notify(ctl, GEN);
}

/** One rank's handle on the pool's shared memory. */
export class Collective {
  readonly rank: number;
  readonly size: number;
  readonly capacity: number;
  private readonly ctl: Int32Array;
  private readonly data: Float32Array;
  private half = 0;
  /** Milliseconds spent waiting in barriers (for load-balance reports). */
  waitMs = 0;
  /** Number of barriers passed. */
  barriers = 0;

  constructor(readonly shared: SharedBuffers, rank: number) {
    if (!(Number.isInteger(rank) && rank >= 0 && rank < shared.size)) throw new Error(`Collective: rank ${rank} outside [0, ${shared.size})`);
    this.rank = rank;
    this.size = shared.size;
    this.capacity = shared.capacity;
    this.ctl = new Int32Array(shared.control);
    this.data = new Float32Array(shared.data);
  }

  private checkAbort(): void {
    if (Atomics.load(this.ctl, ABORT) !== 0) {
      const r = Atomics.load(this.ctl, ABORT_RANK);
      throw new ParallelAbort(r === 0 ? null : r - 1);
    }
  }

  /** Wait until every rank has arrived (throws `ParallelAbort` when the run is aborted). */
  barrier(): void {
    this.checkAbort();
    if (this.size === 1) return;
    const t0 = Date.now();
    const gen = Atomics.load(this.ctl, GEN);
    if (Atomics.add(this.ctl, COUNT, 1) === this.size - 1) {
      Atomics.store(this.ctl, COUNT, 0);
      Atomics.add(this.ctl, GEN, 1);
      Atomics.notify(this.ctl, GEN);
    } else {
      while (Atomics.load(this.ctl, GEN) === gen) {
        Atomics.wait(this.ctl, GEN, gen, 200);
        this.checkAbort();
      }
    }
    this.checkAbort();
    this.waitMs += Date.now() - t0;
    this.barriers++;
  }

  /** Mark the run aborted by this rank (its error is being reported) and wake the others. */
  abort(): void {
    abortShared(this.shared, this.rank);
  }

  /** [start, end) of segment `r` when `n` items are split over the ranks as evenly as possible. */
  static segment(n: number, size: number, r: number): [number, number] {
    const base = Math.floor(n / size);
    const extra = n % size;
    const start = r * base + Math.min(r, extra);
    return [start, start + base + (r < extra ? 1 : 0)];
  }

  /**
   * Sum `x` over the ranks (same length on every rank), element by element in rank order; every rank gets the same
   * bits. Returns a new array (`out` when given).
   */
  allReduce(x: Float32Array, out = new Float32Array(x.length)): Float32Array {
    if (out.length !== x.length) throw new Error(`allReduce: out has ${out.length} floats, x ${x.length}`);
    if (this.size === 1) {
      this.checkAbort();
      out.set(x);
      return out;
    }
    const cap = this.capacity;
    const mySlot = this.rank * cap;
    for (let off = 0; off < x.length || (off === 0 && x.length === 0); off += cap) {
      const n = Math.min(cap, x.length - off);
      this.data.set(x.subarray(off, off + n), mySlot);
      this.barrier();
      const res = (this.size + this.half) * cap;
      const [s, e] = Collective.segment(n, this.size, this.rank);
      const d = this.data;
      for (let j = s; j < e; j++) {
        let acc = d[j];
        for (let r = 1; r < this.size; r++) acc = Math.fround(acc + d[r * cap + j]);
        d[res + j] = acc;
      }
      this.barrier();
      out.set(d.subarray(res, res + n), off);
      this.half ^= 1;
      if (x.length === 0) break;
    }
    return out;
  }

  /** Sum of a few numbers over the ranks (float32, rank order). */
  allReduceNumbers(xs: readonly number[]): number[] {
    return Array.from(this.allReduce(Float32Array.from(xs)));
  }

  /**
   * Every rank's array (lengths may differ), in rank order, on every rank. Goes through the slots in chunks of
   * `capacity` floats.
   */
  allGather(x: Float32Array): Float32Array[] {
    if (this.size === 1) {
      this.checkAbort();
      return [x.slice()];
    }
    const cap = this.capacity;
    const d = this.data;
    // lengths first (slot word 0 of each rank, as a float: exact up to 2^24; larger arrays are chunked below anyway)
    const lens = this.allReduce(Float32Array.from({ length: this.size }, (_, r) => (r === this.rank ? x.length : 0)));
    const outs = Array.from(lens, (n) => {
      if (!Number.isInteger(n) || n < 0 || n > 2 ** 24) throw new Error(`allGather: array length ${n} out of range (≤ 2^24 floats per rank)`);
      return new Float32Array(n);
    });
    const longest = Math.max(...lens);
    for (let off = 0; off < longest; off += cap) {
      const n = Math.max(0, Math.min(cap, x.length - off));
      if (n > 0) d.set(x.subarray(off, off + n), this.rank * cap);
      this.barrier();
      for (let r = 0; r < this.size; r++) {
        const m = Math.max(0, Math.min(cap, outs[r].length - off));
        if (m > 0) outs[r].set(d.subarray(r * cap, r * cap + m), off);
      }
      this.barrier();
    }
    return outs;
  }

  /** Rank `root`'s array on every rank (same length everywhere). */
  broadcast(x: Float32Array, root = 0): Float32Array {
    if (this.size === 1) return x;
    const cap = this.capacity;
    const d = this.data;
    const out = this.rank === root ? x : new Float32Array(x.length);
    for (let off = 0; off < x.length; off += cap) {
      const n = Math.min(cap, x.length - off);
      if (this.rank === root) d.set(x.subarray(off, off + n), root * cap);
      this.barrier();
      if (this.rank !== root) out.set(d.subarray(root * cap, root * cap + n), off);
      this.barrier();
    }
    return out;
  }
}
