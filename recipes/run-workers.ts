/**
 * `runRecipe` / `resumeRun` with `workers: N > 1`: the run on N worker threads (lib/parallel/), SPMD like DDP.
 *
 * The main thread creates (or reopens) the run folder and starts N workers; each worker rebuilds the session from the
 * resolved recipe (its own model, frozen weights loaded once into its own wasm heap and never moved), loads the state
 * when resuming, and runs the same loop as the one-thread path (`drive`). Inside it, every global batch is split over
 * the workers (rows [start, end) of the batch each; the same samples, augmentations, masks and drop-path draws those
 * rows get in one process), the loss, metrics and trainable gradients are summed over the workers in rank order
 * (`trainStep`), batch statistics (DINO centering, Sinkhorn-Knopp) are reduced, and every replica applies the same
 * update. Evaluation features are computed a share of each batch per worker and gathered (lib/eval/features.ts); the
 * probe / kNN on them is replicated. Rank 0 alone writes the folder, so the folder looks exactly like a one-thread
 * run's (environment.json records the worker count).
 *
 * Numbers: the same recipe, seed and worker count give bit-identical metrics and checkpoints (the sums run in a fixed
 * order). Another worker count changes only the order of floating-point sums (per-worker partial sums of the loss and
 * gradients, then their sum), so metrics agree with one worker to fp32 rounding that training may amplify over steps:
 * test/parallel-recipe.test.ts states the tolerance. KoLeo (D-ExPLoRA) stays per worker, as DINOv2 computes it per
 * GPU: with KoLeo on, N workers optimise a (slightly) different objective than one — documented, not reduced.
 *
 * Failures: an error in any worker rejects the run with that worker's message and stack (`WorkerError`), the other
 * workers are stopped, and run.json records the error; SIGINT stops every worker (`WorkerInterrupt`) and the run
 * folder stays resumable from its last state checkpoint, with any worker count.
 */
import * as path from 'path';
import { existsSync, readFileSync } from 'fs';
import { startParallel } from '../lib/workers/run';
import { isLeader, parallelContext, shardRange } from '../lib/parallel/context';
import type { JobContext } from '../lib/workers/protocol';
import { readMetrics, readRun, RunRecord } from '../lib/report/runs';
import { writeFileAtomic } from '../lib/io/safetensors';
import { Recipe } from './recipe';
import { EvalRow, StepRow, prepareRecipe } from './session';
import type { CheckRow, RunOptions, RunResult, StepReporter } from './run';
import { drive, recordEnvironment, reopen } from './run';

interface JobArgs {
  dir: string;
  recipe: Recipe;
  resume: boolean;
  until: number | null;
  checks: boolean;
  progress: boolean;
  /** Forward every step / evaluation row to the main thread (it has onStep / onEval). */
  rows: boolean;
}

type JobReply = { status: 'done' | 'stopped'; checks: CheckRow[]; summary: Record<string, unknown> } | null;
type RowMessage = { kind: 'step'; row: StepRow } | { kind: 'eval'; row: EvalRow };

/** A worker's side of a data-parallel run (every rank; rank 0 writes the folder and returns the result). */
export async function recipeWorker(a: JobArgs, ctx: JobContext): Promise<JobReply> {
  const s = await prepareRecipe(a.recipe, { baseDir: a.dir });
  try {
    const { rec, start } = a.resume ? reopen(a.dir, s, { workers: ctx.size, rank: ctx.rank }) : { rec: RunRecord.open(a.dir), start: 0 };
    // every rank must be past rank 0's bookkeeping (truncated metrics) before anyone logs
    parallelContext()?.collective.barrier();
    const until = Math.min(a.until ?? s.totalSteps, s.totalSteps);
    const [r0, r1] = shardRange(s.recipe.batch, ctx.rank, ctx.size);
    let done = 0;
    const reporter: StepReporter | undefined = a.progress
      ? {
          tick: (n, metrics) => {
            done += n;
            ctx.progress({ done, total: until - start, items: n * (r1 - r0), label: s.recipe.name, metrics });
          },
          update: (d, metrics) => {
            done = d;
            ctx.progress({ done, total: until - start, items: 0, label: s.recipe.name, metrics });
          },
          done: () => undefined,
        }
      : undefined;
    const fwd = a.rows && isLeader();
    const res = await drive(
      s,
      rec,
      start,
      {
        until: a.until ?? undefined,
        checks: a.checks,
        onStep: fwd ? (row) => ctx.send({ kind: 'step', row } satisfies RowMessage) : undefined,
        onEval: fwd ? (row) => ctx.send({ kind: 'eval', row } satisfies RowMessage) : undefined,
      },
      reporter,
    );
    return isLeader() ? { status: res.status, checks: res.checks, summary: res.summary } : null;
  } finally {
    s.dispose();
  }
}

/**
 * Record in run.json why a run on workers ended early: the real cause (a worker's error, not the aborts it caused in
 * the others; or the interrupt). The folder stays resumable from its last state checkpoint.
 */
function markFailed(dir: string, e: Error): void {
  const file = path.join(dir, 'run.json');
  if (!existsSync(file)) return;
  const { dir: _d, ...info } = readRun(dir);
  const stored = { ...info, status: 'failed', finished: new Date().toISOString(), summary: { ...info.summary, error: e.message } };
  writeFileAtomic(file, `${JSON.stringify(stored, null, 2)}\n`);
}

/** Run (or resume) a run folder's recipe on `workers` worker threads; the main thread only forwards callbacks. */
export async function runOnWorkers(dir: string, recipe: Recipe, resume: boolean, workers: number, opts: RunOptions): Promise<RunResult> {
  if (!resume) recordEnvironment(dir, { workers });
  let chain: Promise<void> = Promise.resolve();
  let callbackError: Error | null = null;
  const run = startParallel<JobReply>(
    {
      module: __filename,
      export: recipeWorker.name,
      args: { dir, recipe, resume, until: opts.until ?? null, checks: opts.checks ?? true, progress: !!opts.progress, rows: !!(opts.onStep || opts.onEval) } satisfies JobArgs,
    },
    {
      workers,
      progress: opts.progress,
      label: recipe.name,
      onMessage: (_rank, m) => {
        const msg = m as RowMessage;
        chain = chain.then(async () => {
          if (callbackError) return;
          try {
            if (msg.kind === 'step') await opts.onStep?.(msg.row);
            else await opts.onEval?.(msg.row);
          } catch (e) {
            callbackError = e as Error;
            void run.stop(`stopped: the ${msg.kind === 'step' ? 'onStep' : 'onEval'} callback threw (${callbackError.message})`);
          }
        });
      },
    },
  );
  let out: JobReply[];
  try {
    out = await run.result;
    await chain;
  } catch (e) {
    await chain.catch(() => undefined);
    const err = callbackError ?? (e as Error);
    markFailed(dir, err);
    throw err;
  }
  const lead = out[0]!;
  const rows = readMetrics(dir);
  const steps: StepRow[] = [];
  const evals: EvalRow[] = [];
  for (const { time: _t, ...row } of rows) (typeof row.loss === 'number' ? steps.push(row as StepRow) : evals.push(row as EvalRow));
  const r = JSON.parse(readFileSync(path.join(dir, 'recipe.json'), 'utf8')) as Recipe;
  return { dir, name: r.name, recipe, status: lead.status, steps, evals, checks: lead.checks, summary: lead.summary, session: null };
}
