/**
 * `runRecipe(recipe, opts)`: execute a recipe and record it in a run folder; `resumeRun(dir)`: continue an interrupted
 * one exactly where its last state checkpoint left it (bit for bit the same numbers as an uninterrupted run).
 *
 * Run folder (`<runs>/<name>-<UTC time>/`, see lib/report/runs.ts):
 * - `recipe.json` — the resolved recipe (defaults filled, paths absolute): the folder alone reproduces the run;
 * - `run.json` — name, seed, the recipe as config, backend report, git commit, status, summary (final evaluation,
 *   PEFT checks, leaked tensors);
 * - `environment.json` — one entry per process that worked on the run: host, cores, memory, Node, backend, kit
 *   version and commit, the step it started from;
 * - `metrics.jsonl` — one line per training step (`loss`, `gradNorm`, `lr`, …) and per evaluation (`probeTest`, `knn`
 *   / `testAcc`, with `step` = steps done);
 * - `checkpoints/state.safetensors` — the latest resumable state (trainable parameters and optimizer state, or the
 *   whole D-ExPLoRA state), rewritten atomically at every evaluation, every `checkpointEvery` steps and at the end;
 *   `checkpoints/encoder-step<k>.safetensors` — the evaluated encoder (adapters merged) when the protocol keeps it.
 *
 * The checks run on every recipe that has adapters: LoRA is the identity at initialisation (max |Δ| = 0), no frozen
 * parameter changed (a digest of their bytes before and after), the merged encoder equals the adapted one after
 * training (≤ 1e-4 relative), no tensor leaked over the run. A failed check fails the run.
 */
import { existsSync, mkdirSync, readFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { backendReport, init, isInitialised } from '../lib/backend';
import { writeFileAtomic } from '../lib/io/safetensors';
import { readValues } from '../lib/reads';
import { RunRecord, RunInfo, MetricRow, readMetrics, readRun, runsRoot } from '../lib/report/runs';
import { ProgressMode, ProgressOptions, progressBar } from '../lib/report/progress';
import { projectRoot } from '../lib/report/paths';
import { Recipe, RecipeInput, recipe as checkRecipe, recipeJson, resolveRecipePaths } from './recipe';
import { EvalRow, RecipeSession, StepRow, prepareRecipe } from './session';
import { WorkersOption, resolveWorkers } from '../lib/parallel/cores';
import { isLeader } from '../lib/parallel/context';
import { runOnWorkers } from './run-workers';

export interface RunOptions {
  /** Folder the run folder goes to (default `runsRoot()`: `$VITPEFT_RUNS_DIR` or `<project>/runs`). */
  root?: string;
  /** Folder the recipe's relative paths resolve against (default: the current folder). */
  baseDir?: string;
  /** Stop after this many steps (a resumable state is saved; `resumeRun` continues). */
  until?: number;
  /**
   * Data-parallel workers (worker threads, each with its own wasm backend; 'auto' = physical cores). 1 (default) runs
   * in this thread; N > 1 splits every global batch over N workers that each rebuild the model from the recipe and
   * sum their gradients in rank order (lib/parallel/): the same numbers for the same N, and within fp32 rounding of
   * one worker for another N (see run-workers.ts). Not with a live session or `keep`. Default: `$VITPEFT_WORKERS`
   * ('auto' or N; the notebook runner sets 'auto' except at ci scale) where workers can run (a recipe, no `keep`),
   * else 1.
   */
  workers?: WorkersOption;
  /** Run the PEFT checks (default true). */
  checks?: boolean;
  /**
   * Show a progress bar (steps, loss, it/s, ETA): true (in place in a notebook, `\r` on a terminal, lines in logs),
   * a mode, or progress-bar options (`{mode: 'tty', stream: process.stderr}`).
   */
  progress?: boolean | ProgressMode | ProgressOptions;
  onStep?: (row: StepRow) => void | Promise<void>;
  onEval?: (row: EvalRow) => void | Promise<void>;
  /** Keep the session alive and return it (when `runRecipe` was given a recipe; dispose it yourself). */
  keep?: boolean;
}

/** One PEFT check of a run. */
export interface CheckRow {
  check: string;
  value: number;
  tolerance: number;
  ok: boolean;
}

export interface RunResult {
  dir: string;
  name: string;
  recipe: Recipe;
  /** 'done', or 'stopped' when `until` ended it early (resumable). */
  status: 'done' | 'stopped';
  /** Every training step and evaluation of the run (all processes), from `metrics.jsonl`. */
  steps: StepRow[];
  evals: EvalRow[];
  checks: CheckRow[];
  summary: Record<string, unknown>;
  /** The live session (when given one, or with `keep`). */
  session: RecipeSession | null;
}

/** The worker count a run gets when its options name none: `$VITPEFT_WORKERS` ('auto' or an integer ≥ 1), else 1. */
export function defaultWorkers(): WorkersOption {
  const v = process.env.VITPEFT_WORKERS;
  if (v === undefined || v === '') return 1;
  if (v === 'auto') return 'auto';
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`VITPEFT_WORKERS: expected 'auto' or an integer ≥ 1, got '${v}'`);
  return n;
}

