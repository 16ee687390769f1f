/**
 * `runMiniature` with `workers: N > 1`: the (seed, method) jobs of a miniature are independent, so they run whole on N
 * worker threads (job-level parallelism, not data-parallel: inside a job nothing is sharded).
 *
 * The main thread makes sure the embedded data exists on disk (generated once); each worker loads the source model and
 * opens the datasets itself (the same files, the same seeded subsets), then
 * runs the jobs the main thread hands it, one at a time, with the same functions as the one-thread path
 * (`runMaeMethod` / `runDinoMethod`, the MAE source-feature cache included). The main thread hands out the jobs
 * longest first (scratch, then the trained methods, then the frozen source: a greedy balance of the two cores) and
 * re-emits the records in EXACTLY the one-thread order (seed-major, method order), each as soon as every record before
 * it has arrived. Every job computes what it computes in one process (same seeds, same data, same kernels), so the
 * records are bit-identical to the one-thread path except the CPU / time fields (test/miniature-workers.test.ts).
 *
 * Failures: an error in a job rejects with a message naming the method and seed (`WorkerError`: `[worker r of N]
 * runMiniature(method, seed s): …`), and every worker is stopped before the promise settles; a throwing `onRecord`
 * stops the run and rejects with its error.
 */
import { startParallel } from '../lib/workers/run';
import { setParallelContext } from '../lib/parallel/context';
import { disposeMae } from '../lib/mae/mae';
import { disposeVit } from '../lib/vit/params';
import { disposeFeatures } from '../lib/eval/features';
import type { JobContext } from '../lib/workers/protocol';
import type { EvalFeatures } from './miniature-eval';
import { ensureEmbedded } from '../data-loaders/embedded';
import { MiniConfig, MiniDatasets, MiniMethod, MiniRecord, loadSourceDino, loadSourceMae, miniDatasets, miniEmbeddedOptions, runDinoMethod, runMaeMethod } from './miniature';

/** One job: a method on a seed (its index in the one-thread order is its position in the job list). */
interface MiniJob {
  seed: number;
  method: MiniMethod;
}

interface JobArgs {
  cfg: MiniConfig;
  jobs: MiniJob[];
}

type Msg = { kind: 'record'; job: number; record: MiniRecord } | { kind: 'done'; job: number };

/** Relative cost of a job for the greedy balance (measured at smoke: scratch 1.4× a trained method, the source ≈ ¼). */
function jobCost(m: MiniMethod, evals: number): number {
  if (m.kind === 'source') return 1;
  return (m.kind === 'scratch' ? 5.5 : 4) + evals;
}

/** A worker: load the source, then run the jobs the main thread sends (job indices) until it sends null. */
export async function miniatureWorker(a: JobArgs, ctx: JobContext): Promise<number> {
  // Whole jobs, not shards of a batch: the kit's data-parallel paths (trainStep's all-reduce, sharded loaders,
  // gathered features) must not engage in this worker.
  setParallelContext(null);
  const cfg = a.cfg;
  const datasets = new Map<number, MiniDatasets>();
  const dataFor = async (seed: number): Promise<MiniDatasets> => {
    const key = cfg.data.perSeed ? seed : -1;
    let d = datasets.get(key);
    if (!d) {
      d = await miniDatasets(cfg.data, seed);
      datasets.set(key, d);
    }
    return d;
  };
  const source = cfg.objective === 'mae' ? { mae: loadSourceMae(cfg) } : { vit: loadSourceDino(cfg) };
  const sourceFeatures: { data?: MiniDatasets; features?: EvalFeatures } = {};
  let ran = 0;
  try {
    for (;;) {
      const i = (await ctx.next()) as number | null;
      if (i === null) return ran;
      const { seed, method } = a.jobs[i];
      const send = (record: MiniRecord): void => ctx.send({ kind: 'record', job: i, record } satisfies Msg);
      try {
        const d = await dataFor(seed);
        if (cfg.objective === 'mae') await runMaeMethod(cfg, source.mae!, d, method, seed, send, { sourceFeatures });
        else await runDinoMethod(cfg, source.vit!, d, method, seed, send);
      } catch (e) {
        const err = e instanceof Error ? e : new Error(String(e));
        const named = new Error(`runMiniature(${method.name}, seed ${seed}): ${err.message}`);
        named.stack = `${named.name}: ${named.message}\n${(err.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l)).join('\n')}`;
        throw named;
      }
      ran++;
      ctx.send({ kind: 'done', job: i } satisfies Msg);
    }
  } finally {
    if (sourceFeatures.features) Object.values(sourceFeatures.features).forEach(disposeFeatures);
    for (const d of datasets.values()) d.dispose();
    if (source.mae) disposeMae(source.mae);
    if (source.vit) disposeVit(source.vit);
  }
}

