/**
 * Worker pools (main thread): start N worker threads that each run the same job (`worker.ts`), aggregate their
 * progress, surface their errors, and make sure nothing outlives a run.
 *
 * - Each worker is a Node `worker_threads` Worker with its own tfjs engine, wasm backend (its own 4 GiB heap) and the
 *   kit's fast kernels; `.ts` sources are loaded through tsx's require hook, registered inside the worker (so it also
 *   works from a tslab kernel, which compiles notebooks itself and has no tsx loader).
 * - One block of shared memory per run (`collective.ts`): the workers' barrier, all-reduce and all-gather.
 * - Errors: the first worker error (not the `ParallelAbort`s it causes in the others) rejects the run with a
 *   `WorkerError` whose message starts with `[worker r of N]` and whose stack is the worker's own stack (then the
 *   main-thread frames); a wasm heap exhaustion carries the bytes asked for, the heap size and the step.
 * - Interrupts: while a run is alive, SIGINT (Ctrl-C in a terminal, "interrupt kernel" in Jupyter — the notebook
 *   server sends SIGINT to the kernel process, and tslab only rejects the cell's promise) aborts the shared memory,
 *   terminates every worker and rejects the run with a `WorkerInterrupt`. When the kit's handler was the process's
 *   only SIGINT listener (a plain script), the signal is re-raised after the workers are gone, so the default exit
 *   still happens.
 * - No orphans: a run settles (resolves or rejects) only after every one of its workers has exited; the shared
 *   memory is released with the run. `liveWorkers()` / `liveSharedBytes()` count what is alive (tests assert 0).
 */
import { Worker } from 'worker_threads';
import * as path from 'path';
import { allocateShared, abortShared, SharedBuffers, sharedBytes } from '../parallel/collective';
import { WorkersOption, resolveWorkers } from '../parallel/cores';
import type { WorkerData, WorkerJob, WorkerMessage, WorkerProgress } from './protocol';

/** An error raised in a worker, re-raised on the main thread. */
export class WorkerError extends Error {
  constructor(
    message: string,
    readonly rank: number,
    readonly size: number,
    /** The worker's error name and stack, as the worker saw it. */
    readonly workerName: string,
    readonly workerStack: string,
    /** Set when the wasm heap of the worker could not grow. */
    readonly oom?: { requested: number; heap: number; during: string | null },
  ) {
    super(message);
    this.name = 'WorkerError';
  }
}

/** A run stopped by SIGINT or `stop()`. */
export class WorkerInterrupt extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WorkerInterrupt';
  }
}

export interface RunWorkersOptions {
  /** Worker count: an integer ≥ 1 or 'auto' (physical cores, see cores.ts). */
  workers: WorkersOption;
  /** Floats per rank in the shared memory (the all-reduce chunk; default 2^20 = 4 MiB per worker). */
  sharedFloats?: number;
  /** Each progress report of each worker. */
  onProgress?: (rank: number, p: WorkerProgress & { waitMs: number }) => void;
  /** Messages a job posts with `ctx.send`. */
  onMessage?: (rank: number, payload: unknown) => void;
  /** Stop every worker on SIGINT (default true). */
  interruptible?: boolean;
}

/** A started run (`startWorkers`). */
export interface WorkerRun<R> {
  readonly size: number;
  /** Settles after every worker has exited: each rank's result in rank order, or the first worker error. */
  readonly result: Promise<R[]>;
  /** Post a message to a worker (its job reads it with `ctx.next()`). */
  send(rank: number, payload: unknown, transfer?: ArrayBuffer[]): void;
  /** Stop the run: abort the shared memory, terminate every worker, reject `result` with `WorkerInterrupt(reason)`. */
  stop(reason?: string): Promise<void>;
  /** Milliseconds from the start of the run until each worker was ready (kit loaded, backend started, job module loaded). */
  readonly startMs: number[];
}

const live = new Set<Worker>();
let liveShared = 0;

/** Worker threads started by the kit that have not exited yet. */
export function liveWorkers(): number {
  return live.size;
}

/** Bytes of shared memory held by runs that have not settled yet. */
export function liveSharedBytes(): number {
  return liveShared;
}

/** The code each worker thread evaluates: register tsx for `.ts` sources, then load the worker entry. */
function bootCode(): string {
  const ext = path.extname(__filename);
  const entry = path.join(__dirname, `worker${ext === '.ts' ? '.ts' : '.js'}`);
  const tsx = ext === '.ts' || ext === '' ? `require(${JSON.stringify(require.resolve('tsx/cjs/api'))}).register();` : '';
  return `${tsx}require(${JSON.stringify(entry)});`;
}

function jobError(m: Extract<WorkerMessage, { kind: 'error' }>, size: number): WorkerError {
  const tag = `[worker ${m.rank} of ${size}]`;
  const err = new WorkerError(`${tag} ${m.message}`, m.rank, size, m.name, m.stack, m.oom);
  const own = (m.stack || `${m.name}: ${m.message}`).split('\n');
  const frames = own.filter((l) => /^\s+at /.test(l));
  const mainFrames = (err.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l));
  err.stack = [`${m.name === 'Error' ? 'WorkerError' : `WorkerError (${m.name})`}: ${tag} ${m.message}`, ...frames, '    --- worker stack above, main thread below ---', ...mainFrames].join('\n');
  return err;
}