/** Name of a run folder's resumable state checkpoint. */
export const STATE_TAG = 'state';

function isSession(x: unknown): x is RecipeSession {
  return typeof x === 'object' && x !== null && typeof (x as RecipeSession).train === 'function' && 'recipe' in x;
}


function kitVersion(): string | null {
  try {
    return (JSON.parse(readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
}

/** What one process records about the machine it ran on. */
function environmentEntry(startStep: number, git: string | null): Record<string, unknown> {
  const b = backendReport();
  return {
    started: new Date().toISOString(),
    startStep,
    host: os.hostname(),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cores: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    backend: b,
    kit: { version: kitVersion(), git },
    argv: process.argv.slice(1),
  };
}

function appendEnvironment(dir: string, entry: Record<string, unknown>): void {
  const file = path.join(dir, 'environment.json');
  const prev = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { sessions: unknown[] }).sessions : [];
  writeFileAtomic(file, `${JSON.stringify({ sessions: [...prev, entry] }, null, 2)}\n`);
}

/** FNV-1a digest of a variable's bytes (frozen parameters must not change). */
async function digest(v: tf.Variable): Promise<number> {
  const d = await readValues(v); // dataSync where the backend can, else await data() (webgpu)
  const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

async function digests(vars: ReadonlyMap<string, tf.Variable>): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const [k, v] of vars) out.set(k, await digest(v));
  return out;
}

/** Split metrics rows into training steps (with a loss) and evaluations. */
function splitRows(rows: MetricRow[]): { steps: StepRow[]; evals: EvalRow[] } {
  const steps: StepRow[] = [];
  const evals: EvalRow[] = [];
  for (const { time: _time, ...row } of rows) {
    if (typeof row.loss === 'number') steps.push(row as StepRow);
    else evals.push(row as EvalRow);
  }
  return { steps, evals };
}

function metricsOf(row: Record<string, unknown>): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  for (const [k, v] of Object.entries(row)) if (k !== 'step' && (typeof v === 'number' || typeof v === 'string')) out[k] = v;
  return out;
}

/** Keep the metrics rows before `step` (a resumed run redoes the rest exactly). */
function truncateMetrics(dir: string, step: number): void {
  const keep = readMetrics(dir).filter((r) => r.step < step);
  writeFileAtomic(path.join(dir, 'metrics.jsonl'), keep.map((r) => `${JSON.stringify(r)}\n`).join(''));
}

/** Set a stopped or failed run folder's status back to 'running'. */
function markRunning(dir: string): void {
  const { dir: _dir, ...info } = readRun(dir);
  writeFileAtomic(path.join(dir, 'run.json'), `${JSON.stringify({ ...info, status: 'running', finished: null }, null, 2)}\n`);
}

/**
 * Execute a recipe (or a session built with `prepareRecipe`, which stays alive) and write its run folder.
 * @example
 *   const res = await runRecipe({...RECIPES.d_explora_small, steps: 20}, {progress: true});
 *   res.dir; res.evals; res.summary;
 */
