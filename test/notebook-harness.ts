/**
 * Helpers for the tests that execute notebooks through the real tslab kernel (test/notebooks*.test.ts): whether
 * Jupyter is installed, running environment/run_notebooks.py, reading executed notebooks.
 */
import { spawnSync, SpawnSyncReturns } from 'child_process';
import { existsSync, readFileSync } from 'fs';
import * as path from 'path';

export const ROOT = path.resolve(__dirname, '..');
export const PYTHON = process.env.VITPEFT_PYTHON || '/usr/bin/python3';
export const JUPYTER_PATH = path.join(ROOT, '.jupyter', 'share', 'jupyter');

/** True when running under CI (`CI=true`, as CI services and .ci/run set it). */
export const IN_CI = /^(true|1|yes)$/i.test(process.env.CI ?? '');

/**
 * Why the notebook tests cannot run here (null = they can; the caller skips with the reason). Under CI a missing
 * Jupyter is an error instead: CI must not look green without the notebooks.
 */
export function jupyterMissing(): string | null {
  const why = jupyterMissingReason();
  if (why && IN_CI) throw new Error(`CI=true but the notebook tests cannot run: ${why}`);
  return why;
}

function jupyterMissingReason(): string | null {
  if (!existsSync(path.join(ROOT, 'node_modules', '.bin', 'tslab'))) return 'node_modules/.bin/tslab is missing (run npm ci)';
  const r = spawnSync(PYTHON, ['-c', 'import nbclient, nbconvert, nbformat, jupyter_client'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `${PYTHON} cannot import nbclient/nbconvert/jupyter_client (install: sudo environment/setup-system.sh)`;
  return null;
}

/** Whether headless Chromium is installed (the browser check). */
export function chromiumPath(): string | null {
  for (const p of ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']) if (existsSync(p)) return p;
  return null;
}

export interface RunResult {
  status: number | null;
  stderr: string;
  stdout: string;
  summary: Array<{ notebook: string; ok: boolean; seconds: number; error: string | null; executed: string; html: string | null }>;
}

/** Run environment/run_notebooks.py with `args`, writing to `out`; extra environment in `env`. */
export function runNotebooks(args: string[], out: string, env: Record<string, string> = {}, timeoutS = 280): RunResult {
  const r: SpawnSyncReturns<string> = spawnSync(PYTHON, [path.join(ROOT, 'environment', 'run_notebooks.py'), '--out', out, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: timeoutS * 1000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw new Error(`run_notebooks.py did not run: ${r.error.message}\n${r.stderr ?? ''}`);
  const sumFile = path.join(out, 'summary.json');
  const summary = existsSync(sumFile) ? JSON.parse(readFileSync(sumFile, 'utf8')) : [];
  return { status: r.status, stderr: r.stderr, stdout: r.stdout, summary };
}

export interface ExecutedCell {
  cell_type: string;
  source: string | string[];
  outputs?: Array<{ output_type: string; name?: string; text?: string | string[]; data?: Record<string, unknown> }>;
}

/** The code cells of an executed notebook. */
export function executedCells(file: string): ExecutedCell[] {
  const nb = JSON.parse(readFileSync(file, 'utf8')) as { cells: ExecutedCell[] };
  return nb.cells.filter((c) => c.cell_type === 'code');
}

const join = (t: string | string[] | undefined): string => (Array.isArray(t) ? t.join('') : t ?? '');

/** Text a cell wrote to a stream ('stdout' | 'stderr'). */
export function streamText(cell: ExecutedCell, name: 'stdout' | 'stderr'): string {
  return (cell.outputs ?? []).filter((o) => o.output_type === 'stream' && o.name === name).map((o) => join(o.text)).join('');
}

/** MIME types of a cell's display outputs. */
export function mimes(cell: ExecutedCell): string[] {
  return (cell.outputs ?? []).flatMap((o) => Object.keys(o.data ?? {}));
}

/** `text/plain` of a cell's display outputs, joined. */
export function displayText(cell: ExecutedCell): string {
  return (cell.outputs ?? []).map((o) => join(o.data?.['text/plain'] as string | string[] | undefined)).join('\n');
}