/**
 * Start `job` on N workers. Each worker runs `require(job.module)[job.export](job.args, ctx)`; the run's `result`
 * resolves to the per-rank return values once all have exited.
 */
export function startWorkers<R>(job: WorkerJob, opts: RunWorkersOptions): WorkerRun<R> {
  const size = resolveWorkers(opts.workers);
  if (!job || typeof job.module !== 'string' || typeof job.export !== 'string') throw new Error('startWorkers: job must be {module, export, args}');
  if (!path.isAbsolute(job.module)) throw new Error(`startWorkers: job.module must be an absolute path, got '${job.module}'`);
  const capacity = opts.sharedFloats ?? 2 ** 20;
  const shared: SharedBuffers = allocateShared(size, capacity);
  const bytes = sharedBytes(size, capacity);
  liveShared += bytes;
  const workers: Worker[] = [];
  const results: unknown[] = new Array(size);
  const doneRanks = new Set<number>();
  const startMs: number[] = new Array(size).fill(NaN);
  let failure: Error | null = null;
  let settled = false;
  let resolveRun!: (r: R[]) => void;
  let rejectRun!: (e: Error) => void;
  const result = new Promise<R[]>((res, rej) => {
    resolveRun = res;
    rejectRun = rej;
  });
  result.catch(() => undefined); // the caller gets it through `result`; no unhandled-rejection noise meanwhile

  let finishing: Promise<void> | null = null;
  const finish = (): Promise<void> => {
    if (finishing) return finishing;
    finishing = (async () => {
      if (failure) abortShared(shared, null);
      await Promise.all(workers.map((w) => w.terminate().catch(() => 0)));
      if (sigint) process.removeListener('SIGINT', sigint);
      liveShared -= bytes;
      settled = true;
      if (failure) rejectRun(failure);
      else resolveRun(results as R[]);
    })();
    return finishing;
  };
  const fail = (e: Error): void => {
    if (failure) return;
    failure = e;
    void finish();
  };

  let sigint: (() => void) | null = null;
  if (opts.interruptible ?? true) {
    sigint = () => {
      const only = process.listenerCount('SIGINT') === 1;
      const handler = sigint!;
      fail(new WorkerInterrupt(`interrupted (SIGINT): stopped ${size} worker${size > 1 ? 's' : ''}`));
      if (only) {
        // a plain script: after the workers are gone, let the default SIGINT behaviour (exit) happen
        void finishing!.then(() => {
          process.removeListener('SIGINT', handler);
          if (process.listenerCount('SIGINT') === 0) process.kill(process.pid, 'SIGINT');
        });
      }
    };
    process.on('SIGINT', sigint);
  }

  const code = bootCode();
  const spawnedAt = Date.now();
  for (let rank = 0; rank < size; rank++) {
    const data: WorkerData = { rank, size, job, shared };
    let w: Worker;
    try {
      w = new Worker(code, { eval: true, workerData: data, execArgv: [] });
    } catch (e) {
      fail(e as Error);
      break;
    }
    workers.push(w);
    live.add(w);
    w.on('message', (m: WorkerMessage) => {
      switch (m.kind) {
        case 'ready':
          startMs[m.rank] = Date.now() - spawnedAt;
          return;
        case 'progress':
          opts.onProgress?.(m.rank, m);
          return;
        case 'message':
          opts.onMessage?.(m.rank, m.payload);
          return;
        case 'done':
          results[m.rank] = m.result;
          doneRanks.add(m.rank);
          if (doneRanks.size === size && !failure) void finish();
          return;
        case 'error':
          if (m.aborted && !failure) {
            // a secondary stop: remember it only if no real cause arrives before the workers are gone
            setTimeout(() => fail(jobError(m, size)), 2000).unref();
            return;
          }
          fail(jobError(m, size));
          return;
        default:
          return;
      }
    });
    w.on('error', (e) => fail(Object.assign(new WorkerError(`[worker ${rank} of ${size}] ${e.message}`, rank, size, e.name, e.stack ?? ''), {})));
    w.on('exit', (codeN) => {
      live.delete(w);
      if (!doneRanks.has(rank) && !failure && !settled) fail(new WorkerError(`[worker ${rank} of ${size}] exited with code ${codeN} before finishing its job`, rank, size, 'Exit', ''));
    });
  }

  return {
    size,
    result,
    startMs,
    send: (rank, payload, transfer) => {
      if (settled || failure) throw new Error('WorkerRun.send: the run has ended');
      const w = workers[rank];
      if (!w) throw new Error(`WorkerRun.send: no worker ${rank} (size ${size})`);
      w.postMessage(payload, transfer ?? []);
    },
    stop: async (reason = 'stopped') => {
      fail(new WorkerInterrupt(reason));
      await finishing;
    },
  };
}

/** Run `job` on N workers and wait for every rank's result (see `startWorkers`). */
export function runWorkers<R>(job: WorkerJob, opts: RunWorkersOptions): Promise<R[]> {
  return startWorkers<R>(job, opts).result;
}
