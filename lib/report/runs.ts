/**
 * Run records: every training run writes a folder `runs/<name>-<UTC timestamp>/` with
 * - `run.json`: name, creation time, seed, the resolved config, the backend report, git commit, status and summary
 *   (rewritten atomically as the run progresses);
 * - `metrics.jsonl`: one JSON object per logged step (`{"step": 10, "loss": 0.3, "time": "..."}`);
 * - `checkpoints/<tag>.safetensors`: checkpoints (PyTorch layout, see io/checkpoint).
 * `listRuns` reads them back and `runsTable` flattens them into rows (config keys and last metrics as columns) for
 * `showTable` / `toDataFrame`.
 *
 * The root is `VITPEFT_RUNS_DIR` if set, else `<project>/runs` (git-ignored).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'fs';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { BackendReport, backendReport, isInitialised } from '../backend';
import { saveCheckpoint, SaveParts } from '../io/checkpoint';
import { appendFileChecked, ensureDir, writeFileAtomic } from '../io/atomic';
import { assertJsonable, fmtValue } from '../check';
import { projectRoot, defaultRunsDir } from './paths';

export const RUN_FORMAT = 'vitpeft-run/1';

export type RunStatus = 'running' | 'done' | 'failed';

/** Contents of `run.json`. */
export interface RunInfo {
  format: typeof RUN_FORMAT;
  name: string;
  /** Folder of the run (absolute; not stored, filled when read). */
  dir: string;
  /** ISO time of creation. */
  created: string;
  seed: number;
  config: Record<string, unknown>;
  backend: BackendReport | null;
  git: string | null;
  status: RunStatus;
  finished: string | null;
  summary: Record<string, unknown>;
}

/** One line of `metrics.jsonl`. */
export type MetricRow = { step: number; time: string } & Record<string, number | string | null>;

/** The folder runs go to: `$VITPEFT_RUNS_DIR`, else `<checkout>/runs` (`./runs` for an installed copy of the kit). */
export function runsRoot(): string {
  return path.resolve(process.env.VITPEFT_RUNS_DIR || defaultRunsDir());
}

function writeJsonAtomic(file: string, data: unknown): void {
  writeFileAtomic(file, `${JSON.stringify(data, null, 2)}\n`);
}

