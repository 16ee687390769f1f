/**
 * Independent recipes run side by side: job-level parallelism for a notebook's many small runs (seeds × methods).
 *
 * Data-parallel workers (`runRecipe(r, {workers: N})`) split every batch of one run over N threads; for the kit's
 * miniatures (batch 32–64 of 32-px images, a D-96 model) the per-step reduction and the short steps leave most of the
 * second core idle (notebook 04 at smoke: 1.2 CPU-seconds per wall second on 2 workers, LOG.md). Running whole recipes
 * at once, one worker thread each, keeps every core on its own run. Each run's numbers do not depend on this: a recipe
 * on one worker thread computes exactly what it computes in the main thread (test/run-side-by-side.test.ts), so
 * `lanes` changes wall time only.
 */
import { WorkersOption, resolveWorkers } from '../lib/parallel/cores';
import { Recipe } from './recipe';
import { RunOptions, RunResult, defaultWorkers, runRecipe, runRecipeInWorkers } from './run';

/** Options of `runRecipesSideBySide`. */
export interface SideBySideOptions extends Pick<RunOptions, 'root' | 'baseDir' | 'checks'> {
  /**
   * How many recipes run at once, each on its own worker thread ('auto' = the physical cores). 1 runs them one after
   * another in this thread. Default: `$VITPEFT_WORKERS` ('auto' or N; the notebook runner sets 'auto' except at
   * `ci`), else 1.
   */
  lanes?: WorkersOption;
  /** Called as each run finishes (in finishing order): its index in `recipes` and its result. */
  onRun?: (index: number, res: RunResult) => void | Promise<void>;
  /**
   * The order the runs start in (indices into `recipes`; default 0, 1, 2, …). Starting the longest first keeps the
   * lanes busy to the end; results are returned in `recipes` order whatever the start order.
   */
  startOrder?: readonly number[];
}

/**
 * Run every recipe (each its own run folder, as `runRecipe`) with up to `lanes` at a time; resolves to the results in
 * `recipes` order. The first failure stops new starts, waits for the runs in flight and rejects with the failed
 * recipe's name.
 * @example const [a, b] = await runRecipesSideBySide([r1, r2], {lanes: 2, onRun: (i, r) => console.log(r.name)})
 */
export async function runRecipesSideBySide(recipes: readonly Recipe[], o: SideBySideOptions = {}): Promise<RunResult[]> {
  const lanes = Math.max(1, Math.min(resolveWorkers(o.lanes ?? defaultWorkers()), recipes.length));
  const order = o.startOrder ? [...o.startOrder] : recipes.map((_, i) => i);
  const sorted = [...order].sort((a, b) => a - b);
  if (sorted.length !== recipes.length || sorted.some((v, i) => v !== i)) {
    throw new Error(`runRecipesSideBySide: startOrder must be a permutation of 0..${recipes.length - 1}, got ${JSON.stringify(order)}`);
  }
  const opts: RunOptions = { root: o.root, baseDir: o.baseDir, checks: o.checks, progress: false };
  const out: Array<RunResult | undefined> = new Array(recipes.length);
  let next = 0;
  let failure: Error | null = null;
  const lane = async (): Promise<void> => {
    while (!failure && next < order.length) {
      const i = order[next++];
      try {
        const res = lanes === 1 ? await runRecipe(recipes[i], { ...opts, workers: 1 }) : await runRecipeInWorkers(recipes[i], 1, opts);
        out[i] = res;
        await o.onRun?.(i, res);
      } catch (e) {
        const err = e as Error;
        failure ??= Object.assign(new Error(`runRecipesSideBySide: run ${i} (${recipes[i].name}, seed ${recipes[i].seed}) failed: ${err.message}`), { cause: err });
      }
    }
  };
  await Promise.all(Array.from({ length: lanes }, () => lane()));
  if (failure) throw failure;
  return out as RunResult[];
}