export async function runRecipe(input: RecipeInput | Recipe | RecipeSession, opts: RunOptions = {}): Promise<RunResult> {
  const given = isSession(input);
  const workers = resolveWorkers(opts.workers ?? (given || opts.keep ? 1 : defaultWorkers()));
  if (!isInitialised()) await init();
  if (workers > 1) {
    if (given) throw new Error(`runRecipe: workers: ${workers} runs the recipe in worker threads; pass the recipe, not a live session (a session lives in this thread)`);
    if (opts.keep) throw new Error(`runRecipe: keep is not available with workers: ${workers} (the sessions live in the worker threads)`);
    return runRecipeInWorkers(input, workers, opts);
  }
  const s = given ? input : await prepareRecipe(input, { baseDir: opts.baseDir });
  let keep = given || (opts.keep ?? false);
  try {
    const root = path.resolve(opts.root ?? runsRoot());
    const rec = RunRecord.create(s.recipe.name, { config: s.recipe as unknown as Record<string, unknown>, seed: s.recipe.seed, root });
    writeFileAtomic(path.join(rec.dir, 'recipe.json'), recipeJson(s.recipe));
    appendEnvironment(rec.dir, { ...environmentEntry(0, rec.record.git), workers: 1 });
    const res = await drive(s, rec, 0, opts);
    return { ...res, session: keep ? s : null };
  } catch (e) {
    keep = given;
    throw e;
  } finally {
    if (!keep) s.dispose();
  }
}

/**
 * `runRecipe` in `workers` (≥ 1) worker threads, even one: the main thread creates the run folder and only forwards
 * callbacks, so several such runs can proceed side by side (`runRecipesSideBySide`). One worker thread computes the
 * same numbers as `runRecipe` in this thread (the same loop on one rank; test/run-side-by-side.test.ts).
 */
export async function runRecipeInWorkers(input: RecipeInput | Recipe, workers: number, opts: Omit<RunOptions, 'workers' | 'keep'> = {}): Promise<RunResult> {
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`runRecipeInWorkers: workers must be an integer >= 1, got ${workers}`);
  if (!isInitialised()) await init();
  const r = resolveRecipePaths(checkRecipe(input), opts.baseDir ?? process.cwd());
  const root = path.resolve(opts.root ?? runsRoot());
  const rec = RunRecord.create(r.name, { config: r as unknown as Record<string, unknown>, seed: r.seed, root });
  writeFileAtomic(path.join(rec.dir, 'recipe.json'), recipeJson(r));
  return runOnWorkers(rec.dir, r, false, workers, opts);
}

/** Whether `dir` is a run folder written by `runRecipe`. */
export function isRunFolder(dir: string): boolean {
  return existsSync(path.join(dir, 'run.json')) && existsSync(path.join(dir, 'recipe.json'));
}

/**
 * Continue a run folder: rebuild the session from `recipe.json`, load `checkpoints/state.safetensors` (or start at
 * step 0 without one), drop the metrics logged after that state and run to the end. A finished run is returned as it
 * is.
 */
export async function resumeRun(dir: string, opts: Omit<RunOptions, 'root' | 'baseDir'> = {}): Promise<RunResult> {
  const workers = resolveWorkers(opts.workers ?? (opts.keep ? 1 : defaultWorkers()));
  const abs = path.resolve(dir);
  if (!isRunFolder(abs)) throw new Error(`resumeRun: ${abs} is not a run folder (it needs run.json and recipe.json)`);
  const info: RunInfo = readRun(abs);
  const file = path.join(abs, 'recipe.json');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`resumeRun: ${file} is not valid JSON (${(e as Error).message})`);
  }
  const r = checkRecipe(raw, 'recipe');
  if (info.status === 'done') {
    const { steps, evals } = splitRows(readMetrics(abs));
    return { dir: abs, name: info.name, recipe: r, status: 'done', steps, evals, checks: (info.summary.checks as CheckRow[]) ?? [], summary: info.summary, session: null };
  }
  if (!isInitialised()) await init();
  if (workers > 1) {
    if (opts.keep) throw new Error(`resumeRun: keep is not available with workers: ${workers} (the sessions live in the worker threads)`);
    return runOnWorkers(abs, r, true, workers, opts);
  }
  const s = await prepareRecipe(r, { baseDir: abs });
  let keep = opts.keep ?? false;
  try {
    const { rec, start } = reopen(abs, s, { workers: 1 });
    const res = await drive(s, rec, start, opts);
    return { ...res, session: keep ? s : null };
  } catch (e) {
    keep = false;
    throw e;
  } finally {
    if (!keep) s.dispose();
  }
}

/**
 * Load a run folder's state into a fresh session and get the folder ready to continue (metrics after the state
 * dropped, status 'running', this process's environment entry); in a data-parallel run only rank 0 writes. Returns the
 * record and the step the state is at.
 */
