/**
 * Evaluation on worker threads from the main thread: the model (and the kit-made hooks it runs with) is shipped once
 * (ship.ts: weights in shared memory), the main thread keeps iterating the caller's batches (decoding stays where the
 * data is), splits every batch into one row-chunk per worker, and reassembles the outputs in order. A forward is
 * independent per image, so the features / predictions are the one-process ones up to the summation order inside a
 * matmul (identical here: the same kernels see the same rows; tests compare them).
 *
 * Ops: 'features' (CLS of the last n blocks + mean patch token, as lib/eval/features.ts caches), 'predict' (argmax of
 * the logits), 'throughput' (every worker times its share of a batch between barriers; the rate is the global batch
 * over the slowest worker's time).
 */
import * as tf from '@tensorflow/tfjs';
import { Vit } from '../vit/params';
import { vitForward, VitHooks } from '../vit/forward';
import { Rng } from '../rng';
import { imgHW } from '../vit/config';
import { ShippedVit, landVit, shipVit } from './ship';
import { WorkersOption } from '../parallel/cores';
import { startParallel } from './run';
import type { WorkerRun } from './pool';
import { ProgressOption } from './progress';
import { parallelContext, shardRange } from '../parallel/context';
import type { JobContext } from './protocol';

type Request =
  | { op: 'features'; id: number; x: Float32Array; shape: number[]; nLast: number }
  | { op: 'predict'; id: number; x: Float32Array; shape: number[] }
  | { op: 'throughput'; id: number; batch: number; warmup: number; iters: number; minSeconds: number; seed: number };

/** A request without its id (distributes over the union). */
type RequestBody = Request extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never;

type Reply =
  | { id: number; cls: Float32Array; mean: Float32Array }
  | { id: number; pred: Int32Array }
  | { id: number; walls: number[]; tokensOut: number; rows: number };

/** The worker side: serve requests for a shipped model until a null request. */
export async function vitServer(args: { model: ShippedVit }, ctx: JobContext): Promise<number> {
  const { vit, hooks, dispose } = landVit(args.model);
  let served = 0;
  try {
    for (;;) {
      const r = (await ctx.next()) as Request | null;
      if (r === null) return served;
      served++;
      if (r.op === 'throughput') {
        ctx.send(throughputShare(vit, hooks, r, ctx));
        continue;
      }
      const x = tf.tensor4d(r.x, r.shape as [number, number, number, number]);
      try {
        if (r.op === 'features') {
          const [c, m] = tf.tidy(() => {
            const o = vitForward(vit, x, { hooks, returnLayers: r.nLast });
            const cls = tf.stack(o.intermediates.map((l) => l.cls), 1); // [B, n, D]
            return [cls, tf.mean(o.intermediates[o.intermediates.length - 1].patchTokens, 1)]; // [B, D]
          });
          const reply = { id: r.id, cls: c.dataSync() as Float32Array, mean: m.dataSync() as Float32Array };
          tf.dispose([c, m]);
          ctx.send(reply, [reply.cls.buffer as ArrayBuffer, reply.mean.buffer as ArrayBuffer]);
        } else {
          const pred = tf.tidy(() => tf.argMax(vitForward(vit, x, { hooks }).logits!, 1).dataSync()) as Int32Array;
          ctx.send({ id: r.id, pred }, [pred.buffer as ArrayBuffer]);
        }
      } finally {
        x.dispose();
      }
    }
  } finally {
    dispose();
  }
}

