/**
 * `runParallel(job, {workers, progress})`: run a job on a pool with one aggregated progress bar (see pool.ts for
 * errors, interrupts and cleanup, progress.ts for the bar). `workers: 1` still starts one worker thread; callers that
 * keep the in-process path for one worker (runRecipe, the evaluation helpers) check the count first.
 */
import { RunWorkersOptions, WorkerRun, startWorkers } from './pool';
import { PoolProgress, ProgressOption, progressOptions } from './progress';
import type { WorkerJob } from './protocol';

export interface ParallelOptions extends RunWorkersOptions {
  /** Show one progress bar for all workers (their `ctx.progress` reports). */
  progress?: ProgressOption;
  /** Label of the bar. */
  label?: string;
}

/** Start a job with an aggregated progress bar; `result` settles after every worker has exited. */
export function startParallel<R>(job: WorkerJob, opts: ParallelOptions): WorkerRun<R> {
  const po = progressOptions(opts.progress);
  let bar: PoolProgress | null = null;
  const { progress: _p, label, onProgress, ...rest } = opts;
  const run = startWorkers<R>(job, {
    ...rest,
    onProgress: (rank, p) => {
      if (po) {
        bar ??= new PoolProgress(run.size, po, label ?? p.label ?? job.export);
        bar.report(rank, p);
      }
      onProgress?.(rank, p);
    },
  });
  const result = run.result.finally(() => bar?.finish());
  result.catch(() => undefined);
  return { ...run, result, send: run.send, stop: run.stop, startMs: run.startMs, size: run.size };
}

/** Run a job on N workers with an aggregated progress bar; resolves to every rank's result. */
export function runParallel<R>(job: WorkerJob, opts: ParallelOptions): Promise<R[]> {
  return startParallel<R>(job, opts).result;
}