/**
 * Run the jobs (in one-thread order) on `workers` worker threads; `onRecord` gets every record in that order, as soon
 * as the order allows; resolves to all records in that order after every worker has exited.
 */
export async function runMiniatureOnWorkers(cfg: MiniConfig, jobs: readonly MiniJob[], workers: number, onRecord?: (r: MiniRecord) => void | Promise<void>): Promise<MiniRecord[]> {
  const evals = cfg.evalAt.filter((s) => s > 0 && s < cfg.pretrain.steps).length + 1;
  // longest first; ties keep the one-thread order
  const queue = jobs.map((j, i) => ({ i, cost: jobCost(j.method, evals) })).sort((x, y) => y.cost - x.cost || x.i - y.i).map((x) => x.i);
  const got: MiniRecord[][] = jobs.map(() => []);
  const finished = jobs.map(() => false);
  const records: MiniRecord[] = [];
  let head = 0; // first job whose records are not all emitted
  let emitted = 0; // records of `head` already emitted
  let chain: Promise<void> = Promise.resolve();
  let callbackError: Error | null = null;
  const flush = (): void => {
    while (head < jobs.length) {
      while (emitted < got[head].length) {
        const r = got[head][emitted++];
        records.push(r);
        if (onRecord) {
          chain = chain.then(async () => {
            if (callbackError) return;
            try {
              await onRecord(r);
            } catch (e) {
              callbackError = e as Error;
              void run.stop(`stopped: onRecord threw (${callbackError.message})`);
            }
          });
        }
      }
      if (!finished[head]) return;
      head++;
      emitted = 0;
    }
  };
  const dispatch = (rank: number): void => {
    const next = queue.shift();
    try {
      run.send(rank, next ?? null);
    } catch {
      /* the run has ended (an error elsewhere): its result says why */
    }
  };
  // generate (or find) the embedded data on disk once, here, so the workers only read it (not N generators at once)
  for (const seed of new Set(cfg.data.perSeed ? jobs.map((j) => j.seed) : [jobs[0].seed])) await ensureEmbedded(miniEmbeddedOptions(cfg.data, seed));
  const run = startParallel<number>(
    { module: __filename, export: miniatureWorker.name, args: { cfg, jobs: [...jobs] } satisfies JobArgs },
    {
      workers,
      label: `miniature (${cfg.objective})`,
      onMessage: (rank, payload) => {
        const m = payload as Msg;
        if (m.kind === 'record') got[m.job].push(m.record);
        else {
          finished[m.job] = true;
          dispatch(rank);
        }
        flush();
      },
    },
  );
  for (let r = 0; r < run.size; r++) dispatch(r);
  try {
    await run.result;
    await chain;
  } catch (e) {
    await chain.catch(() => undefined);
    throw callbackError ?? e;
  }
  if (callbackError) throw callbackError;
  if (head < jobs.length) throw new Error(`runMiniature: the workers ended with ${jobs.length - head} job(s) not finished`);
  return records;
}