/** One worker's share of a throughput measurement: its rows of the batch, iterations between barriers. */
function throughputShare(vit: Vit, hooks: VitHooks, r: Extract<Request, { op: 'throughput' }>, ctx: JobContext): Reply {
  const coll = parallelContext()!.collective;
  const [s, e] = shardRange(r.batch, ctx.rank, ctx.size);
  const [H, W] = imgHW(vit.config);
  const C = vit.config.inChans;
  const rng = Rng.derive(r.seed, 'throughput');
  const all = new Float32Array(r.batch * H * W * C);
  for (let i = 0; i < all.length; i++) all[i] = rng.uniform(-1, 1);
  const images = tf.tensor4d(all.subarray(s * H * W * C, e * H * W * C), [e - s, H, W, C]);
  let tokensOut = 0;
  const once = (): void => {
    tf.tidy(() => {
      const out = vitForward(vit, images, { hooks, training: false });
      (out.logits ?? out.pooled).dataSync();
      tokensOut = out.prenorm.shape[1];
    });
  };
  const timed = (): number => {
    coll.barrier();
    const t0 = process.hrtime.bigint();
    once();
    coll.barrier();
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  try {
    for (let i = 0; i < r.warmup; i++) timed();
    const walls = [timed()];
    // the same iteration count on every worker: rank 0 decides from its first timed iteration
    const want = coll.broadcast(Float32Array.from([Math.max(r.iters, Math.ceil((r.minSeconds * 1000) / Math.max(walls[0], 1e-3)))]))[0];
    while (walls.length < want) walls.push(timed());
    return { id: r.id, walls, tokensOut, rows: e - s };
  } finally {
    images.dispose();
  }
}

/** A shipped model served by N workers (main thread side). */
export class VitWorkers {
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private readonly load: number[];
  private closed = false;

  private constructor(private readonly run: WorkerRun<number>) {
    this.load = new Array(run.size).fill(0);
    run.result.catch((e: Error) => {
      for (const w of this.waiting.values()) w.reject(e);
      this.waiting.clear();
    });
  }

  /** Start `workers` workers serving `vit` with `hooks` (kit-made hooks only, see ship.ts). */
  static start(vit: Vit, hooks: VitHooks, workers: WorkersOption, opts: { progress?: ProgressOption; label?: string } = {}): VitWorkers {
    const model = shipVit(vit, hooks);
    const holder: { self: VitWorkers | null } = { self: null };
    const run = startParallel<number>(
      { module: __filename, export: vitServer.name, args: { model } },
      { workers, progress: opts.progress, label: opts.label, onMessage: (_rank, payload) => holder.self!.settle(payload as Reply) },
    );
    holder.self = new VitWorkers(run);
    return holder.self;
  }

  get size(): number {
    return this.run.size;
  }

  private settle(r: Reply): void {
    const w = this.waiting.get(r.id);
    if (!w) return;
    this.waiting.delete(r.id);
    w.resolve(r);
  }

  /** Send a request to `rank` (or the least busy worker) and wait for its reply. */
  request(req: RequestBody, rank?: number, transfer?: ArrayBuffer[]): Promise<Reply> {
    if (this.closed) return Promise.reject(new Error('VitWorkers: closed'));
    const id = this.nextId++;
    const r = rank ?? this.load.indexOf(Math.min(...this.load));
    this.load[r]++;
    const p = new Promise<Reply>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    try {
      this.run.send(r, { ...req, id }, transfer);
    } catch (e) {
      this.waiting.delete(id);
      this.load[r]--;
      return this.run.result.then(() => Promise.reject(e), (err: Error) => Promise.reject(err));
    }
    return p.finally(() => {
      this.load[r]--;
    });
  }

  /** Rows of a batch tensor split into one chunk per worker (copied out of the caller's heap). */
  chunks(images: tf.Tensor4D): Array<{ x: Float32Array; shape: number[]; rows: [number, number] }> {
    const [B, H, W, C] = images.shape;
    const all = images.dataSync() as Float32Array;
    const n = Math.min(this.size, B);
    const out: Array<{ x: Float32Array; shape: number[]; rows: [number, number] }> = [];
    for (let r = 0; r < n; r++) {
      const [s, e] = shardRange(B, r, n);
      out.push({ x: all.slice(s * H * W * C, e * H * W * C), shape: [e - s, H, W, C], rows: [s, e] });
    }
    return out;
  }

  /** Stop the workers (after the pending requests); resolves when every worker has exited. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (let r = 0; r < this.size; r++) {
      try {
        this.run.send(r, null);
      } catch {
        /* already ended */
      }
    }
    await this.run.result;
  }

  /** Stop at once (errors elsewhere): terminate the workers. */
  async abort(reason: string): Promise<void> {
    this.closed = true;
    await this.run.stop(reason);
  }
}

/** One batch of images and labels (as lib/eval/features.ts takes them). */
export interface ImageBatch {
  images: tf.Tensor4D;
  labels?: tf.Tensor1D | ArrayLike<number>;
}

/**
 * Run `fn` over every batch on the workers, at most `2 × workers` chunks in flight, batches read and disposed on the
 * main thread as they go. Returns the replies per batch, in batch order, chunk order within a batch.
 */
export async function mapBatches<T>(
  pool: VitWorkers,
  batches: Iterable<ImageBatch> | AsyncIterable<ImageBatch>,
  send: (chunk: { x: Float32Array; shape: number[] }) => Promise<T>,
  onBatch: (b: ImageBatch) => void,
  dispose: boolean,
): Promise<T[][]> {
  const out: Array<Promise<T[]>> = [];
  const inflight = new Set<Promise<unknown>>();
  for await (const b of batches as AsyncIterable<ImageBatch>) {
    let parts: Array<{ x: Float32Array; shape: number[] }>;
    try {
      onBatch(b);
      parts = pool.chunks(b.images);
    } finally {
      if (dispose) {
        b.images.dispose();
        if (b.labels instanceof tf.Tensor) b.labels.dispose();
      }
    }
    const ps = parts.map((c) => {
      const p = send(c);
      inflight.add(p);
      void p.finally(() => inflight.delete(p)).catch(() => undefined);
      return p;
    });
    const all = Promise.all(ps);
    all.catch(() => undefined);
    out.push(all);
    while (inflight.size >= 2 * pool.size) await Promise.race(inflight);
  }
  return Promise.all(out);
}