export function reopen(abs: string, s: RecipeSession, extra: Record<string, unknown> = {}): { rec: RunRecord; start: number } {
  const state = RunRecord.open(abs).checkpointPath(STATE_TAG);
  const start = existsSync(state) ? s.loadState(state) : 0;
  if (isLeader()) {
    truncateMetrics(abs, start);
    markRunning(abs);
  }
  const rec = RunRecord.open(abs);
  if (isLeader()) appendEnvironment(abs, { ...environmentEntry(start, rec.record.git), ...extra });
  return { rec, start };
}

/** Record the first run of a folder's environment entry (main thread of a data-parallel run). */
export function recordEnvironment(dir: string, extra: Record<string, unknown>): void {
  appendEnvironment(dir, { ...environmentEntry(0, RunRecord.open(dir).record.git), ...extra });
}

/** What `drive` reports progress to: a progress bar, or a data-parallel worker's reports to the pool's bar. */
export interface StepReporter {
  tick(n: number, metrics?: Record<string, number | string>): void;
  update(done: number, metrics?: Record<string, number | string>): void;
  done(): void;
}

/**
 * Train, evaluate and checkpoint from `start` to the end (or `until`), logging into `rec`. In a data-parallel worker
 * (lib/parallel/context.ts) every rank computes the same run; only rank 0 writes the folder (metrics, checkpoints,
 * status) and its result is the run's.
 */
export async function drive(s: RecipeSession, rec: RunRecord, start: number, opts: RunOptions, reporter?: StepReporter): Promise<Omit<RunResult, 'session'>> {
  const lead = isLeader();
  const r = s.recipe;
  const total = s.totalSteps;
  const until = Math.min(opts.until ?? total, total);
  if (!Number.isInteger(until) || until < start) throw new Error(`until: expected an integer ≥ ${start} (the steps already done), got ${opts.until}`);
  if (s.step !== start) throw new Error(`runRecipe: the session has done ${s.step} steps, the run folder ${start}; use a fresh session`);
  const checksOn = opts.checks ?? true;
  const t0 = Date.now();
  const checks: CheckRow[] = [];
  const fail = (msg: string): never => {
    throw new Error(`${r.name}: ${msg}`);
  };
  let bar: StepReporter | null = reporter ?? null;
  try {
    const live0 = tf.memory().numTensors;
    let probeX: tf.Tensor4D | null = null;
    let frozen0: Map<string, number> | null = null;
    if (checksOn) {
      probeX = await s.probeImages(16);
      const g = probeX && start === 0 && initIsIdentity(r) ? await s.identityGap(probeX) : null;
      if (g) {
        checks.push({ check: 'LoRA = identity at init (max |Δ CLS|)', value: g.gap, tolerance: 0, ok: g.gap === 0 });
        if (g.gap !== 0) fail(`LoRA is not the identity at initialisation: max |Δ CLS| = ${g.gap}`);
      }
      frozen0 = await digests(s.frozen);
    }
    if (opts.progress && !bar) {
      const po: ProgressOptions = opts.progress === true ? {} : typeof opts.progress === 'string' ? { mode: opts.progress } : opts.progress;
      bar = progressBar(until - start, { label: r.name, ...po });
    }
    const every = r.checkpointEvery;
    const points = new Set<number>([...s.evalSteps, until, total].filter((p) => p >= start && p <= until));
    if (every > 0) for (let p = every; p < until; p += every) if (p > start) points.add(p);
    const statePath = rec.checkpointPath(STATE_TAG);
    mkdirSync(path.dirname(statePath), { recursive: true });
    let at = start;
    for (const p of [...points].sort((a, b) => a - b)) {
      if (p > at) {
        await s.train(at, p, async (row) => {
          if (lead) rec.log(row.step, metricsOf(row));
          bar?.tick(1, { loss: row.loss });
          if (opts.onStep) await opts.onStep(row);
        });
        at = p;
      }
      if (s.evalSteps.includes(p)) {
        const saveEnc = r.eval.kind === 'probe' && r.eval.saveEncoder;
        const e = await s.evaluate(p, saveEnc && lead ? (vit, row) => {
          rec.saveCheckpoint(`encoder-step${p}`, { params: vit.params, meta: { step: p, ...metricsOf(row) } });
        } : undefined);
        if (e) {
          if (lead) rec.log(p, metricsOf(e));
          if (bar) bar.update(at - start, Object.fromEntries(Object.entries(metricsOf(e)).filter(([k]) => k !== 'seconds' && k !== 'probeBest' && k !== 'segPreview')));
          if (opts.onEval) await opts.onEval(e);
        }
      }
      if (lead && p > 0 && s.trainable.size > 0) await s.saveState(statePath, { run: r.name });
    }
    bar?.done();
    const rows = lead ? splitRows(readMetrics(rec.dir)) : { steps: [], evals: [] };
    if (at < total) {
      probeX?.dispose(); // the check images (a stopped run skips the end-of-run checks)
      return { dir: rec.dir, name: r.name, recipe: r, status: 'stopped', steps: rows.steps, evals: rows.evals, checks, summary: { stoppedAt: at } };
    }
    // After the last step: the remaining checks and the summary.
    const diagnostics = await s.diagnostics();
    if (checksOn) {
      const frozen1 = await digests(s.frozen);
      const moved = [...frozen0!].filter(([k, h]) => frozen1.get(k) !== h).map(([k]) => k);
      checks.push({ check: `frozen parameters changed (of ${frozen0!.size})`, value: moved.length, tolerance: 0, ok: moved.length === 0 });
      if (probeX && total > 0) {
        const g = await s.mergeGap(probeX);
        if (g) {
          const tol = 1e-4 * Math.max(1, g.scale);
          checks.push({ check: 'merged == base + LoRA after training (max |Δ CLS|)', value: g.gap, tolerance: tol, ok: g.gap <= tol });
        }
      }
      for (const [k, v] of Object.entries(diagnostics)) {
        if (k === 'lastBlockWD') checks.push({ check: "last merging block's W_D (no gradient path to the cls token)", value: v, tolerance: 0, ok: v === 0 });
      }
    }
    probeX?.dispose();
    const leaked = tf.memory().numTensors - live0;
    checks.push({ check: 'tensors leaked over the run', value: leaked, tolerance: 0, ok: leaked === 0 });
    const summary = summarize(s, rows, checks, diagnostics, (Date.now() - t0) / 1000);
    const bad = checks.filter((c) => !c.ok);
    if (bad.length) {
      if (lead) rec.finish(summary, 'failed');
      fail(`check${bad.length > 1 ? 's' : ''} failed: ${bad.map((c) => `${c.check} = ${c.value} (tolerance ${c.tolerance})`).join('; ')}`);
    }
    if (lead) rec.finish(summary);
    return { dir: rec.dir, name: r.name, recipe: r, status: 'done', steps: rows.steps, evals: rows.evals, checks, summary };
  } catch (e) {
    bar?.done();
    if (lead && rec.record.status === 'running') rec.finish({ error: (e as Error).message }, 'failed');
    throw e;
  }
}

