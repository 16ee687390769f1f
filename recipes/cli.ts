/**
 * The `vitpeft` command line (bin/vitpeft.js starts it):
 *
 *   vitpeft run <recipe.json | run-folder | preset> [--runs-dir DIR] [--until N] [--workers 1] [--no-checks] [--quiet]
 *   vitpeft presets                 the preset recipes, one per line
 *   vitpeft show <preset>           a preset as JSON (a starting point for a recipe file)
 *
 * `run` on a recipe file (or a preset name) starts a new run folder; on a run folder it resumes the run from its last
 * state checkpoint (a finished run is reported as it is). Progress goes to stderr as a bar (steps, loss, it/s, ETA),
 * the run folder and the summary to stdout. Errors name the file and the key path; the exit code is 1 (2 for usage).
 */
import { existsSync, readFileSync, statSync } from 'fs';
import * as path from 'path';
import { init } from '../lib/backend';
import { RecipeError } from './schema';
import { Recipe, recipe as checkRecipe } from './recipe';
import { RECIPES } from './presets';
import { RunResult, isRunFolder, resumeRun, runRecipe } from './run';
import { readRun } from '../lib/report/runs';

export const USAGE = `usage: vitpeft run <recipe.json | run-folder | preset> [options]
       vitpeft presets
       vitpeft show <preset>

  run <recipe.json>   run a recipe file (a new run folder under --runs-dir)
  run <preset>        run a preset recipe by name (see 'vitpeft presets')
  run <run-folder>    resume an interrupted run from its last state checkpoint
  presets             list the preset recipes
  show <preset>       print a preset recipe as JSON

options:
  --runs-dir DIR      where run folders go (default: $VITPEFT_RUNS_DIR, else <checkout>/runs)
  --until N           stop after N steps, leaving a resumable run folder
  --workers N         data-parallel worker processes (only 1 for now)
  --no-checks         skip the PEFT checks (identity at init, frozen parameters, merge, leaks)
  --quiet             no progress bar
  -h, --help          this text`;

class UsageError extends Error {}

interface Args {
  command: 'run' | 'presets' | 'show' | 'help';
  target: string | null;
  runsDir: string | null;
  until: number | null;
  workers: number;
  checks: boolean;
  quiet: boolean;
}

export function parseArgs(argv: readonly string[]): Args {
  const a: Args = { command: 'help', target: null, runsDir: null, until: null, workers: 1, checks: true, quiet: false };
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new UsageError(`${k}: expected a value`);
      return v;
    };
    const integer = (min: number): number => {
      const v = value();
      const n = Number(v);
      if (!Number.isInteger(n) || n < min) throw new UsageError(`${k}: expected an integer ≥ ${min}, got '${v}'`);
      return n;
    };
    if (k === '-h' || k === '--help') return { ...a, command: 'help' };
    else if (k === '--runs-dir') a.runsDir = value();
    else if (k === '--until') a.until = integer(0);
    else if (k === '--workers') a.workers = integer(1);
    else if (k === '--no-checks') a.checks = false;
    else if (k === '--quiet') a.quiet = true;
    else if (k.startsWith('-')) throw new UsageError(`unknown option '${k}'`);
    else rest.push(k);
  }
  if (rest.length === 0) return a;
  const [cmd, ...targets] = rest;
  if (cmd !== 'run' && cmd !== 'presets' && cmd !== 'show' && cmd !== 'help') throw new UsageError(`unknown command '${cmd}'; valid: run, presets, show`);
  a.command = cmd;
  if (cmd === 'run' || cmd === 'show') {
    if (targets.length !== 1) throw new UsageError(`${cmd}: expected one ${cmd === 'run' ? 'recipe file, run folder or preset' : 'preset name'}, got ${targets.length}`);
    a.target = targets[0];
  } else if (targets.length) throw new UsageError(`${cmd}: unexpected argument '${targets[0]}'`);
  return a;
}

/** Line and column of a character offset (for JSON syntax errors). */
function lineCol(text: string, pos: number): string {
  const before = text.slice(0, pos).split('\n');
  return `line ${before.length}, column ${before[before.length - 1].length + 1}`;
}

/**
 * Offset of the first JSON syntax error in `text` (a small recursive-descent scan; `JSON.parse` does not always say
 * where), or -1 when there is none.
 */