/** Create `dir`; false when it already exists (another run took the name). */
function mkdirClaimed(dir: string): boolean {
  try {
    mkdirSync(dir);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

function stamp(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

function gitCommit(): string | null {
  try {
    return execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: projectRoot(), stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 })
      .toString()
      .trim();
  } catch {
    return null;
  }
}

export interface CreateRunOptions {
  /** The resolved configuration (plain JSON data). */
  config: Record<string, unknown>;
  seed: number;
  /** Root folder (default `runsRoot()`). */
  root?: string;
  /** Backend report to store (default: the current one if `init()` ran, else null). */
  backend?: BackendReport | null;
  /** Creation time (default now). */
  now?: Date;
}

/** A training run being recorded. */
export class RunRecord {
  readonly dir: string;
  private info: RunInfo;

  private constructor(dir: string, info: RunInfo) {
    this.dir = dir;
    this.info = info;
  }

  /** Create `<root>/<name>-<timestamp>/` and write `run.json` (status 'running'). */
  static create(name: string, o: CreateRunOptions): RunRecord {
    if (!/^[A-Za-z0-9][\w.-]*$/.test(name)) {
      throw new Error(`RunRecord.create: name '${name}' must start with a letter or digit and use only letters, digits, '_', '-', '.'`);
    }
    if (!Number.isInteger(o.seed)) throw new Error(`RunRecord.create(${name}): seed must be an integer, got ${fmtValue(o.seed)}`);
    assertJsonable(`RunRecord.create(${name}) config`, o.config, 'config');
    const root = path.resolve(o.root ?? runsRoot());
    ensureDir(root, `RunRecord.create(${name}): runs root`);
    const now = o.now ?? new Date();
    const base = `${name}-${stamp(now)}`;
    // mkdir claims the name atomically: two processes creating the same run in the same second (notebooks run at once,
    // `run_notebooks.py --jobs`) get -2, -3 … instead of one failing on a name the other took after an exists check.
    let dir = path.join(root, base);
    for (let k = 2; !mkdirClaimed(dir); k++) dir = path.join(root, `${base}-${k}`);
    const info: RunInfo = {
      format: RUN_FORMAT,
      name,
      dir,
      created: now.toISOString(),
      seed: o.seed,
      config: JSON.parse(JSON.stringify(o.config)) as Record<string, unknown>,
      backend: o.backend !== undefined ? o.backend : isInitialised() ? backendReport() : null,
      git: gitCommit(),
      status: 'running',
      finished: null,
      summary: {},
    };
    const rec = new RunRecord(dir, info);
    try {
      rec.persist();
      writeFileAtomic(path.join(dir, 'metrics.jsonl'), '');
    } catch (e) {
      rmSync(dir, { recursive: true, force: true }); // no half-made run folder (full disk)
      throw e;
    }
    return rec;
  }

  /** Re-open an existing run folder (to continue logging or read it). */
  static open(dir: string): RunRecord {
    return new RunRecord(path.resolve(dir), readRun(dir));
  }

  get name(): string {
    return this.info.name;
  }

  /** A copy of the stored record. */
  get record(): RunInfo {
    return JSON.parse(JSON.stringify(this.info)) as RunInfo;
  }

  private persist(): void {
    const { dir: _dir, ...stored } = this.info;
    writeJsonAtomic(path.join(this.dir, 'run.json'), stored);
  }

  /** Append one metrics row (numbers / strings; non-finite numbers are stored as null). */
  log(step: number, metrics: Record<string, number | string>): void {
    if (!Number.isInteger(step) || step < 0) throw new Error(`RunRecord(${this.name}).log: step must be an integer ≥ 0, got ${step}`);
    const row: Record<string, unknown> = { step };
    for (const [k, v] of Object.entries(metrics)) {
      if (k === 'step' || k === 'time') throw new Error(`RunRecord(${this.name}).log: '${k}' is reserved`);
      if (typeof v !== 'number' && typeof v !== 'string') {
        throw new Error(`RunRecord(${this.name}).log: metric '${k}' must be a number or string, got ${typeof v}`);
      }
      row[k] = typeof v === 'number' && !Number.isFinite(v) ? null : v;
    }
    row.time = new Date().toISOString();
    appendFileChecked(path.join(this.dir, 'metrics.jsonl'), `${JSON.stringify(row)}\n`, { jsonl: true });
  }

  /** The metrics logged so far. */
  metrics(): MetricRow[] {
    return readMetrics(this.dir);
  }

  /** Path of checkpoint `tag` (`checkpoints/<tag>.safetensors`). */
  checkpointPath(tag: string): string {
    if (!/^[A-Za-z0-9][\w.-]*$/.test(tag)) throw new Error(`RunRecord(${this.name}): checkpoint tag '${tag}' must use only letters, digits, '_', '-', '.'`);
    return path.join(this.dir, 'checkpoints', `${tag}.safetensors`);
  }

  /** Save a checkpoint under the run (metadata records the run name and tag). Returns its path. */
  saveCheckpoint(tag: string, parts: SaveParts): string {
    const file = this.checkpointPath(tag);
    mkdirSync(path.dirname(file), { recursive: true });
    saveCheckpoint(file, { ...parts, meta: { run: this.name, tag, seed: this.info.seed, ...(parts.meta ?? {}) } });
    return file;
  }

  /** Checkpoint tags saved so far. */
  checkpoints(): string[] {
    const d = path.join(this.dir, 'checkpoints');
    if (!existsSync(d)) return [];
    return readdirSync(d)
      .filter((f) => f.endsWith('.safetensors'))
      .map((f) => f.slice(0, -'.safetensors'.length))
      .sort();
  }

  /** Mark the run finished and store its summary (final metrics, timings...; non-finite numbers are stored as null). */
  finish(summary: Record<string, unknown> = {}, status: Exclude<RunStatus, 'running'> = 'done'): void {
    assertJsonable(`RunRecord(${this.name}).finish summary`, summary, 'summary', { allowNonFinite: true }); // stored as null, like log()
    this.info = { ...this.info, status, finished: new Date().toISOString(), summary: { ...this.info.summary, ...summary } };
    this.persist();
  }
}

/** Read `run.json` of a run folder. */
export function readRun(dir: string): RunInfo {
  const file = path.join(dir, 'run.json');
  if (!existsSync(file)) throw new Error(`readRun: ${file} does not exist (not a run folder)`);
  let raw: Partial<RunInfo>;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8')) as Partial<RunInfo>;
  } catch (e) {
    throw new Error(`readRun: ${file} is not valid JSON (${(e as Error).message})`);
  }
  if (raw.format !== RUN_FORMAT) throw new Error(`readRun: ${file} has format '${String(raw.format)}', expected '${RUN_FORMAT}'`);
  return { ...(raw as RunInfo), dir: path.resolve(dir) };
}