/** Whether the recipe's adapters start as the identity (LoRA B = 0), so the identity check must hold exactly. */
function initIsIdentity(r: Recipe): boolean {
  const a = r.adapters;
  switch (a.kind) {
    case 'explora':
    case 'finetune-lora':
      return true;
    case 'lora':
      return a.init === 'kaiming' && a.targets.every((t) => t.init === null || t.init === 'kaiming');
    case 'pyra':
      return a.loraInit === 'kaiming' && a.method === 'lora';
    default:
      return false;
  }
}

function summarize(s: RecipeSession, rows: { steps: StepRow[]; evals: EvalRow[] }, checks: CheckRow[], diagnostics: Record<string, number>, seconds: number): Record<string, unknown> {
  const last = rows.evals[rows.evals.length - 1];
  const out: Record<string, unknown> = {
    steps: s.totalSteps,
    trainable: s.summary.trainable,
    trainableEncoder: s.summary.trainableEncoder,
    pctEncoder: s.summary.pctEncoder,
    finalLoss: rows.steps.length ? rows.steps[rows.steps.length - 1].loss : null,
    seconds,
  };
  if (last) {
    for (const [k, v] of Object.entries(last)) if (k !== 'step' && k !== 'seconds') out[k] = v;
    if (typeof last.testAcc === 'number') {
      out.finalTestAcc = last.testAcc;
      out.bestTestAcc = Math.max(...rows.evals.map((e) => e.testAcc as number));
    }
  }
  for (const [k, v] of Object.entries(diagnostics)) out[k] = v;
  out.leakedTensors = checks.find((c) => c.check === 'tensors leaked over the run')?.value ?? null;
  out.checks = checks;
  out.weights = s.origin.file ? { kind: s.origin.kind, file: s.origin.file, tensors: s.origin.tensors } : { kind: s.origin.kind };
  return out;
}