export function jsonErrorOffset(text: string): number {
  let i = 0;
  class Stop extends Error {}
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const fail = (): never => {
    throw new Stop();
  };
  const lit = (w: string): void => {
    if (text.startsWith(w, i)) i += w.length;
    else fail();
  };
  const str = (): void => {
    if (text[i] !== '"') fail();
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text.charCodeAt(i) < 0x20) fail();
      i += text[i] === '\\' ? 2 : 1;
    }
    if (i >= text.length) fail();
    i++;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        str();
        ws();
        lit(':');
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') {
          i++;
          return;
        } else fail();
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') {
          i++;
          return;
        } else fail();
      }
    } else if (c === '"') str();
    else if (c === 't') lit('true');
    else if (c === 'f') lit('false');
    else if (c === 'n') lit('null');
    else {
      const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
      if (!m) fail();
      i += m![0].length;
    }
  };
  try {
    value();
    ws();
    return i < text.length ? i : -1;
  } catch (e) {
    if (e instanceof Stop) return Math.min(i, text.length);
    throw e;
  }
}

/** Read and validate a recipe file; errors name the file and the key path. */
export function readRecipeFile(file: string): Recipe {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read (${(e as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    const at = jsonErrorOffset(text);
    throw new Error(`${file}: not valid JSON${at >= 0 ? ` at ${lineCol(text, at)}` : ''} (${(e as Error).message})`);
  }
  try {
    return checkRecipe(raw);
  } catch (e) {
    if (e instanceof RecipeError) throw new Error(`${file}: ${e.message}`);
    throw e;
  }
}

function presetNames(): string[] {
  return Object.keys(RECIPES);
}

function preset(name: string): Recipe {
  if (!Object.prototype.hasOwnProperty.call(RECIPES, name)) throw new UsageError(`no preset '${name}'; valid: ${presetNames().join(', ')}`);
  return RECIPES[name as keyof typeof RECIPES];
}

function fmt(v: unknown): string {
  return typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : JSON.stringify(v);
}

function report(res: RunResult, out: (s: string) => void): void {
  out(`run folder: ${res.dir}`);
  out(`status: ${res.status}${res.status === 'stopped' ? ` after step ${String(res.summary.stoppedAt)} (resume: vitpeft run ${res.dir})` : ''}`);
  const keys = ['finalLoss', 'probeTest', 'probeVal', 'knn', 'finalTestAcc', 'bestTestAcc', 'trainable', 'pctEncoder', 'seconds'];
  const parts = keys.filter((k) => res.summary[k] !== undefined && res.summary[k] !== null).map((k) => `${k} ${fmt(res.summary[k])}`);
  if (parts.length) out(`summary: ${parts.join(', ')}`);
  for (const c of res.checks) out(`check: ${c.check}: ${fmt(c.value)} (tolerance ${fmt(c.tolerance)}) ${c.ok ? 'ok' : 'FAILED'}`);
}

/** Run the command line; returns the exit code. `out` / `err` default to stdout / stderr. */
export async function main(argv: readonly string[], io: { out?: (s: string) => void; err?: (s: string) => void } = {}): Promise<number> {
  const out = io.out ?? ((s: string) => process.stdout.write(`${s}\n`));
  const err = io.err ?? ((s: string) => process.stderr.write(`${s}\n`));
  let a: Args;
  try {
    a = parseArgs(argv);
  } catch (e) {
    err(`vitpeft: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  try {
    switch (a.command) {
      case 'help':
        out(USAGE);
        return 0;
      case 'presets':
        for (const n of presetNames()) out(`${n}\t${RECIPES[n as keyof typeof RECIPES].description}`);
        return 0;
      case 'show':
        out(JSON.stringify(preset(a.target!), null, 2));
        return 0;
      case 'run': {
        const target = a.target!;
        const progress = a.quiet ? false : ({ mode: process.stderr.isTTY ? 'tty' : 'lines', stream: process.stderr } as const);
        const opts = { until: a.until ?? undefined, workers: a.workers, checks: a.checks, progress };
        await init();
        let res: RunResult;
        if (existsSync(target) && statSync(target).isDirectory()) {
          if (!isRunFolder(target)) throw new Error(`${target} is a folder but not a run folder (no run.json / recipe.json)`);
          if (a.runsDir) throw new UsageError('--runs-dir: a resumed run stays in its own folder');
          if (readRun(target).status === 'done') out('(the run had already finished)');
          res = await resumeRun(target, opts);
        } else {
          const r = existsSync(target) ? readRecipeFile(target) : /[\\/.]/.test(target) ? readRecipeFile(target) : preset(target);
          const baseDir = existsSync(target) ? path.dirname(path.resolve(target)) : process.cwd();
          res = await runRecipe(r, { ...opts, root: a.runsDir ?? undefined, baseDir });
        }
        report(res, out);
        return 0;
      }
      default: {
        const never: never = a.command;
        throw new Error(`unknown command ${String(never)}`);
      }
    }
  } catch (e) {
    if (e instanceof UsageError) {
      err(`vitpeft: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    err(`vitpeft: ${(e as Error).message}`);
    return 1;
  }
}

// Run as a program (bin/vitpeft.js starts dist/recipes/cli.js, or this file through tsx in a changed checkout).
if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