/** Read `metrics.jsonl` of a run folder (a torn last line from a killed run is skipped; other bad lines throw). */
export function readMetrics(dir: string): MetricRow[] {
  const file = path.join(dir, 'metrics.jsonl');
  if (!existsSync(file)) return [];
  const lines = readFileSync(file, 'utf8').split('\n');
  const out: MetricRow[] = [];
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    try {
      out.push(JSON.parse(line) as MetricRow);
    } catch {
      const last = lines.slice(i + 1).every((l) => !l.trim());
      if (!last) throw new Error(`readMetrics: ${file} line ${i + 1} is not valid JSON`);
    }
  });
  return out;
}

/** Runs under `root` (default `runsRoot()`), oldest first; `name` filters by run name (exact string or RegExp). */
export function listRuns(o: { root?: string; name?: string | RegExp } = {}): RunInfo[] {
  const root = path.resolve(o.root ?? runsRoot());
  if (!existsSync(root)) return [];
  let ents: import('fs').Dirent[];
  try {
    ents = readdirSync(root, { withFileTypes: true });
  } catch (e) {
    throw new Error(`listRuns: cannot list the runs root ${root} (${(e as Error).message})`);
  }
  const runs: RunInfo[] = [];
  for (const d of ents) {
    if (!d.isDirectory() || !existsSync(path.join(root, d.name, 'run.json'))) continue;
    const info = readRun(path.join(root, d.name));
    if (o.name !== undefined && !(typeof o.name === 'string' ? info.name === o.name : o.name.test(info.name))) continue;
    runs.push(info);
  }
  return runs.sort((a, b) => a.created.localeCompare(b.created) || a.dir.localeCompare(b.dir));
}

/** Flatten nested plain objects to dotted keys (arrays are kept as values). */
export function flattenConfig(obj: Record<string, unknown>, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) Object.assign(out, flattenConfig(v as Record<string, unknown>, key));
    else out[key] = v;
  }
  return out;
}

export interface RunsTableOptions {
  /** Config keys (dotted) to show; default: the keys whose values differ between the runs (all keys for one run). */
  configKeys?: string[];
  /** Metrics to show (default: every metric logged by any run). */
  metrics?: string[];
  /** Per metric: 'last' (default), 'min' or 'max' over the logged rows. */
  reduce?: Record<string, 'last' | 'min' | 'max'>;
}

/** One row per run: run, created, status, seed, steps, the chosen config keys, the reduced metrics. */
export function runsTable(runs: RunInfo[], o: RunsTableOptions = {}): Array<Record<string, unknown>> {
  const flat = runs.map((r) => flattenConfig(r.config));
  let keys = o.configKeys;
  if (!keys) {
    const all = [...new Set(flat.flatMap((f) => Object.keys(f)))];
    keys = runs.length <= 1 ? all : all.filter((k) => new Set(flat.map((f) => JSON.stringify(f[k]))).size > 1);
  }
  const metricRows = runs.map((r) => readMetrics(r.dir));
  const metricNames =
    o.metrics ?? [...new Set(metricRows.flatMap((rows) => rows.flatMap((row) => Object.keys(row).filter((k) => k !== 'step' && k !== 'time'))))];
  return runs.map((r, i) => {
    const row: Record<string, unknown> = {
      run: path.basename(r.dir),
      status: r.status,
      seed: r.seed,
      backend: r.backend?.backend ?? null,
      steps: metricRows[i].length ? Math.max(...metricRows[i].map((m) => m.step)) + 1 : 0,
    };
    for (const k of keys!) row[k] = flat[i][k];
    for (const m of metricNames) {
      const vals = metricRows[i].map((x) => x[m]).filter((v): v is number | string => v !== undefined && v !== null);
      const how = o.reduce?.[m] ?? 'last';
      const nums = vals.filter((v): v is number => typeof v === 'number');
      row[m] = vals.length === 0 ? null : how === 'last' ? vals[vals.length - 1] : nums.length ? (how === 'min' ? Math.min(...nums) : Math.max(...nums)) : null;
    }
    return row;
  });
}
