/**
 * What crosses the thread boundary between the pool (main thread) and its workers: plain, structured-cloneable data.
 */
import type { SharedBuffers } from '../parallel/collective';

/**
 * A job: a module and one of its exported functions, called in every worker as `fn(args, ctx)` (args: plain data).
 * The module path is absolute (resolve it with `require.resolve` or `path.resolve`); `.ts` modules work (tsx).
 */
export interface WorkerJob<A = unknown> {
  module: string;
  export: string;
  args: A;
}

/** Progress a worker reports (aggregated by the pool's progress bar). */
export interface WorkerProgress {
  /** Units done so far (steps, batches) and their total. */
  done: number;
  total: number;
  /** Items (images) this worker processed in this report's units, for the aggregate rate. */
  items?: number;
  label?: string;
  metrics?: Record<string, number | string>;
}

/** What a job function gets besides its arguments. */
export interface JobContext {
  rank: number;
  size: number;
  /** Report progress to the main thread (cheap; the bar throttles). */
  progress(p: WorkerProgress): void;
  /** Post a message to the main thread (`onMessage` of `runWorkers`). */
  send(payload: unknown, transfer?: ArrayBuffer[]): void;
  /** The next message the main thread sent to this worker (`WorkerRun.send`). */
  next(): Promise<unknown>;
}

export interface WorkerData {
  rank: number;
  size: number;
  job: WorkerJob;
  shared: SharedBuffers;
}

export type WorkerMessage =
  | { kind: 'ready'; rank: number; ms: number }
  | ({ kind: 'progress'; rank: number; waitMs: number } & WorkerProgress)
  | { kind: 'message'; rank: number; payload: unknown }
  | { kind: 'done'; rank: number; result: unknown; waitMs: number; barriers: number }
  | {
      kind: 'error';
      rank: number;
      name: string;
      message: string;
      stack: string;
      /** The worker stopped because another one failed or the run was interrupted (not a cause). */
      aborted: boolean;
      oom?: { requested: number; heap: number; during: string | null };
    };