/** Features of every batch computed on `workers` workers (see lib/eval/features.ts for what they are). */
export async function featuresOnWorkers(
  vit: Vit,
  batches: Iterable<ImageBatch> | AsyncIterable<ImageBatch>,
  opts: { nLast: number; hooks?: VitHooks; workers: WorkersOption; disposeBatches?: boolean; progress?: ProgressOption },
): Promise<{ cls: Float32Array[]; mean: Float32Array[]; labels: number[] }> {
  const pool = VitWorkers.start(vit, opts.hooks ?? {}, opts.workers, { progress: opts.progress, label: 'features' });
  const labels: number[] = [];
  try {
    const replies = await mapBatches(
      pool,
      batches,
      (c) => pool.request({ op: 'features', x: c.x, shape: c.shape, nLast: opts.nLast }, undefined, [c.x.buffer as ArrayBuffer]) as Promise<{ cls: Float32Array; mean: Float32Array }>,
      (b) => {
        const B = b.images.shape[0];
        const l = b.labels instanceof tf.Tensor ? Array.from(b.labels.dataSync()) : Array.from(b.labels ?? []);
        if (l.length !== B) throw new Error(`extractFeatures: batch has ${B} images but ${l.length} labels`);
        labels.push(...l);
      },
      opts.disposeBatches ?? true,
    );
    await pool.close();
    const flat = replies.flat();
    return { cls: flat.map((r) => r.cls), mean: flat.map((r) => r.mean), labels };
  } catch (e) {
    await pool.abort('stopped after an error');
    throw e;
  }
}

/** argmax predictions of every batch on `workers` workers, with the batches' labels, in order. */
export async function predictOnWorkers(
  vit: Vit,
  batches: Iterable<ImageBatch> | AsyncIterable<ImageBatch>,
  opts: { hooks?: VitHooks; workers: WorkersOption; progress?: ProgressOption },
): Promise<{ pred: Int32Array; labels: number[] }> {
  const pool = VitWorkers.start(vit, opts.hooks ?? {}, opts.workers, { progress: opts.progress, label: 'predict' });
  const labels: number[] = [];
  try {
    const replies = await mapBatches(
      pool,
      batches,
      (c) => pool.request({ op: 'predict', x: c.x, shape: c.shape }, undefined, [c.x.buffer as ArrayBuffer]) as Promise<{ pred: Int32Array }>,
      (b) => {
        if (b.labels !== undefined) labels.push(...(b.labels instanceof tf.Tensor ? Array.from(b.labels.dataSync()) : Array.from(b.labels)));
      },
      true,
    );
    await pool.close();
    const flat = replies.flat();
    const pred = new Int32Array(flat.reduce((a, r) => a + r.pred.length, 0));
    let o = 0;
    for (const r of flat) {
      pred.set(r.pred, o);
      o += r.pred.length;
    }
    return { pred, labels };
  } catch (e) {
    await pool.abort('stopped after an error');
    throw e;
  }
}

/** Throughput of a global batch split over `workers` workers (walls of the slowest worker per iteration). */
export async function throughputOnWorkers(
  vit: Vit,
  hooks: VitHooks,
  opts: { workers: WorkersOption; batch: number; warmup: number; iters: number; minSeconds: number; seed: number },
): Promise<{ walls: number[]; tokensOut: number; workers: number }> {
  const pool = VitWorkers.start(vit, hooks, opts.workers);
  try {
    if (opts.batch < pool.size) throw new Error(`measureThroughput: a batch of ${opts.batch} cannot be split over ${pool.size} workers`);
    const req = { op: 'throughput' as const, batch: opts.batch, warmup: opts.warmup, iters: opts.iters, minSeconds: opts.minSeconds, seed: opts.seed };
    const replies = (await Promise.all(Array.from({ length: pool.size }, (_, r) => pool.request(req, r)))) as Array<{ walls: number[]; tokensOut: number }>;
    await pool.close();
    return { walls: replies[0].walls, tokensOut: replies[0].tokensOut, workers: pool.size };
  } catch (e) {
    await pool.abort('stopped after an error');
    throw e;
  }
}
